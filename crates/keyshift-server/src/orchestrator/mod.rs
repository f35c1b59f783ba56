//! The orchestrator: starts rotations, drives each one with a task that
//! feeds the core's state machine and performs its steps, resumes every
//! unfinished rotation at start-up, and relays operators' rollbacks.
//!
//! One driver task per running rotation is its only writer; API requests
//! that change a rotation go to that task through a channel.

mod driver;
mod hooks;
mod steps;
mod targets;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use keyshift_core::api::StartRotation;
use keyshift_core::rotation::{Phase, Rotation, RotationId, TransitionError};
use keyshift_core::{Circuit, Label, SecretKind, SecretName, SecretValue, Strategy, Timestamp};
use keyshift_store::{CreateRotation, NewAudit, RotationFilter, SecretRecord, Store};
use rand::RngCore;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::notify::Notifier;
use crate::state::now;

pub use hooks::TestHooks;
pub use targets::{check_value_accepted, has_external_target, referenced_secrets, validate_target};

/// How long an operator's order waits for the driver's answer.
const ORDER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Removes a driver from the map when its task ends, even by a panic.
struct DriverGuard {
    orch: Orchestrator,
    id: RotationId,
}

impl Drop for DriverGuard {
    fn drop(&mut self) {
        self.orch.lock_drivers().remove(&self.id);
    }
}

/// A request from the API to a rotation's driver.
struct Order {
    /// What is asked: a rollback (with its reason) or forcing the gate.
    kind: OrderKind,
    reply: oneshot::Sender<Result<Rotation, TransitionError>>,
}

/// What an [`Order`] asks.
enum OrderKind {
    /// Roll back, for this reason.
    Rollback(String),
    /// Force the overlap gate: revoke now (the operator's reason, if any).
    Advance(Option<String>),
}

/// Starts and drives rotations. Cheap to clone.
#[derive(Clone)]
pub struct Orchestrator {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    drivers: Mutex<HashMap<RotationId, mpsc::Sender<Order>>>,
    hooks: TestHooks,
    shutdown: CancellationToken,
    notifier: Notifier,
    lease: Lease,
}

/// Who this replica is to the store, and how long its leases on the
/// rotations it drives last.
#[derive(Debug, Clone)]
pub struct Lease {
    /// This replica's id: the owner of its leases.
    pub owner: Arc<str>,
    /// How long a lease lasts unless renewed; it is renewed every third of
    /// this, and another replica takes the rotation over once it expires.
    pub ttl: std::time::Duration,
}

impl Lease {
    /// The default lease length.
    pub const DEFAULT_TTL: std::time::Duration = std::time::Duration::from_secs(15);

    /// How often leases are renewed, and unleased rotations looked for.
    pub fn renew_every(&self) -> std::time::Duration {
        self.ttl / 3
    }
}

/// The strategy a rotation of `secret` asked for with `req` uses.
///
/// An emergency is `immediate`. PostgreSQL gets its overlap from two login
/// roles, so `dual` there means `blue-green`.
fn rotation_strategy(secret: &SecretRecord, req: &StartRotation) -> Result<Strategy, ApiError> {
    let strategy = match (&req.emergency, req.strategy) {
        (Some(reason), _) if reason.trim().is_empty() => {
            return Err(ApiError::BadRequest(
                "an emergency rotation needs a reason, for the audit log".to_owned(),
            ))
        }
        (Some(reason), _) if reason.len() > 1000 => {
            return Err(ApiError::BadRequest(
                "the emergency reason is longer than 1000 bytes".to_owned(),
            ))
        }
        (Some(_), Some(s)) if s != Strategy::Immediate => {
            return Err(ApiError::BadRequest(format!(
                "an emergency rotation is immediate; it cannot use strategy {s}"
            )))
        }
        (Some(_), _) => Strategy::Immediate,
        (None, s) => s.unwrap_or(secret.policy.strategy),
    };
    check_strategy(secret.kind, strategy)
}

/// The strategy a secret of `kind` rotates with when `strategy` is asked
/// for, or 400 when its target cannot do it.
///
/// # Errors
///
/// 400 naming the strategies the kind can use.
pub fn check_strategy(kind: SecretKind, strategy: Strategy) -> Result<Strategy, ApiError> {
    match (kind, strategy) {
        (SecretKind::Postgres, Strategy::Dual) => Ok(Strategy::BlueGreen),
        (SecretKind::Postgres | SecretKind::MariaDb, s) => Ok(s),
        (_, Strategy::BlueGreen) => Err(ApiError::BadRequest(format!(
            "secrets of kind {kind} cannot rotate blue-green (it needs two login roles): use dual or immediate"
        ))),
        (_, s) => Ok(s),
    }
}

/// `existing`, found by its id, if it rotates `name`.
fn same_secret(existing: Rotation, name: &SecretName) -> Result<Rotation, ApiError> {
    if existing.secret == *name {
        Ok(existing)
    } else {
        Err(ApiError::Conflict(format!(
            "rotation id {} belongs to another secret",
            existing.id
        )))
    }
}

/// How the overlap gate was passed, and who had not moved, for the audit log.
fn gate_detail(rotation: &Rotation) -> Option<String> {
    let gate = &rotation.gate;
    let by = gate.passed_by.as_deref()?;
    Some(if gate.stragglers.is_empty() {
        format!("overlap ended by {by}")
    } else {
        format!(
            "overlap ended by {by}; stragglers: {}",
            gate.stragglers.join(", ")
        )
    })
}

/// Makes a new value of `kind` from 256 bits of the OS's randomness.
pub fn generate_value(kind: SecretKind) -> SecretValue {
    let mut random = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut random);
    let value = kind.generate(&random);
    zeroize::Zeroize::zeroize(&mut random);
    value
}

impl Orchestrator {
    /// An orchestrator over `store`; drivers stop at `shutdown`; every
    /// phase a rotation enters goes to `notifier`.
    pub fn new(
        store: Arc<dyn Store>,
        hooks: TestHooks,
        shutdown: CancellationToken,
        notifier: Notifier,
        lease: Lease,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                drivers: Mutex::new(HashMap::new()),
                hooks,
                shutdown,
                notifier,
                lease,
            }),
        }
    }

    /// Starts a rotation of `name`, or returns the existing one with the
    /// same id (the bool says whether it was created).
    ///
    /// # Errors
    ///
    /// 404 for an unknown secret, 400 for a kind that does not rotate or a
    /// strategy its target cannot do, 409 when another rotation of the
    /// secret runs, the id belongs to another secret, or the secret's
    /// circuit is open (unless forced or an emergency).
    pub async fn start(
        &self,
        name: &SecretName,
        req: StartRotation,
        actor: &str,
    ) -> Result<(Rotation, bool), ApiError> {
        self.start_at(name, req, actor, now()).await
    }

    /// [`start`](Self::start) with the rotation's start time given (the
    /// scheduler's clock).
    pub(crate) async fn start_at(
        &self,
        name: &SecretName,
        req: StartRotation,
        actor: &str,
        at: Timestamp,
    ) -> Result<(Rotation, bool), ApiError> {
        let store = &self.inner.store;
        let secret = store.get_secret(name).await?;
        if !secret.kind.rotates() {
            return Err(ApiError::BadRequest(format!(
                "secrets of kind {} do not rotate",
                secret.kind
            )));
        }
        let strategy = rotation_strategy(&secret, &req)?;
        if let Some(id) = &req.id {
            // The same id again is the same rotation, whatever the circuit.
            if let Ok(existing) = store.get_rotation(id).await {
                return same_secret(existing, name).map(|r| (r, false));
            }
        }
        if req.emergency.is_none() && !req.force {
            if let Circuit::Open { until } = self.circuit(&secret, at).await? {
                return Err(ApiError::Conflict(format!(
                    "the circuit of {name} is open until {until} after {} failed rotations in a row; \
                     fix the target and start again with force (`keyshift rotate --force`)",
                    secret.policy.circuit_failures
                )));
            }
        }
        let id = req.id.unwrap_or_else(|| {
            // Invariant: "r-" and a UUID form a valid id.
            format!("r-{}", uuid::Uuid::new_v4().simple())
                .parse()
                .expect("generated rotation id is valid")
        });
        let mut rotation = Rotation::new(
            id,
            name.clone(),
            secret.policy.clone(),
            strategy,
            secret.labels.get(&Label::Current).copied(),
            secret.labels.get(&Label::Previous).copied(),
            at,
        );
        rotation.emergency = req.emergency;
        match store.create_rotation(&rotation).await? {
            CreateRotation::Existing(existing) => same_secret(existing, name).map(|r| (r, false)),
            CreateRotation::Created => {
                self.audit(
                    &rotation,
                    actor,
                    "rotation.start",
                    "ok",
                    Some(strategy.as_str().to_owned()),
                )
                .await;
                if let Some(reason) = &rotation.emergency {
                    self.audit(
                        &rotation,
                        actor,
                        "rotation.emergency",
                        "ok",
                        Some(format!("downtime accepted: {reason}")),
                    )
                    .await;
                }
                self.inner.notifier.phase(&rotation);
                crate::metrics::rotation_started(secret.kind, &rotation);
                // Should taking the lease fail, a replica's sweep resumes it.
                self.drive(rotation.clone()).await;
                Ok((rotation, true))
            }
        }
    }

    /// The circuit of `secret` at `at`, from its newest rotations.
    ///
    /// # Errors
    ///
    /// A store error reading them.
    pub async fn circuit(
        &self,
        secret: &SecretRecord,
        at: Timestamp,
    ) -> Result<Circuit, keyshift_store::StoreError> {
        let policy = &secret.policy;
        if policy.circuit_failures == 0 {
            return Ok(Circuit::Closed);
        }
        let recent = self
            .inner
            .store
            .list_rotations(&RotationFilter {
                secret: Some(secret.name.clone()),
                active_only: false,
                since: None,
                limit: policy.circuit_failures,
            })
            .await?;
        Ok(Circuit::of(policy, &recent, at))
    }

    /// After a rotation ended: when its failure opened the secret's
    /// circuit, says so in the audit log.
    async fn finished(&self, rotation: &Rotation) {
        if !rotation.failed_by_error() {
            return;
        }
        let Ok(secret) = self.inner.store.get_secret(&rotation.secret).await else {
            return;
        };
        match self.circuit(&secret, now()).await {
            Ok(Circuit::Open { until }) => {
                tracing::warn!(secret = %secret.name, %until, "circuit open");
                self.audit(
                    rotation,
                    "keyshift",
                    "circuit.open",
                    "failed",
                    Some(format!(
                        "{} failed rotations in a row: no rotation starts on its own until {until}",
                        secret.policy.circuit_failures
                    )),
                )
                .await;
            }
            Ok(Circuit::Closed) => {}
            Err(e) => tracing::error!(error = %e, "could not read the circuit"),
        }
    }

    /// Drives every unfinished rotation this replica may lease: those
    /// whose lease is free, has expired (its replica died), or is this
    /// replica's own from an earlier life. Called at start-up and then
    /// every [`Lease::renew_every`] by [`run_sweeper`](Self::run_sweeper).
    /// Returns how many it took.
    ///
    /// # Errors
    ///
    /// A store error listing them.
    pub async fn sweep(&self) -> Result<usize, keyshift_store::StoreError> {
        let lease = &self.inner.lease;
        let leasable = self
            .inner
            .store
            .leasable_rotations(&lease.owner, now())
            .await?;
        let mut taken = 0;
        for rotation in leasable {
            if self.driver(&rotation.id).is_some() {
                continue;
            }
            let (id, phase) = (rotation.id.clone(), rotation.phase);
            if self.drive(rotation).await {
                tracing::info!(rotation = %id, %phase, "resuming rotation");
                taken += 1;
            }
        }
        Ok(taken)
    }

    /// Sweeps every [`Lease::renew_every`] until `cancel`.
    pub async fn run_sweeper(self, cancel: CancellationToken) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(self.inner.lease.renew_every()) => {}
            }
            if let Err(e) = self.sweep().await {
                tracing::warn!(error = %e, "cannot look for rotations to resume");
            }
        }
    }

    /// Takes the lease on `rotation` and drives it from its stored state;
    /// false when another replica holds the lease, or it cannot be taken
    /// now.
    async fn drive(&self, rotation: Rotation) -> bool {
        let lease = &self.inner.lease;
        let at = now();
        match self
            .inner
            .store
            .lease_rotation(&rotation.id, &lease.owner, at, at.saturating_add(lease.ttl))
            .await
        {
            // Read again under the lease: the state listed may be older than
            // what the last holder saved before its lease ran out, and no
            // one else can save now.
            Ok(true) => match self.inner.store.get_rotation(&rotation.id).await {
                Ok(current) => {
                    self.spawn(current);
                    true
                }
                Err(e) => {
                    tracing::warn!(rotation = %rotation.id, error = %e, "cannot read the leased rotation; a later sweep will");
                    let _ = self
                        .inner
                        .store
                        .release_rotation(&rotation.id, &lease.owner)
                        .await;
                    false
                }
            },
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(rotation = %rotation.id, error = %e, "cannot take the rotation's lease; a later sweep will");
                false
            }
        }
    }

    /// After failures were reported against `name`: when a `canary`
    /// rotation of it is being observed and its share reported more
    /// failures than the policy tolerates, rolls it back now (Promote
    /// checks again, so a missed call only delays the rollback to the end
    /// of the observation).
    pub async fn check_canary(&self, name: &SecretName) {
        let running = self
            .inner
            .store
            .list_rotations(&RotationFilter {
                secret: Some(name.clone()),
                active_only: true,
                since: None,
                limit: 1,
            })
            .await;
        let rotation = match running {
            Ok(mut list) => match list.pop() {
                Some(r) => r,
                None => return,
            },
            Err(e) => {
                tracing::warn!(secret = %name, error = %e, "could not read the running rotation");
                return;
            }
        };
        let observed = rotation.strategy == Strategy::Canary
            && matches!(rotation.phase, Phase::Canary | Phase::Observe);
        let Some(new) = rotation.new_version.filter(|_| observed) else {
            return;
        };
        let reports = match self.inner.store.list_failures(name, new).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(secret = %name, error = %e, "could not read failure reports");
                return;
            }
        };
        let Some(why) = steps::canary_failures(&reports, rotation.policy.canary_max_failures)
        else {
            return;
        };
        tracing::warn!(rotation = %rotation.id, reason = %why, "canary failed: rolling back");
        if let Err(e) = self
            .request_rollback(&rotation.id, why, "keyshift", "rollback")
            .await
        {
            // Already rolling back, or past the point: nothing to do.
            tracing::debug!(rotation = %rotation.id, error = %e, "canary rollback not applied");
        }
    }

    /// Asks the rotation's driver to roll back.
    ///
    /// # Errors
    ///
    /// 409 when the rotation has ended or is past the point of rollback.
    pub async fn request_rollback(
        &self,
        id: &RotationId,
        reason: String,
        actor: &str,
        verb: &str,
    ) -> Result<Rotation, ApiError> {
        self.order(id, OrderKind::Rollback(reason), actor, verb)
            .await
    }

    /// Asks the rotation's driver to force the overlap gate: the old
    /// credential is revoked now, whatever the consumers hold. `reason`
    /// goes to the audit log.
    ///
    /// # Errors
    ///
    /// 409 when the rotation is not in Overlap.
    pub async fn request_advance(
        &self,
        id: &RotationId,
        actor: &str,
        reason: Option<String>,
    ) -> Result<Rotation, ApiError> {
        self.order(id, OrderKind::Advance(reason), actor, "advance")
            .await
    }

    /// Sends `kind` to the rotation's driver and audits the answer as
    /// `rotation.<verb>`.
    async fn order(
        &self,
        id: &RotationId,
        kind: OrderKind,
        actor: &str,
        verb: &str,
    ) -> Result<Rotation, ApiError> {
        let advance_reason = match &kind {
            OrderKind::Advance(Some(why)) => Some(why.clone()),
            _ => None,
        };
        let sender = self.driver(id);
        let result = match sender {
            Some(sender) => {
                let (reply, answer) = oneshot::channel();
                let order = Order { kind, reply };
                if sender.send(order).await.is_err() {
                    return Err(ApiError::Conflict(format!("rotation {id} has ended")));
                }
                // The driver answers between steps; a step stuck on an
                // unreachable store or target must not hang the request.
                match tokio::time::timeout(ORDER_TIMEOUT, answer).await {
                    Ok(Ok(result)) => result,
                    Ok(Err(_)) => {
                        return Err(ApiError::Conflict(format!("rotation {id} has ended")))
                    }
                    Err(_) => return Err(ApiError::Unavailable),
                }
            }
            None => {
                // No driver here: the rotation has ended.
                let rotation = self.inner.store.get_rotation(id).await?;
                let why = if rotation.phase.is_terminal() {
                    format!("rotation {id} has ended in phase {}", rotation.phase)
                } else {
                    format!("rotation {id} is not driven by this server")
                };
                return Err(ApiError::Conflict(why));
            }
        };
        match result {
            Ok(rotation) => {
                let detail = match &advance_reason {
                    Some(why) => gate_detail(&rotation)
                        .map(|d| format!("{d}; {why}"))
                        .or_else(|| Some(why.clone())),
                    None if verb == "advance" => gate_detail(&rotation),
                    None => rotation.reason.clone(),
                };
                self.audit(&rotation, actor, &format!("rotation.{verb}"), "ok", detail)
                    .await;
                Ok(rotation)
            }
            Err(e) => Err(ApiError::Conflict(e.to_string())),
        }
    }

    fn driver(&self, id: &RotationId) -> Option<mpsc::Sender<Order>> {
        self.lock_drivers().get(id).cloned()
    }

    fn lock_drivers(&self) -> std::sync::MutexGuard<'_, HashMap<RotationId, mpsc::Sender<Order>>> {
        // A poisoned map only means a driver panicked mid-insert; the map
        // itself is still consistent.
        self.inner
            .drivers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a driver for `rotation`, unless this replica runs one.
    fn spawn(&self, rotation: Rotation) {
        let (tx, rx) = mpsc::channel(4);
        {
            let mut drivers = self.lock_drivers();
            if drivers.contains_key(&rotation.id) {
                return;
            }
            drivers.insert(rotation.id.clone(), tx);
        }
        let guard = DriverGuard {
            orch: self.clone(),
            id: rotation.id.clone(),
        };
        tokio::spawn(async move {
            driver::drive(&guard.orch, rotation, rx).await;
            drop(guard);
        });
    }

    async fn audit(
        &self,
        r: &Rotation,
        actor: &str,
        action: &str,
        outcome: &str,
        detail: Option<String>,
    ) {
        let entry = NewAudit {
            actor: actor.to_owned(),
            action: action.to_owned(),
            secret: Some(r.secret.clone()),
            version: r.new_version,
            rotation: Some(r.id.clone()),
            outcome: outcome.to_owned(),
            detail,
            at: now(),
        };
        if let Err(e) = self.inner.store.append_audit(&entry).await {
            tracing::error!(error = %e, "could not write audit entry");
        }
    }
}
