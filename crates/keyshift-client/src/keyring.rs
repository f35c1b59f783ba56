//! The key ring: the verifier of a service that accepts API keys.
//!
//! ```text
//!   request ── x-api-key ──► verify(key) ── SHA-256 ──► compare with EVERY accepted digest
//!                               │                          (constant time, no early exit)
//!                               │ miss                       │ hit: count a use, say
//!                               ▼                            ▼      whether it is deprecated
//!                   wait for a refresh that starts     KeyMatch { version, deprecated }
//!                   after the miss, then check again
//!
//!   refresher task: GET :accepted every 10 s, on a change of the source, on a miss
//!                   (single flight, at most one per 100 ms)
//!   reporter task:  POST /v1/usage every 5 s with the uses per version
//! ```
//!
//! The key ring holds the SHA-256 digests of the accepted keys, never the
//! keys themselves. The counts it reports are the usage signal of the
//! rotation's overlap gate: the old key is revoked only once nobody uses it.
//!
//! A miss is checked again after a refresh that started after it, so a key
//! that a consumer received a moment before this key ring saw the accepted
//! set change is still accepted: a rotation causes no false rejection. The
//! refreshes a flood of bogus keys can cause are bounded (one per
//! [`KeyRingConfig::min_refresh_gap`]), and the waiting is bounded by
//! [`KeyRingConfig::miss_wait`].
//!
//! See [`KeyRing`] for an example.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use keyshift_core::api::{valid_consumer_id, AcceptedSet, UsageCount, UsageReport};
use keyshift_core::{Label, SecretName, Timestamp, VersionNumber};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use tokio::sync::{watch, Notify};
use tokio::time::{sleep_until, Instant, MissedTickBehavior};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::{ApiClient, ClientError};

/// How long the final report at [`KeyRing::stop`] may take.
const FINAL_REPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// How a [`KeyRing`] refreshes and reports. [`Default`] gives the values
/// documented on each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRingConfig {
    /// How often the accepted set is reloaded without a reason. Default
    /// 10 s: a fallback only, since a change of the source and a miss
    /// trigger a refresh at once; well under any overlap window.
    pub refresh_every: Duration,
    /// How often uses are reported. Default 5 s: the overlap gate samples
    /// usage every monitoring cycle (30 s by default), so several reports
    /// land in each.
    pub report_every: Duration,
    /// The least time between the starts of two refreshes. Default 100 ms:
    /// a flood of bogus keys costs the server at most ten requests a second
    /// per key ring.
    pub min_refresh_gap: Duration,
    /// The longest a miss waits for its refresh before it is rejected.
    /// Default 5 s: a refresh is one small request; a server slower than
    /// this is in trouble, and the caller's request should not hang on it.
    pub miss_wait: Duration,
}

impl Default for KeyRingConfig {
    fn default() -> Self {
        Self {
            refresh_every: Duration::from_secs(10),
            report_every: Duration::from_secs(5),
            min_refresh_gap: Duration::from_millis(100),
            miss_wait: Duration::from_secs(5),
        }
    }
}

impl KeyRingConfig {
    /// Sets [`refresh_every`](Self::refresh_every).
    #[must_use]
    pub fn refresh_every(mut self, d: Duration) -> Self {
        self.refresh_every = d;
        self
    }

    /// Sets [`report_every`](Self::report_every).
    #[must_use]
    pub fn report_every(mut self, d: Duration) -> Self {
        self.report_every = d;
        self
    }

    /// Sets [`min_refresh_gap`](Self::min_refresh_gap).
    #[must_use]
    pub fn min_refresh_gap(mut self, d: Duration) -> Self {
        self.min_refresh_gap = d;
        self
    }

    /// Sets [`miss_wait`](Self::miss_wait).
    #[must_use]
    pub fn miss_wait(mut self, d: Duration) -> Self {
        self.miss_wait = d;
        self
    }

    /// Checks the fields; the one place a config is validated.
    ///
    /// # Errors
    ///
    /// [`KeyRingError::Config`] when `refresh_every` or `report_every` is
    /// zero.
    pub fn validate(&self) -> Result<(), KeyRingError> {
        if self.refresh_every.is_zero() {
            return Err(KeyRingError::Config(
                "refresh_every must be longer than zero",
            ));
        }
        if self.report_every.is_zero() {
            return Err(KeyRingError::Config(
                "report_every must be longer than zero",
            ));
        }
        Ok(())
    }
}

/// Why a [`KeyRing`] could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRingError {
    /// The reporter id is not a valid consumer id.
    #[error("invalid reporter id {0:?}: use 1 to 128 characters of [A-Za-z0-9._:-]")]
    InvalidReporter(String),
    /// A [`KeyRingConfig`] field is out of range.
    #[error("invalid key ring configuration: {0}")]
    Config(&'static str),
    /// The first load of the accepted set failed (unknown secret, no
    /// `read` grant, server unreachable).
    #[error("could not load the accepted set of {name}: {source}")]
    Load {
        /// The secret.
        name: SecretName,
        /// What the server or the transport said.
        source: ClientError,
    },
}

/// An accepted key: which version it is, and whether it is older than the
/// version labelled `current` (the caller then adds the response headers of
/// [`KeyRing::deprecation`], so the client moves over before it is
/// revoked; the `middleware` feature's `require_api_key` does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyMatch {
    /// The version the presented key is.
    pub version: VersionNumber,
    /// Older than `current` (normally: labelled `previous`).
    pub deprecated: bool,
}

/// When the deprecated keys of a [`KeyRing`] were deprecated and when they
/// stop being accepted, as the server said at the last refresh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deprecation {
    /// When the version replacing them became `current` (during a
    /// rotation's overlap: Promote's end; otherwise the creation time of
    /// `current`). None before the first load.
    pub since: Option<Timestamp>,
    /// When they stop being accepted at the latest: the rotation's
    /// `max_overlap` deadline, while it is in its overlap. The overlap gate
    /// revokes them sooner once nobody uses them.
    pub sunset: Option<Timestamp>,
}

impl Deprecation {
    /// The response headers for a caller that presented a deprecated key:
    /// `Deprecation: @<unix seconds>` (RFC 9745) and, when known,
    /// `Sunset: <HTTP-date>` (RFC 8594). Lower-case names.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = Vec::with_capacity(2);
        if let Some(since) = self.since {
            headers.push((
                "deprecation",
                format!("@{}", since.as_millis().div_euclid(1000)),
            ));
        }
        if let Some(sunset) = self.sunset {
            headers.push(("sunset", httpdate::fmt_http_date(sunset.to_system())));
        }
        headers
    }
}

/// A verifier of API keys that accepts exactly the accepted set of one
/// secret, counts uses per version and reports them.
///
/// Cheap to clone: clones share the set, the counts and the background
/// tasks, which stop at [`stop`](Self::stop) or when the last clone is
/// dropped. Its `Debug` shows the name and versions, never a digest.
///
/// ```no_run
/// use keyshift_client::{ApiClient, KeyRing};
/// use keyshift_core::{SecretName, SecretValue};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let token = SecretValue::new(std::env::var("KEYSHIFT_TOKEN")?)?;
/// let api = ApiClient::new("http://127.0.0.1:8200", Some(token))?;
/// let name: SecretName = "prod/api/keys".parse()?;
/// let ring = KeyRing::start(api, name, "api-gw-1".to_owned(), None).await?;
///
/// # let presented = "ks_...";
/// match ring.verify(presented).await {
///     Some(m) if m.deprecated => println!("ok, add {:?} (version {})", ring.deprecation().headers(), m.version),
///     Some(_) => println!("ok"),
///     None => println!("401"),
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct KeyRing {
    inner: Arc<Handle>,
}

struct Handle {
    shared: Arc<Shared>,
    stop: CancellationToken,
    _drop: DropGuard,
}

struct Shared {
    api: ApiClient,
    name: SecretName,
    reporter: String,
    config: KeyRingConfig,
    entries: ArcSwap<Vec<Entry>>,
    /// When the deprecated entries were deprecated and stop working.
    deprecation: ArcSwap<Deprecation>,
    /// Uses per version not yet reported; entries hold clones of these.
    counters: Mutex<BTreeMap<VersionNumber, Arc<AtomicU64>>>,
    /// Refreshes started so far (the first load is number 1).
    started: AtomicU64,
    /// The number of the last refresh that finished.
    finished: watch::Sender<u64>,
    /// A miss asks the refresher for a refresh.
    wake: Notify,
}

/// One accepted version: its digest, never its value.
struct Entry {
    version: VersionNumber,
    digest: [u8; 32],
    deprecated: bool,
    uses: Arc<AtomicU64>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("name", &self.inner.shared.name)
            .field("accepted", &self.accepted_versions())
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// Loads the accepted set of `name` and starts refreshing it (every
    /// 10 s, whenever `changes` bumps, and on a miss) and reporting uses
    /// (every 5 s, as `reporter`): [`start_with`](Self::start_with) and
    /// the default [`KeyRingConfig`].
    ///
    /// `changes` is a [`SecretSource`](crate::SecretSource)'s `changes()`
    /// for the same secret, when the application watches it.
    ///
    /// # Errors
    ///
    /// As [`start_with`](Self::start_with).
    pub async fn start(
        api: ApiClient,
        name: SecretName,
        reporter: String,
        changes: Option<watch::Receiver<u64>>,
    ) -> Result<KeyRing, KeyRingError> {
        Self::start_with(api, name, reporter, changes, KeyRingConfig::default()).await
    }

    /// Like [`start`](Self::start), with a config. Must be called inside a
    /// Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`KeyRingError::InvalidReporter`], [`KeyRingError::Config`], or
    /// [`KeyRingError::Load`] when the first load fails: a key ring that
    /// knows no key would reject every request.
    pub async fn start_with(
        api: ApiClient,
        name: SecretName,
        reporter: String,
        changes: Option<watch::Receiver<u64>>,
        config: KeyRingConfig,
    ) -> Result<KeyRing, KeyRingError> {
        if !valid_consumer_id(&reporter) {
            return Err(KeyRingError::InvalidReporter(reporter));
        }
        config.validate()?;
        let set = api
            .accepted(&name)
            .await
            .map_err(|source| KeyRingError::Load {
                name: name.clone(),
                source,
            })?;
        let shared = Arc::new(Shared {
            api,
            name,
            reporter,
            config,
            entries: ArcSwap::from_pointee(Vec::new()),
            deprecation: ArcSwap::from_pointee(Deprecation::default()),
            counters: Mutex::new(BTreeMap::new()),
            started: AtomicU64::new(1),
            finished: watch::Sender::new(1),
            wake: Notify::new(),
        });
        shared.install(&set);
        drop(set);
        let stop = CancellationToken::new();
        tokio::spawn(refresher(shared.clone(), changes, stop.clone()));
        tokio::spawn(reporter_task(shared.clone(), stop.clone()));
        Ok(KeyRing {
            inner: Arc::new(Handle {
                shared,
                _drop: stop.clone().drop_guard(),
                stop,
            }),
        })
    }

    /// Checks a presented key.
    ///
    /// Its SHA-256 digest is compared in constant time with the digest of
    /// *every* accepted version (no early exit, so timing does not say how
    /// far the search went). On a match, a use of that version is counted.
    /// On a miss, waits for a refresh that starts after the miss (shared
    /// by all misses waiting then, at most one per `min_refresh_gap`, for
    /// at most `miss_wait`) and checks again: only then is the key
    /// rejected.
    ///
    /// A hit needs no refresh, so a revoked key is still accepted until
    /// the next refresh: at most `refresh_every` after the revocation, at
    /// once when `changes` reports it.
    pub async fn verify(&self, presented: &str) -> Option<KeyMatch> {
        let shared = &self.inner.shared;
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        if let Some(m) = shared.check(&digest) {
            return Some(m);
        }
        if self.inner.stop.is_cancelled() {
            return None;
        }
        // Read after the miss: every refresh numbered above it starts later.
        let seen = shared.started.load(Ordering::SeqCst);
        let mut finished = shared.finished.subscribe();
        shared.wake.notify_one();
        let wait = finished.wait_for(|&done| done > seen);
        let _ = tokio::time::timeout(shared.config.miss_wait, wait).await;
        shared.check(&digest)
    }

    /// When the keys [`verify`](Self::verify) reports as `deprecated`
    /// were deprecated, and when they stop working at the latest: the
    /// values of the `Deprecation` and `Sunset` response headers that
    /// tell a caller still using one to move (see
    /// [`Deprecation::headers`]).
    pub fn deprecation(&self) -> Deprecation {
        **self.inner.shared.deprecation.load()
    }

    /// The versions accepted now, ascending.
    pub fn accepted_versions(&self) -> Vec<VersionNumber> {
        self.inner
            .shared
            .entries
            .load()
            .iter()
            .map(|e| e.version)
            .collect()
    }

    /// The secret this key ring verifies.
    pub fn name(&self) -> &SecretName {
        &self.inner.shared.name
    }

    /// Stops refreshing and reporting (for every clone), after one last
    /// report of the uses counted so far (best effort, at most 2 s). Keys
    /// are still checked against the last set, without waiting on a miss.
    pub fn stop(&self) {
        self.inner.stop.cancel();
    }

    /// Uses counted and not yet reported, per version. For tests.
    #[doc(hidden)]
    pub fn unreported_uses(&self) -> BTreeMap<VersionNumber, u64> {
        let counters = self.inner.shared.lock_counters();
        counters
            .iter()
            .map(|(v, c)| (*v, c.load(Ordering::SeqCst)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Reports the counted uses now. For tests.
    ///
    /// # Errors
    ///
    /// The server's answer; the counts are then kept for the next report.
    #[doc(hidden)]
    pub async fn report_now(&self) -> Result<(), ClientError> {
        self.inner.shared.report().await
    }

    /// How many refreshes have finished, the first load included. For
    /// tests.
    #[doc(hidden)]
    pub fn refreshes(&self) -> u64 {
        *self.inner.shared.finished.borrow()
    }
}

impl Shared {
    /// The entry `digest` matches, checking every entry in constant time.
    fn check(&self, digest: &[u8; 32]) -> Option<KeyMatch> {
        let entries = self.entries.load();
        let mut hit = Choice::from(0);
        let mut index = 0u64;
        for (i, e) in entries.iter().enumerate() {
            let eq = e.digest.ct_eq(digest);
            index.conditional_assign(&(i as u64), eq);
            hit |= eq;
        }
        if !bool::from(hit) {
            return None;
        }
        // Invariant: `index` is a position in `entries` when `hit` is set.
        let e = &entries[index as usize];
        e.uses.fetch_add(1, Ordering::Relaxed);
        Some(KeyMatch {
            version: e.version,
            deprecated: e.deprecated,
        })
    }

    /// Replaces the entries with `set`'s digests, keeping each version's
    /// counter.
    fn install(&self, set: &AcceptedSet) {
        let current = set
            .versions
            .iter()
            .find(|v| v.info.labels.contains(&Label::Current))
            .map(|v| v.info.version);
        let mut counters = self.lock_counters();
        let entries: Vec<Entry> = set
            .versions
            .iter()
            .map(|v| Entry {
                version: v.info.version,
                digest: v.value.sha256(),
                deprecated: current.is_some_and(|c| v.info.version < c),
                uses: counters.entry(v.info.version).or_default().clone(),
            })
            .collect();
        drop(counters);
        self.entries.store(Arc::new(entries));
        let current_since = set
            .versions
            .iter()
            .find(|v| Some(v.info.version) == current)
            .map(|v| v.info.created_at);
        self.deprecation.store(Arc::new(Deprecation {
            since: set.deprecated_since.or(current_since),
            sunset: set.sunset,
        }));
    }

    /// Reloads the accepted set; a failure keeps the old one.
    async fn refresh(&self) {
        let number = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        match self.api.accepted(&self.name).await {
            Ok(set) => self.install(&set),
            Err(e) => tracing::warn!(
                secret = %self.name,
                error = %e,
                "could not refresh the accepted set; keeping the last one"
            ),
        }
        self.finished.send_replace(number);
    }

    /// Sends the uses counted since the last report; on failure puts them
    /// back for the next one.
    async fn report(&self) -> Result<(), ClientError> {
        let drained = self.drain();
        if drained.is_empty() {
            return Ok(());
        }
        let report = UsageReport {
            reporter: self.reporter.clone(),
            counts: drained
                .iter()
                .map(|&(version, count)| UsageCount {
                    secret: self.name.clone(),
                    version,
                    count,
                })
                .collect(),
        };
        let result = self.api.report_usage(&report).await;
        if let Err(e) = &result {
            tracing::warn!(secret = %self.name, error = %e, "could not report key uses; keeping them for the next report");
            let mut counters = self.lock_counters();
            for (version, count) in drained {
                counters
                    .entry(version)
                    .or_default()
                    .fetch_add(count, Ordering::Relaxed);
            }
        }
        result
    }

    /// Takes every non-zero count, forgetting counters no entry uses.
    fn drain(&self) -> Vec<(VersionNumber, u64)> {
        let mut counters = self.lock_counters();
        let drained = counters
            .iter()
            .map(|(v, c)| (*v, c.swap(0, Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect();
        // Only the map holds it: its version left the accepted set.
        counters.retain(|_, c| Arc::strong_count(c) > 1);
        drained
    }

    fn lock_counters(&self) -> std::sync::MutexGuard<'_, BTreeMap<VersionNumber, Arc<AtomicU64>>> {
        // A panic while holding the lock leaves the map consistent.
        self.counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Refreshes every `refresh_every`, on a change of the source and on a
/// miss. Refreshes for misses start at least `min_refresh_gap` apart (a
/// flood of bogus keys must not hammer the server); a change reported by
/// the source is the server's word and refreshes at once, so a revoked key
/// stops working as soon as the revocation is announced.
async fn refresher(
    shared: Arc<Shared>,
    mut changes: Option<watch::Receiver<u64>>,
    stop: CancellationToken,
) {
    let config = shared.config.clone();
    let mut last_start = Instant::now();
    loop {
        let periodic = last_start + config.refresh_every;
        let mut announced = false;
        tokio::select! {
            _ = stop.cancelled() => return,
            () = sleep_until(periodic) => {}
            () = shared.wake.notified() => {}
            closed = changed(&mut changes) => {
                if closed {
                    changes = None;
                    continue;
                }
                announced = true;
            }
        }
        let earliest = last_start + config.min_refresh_gap;
        if !announced && Instant::now() < earliest {
            tokio::select! {
                _ = stop.cancelled() => return,
                () = sleep_until(earliest) => {}
            }
        }
        last_start = Instant::now();
        tokio::select! {
            _ = stop.cancelled() => return,
            () = shared.refresh() => {}
        }
    }
}

/// Waits for the source to change; true when its sender is gone. Never
/// returns without a source.
async fn changed(changes: &mut Option<watch::Receiver<u64>>) -> bool {
    match changes {
        Some(rx) => rx.changed().await.is_err(),
        None => std::future::pending().await,
    }
}

/// Reports every `report_every`, and once more at stop.
async fn reporter_task(shared: Arc<Shared>, stop: CancellationToken) {
    let period = shared.config.report_every;
    let mut tick = tokio::time::interval_at(Instant::now() + period, period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => { let _ = shared.report().await; }
        }
    }
    let _ = tokio::time::timeout(FINAL_REPORT_TIMEOUT, shared.report()).await;
}
