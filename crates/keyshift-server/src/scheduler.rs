//! The scheduler: starts each secret's rotation when it is due.
//!
//! A secret is due by its policy's [`Schedule`](keyshift_core::Schedule)
//! (an interval or a cron expression in UTC, moved by its share of the
//! jitter window), or, for an `x509` certificate without a schedule, by
//! its age (`renew_at` of its lifetime). Nothing is due while a rotation of
//! the secret runs, for a minute after one failed, or while its circuit is
//! open.
//!
//! A scheduled rotation's id is derived from the secret and the due time,
//! so starting it twice (a restart, or several replicas) starts it once.
//! The scheduler reads time from a [`Clock`], so tests move time by hand.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyshift_core::api::{SecretStatus, StartRotation};
use keyshift_core::rotation::{Rotation, RotationId};
use keyshift_core::{Circuit, Label, SecretKind, Timestamp};
use keyshift_store::{RotationFilter, SecretRecord, Store, StoreError, VersionSelector};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::orchestrator::Orchestrator;

/// The longest the scheduler sleeps between looks, so that a policy
/// changed through the API takes effect soon.
pub const MAX_SLEEP: Duration = Duration::from_secs(5);

/// How long after a failed rotation the scheduler waits before starting
/// the next one of that secret (the circuit stops it after a few).
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(60);

/// Where the scheduler reads the time.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> Timestamp;

    /// Resolves when the clock jumps (a [`ManualClock`] was moved); the
    /// system clock never does.
    fn jumped(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        crate::state::now()
    }

    fn jumped(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(std::future::pending())
    }
}

/// A clock moved by hand, for tests: scheduling without sleeps.
#[derive(Debug)]
pub struct ManualClock {
    now_ms: AtomicI64,
    jumped: Notify,
}

impl ManualClock {
    /// A clock standing at `at`.
    pub fn new(at: Timestamp) -> Self {
        Self {
            now_ms: AtomicI64::new(at.as_millis()),
            jumped: Notify::new(),
        }
    }

    /// Moves the clock forward by `d` and wakes the scheduler.
    pub fn advance(&self, d: Duration) {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
        // notify_one keeps a permit when the scheduler is busy, so a move
        // during its look is not lost.
        self.jumped.notify_one();
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.now_ms.load(Ordering::SeqCst))
    }

    fn jumped(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.jumped.notified())
    }
}

/// Starts due rotations. Cheap to share.
pub struct Scheduler {
    store: Arc<dyn Store>,
    orchestrator: Orchestrator,
    clock: Arc<dyn Clock>,
    checked_at: Mutex<Option<Timestamp>>,
}

/// When a secret is next due, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// When.
    pub at: Timestamp,
    /// `schedule` or `certificate-age`.
    pub by: &'static str,
}

impl Scheduler {
    /// A scheduler over `store` starting rotations with `orchestrator`.
    pub fn new(store: Arc<dyn Store>, orchestrator: Orchestrator, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            orchestrator,
            clock,
            checked_at: Mutex::new(None),
        }
    }

    /// The scheduler's clock.
    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    /// The clock's time at the end of the last look (None before the
    /// first): a test that moved the clock waits until this has caught up.
    pub fn checked_at(&self) -> Option<Timestamp> {
        *self
            .checked_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Looks for due rotations until `shutdown`, sleeping until the next
    /// one is due (at most [`MAX_SLEEP`]) or the clock jumps.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let now = self.clock.now();
            let next = match self.tick(now).await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(error = %e, "scheduler could not read the store");
                    None
                }
            };
            *self
                .checked_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(now);
            let sleep = next.map_or(MAX_SLEEP, |at| at.since(now).min(MAX_SLEEP));
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(sleep) => {}
                () = self.clock.jumped() => {}
            }
        }
    }

    /// Starts every rotation due at `now`; returns when the next one not
    /// yet due is.
    ///
    /// # Errors
    ///
    /// A store error listing the secrets.
    pub async fn tick(&self, now: Timestamp) -> Result<Option<Timestamp>, StoreError> {
        let mut next: Option<Timestamp> = None;
        for secret in self.store.list_scheduled().await? {
            let recent = match self.recent(&secret).await {
                Ok(recent) => recent,
                Err(e) => {
                    tracing::warn!(secret = %secret.name, error = %e, "scheduler skipped a secret");
                    continue;
                }
            };
            let Some(due) = self.next_due(&secret, &recent, now).await else {
                continue;
            };
            if due.at > now {
                next = Some(next.map_or(due.at, |n| n.min(due.at)));
                continue;
            }
            self.start(&secret, due).await;
        }
        Ok(next)
    }

    async fn start(&self, secret: &SecretRecord, due: Due) {
        let req = StartRotation {
            id: Some(scheduled_id(secret, due.at)),
            ..StartRotation::default()
        };
        let now = self.clock.now();
        match self
            .orchestrator
            .start_at(&secret.name, req, "scheduler", now)
            .await
        {
            Ok((rotation, true)) => tracing::info!(
                secret = %secret.name, rotation = %rotation.id, due = %due.at, by = due.by,
                "scheduled rotation started"
            ),
            Ok((_, false)) => {}
            Err(ApiError::Conflict(why)) => {
                tracing::debug!(secret = %secret.name, %why, "scheduled rotation not started");
            }
            Err(e) => tracing::warn!(
                secret = %secret.name, error = %e, "scheduled rotation could not start"
            ),
        }
    }

    /// The newest rotations of `secret`: enough to judge its circuit.
    async fn recent(&self, secret: &SecretRecord) -> Result<Vec<Rotation>, StoreError> {
        self.store
            .list_rotations(&RotationFilter {
                secret: Some(secret.name.clone()),
                active_only: false,
                since: None,
                limit: secret.policy.circuit_failures.max(1),
            })
            .await
    }

    /// When `secret`, whose newest rotations are `recent`, is next due
    /// (None: not scheduled, or a rotation of it runs).
    pub async fn next_due(
        &self,
        secret: &SecretRecord,
        recent: &[Rotation],
        now: Timestamp,
    ) -> Option<Due> {
        let newest = recent.first();
        if newest.is_some_and(|r| !r.phase.is_terminal()) {
            return None;
        }
        let last = newest.map_or(secret.created_at, |r| r.created_at);
        let mut due = match &secret.policy.schedule {
            Some(schedule) => Due {
                at: schedule.next_due(&secret.name, last)?,
                by: "schedule",
            },
            None => Due {
                at: self.certificate_due(secret).await?,
                by: "certificate-age",
            },
        };
        if let Some(failed) = newest.filter(|r| r.failed_by_error()) {
            let retry = failed
                .ended_at()
                .unwrap_or(failed.created_at)
                .saturating_add(RETRY_AFTER_FAILURE);
            due.at = due.at.max(retry);
        }
        if let Circuit::Open { until } = Circuit::of(&secret.policy, recent, now) {
            due.at = due.at.max(until);
        }
        Some(due)
    }

    /// When the current certificate of an `x509` secret is due for
    /// renewal.
    async fn certificate_due(&self, secret: &SecretRecord) -> Option<Timestamp> {
        if secret.kind != SecretKind::X509 {
            return None;
        }
        let config: keyshift_targets::X509Config =
            serde_json::from_value(secret.target.clone()).ok()?;
        let (_, value) = self
            .store
            .get_value(&secret.name, &VersionSelector::Label(Label::Current))
            .await
            .ok()?;
        keyshift_targets::renewal_due(&value, config.renew_at).map(Timestamp::from_system)
    }

    /// Every secret's schedule, next rotation, newest rotation and circuit.
    ///
    /// # Errors
    ///
    /// A store error.
    pub async fn status(&self, secret: &SecretRecord) -> Result<SecretStatus, StoreError> {
        let now = self.clock.now();
        let recent = self.recent(secret).await?;
        let due = if secret.kind.scheduled(&secret.policy) {
            self.next_due(secret, &recent, now).await
        } else {
            None
        };
        Ok(SecretStatus {
            name: secret.name.clone(),
            kind: secret.kind,
            schedule: secret.policy.schedule.clone(),
            next_rotation: due.map(|d| d.at),
            next_rotation_by: due.map(|d| d.by.to_owned()),
            last_rotation: recent.first().map(Into::into),
            circuit_open_until: match Circuit::of(&secret.policy, &recent, now) {
                Circuit::Open { until } => Some(until),
                Circuit::Closed => None,
            },
        })
    }
}

/// The id of the rotation of `secret` due at `due`: `s-` and a digest of
/// the name, then the due time in milliseconds. The same due time always
/// gives the same id, so it starts once.
fn scheduled_id(secret: &SecretRecord, due: Timestamp) -> RotationId {
    let digest = Sha256::digest(secret.name.as_str().as_bytes());
    let id = format!("s-{}-{}", hex::encode(&digest[..8]), due.as_millis());
    // Invariant: `s-`, hex digits, `-` and decimal digits form a valid id.
    id.parse().expect("scheduled rotation id is valid")
}
