//! A deterministic harness for the rotation state machine, in the style of
//! quinn-proto's test `Pair`: a virtual clock, a model target and store that
//! perform each [`Step`] as documented on it, and a driver that persists the
//! rotation (as JSON, like the real store) after every transition, so a crash
//! is "reload the persisted copy and send Resume".

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use keyshift_core::rotation::{
    Action, Event, FailureKind, GateVerdict, Migration, Phase, Rotation, Step, StepOutput,
    TransitionError,
};
use keyshift_core::{Policy, Strategy, Timestamp, VersionNumber, VersionState};

/// The virtual clock starts here (November 2026).
pub const T0: i64 = 1_795_000_000_000;

/// What the secret looked like before the rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// No version at all (first rotation).
    Empty,
    /// v1 active and `current`.
    Current,
    /// v1 revoked and `previous`, v2 active and `current`.
    CurrentAndPrevious,
}

/// The store's labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels {
    pub current: Option<u64>,
    pub previous: Option<u64>,
    pub pending: Option<u64>,
    /// A canary's new version, `current` for the consumers in its share.
    pub canary: Option<u64>,
}

/// Labels with `current` and `previous` set and no `pending` or `canary`.
pub fn labels(current: Option<u64>, previous: Option<u64>) -> Labels {
    Labels {
        current,
        previous,
        pending: None,
        canary: None,
    }
}

/// Model target (accepted set) + model store (versions and labels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct World {
    /// The versions the target accepts.
    pub accepted: BTreeSet<u64>,
    /// Every stored version (its value is present iff it is here) and its state.
    pub versions: BTreeMap<u64, VersionState>,
    pub labels: Labels,
    /// The version this rotation's Generate created (the store keys it by
    /// rotation id, which is what makes Generate idempotent).
    pub generated: Option<u64>,
}

impl World {
    /// The world with failed, unaccepted versions left out (and so the
    /// generated marker): what I5 compares.
    pub fn without_failed(&self) -> World {
        let versions: BTreeMap<u64, VersionState> = self
            .versions
            .iter()
            .filter(|(v, s)| **s != VersionState::Failed || self.accepted.contains(v))
            .map(|(v, s)| (*v, *s))
            .collect();
        World {
            accepted: self.accepted.clone(),
            generated: self.generated.filter(|g| versions.contains_key(g)),
            versions,
            labels: self.labels.clone(),
        }
    }

    pub fn new(start: Start) -> Self {
        use VersionState::{Active, Revoked};
        let (versions, labels) = match start {
            Start::Empty => (BTreeMap::new(), Labels::default()),
            Start::Current => (BTreeMap::from([(1, Active)]), labels(Some(1), None)),
            Start::CurrentAndPrevious => {
                let versions = BTreeMap::from([(1, Revoked), (2, Active)]);
                (versions, labels(Some(2), Some(1)))
            }
        };
        let accepted = labels.current.into_iter().collect();
        let generated = None;
        Self {
            accepted,
            versions,
            labels,
            generated,
        }
    }

    /// Performs `step` with the semantics documented on [`Step`]. Every
    /// branch is idempotent, like the real implementations must be.
    pub fn perform(&mut self, step: &Step) -> StepOutput {
        use VersionState::{Active, Failed, Pending, Revoked};
        let n = |v: Option<VersionNumber>| v.map(|v| v.0);
        match *step {
            Step::Precheck { current } => assert_eq!(n(current), self.labels.current),
            Step::Generate => {
                let next = self.versions.keys().max().map_or(1, |m| m + 1);
                let v = *self.generated.get_or_insert(next);
                if v == next {
                    self.versions.insert(v, Pending);
                    self.labels.pending = Some(v);
                }
                return StepOutput::Generated(VersionNumber(v));
            }
            Step::DualAccept { new, .. } => {
                self.versions.insert(new.0, Active);
                self.accepted.insert(new.0);
            }
            Step::Canary { new } => self.labels.canary = Some(new.0),
            // The model's consumers have all moved: the gate opens (the
            // driver of the properties holds it some checks first).
            Step::Gate { .. } => return StepOutput::Gate(GateVerdict::Open, Migration::default()),
            Step::Promote { old, new } => self.labels = labels(Some(new.0), n(old)),
            Step::Revoke { old, .. } => {
                self.accepted.remove(&old.0);
                self.versions.insert(old.0, Revoked);
            }
            Step::Replace { old, new } => {
                self.versions.insert(new.0, Active);
                self.accepted = BTreeSet::from([new.0]);
                if let Some(old) = old {
                    self.versions.insert(old.0, Revoked);
                }
            }
            Step::RollBack {
                old, new, previous, ..
            } => {
                if let Some(old) = old {
                    self.versions.insert(old.0, Active);
                }
                self.accepted = n(old).into_iter().collect();
                // Without a reported version, the one this rotation
                // generated (looked up by rotation id in the real store).
                if let Some(new) = n(new).or(self.generated) {
                    self.versions.insert(new, Failed);
                }
                self.labels = labels(n(old), n(previous));
            }
        }
        StepOutput::Done
    }

    /// I1: `current` (if any), and a canary's version which is `current`
    /// for some consumers, are accepted by the target.
    pub fn check_i1(&self) {
        for c in self.labels.current.iter().chain(&self.labels.canary) {
            assert!(
                self.accepted.contains(c),
                "I1: current v{c} refused: {self:?}"
            );
        }
    }

    /// I2, strengthened: every accepted version is stored and `Active`.
    pub fn check_i2(&self) {
        for v in &self.accepted {
            let state = self.versions.get(v);
            assert_eq!(state, Some(&VersionState::Active), "I2: accepted v{v}");
        }
    }
}

/// The driver: clock, world, the in-memory rotation and the store's copy.
pub struct Harness {
    pub now: Timestamp,
    pub world: World,
    /// The in-memory rotation (lost on a crash).
    pub rot: Rotation,
    /// The store's copy, as JSON.
    pub stored: String,
    /// The action the last transition asked for.
    pub action: Action,
    pub crashes: u32,
    /// When the driver reported Promote's success (its own clock, not the
    /// rotation's record, so I4 does not trust the machine's bookkeeping).
    pub promote_reported_at: Option<Timestamp>,
}

impl Harness {
    /// A rotation created from the world's labels, then `Resume`d once.
    pub fn new(strategy: Strategy, start: Start, policy: Policy) -> Self {
        let world = World::new(start);
        let now = Timestamp::from_millis(T0);
        let (current, previous) = (world.labels.current, world.labels.previous);
        let name = "prod/orders/db".parse().expect("name");
        let (current, previous) = (current.map(VersionNumber), previous.map(VersionNumber));
        let rot = Rotation::new("r1".into(), name, policy, strategy, current, previous, now);
        let mut h = Self {
            now,
            world,
            stored: serde_json::to_string(&rot).expect("serialize"),
            rot,
            action: Action::WaitUntil(now),
            crashes: 0,
            promote_reported_at: None,
        };
        h.send(Event::Resume).expect("first resume");
        h
    }

    /// Feeds `event`; on success persists the new rotation and checks the
    /// invariants that hold at every instant. On error nothing changes.
    pub fn send(&mut self, event: Event) -> Result<(), TransitionError> {
        let promoting = matches!(self.action, Action::Run(Step::Promote { .. }));
        let succeeded = matches!(event, Event::StepSucceeded(_));
        let t = self.rot.clone().on(event, self.now)?;
        if promoting && succeeded {
            self.promote_reported_at = Some(self.now);
        }
        self.stored = serde_json::to_string(&t.rotation).expect("serialize");
        let reloaded: Rotation = serde_json::from_str(&self.stored).expect("deserialize");
        assert_eq!(reloaded, t.rotation, "the persisted copy round-trips");
        self.rot = t.rotation;
        self.action = t.action;
        self.check_always();
        Ok(())
    }

    fn check_always(&self) {
        self.world.check_i2();
        let dual = self.rot.strategy.overlaps();
        if dual {
            self.world.check_i1();
        }
        match &self.action {
            Action::Run(step) => {
                assert!(self.rot.in_flight, "a step is issued in flight");
                match *step {
                    Step::Revoke { old, new } => self.check_i4(old, new),
                    Step::DualAccept { .. } => assert!(dual, "DualAccept in immediate"),
                    Step::Replace { .. } => assert!(!dual, "Replace in dual"),
                    _ => {}
                }
            }
            Action::WaitUntil(at) => assert!(*at > self.now, "waits for the future"),
            Action::Finished(status) => assert_eq!(*status, self.rot.status()),
        }
    }

    /// I4: Revoke only after Promote was persisted and the overlap gate
    /// passed: after `min_overlap`, unless an operator forced it.
    fn check_i4(&self, old: VersionNumber, new: VersionNumber) {
        let stored: Rotation = serde_json::from_str(&self.stored).expect("deserialize");
        assert!(stored.promoted, "I4: revoke before promote was persisted");
        assert!(
            stored.gate.passed_by.is_some(),
            "I4: revoke before the overlap gate passed"
        );
        let promoted_at = self.promote_reported_at.expect("I4: promote reported");
        assert_eq!(
            stored.promoted_at(),
            Some(promoted_at),
            "promote's end recorded"
        );
        let deadline = promoted_at.saturating_add(stored.policy.min_overlap);
        let forced = stored.gate.passed_by.as_deref() == Some("operator");
        assert!(
            forced || self.now >= deadline,
            "I4: revoke at {:?} < {deadline:?}",
            self.now
        );
        assert_eq!(self.world.labels.current, Some(new.0), "I4: new is current");
        assert_eq!(stored.old_version, Some(old));
    }

    /// The step the driver must perform now.
    pub fn step(&self) -> Step {
        match &self.action {
            Action::Run(step) => step.clone(),
            other => panic!("expected a step, got {other:?}"),
        }
    }

    /// Performs the step on the world (the side effect), taking `ms`.
    pub fn perform(&mut self, ms: u64) -> StepOutput {
        let out = self.world.perform(&self.step());
        self.now = self.now.saturating_add(Duration::from_millis(ms));
        out
    }

    /// Performs the step and reports success.
    pub fn succeed(&mut self) {
        let out = self.perform(5);
        self.send(Event::StepSucceeded(out))
            .expect("success accepted");
    }

    /// Reports a failure of the step (after performing it if `effect`); a
    /// retry must wait `backoff(attempts + 1)`.
    pub fn fail(&mut self, kind: FailureKind, effect: bool) {
        if effect {
            self.perform(5);
        }
        let phase = self.rot.phase;
        let error = format!("{kind:?} failure");
        self.send(Event::StepFailed { kind, error })
            .expect("failure accepted");
        if self.rot.phase == phase && phase == Phase::Overlap {
            // A failed gate check is tried again a monitoring cycle later.
            let at = self.now.saturating_add(self.rot.policy.monitoring_cycle);
            assert_eq!(self.action, Action::WaitUntil(at), "gate retry");
        } else if self.rot.phase == phase {
            assert_eq!(
                kind,
                FailureKind::Transient,
                "only transient failures retry"
            );
            let attempts = self.rot.history.last().expect("history").attempts;
            let at = self
                .now
                .saturating_add(self.rot.policy.backoff(attempts + 1));
            assert_eq!(
                self.action,
                Action::WaitUntil(at),
                "backoff after {attempts} tries"
            );
        }
    }

    /// The driver dies: the in-memory rotation is lost, the store's copy
    /// is reloaded and resumed.
    pub fn crash(&mut self) {
        self.rot = serde_json::from_str(&self.stored).expect("reload");
        self.crashes += 1;
        self.send(Event::Resume).expect("resume after crash");
    }

    /// Lets the clock reach the deadline of a `WaitUntil` and resumes.
    pub fn wait(&mut self) {
        let Action::WaitUntil(at) = self.action else {
            panic!("expected a wait, got {:?}", self.action);
        };
        self.now = at;
        self.send(Event::Resume).expect("resume");
    }

    pub fn request_rollback(&mut self) -> Result<(), TransitionError> {
        let reason = "operator".to_owned();
        self.send(Event::RollbackRequested { reason })
    }

    /// Succeeds every step and sits out every wait until the rotation ends.
    pub fn finish(&mut self) {
        for _ in 0..50 {
            match self.action {
                Action::Run(_) => self.succeed(),
                Action::WaitUntil(_) => self.wait(),
                Action::Finished(_) => return,
            }
        }
        panic!("did not finish: {:?}", self.rot);
    }

    /// The phases entered so far.
    pub fn phases(&self) -> Vec<Phase> {
        self.rot.history.iter().map(|r| r.phase).collect()
    }
}

/// Whether the spec lets an operator roll back now: every phase before the
/// old credential is touched (rotation/mod.rs: "before Revoke (or Replace)").
pub fn spec_allows_rollback(rot: &Rotation) -> bool {
    rot.phase.can_roll_back() && !rot.old_revoked
}

/// The phase transitions DESIGN.md allows (forward, to RollBack, to Failed).
pub fn allowed_edge(strategy: Strategy, has_old: bool, a: Phase, b: Phase) -> bool {
    use Phase::*;
    let dual = strategy.overlaps();
    let forward = match a {
        Precheck => Generate,
        Generate if dual => DualAccept,
        Generate => Replace,
        DualAccept if strategy == Strategy::Canary => Canary,
        Canary => Observe,
        DualAccept | Replace | Observe => Promote,
        Promote if dual && has_old => Overlap,
        Promote | Revoke => Done,
        Overlap => Revoke,
        RollBack => RolledBack,
        Done | RolledBack | Failed => return false,
    };
    b == forward
        || (b == RollBack && (a.can_roll_back() || a == Replace))
        || (b == Failed && !matches!(a, Overlap | Observe))
}
