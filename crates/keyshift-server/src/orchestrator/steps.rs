//! Performing each step of a rotation against the store and the target.
//!
//! Every step is idempotent (I5): it reads what it needs from the store,
//! and each store or target call it makes has the same effect done twice
//! as once.

use keyshift_core::rotation::{
    Event, FailureKind, GateVerdict, Migration, Rotation, Step, StepOutput,
};
use keyshift_core::{Label, SecretValue, Strategy, VersionNumber, VersionState};
use keyshift_store::{SecretRecord, Store, StoreError, VersionSelector};
use keyshift_targets::{Target, TargetError, Verdict};

use super::generate_value;
use super::hooks::TestHooks;
use super::targets::{refusal_observable, target_for};
use crate::state::now;

/// Why a step failed: shown to operators, never a secret value.
#[derive(Debug)]
pub(super) struct StepFailure {
    pub transient: bool,
    pub error: String,
}

impl From<StoreError> for StepFailure {
    fn from(e: StoreError) -> Self {
        Self {
            transient: e.is_transient(),
            error: format!("store: {e}"),
        }
    }
}

impl From<TargetError> for StepFailure {
    fn from(e: TargetError) -> Self {
        Self {
            transient: e.is_transient(),
            error: format!("target: {e}"),
        }
    }
}

fn refused(error: impl Into<String>) -> StepFailure {
    StepFailure {
        transient: false,
        error: error.into(),
    }
}

/// The event that reports `result`.
pub(super) fn into_event(result: Result<StepOutput, StepFailure>) -> Event {
    match result {
        Ok(output) => Event::StepSucceeded(output),
        Err(f) => Event::StepFailed {
            kind: if f.transient {
                FailureKind::Transient
            } else {
                FailureKind::Refused
            },
            error: f.error,
        },
    }
}

struct Ctx<'a> {
    store: &'a dyn Store,
    secret: SecretRecord,
    target: Box<dyn Target + 'a>,
    /// The test hook: report this phase's verifications as refused.
    refuse: bool,
}

impl Ctx<'_> {
    async fn value(&self, v: VersionNumber) -> Result<SecretValue, StepFailure> {
        let (_, value) = self
            .store
            .get_value(&self.secret.name, &VersionSelector::Number(v))
            .await?;
        Ok(value)
    }

    async fn set_state(&self, v: VersionNumber, state: VersionState) -> Result<(), StepFailure> {
        Ok(self
            .store
            .set_version_state(&self.secret.name, v, state, now())
            .await?)
    }

    async fn expect(
        &self,
        v: VersionNumber,
        value: &SecretValue,
        want: Verdict,
    ) -> Result<(), StepFailure> {
        if want == Verdict::Refused && !refusal_observable(self.secret.kind) {
            // Nothing refuses it (an x509 leaf): its state in the store
            // (revoked, failed) is what consumers go by.
            return Ok(());
        }
        let mut got = self.target.verify(value).await?;
        if self.refuse {
            got = match want {
                Verdict::Accepted => Verdict::Refused,
                Verdict::Refused => Verdict::Accepted,
            };
        }
        if got == want {
            return Ok(());
        }
        Err(refused(match want {
            Verdict::Accepted => format!("version {v} is refused by the target"),
            Verdict::Refused => format!("version {v} is still accepted by the target"),
        }))
    }

    async fn labels(&self, moves: &[(Label, Option<VersionNumber>)]) -> Result<(), StepFailure> {
        Ok(self
            .store
            .move_labels(&self.secret.name, moves, now())
            .await?)
    }
}

/// Performs `step` of `rotation`.
pub(super) async fn perform(
    store: &dyn Store,
    hooks: &TestHooks,
    rotation: &Rotation,
    step: &Step,
) -> Result<StepOutput, StepFailure> {
    let secret = store.get_secret(&rotation.secret).await?;
    let target = target_for(store, &secret).await?;
    let ctx = Ctx {
        store,
        secret,
        target,
        refuse: hooks.refuses_verify(rotation.phase),
    };
    match *step {
        Step::Precheck { current } => precheck(&ctx, current).await,
        Step::Generate => generate(&ctx, rotation).await,
        Step::DualAccept { old, new } => dual_accept(&ctx, old, new).await,
        Step::Canary { new } => {
            ctx.labels(&[(Label::Canary, Some(new))]).await?;
            Ok(StepOutput::Done)
        }
        Step::Promote { old, new } => {
            if rotation.strategy == Strategy::Canary {
                canary_verdict(&ctx, rotation, new).await?;
            }
            ctx.labels(&[
                (Label::Current, Some(new)),
                (Label::Previous, old),
                (Label::Pending, None),
                (Label::Canary, None),
            ])
            .await?;
            Ok(StepOutput::Done)
        }
        Step::Gate { old, new } => gate(&ctx, rotation, old, new).await,
        Step::Revoke { old, new } => revoke(&ctx, old, new).await,
        Step::Replace { old, new } => replace(&ctx, old, new).await,
        Step::RollBack {
            old,
            new,
            previous,
            old_revoked: _,
        } => {
            // Generate may have stored a version and failed before reporting
            // it: that one is dropped too.
            let new = match new {
                Some(v) => Some(v),
                None => created_by(&ctx, rotation).await?,
            };
            roll_back(&ctx, old, new, previous).await
        }
    }
}

/// The overlap gate: open when every live consumer (see
/// [`Policy::is_live`](keyshift_core::Policy::is_live)) reports holding
/// `new`, nobody reported a use of `old` within the last monitoring cycle,
/// and the target (where it can tell) sees no session of `old`.
async fn gate(
    ctx: &Ctx<'_>,
    rotation: &Rotation,
    old: VersionNumber,
    new: VersionNumber,
) -> Result<StepOutput, StepFailure> {
    let now = now();
    let policy = &rotation.policy;
    let mut migration = Migration::default();
    let mut stragglers = Vec::new();
    for c in ctx.store.list_consumers(&ctx.secret.name).await? {
        // A consumer that holds nothing yet does not hold the old one.
        let live = policy.is_live(c.last_seen, c.heartbeat_interval, now);
        let Some(held) = c.version.filter(|_| live) else {
            continue;
        };
        migration.live += 1;
        if held == new {
            migration.migrated += 1;
        } else {
            stragglers.push(c.consumer_id);
        }
    }
    let cycle_start = now.saturating_sub(policy.monitoring_cycle);
    migration.old_uses = ctx
        .store
        .usage_since(&ctx.secret.name, cycle_start)
        .await?
        .iter()
        .filter(|w| w.version == old && w.last_at >= cycle_start)
        .fold(0u64, |n, w| n.saturating_add(w.count));
    migration.old_sessions = ctx.target.usage(&ctx.value(old).await?).await?;

    let mut why = Vec::new();
    if !stragglers.is_empty() {
        why.push(format!(
            "{} live consumer(s) do not hold version {new} yet: {}",
            stragglers.len(),
            named(&stragglers)
        ));
    }
    if migration.old_uses > 0 {
        why.push(format!(
            "version {old} was used {} time(s) in the last monitoring cycle",
            migration.old_uses
        ));
    }
    if let Some(n) = migration.old_sessions.filter(|n| *n > 0) {
        why.push(format!(
            "the target sees {n} open session(s) of version {old}"
        ));
    }
    let verdict = if why.is_empty() {
        GateVerdict::Open
    } else {
        GateVerdict::Held {
            why: why.join("; "),
            stragglers,
        }
    };
    Ok(StepOutput::Gate(verdict, migration))
}

/// The first few of `ids`, for a message.
fn named<S: AsRef<str>>(ids: &[S]) -> String {
    const NAMED: usize = 5;
    let mut who: Vec<&str> = ids.iter().take(NAMED).map(AsRef::as_ref).collect();
    if ids.len() > NAMED {
        who.push("...");
    }
    who.join(", ")
}

/// A canary's verdict before everyone gets `new`: refused when its share
/// reported more failures against it than the policy tolerates.
async fn canary_verdict(
    ctx: &Ctx<'_>,
    rotation: &Rotation,
    new: VersionNumber,
) -> Result<(), StepFailure> {
    let reports = ctx.store.list_failures(&ctx.secret.name, new).await?;
    match canary_failures(&reports, rotation.policy.canary_max_failures) {
        Some(why) => Err(refused(why)),
        None => Ok(()),
    }
}

/// Why a canary fails, given the failure reports against its version:
/// None while they stay within `tolerated`.
pub(crate) fn canary_failures(
    reports: &[keyshift_store::FailureRecord],
    tolerated: u64,
) -> Option<String> {
    let total = reports.iter().fold(0u64, |n, r| n.saturating_add(r.count));
    if total <= tolerated {
        return None;
    }
    let who: Vec<&str> = reports.iter().map(|r| r.consumer_id.as_str()).collect();
    Some(format!(
        "canary: {total} failures reported against version {} by {} consumer(s) ({}); {tolerated} tolerated",
        reports[0].version,
        reports.len(),
        named(&who)
    ))
}

/// The version `rotation`'s Generate stored, if any.
async fn created_by(
    ctx: &Ctx<'_>,
    rotation: &Rotation,
) -> Result<Option<VersionNumber>, StepFailure> {
    let versions = ctx.store.list_versions(&ctx.secret.name).await?;
    Ok(versions
        .into_iter()
        .find(|v| v.rotation.as_ref() == Some(&rotation.id))
        .map(|v| v.number))
}

async fn precheck(
    ctx: &Ctx<'_>,
    current: Option<VersionNumber>,
) -> Result<StepOutput, StepFailure> {
    let value = match current {
        Some(v) => Some(ctx.value(v).await?),
        None => None,
    };
    ctx.target.precheck(value.as_ref()).await?;
    Ok(StepOutput::Done)
}

async fn generate(ctx: &Ctx<'_>, rotation: &Rotation) -> Result<StepOutput, StepFailure> {
    // Idempotent: the version an earlier attempt stored is the one.
    if let Some(v) = created_by(ctx, rotation).await? {
        check_read_back(ctx, v).await?;
        return Ok(StepOutput::Generated(v));
    }
    let kind = ctx.secret.kind;
    let current = match rotation.old_version {
        Some(v) => Some(ctx.value(v).await?),
        None => None,
    };
    // The target's value (a slot's login, an issued certificate, a
    // plugin's credential), else random bytes in the kind's format.
    let value = match ctx.target.generate(current.as_ref()).await? {
        Some(value) => {
            kind.validate_generated(&value).map_err(|e| {
                refused(format!(
                    "the target generated a malformed {kind} value: {e}"
                ))
            })?;
            if current.as_ref().is_some_and(|c| c.ct_eq(&value)) {
                return Err(refused("the target generated the current value again"));
            }
            value
        }
        None => generate_value(kind),
    };
    // A second call for the same rotation returns the version the first
    // one stored.
    let v = ctx
        .store
        .add_version(
            &ctx.secret.name,
            &value,
            VersionState::Pending,
            Some(&rotation.id),
            &[Label::Pending],
            now(),
        )
        .await?;
    check_read_back(ctx, v).await?;
    Ok(StepOutput::Generated(v))
}

/// Reads version `v` back: stored whole and in the kind's format.
async fn check_read_back(ctx: &Ctx<'_>, v: VersionNumber) -> Result<(), StepFailure> {
    let stored = ctx.value(v).await?;
    ctx.secret
        .kind
        .validate_generated(&stored)
        .map_err(|e| refused(format!("version {v} read back malformed: {e}")))
}

async fn dual_accept(
    ctx: &Ctx<'_>,
    old: Option<VersionNumber>,
    new: VersionNumber,
) -> Result<StepOutput, StepFailure> {
    let new_value = ctx.value(new).await?;
    // The store's accepted set is widened before the target's, so it
    // always includes what the target accepts.
    ctx.set_state(new, VersionState::Active).await?;
    ctx.target.enable(&new_value).await?;
    ctx.expect(new, &new_value, Verdict::Accepted).await?;
    if let Some(old) = old {
        ctx.expect(old, &ctx.value(old).await?, Verdict::Accepted)
            .await?;
    }
    Ok(StepOutput::Done)
}

async fn revoke(
    ctx: &Ctx<'_>,
    old: VersionNumber,
    new: VersionNumber,
) -> Result<StepOutput, StepFailure> {
    let old_value = ctx.value(old).await?;
    ctx.target.revoke(&old_value).await?;
    ctx.set_state(old, VersionState::Revoked).await?;
    // The post-revoke check: old refused, new still works.
    ctx.expect(old, &old_value, Verdict::Refused).await?;
    ctx.expect(new, &ctx.value(new).await?, Verdict::Accepted)
        .await?;
    Ok(StepOutput::Done)
}

async fn replace(
    ctx: &Ctx<'_>,
    old: Option<VersionNumber>,
    new: VersionNumber,
) -> Result<StepOutput, StepFailure> {
    let new_value = ctx.value(new).await?;
    ctx.set_state(new, VersionState::Active).await?;
    ctx.target.enable(&new_value).await?;
    if let Some(old) = old {
        let old_value = ctx.value(old).await?;
        ctx.target.revoke(&old_value).await?;
        ctx.set_state(old, VersionState::Revoked).await?;
        ctx.expect(old, &old_value, Verdict::Refused).await?;
    }
    ctx.expect(new, &new_value, Verdict::Accepted).await?;
    Ok(StepOutput::Done)
}

async fn roll_back(
    ctx: &Ctx<'_>,
    old: Option<VersionNumber>,
    new: Option<VersionNumber>,
    previous: Option<VersionNumber>,
) -> Result<StepOutput, StepFailure> {
    // 1. The old credential is accepted again. Replace may have refused it
    //    even when it failed before reporting success (`old_revoked` is then
    //    still false), so this always runs: both calls are idempotent.
    let old_value = match old {
        Some(v) => Some(ctx.value(v).await?),
        None => None,
    };
    if let (Some(v), Some(value)) = (old, &old_value) {
        ctx.set_state(v, VersionState::Active).await?;
        ctx.target.enable(value).await?;
    }
    // 2. Labels point where they did, before the new credential goes (I1).
    ctx.labels(&[
        (Label::Current, old),
        (Label::Previous, previous),
        (Label::Pending, None),
        (Label::Canary, None),
    ])
    .await?;
    // 3. The new credential is refused and marked failed; its value stays
    //    in the store (I2).
    if let Some(v) = new {
        let value = ctx.value(v).await?;
        ctx.target.revoke(&value).await?;
        ctx.set_state(v, VersionState::Failed).await?;
        ctx.expect(v, &value, Verdict::Refused).await?;
    }
    if let (Some(v), Some(value)) = (old, &old_value) {
        ctx.expect(v, value, Verdict::Accepted).await?;
    }
    Ok(StepOutput::Done)
}
