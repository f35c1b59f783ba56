//! The transition function.

use serde::{Deserialize, Serialize};

use super::phase::{Phase, PhaseOutcome, PhaseRecord, RotationId, Status};
use crate::policy::{OnTimeout, Policy, Strategy};
use crate::time::Timestamp;
use crate::{SecretName, VersionNumber};

/// A side effect the driver performs. Every step is idempotent: performing
/// it twice has the effect of performing it once (I5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Check the target is reachable, the admin access works and `current`
    /// (if any) logs in. No side effects.
    Precheck {
        /// The version labelled `current` when the rotation started.
        current: Option<VersionNumber>,
    },
    /// Create the new value as a version labelled `pending` (one per
    /// rotation: a repeat returns the version made the first time), read it
    /// back and check its format. Report [`StepOutput::Generated`].
    Generate,
    /// Mark `new` active, make the target accept it as well as `old`, and
    /// verify that both log in.
    DualAccept {
        /// The credential being replaced.
        old: Option<VersionNumber>,
        /// The new credential.
        new: VersionNumber,
    },
    /// `canary`: label `new` `canary`, so the consumers in the canary's
    /// share read it as their `current`, and tell every watcher.
    Canary {
        /// The new credential.
        new: VersionNumber,
    },
    /// Point `current` at `new` and `previous` at `old`, clear `pending`
    /// (and `canary`), and tell every watcher. For a `canary` rotation,
    /// first check the failures reported against `new`: more than the
    /// policy tolerates refuse the step, which rolls back.
    Promote {
        /// The credential being replaced.
        old: Option<VersionNumber>,
        /// The new credential.
        new: VersionNumber,
    },
    /// The overlap gate, once `min_overlap` has passed: whether the
    /// evidence the driver reads (every live consumer holds `new`; where
    /// it is read, `old` went unused for a monitoring cycle) allows
    /// revoking `old`. No side effects. Report [`StepOutput::Gate`].
    Gate {
        /// The credential to be revoked.
        old: VersionNumber,
        /// The credential consumers should hold.
        new: VersionNumber,
    },
    /// Make the target refuse `old`; verify `old` is refused and `new`
    /// works; mark `old` revoked.
    Revoke {
        /// The credential to revoke.
        old: VersionNumber,
        /// The credential that must keep working.
        new: VersionNumber,
    },
    /// `immediate`: mark `new` active, make the target accept `new` alone,
    /// verify, and mark `old` revoked.
    Replace {
        /// The credential to revoke.
        old: Option<VersionNumber>,
        /// The new credential.
        new: VersionNumber,
    },
    /// Make the target accept `old` alone again, restore the labels as they
    /// were before the rotation (clearing `pending` and `canary`), mark
    /// `new` failed.
    ///
    /// When `new` is `None`, Generate may still have stored a version before
    /// failing to report it (a crash, a failed read-back): the driver must
    /// drop and fail the version this rotation created, if any, found by the
    /// rotation id that Generate is keyed on.
    RollBack {
        /// The credential to restore.
        old: Option<VersionNumber>,
        /// The credential to drop, if Generate reported one.
        new: Option<VersionNumber>,
        /// What `previous` pointed at before the rotation.
        previous: Option<VersionNumber>,
        /// Whether the old credential was refused (only after `Replace`).
        old_revoked: bool,
    },
}

/// What a successful step reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepOutput {
    /// The step has nothing to report.
    Done,
    /// Generate created (or found) this version.
    Generated(VersionNumber),
    /// The overlap gate's verdict, and the migration it saw.
    Gate(GateVerdict, Migration),
}

/// How far consumers have moved off the old credential, as the overlap
/// gate saw it at one check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    /// Live consumers (heard from within `consumer_stale_after`) holding a
    /// version of the secret.
    pub live: u64,
    /// Of those, the ones holding the new version.
    pub migrated: u64,
    /// Uses of the old version reported (by `KeyRing` verifiers) within the
    /// last monitoring cycle.
    pub old_uses: u64,
    /// Sessions of the old credential the target sees right now, where it
    /// can see them (PostgreSQL, MariaDB blue-green, plugins with `usage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_sessions: Option<u64>,
}

/// What the overlap gate found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum GateVerdict {
    /// The evidence allows revoking the old credential.
    Open,
    /// Not yet.
    Held {
        /// Why, for operators (`2 live consumer(s) do not hold version 3
        /// yet: ...`); never a secret value.
        why: String,
        /// The live consumers that do not hold the new version.
        stragglers: Vec<String>,
    },
}

/// The overlap gate as a rotation records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gate {
    /// When it was last checked.
    pub checked_at: Option<Timestamp>,
    /// When it is checked next (while held).
    pub next_check: Option<Timestamp>,
    /// Why it holds, at the last check (None: it did not).
    pub held: Option<String>,
    /// The live consumers that did not hold the new version at the last
    /// check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stragglers: Vec<String>,
    /// How the overlap ended: `gate` (the evidence said so),
    /// `max_overlap` (timed out with `on_timeout = revoke`) or `operator`.
    pub passed_by: Option<String>,
    /// The migration at the last check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<Migration>,
}

/// Whether a failed step may be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    /// A network error, a timeout, a busy store: try again with backoff.
    Transient,
    /// The target answered and said no (a verification failed, a
    /// precondition does not hold): trying again will not help.
    Refused,
}

/// What happened, fed into [`Rotation::on`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The driver is ready to act: at start-up, after a crash, or when a
    /// [`Action::WaitUntil`] deadline has passed.
    Resume,
    /// The step in flight succeeded.
    StepSucceeded(StepOutput),
    /// The step in flight failed. `error` is shown to operators; it must
    /// never contain a secret value.
    StepFailed {
        /// Whether to try again.
        kind: FailureKind,
        /// What went wrong.
        error: String,
    },
    /// An operator asked to roll back (or abort).
    RollbackRequested {
        /// Why, for the record.
        reason: String,
    },
    /// An operator forced the overlap gate: revoke now.
    AdvanceRequested,
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Perform this step, then report its result.
    Run(Step),
    /// Wait until this time (or an operator's request), then send
    /// [`Event::Resume`].
    WaitUntil(Timestamp),
    /// The rotation has ended; nothing more to do.
    Finished(Status),
}

/// The result of a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The rotation after the event; persist it before performing `action`.
    pub rotation: Rotation,
    /// The one thing to do next.
    pub action: Action,
}

/// Why an event was refused. The rotation is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The rotation has ended.
    #[error("rotation has ended in phase {phase}")]
    Ended {
        /// The terminal phase.
        phase: Phase,
    },
    /// A step result arrived while no step was in flight.
    #[error("no step is in flight in phase {phase}")]
    NotInFlight {
        /// The current phase.
        phase: Phase,
    },
    /// Generate reported no version, or another phase reported one.
    #[error("unexpected step output in phase {phase}")]
    UnexpectedOutput {
        /// The current phase.
        phase: Phase,
    },
    /// A rollback was asked for after the old credential was touched.
    #[error("cannot roll back from phase {phase}: the old credential is already being revoked")]
    TooLateToRollBack {
        /// The current phase.
        phase: Phase,
    },
    /// The gate was forced outside Overlap.
    #[error("only a rotation in overlap can be advanced; this one is in {phase}")]
    NotInOverlap {
        /// The current phase.
        phase: Phase,
    },
}

/// One durable run of the state machine for one secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    /// The id, also the idempotency key.
    pub id: RotationId,
    /// The secret being rotated.
    pub secret: SecretName,
    /// The strategy in use.
    pub strategy: Strategy,
    /// The policy as it was when the rotation started.
    pub policy: Policy,
    /// The version labelled `current` at the start (None: the secret had none).
    pub old_version: Option<VersionNumber>,
    /// The version labelled `previous` at the start, restored by a rollback.
    pub prior_previous: Option<VersionNumber>,
    /// The version Generate created.
    pub new_version: Option<VersionNumber>,
    /// The phase the rotation is in.
    pub phase: Phase,
    /// Whether Promote has completed (labels point at the new version).
    pub promoted: bool,
    /// Whether the target refuses the old credential (Revoke or Replace done).
    pub old_revoked: bool,
    /// Whether the current phase's step has been started and not reported.
    pub in_flight: bool,
    /// When the next attempt of a failed step may start.
    pub retry_at: Option<Timestamp>,
    /// Why the rotation rolled back or failed.
    pub reason: Option<String>,
    /// When the rotation was created.
    pub created_at: Timestamp,
    /// Every phase entered, in order.
    pub history: Vec<PhaseRecord>,
    /// Why an operator rotated in an emergency (strategy `immediate`,
    /// downtime accepted), if they did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency: Option<String>,
    /// The overlap gate: its last verdict and how the overlap ended.
    #[serde(default)]
    pub gate: Gate,
}

impl Rotation {
    /// A new rotation in Precheck. `current` and `previous` are what the
    /// secret's labels point at now.
    pub fn new(
        id: RotationId,
        secret: SecretName,
        policy: Policy,
        strategy: Strategy,
        current: Option<VersionNumber>,
        previous: Option<VersionNumber>,
        now: Timestamp,
    ) -> Self {
        Self {
            id,
            secret,
            strategy,
            policy,
            old_version: current,
            prior_previous: previous,
            new_version: None,
            phase: Phase::Precheck,
            promoted: false,
            old_revoked: false,
            in_flight: false,
            retry_at: None,
            reason: None,
            created_at: now,
            history: vec![PhaseRecord::entered(Phase::Precheck, now)],
            emergency: None,
            gate: Gate::default(),
        }
    }

    /// Where the rotation stands.
    pub fn status(&self) -> Status {
        match self.phase {
            Phase::Done => Status::Succeeded,
            Phase::RolledBack => Status::RolledBack,
            Phase::Failed => Status::Failed,
            _ => Status::Running,
        }
    }

    /// When Promote completed, if it has.
    pub fn promoted_at(&self) -> Option<Timestamp> {
        self.history
            .iter()
            .find(|r| r.phase == Phase::Promote && r.outcome == Some(PhaseOutcome::Ok))
            .and_then(|r| r.ended_at)
    }

    /// The earliest time the overlap gate may open: Promote's end plus
    /// `min_overlap`.
    pub fn overlap_deadline(&self) -> Option<Timestamp> {
        self.promoted_at()
            .map(|t| t.saturating_add(self.policy.min_overlap))
    }

    /// When `on_timeout` decides: Promote's end plus `max_overlap`.
    pub fn overlap_timeout(&self) -> Option<Timestamp> {
        self.promoted_at()
            .map(|t| t.saturating_add(self.policy.max_overlap))
    }

    /// `canary`: when the observation ends: the Canary step's end plus
    /// `canary_observation`.
    pub fn observation_deadline(&self) -> Option<Timestamp> {
        self.history
            .iter()
            .find(|r| r.phase == Phase::Canary && r.outcome == Some(PhaseOutcome::Ok))
            .and_then(|r| r.ended_at)
            .map(|t| t.saturating_add(self.policy.canary_observation))
    }

    /// Consumes the rotation with `event` at time `now`.
    ///
    /// # Errors
    ///
    /// A [`TransitionError`] when the event does not apply to this state;
    /// the caller still holds no changed state (it passed its copy).
    pub fn on(mut self, event: Event, now: Timestamp) -> Result<Transition, TransitionError> {
        if self.phase.is_terminal() {
            return match event {
                Event::Resume => Ok(self.finished()),
                _ => Err(TransitionError::Ended { phase: self.phase }),
            };
        }
        match event {
            Event::Resume => Ok(self.next_action(now)),
            Event::StepSucceeded(output) => {
                self.expect_in_flight()?;
                self.succeed(output, now)
            }
            Event::StepFailed { kind, error } => {
                self.expect_in_flight()?;
                Ok(self.fail(kind, error, now))
            }
            Event::AdvanceRequested if self.phase == Phase::Overlap => {
                self.pass_gate("operator", now);
                Ok(self.next_action(now))
            }
            Event::AdvanceRequested => Err(TransitionError::NotInOverlap { phase: self.phase }),
            // Already rolling back: asking again changes nothing.
            Event::RollbackRequested { .. } if self.phase == Phase::RollBack => {
                Ok(self.next_action(now))
            }
            Event::RollbackRequested { reason } => {
                // `immediate` refuses the old credential in Replace, before
                // Promote: from then on a rollback would revive a credential
                // that may have leaked.
                if !self.phase.can_roll_back() || self.old_revoked {
                    return Err(TransitionError::TooLateToRollBack { phase: self.phase });
                }
                self.close_phase(PhaseOutcome::Cancelled, now);
                self.reason = Some(reason);
                self.enter(Phase::RollBack, now);
                Ok(self.next_action(now))
            }
        }
    }

    fn expect_in_flight(&self) -> Result<(), TransitionError> {
        if self.in_flight {
            Ok(())
        } else {
            Err(TransitionError::NotInFlight { phase: self.phase })
        }
    }

    fn finished(self) -> Transition {
        let status = self.status();
        Transition {
            rotation: self,
            action: Action::Finished(status),
        }
    }

    /// What to do now, marking the step in flight when there is one.
    fn next_action(mut self, now: Timestamp) -> Transition {
        if self.phase.is_terminal() {
            return self.finished();
        }
        if let Some(at) = self.retry_at {
            if now < at {
                return Transition {
                    rotation: self,
                    action: Action::WaitUntil(at),
                };
            }
            self.retry_at = None;
        }
        // The waiting phases: wait out their deadline; Observe then moves
        // on, Overlap asks the gate (at most once per monitoring cycle).
        let waiting = match self.phase {
            Phase::Overlap => Some(self.overlap_deadline()),
            Phase::Observe => Some(self.observation_deadline()),
            _ => None,
        };
        if let Some(deadline) = waiting {
            let next_check = self
                .gate
                .next_check
                .filter(|_| self.phase == Phase::Overlap);
            match deadline.into_iter().chain(next_check).max() {
                Some(at) if now < at => {
                    return Transition {
                        rotation: self,
                        action: Action::WaitUntil(at),
                    };
                }
                _ if self.phase == Phase::Overlap => {}
                _ => {
                    self.close_phase(PhaseOutcome::Ok, now);
                    let next = self.after(self.phase);
                    self.enter(next, now);
                }
            }
        }
        let step = self.step();
        self.in_flight = true;
        // Gate checks are not attempts: the overlap may take many.
        if let (Some(record), false) = (self.history.last_mut(), matches!(step, Step::Gate { .. }))
        {
            record.attempts += 1;
        }
        Transition {
            rotation: self,
            action: Action::Run(step),
        }
    }

    /// The step of the current (non-terminal, non-waiting) phase.
    fn step(&self) -> Step {
        let old = self.old_version;
        // Invariant: phases after Generate are only entered once Generate
        // reported a version (see `succeed`).
        let new = || self.new_version.expect("new version set after Generate");
        match self.phase {
            Phase::Precheck => Step::Precheck { current: old },
            Phase::Generate => Step::Generate,
            Phase::DualAccept => Step::DualAccept { old, new: new() },
            Phase::Canary => Step::Canary { new: new() },
            Phase::Overlap => Step::Gate {
                // Invariant: Overlap is entered only with an old version (see `after`).
                old: old.expect("overlap has an old version"),
                new: new(),
            },
            Phase::Promote => Step::Promote { old, new: new() },
            Phase::Revoke => Step::Revoke {
                // Invariant: Revoke is entered only with an old version (see `after`).
                old: old.expect("revoke has an old version"),
                new: new(),
            },
            Phase::Replace => Step::Replace { old, new: new() },
            Phase::RollBack => Step::RollBack {
                old,
                new: self.new_version,
                previous: self.prior_previous,
                old_revoked: self.old_revoked,
            },
            Phase::Observe | Phase::Done | Phase::RolledBack | Phase::Failed => {
                unreachable!("no step in phase {}", self.phase)
            }
        }
    }

    fn succeed(
        mut self,
        output: StepOutput,
        now: Timestamp,
    ) -> Result<Transition, TransitionError> {
        match (self.phase, output) {
            (Phase::Generate, StepOutput::Generated(v)) => self.new_version = Some(v),
            (Phase::Overlap, StepOutput::Gate(verdict, migration)) => {
                self.in_flight = false;
                self.gate.migration = Some(migration);
                self.on_gate(verdict, now);
                return Ok(self.next_action(now));
            }
            (Phase::Generate | Phase::Overlap, _)
            | (_, StepOutput::Generated(_) | StepOutput::Gate(..)) => {
                return Err(TransitionError::UnexpectedOutput { phase: self.phase })
            }
            _ => {}
        }
        match self.phase {
            Phase::Promote => self.promoted = true,
            Phase::Revoke | Phase::Replace => self.old_revoked = true,
            Phase::RollBack => {
                self.promoted = false;
                self.old_revoked = false;
            }
            _ => {}
        }
        self.in_flight = false;
        self.close_phase(PhaseOutcome::Ok, now);
        let next = self.after(self.phase);
        self.enter(next, now);
        Ok(self.next_action(now))
    }

    /// The phase that follows a successful `phase`.
    fn after(&self, phase: Phase) -> Phase {
        let immediate = !self.strategy.overlaps();
        match phase {
            Phase::Precheck => Phase::Generate,
            Phase::Generate if immediate => Phase::Replace,
            Phase::Generate => Phase::DualAccept,
            Phase::DualAccept if self.strategy == Strategy::Canary => Phase::Canary,
            Phase::DualAccept => Phase::Promote,
            Phase::Canary => Phase::Observe,
            Phase::Observe => Phase::Promote,
            Phase::Replace => Phase::Promote,
            Phase::Promote if immediate || self.old_version.is_none() => Phase::Done,
            Phase::Promote => Phase::Overlap,
            Phase::Overlap => Phase::Revoke,
            Phase::Revoke => Phase::Done,
            Phase::RollBack => Phase::RolledBack,
            Phase::Done | Phase::RolledBack | Phase::Failed => phase,
        }
    }

    /// Records the gate's verdict: open passes it; held waits a monitoring
    /// cycle, or passes it at `max_overlap` when `on_timeout` says revoke.
    fn on_gate(&mut self, verdict: GateVerdict, now: Timestamp) {
        self.gate.checked_at = Some(now);
        match verdict {
            GateVerdict::Open => {
                self.gate.held = None;
                self.gate.stragglers.clear();
                self.pass_gate("gate", now);
            }
            GateVerdict::Held { why, stragglers } => {
                self.gate.held = Some(why);
                self.gate.stragglers = stragglers;
                let timeout = self.overlap_timeout();
                let timed_out = timeout.is_some_and(|t| now >= t);
                if timed_out && self.policy.on_timeout == OnTimeout::Revoke {
                    self.pass_gate("max_overlap", now);
                    return;
                }
                // Check again a cycle later, and at the timeout itself.
                let mut next = now.saturating_add(self.policy.monitoring_cycle);
                if let Some(t) = timeout.filter(|t| *t > now) {
                    next = next.min(t);
                }
                self.gate.next_check = Some(next);
            }
        }
    }

    /// Ends the overlap: the gate passed (`by` says how); Revoke follows.
    fn pass_gate(&mut self, by: &str, now: Timestamp) {
        self.gate.passed_by = Some(by.to_owned());
        self.gate.next_check = None;
        self.in_flight = false;
        self.close_phase(PhaseOutcome::Ok, now);
        let next = self.after(self.phase);
        self.enter(next, now);
    }

    fn fail(mut self, kind: FailureKind, error: String, now: Timestamp) -> Transition {
        self.in_flight = false;
        let attempts = self.history.last().map_or(0, |r| r.attempts);
        if let Some(record) = self.history.last_mut() {
            record.error = Some(error.clone());
        }
        // Rolling back must finish, and the gate has no side effect to
        // give up on: both keep trying, with capped backoff.
        let retry = self.phase == Phase::Overlap
            || (kind == FailureKind::Transient
                && (self.phase == Phase::RollBack || attempts < self.policy.max_attempts));
        if retry {
            // Gate checks count no attempts: a failed one waits a cycle.
            let wait = if self.phase == Phase::Overlap {
                self.policy.monitoring_cycle
            } else {
                self.policy.backoff(attempts + 1)
            };
            self.retry_at = Some(now.saturating_add(wait));
            return self.next_action(now);
        }
        self.close_phase(PhaseOutcome::Failed, now);
        let message = format!("{} failed: {error}", self.phase);
        let next = match self.phase {
            // Nothing was touched yet: the rotation did not start.
            Phase::Precheck => Phase::Failed,
            Phase::Generate
            | Phase::DualAccept
            | Phase::Canary
            | Phase::Promote
            | Phase::Replace
                if self.policy.rollback_on_failure =>
            {
                Phase::RollBack
            }
            // Revoke failing leaves the new version current and accepted (I1
            // holds); an operator decides. So does a refused rollback.
            _ => Phase::Failed,
        };
        self.reason = Some(message);
        self.enter(next, now);
        self.next_action(now)
    }

    fn close_phase(&mut self, outcome: PhaseOutcome, now: Timestamp) {
        if let Some(record) = self.history.last_mut() {
            if record.ended_at.is_none() {
                record.ended_at = Some(now);
                record.outcome = Some(outcome);
            }
        }
    }

    fn enter(&mut self, phase: Phase, now: Timestamp) {
        self.phase = phase;
        self.in_flight = false;
        self.retry_at = None;
        let mut record = PhaseRecord::entered(phase, now);
        if phase.is_terminal() {
            record.ended_at = Some(now);
            record.outcome = Some(PhaseOutcome::Ok);
        }
        self.history.push(record);
    }
}

impl PhaseRecord {
    fn entered(phase: Phase, now: Timestamp) -> Self {
        Self {
            phase,
            started_at: now,
            ended_at: None,
            outcome: None,
            attempts: 0,
            error: None,
        }
    }
}
