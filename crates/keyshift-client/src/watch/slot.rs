//! One watched secret: the `ArcSwap` snapshot readers load, the sequence
//! tracker that keeps it from moving backwards, and the single-flight lock
//! every fetch of its value goes through.
//!
//! Two pure functions decide everything that matters for ordering:
//! [`decide`] (what an event asks for) and [`admit`] (whether a fetched
//! value may replace the held one). The rest is plumbing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use keyshift_core::api::WatchEvent;
use keyshift_core::{Label, SecretName, VersionNumber};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::instrument;

use super::errors::SdkError;
use crate::{ApiClient, Selector, Snapshot};

/// The shortest polling TTL: a TTL clamped below it would hammer the
/// server without helping (events arrive within milliseconds anyway).
pub(crate) const MIN_TTL: Duration = Duration::from_secs(1);

/// Checks (and, for typed secrets, commits) a fetched value before it is
/// swapped in. `Err` keeps the held value; the message is reported.
pub(crate) type Gate = Box<dyn Fn(&Snapshot) -> Result<(), String> + Send + Sync>;

/// Where the held value stands with respect to the secret's event sequence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tracker {
    /// The highest event `seq` applied or recorded.
    pub last_seq: u64,
    /// The held value came from a direct read (first load, poll, disk
    /// cache), which may be newer than events still to be delivered (a
    /// replay after a reconnect): events are then checked against the
    /// server's present `current` instead of trusting their version.
    pub ahead: bool,
}

/// What an event asks of a watched secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Its `seq` is not higher than the last applied: late or replayed.
    Ignore,
    /// Newer, but `current` is (still) the held version: only the sequence
    /// moves.
    Record,
    /// Newer and `current` moved: fetch this.
    Fetch(Selector),
}

/// What `ev` asks of a secret holding `held` with tracker `t`.
///
/// While a `canary` rotation labels a version `canary`, only the server
/// knows whether this consumer is in its share: it reads `current` (as
/// this consumer) unless it holds the canary's version already.
pub(crate) fn decide(t: &Tracker, held: VersionNumber, ev: &WatchEvent) -> Decision {
    if ev.seq <= t.last_seq {
        return Decision::Ignore;
    }
    let canary = ev.labels.get(&Label::Canary);
    match ev.labels.get(&Label::Current) {
        None => Decision::Record,
        Some(_) if canary == Some(&held) => Decision::Record,
        Some(_) if canary.is_some() => Decision::Fetch(Selector::Label(Label::Current)),
        Some(&v) if v == held => Decision::Record,
        Some(_) if t.ahead => Decision::Fetch(Selector::Label(Label::Current)),
        Some(&v) => Decision::Fetch(Selector::Version(v)),
    }
}

/// Why a value was fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// For the event with this `seq`, which points `current` at `expected`.
    Event {
        /// The event's sequence number.
        seq: u64,
        /// The event's `current`.
        expected: VersionNumber,
    },
    /// A read of `current` (poll, refresh) begun when the tracker's
    /// `last_seq` was `since_seq`.
    Read {
        /// `last_seq` when the read began.
        since_seq: u64,
    },
}

/// What [`admit`] says about a fetched version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Older than what the tracker knows: drop it.
    Stale,
    /// The held version.
    Same,
    /// A different version that may replace the held one.
    New,
}

/// Whether `fetched` (for `origin`) may replace `held`; moves the tracker.
///
/// An event's value is stale when a higher `seq` was applied meanwhile. A
/// read is stale when an event was recorded while it was in flight (the
/// read may predate that event). A read that finds another version marks
/// the tracker `ahead`.
pub(crate) fn admit(
    t: &mut Tracker,
    held: VersionNumber,
    origin: &Origin,
    fetched: VersionNumber,
) -> Admission {
    match *origin {
        Origin::Event { seq, expected } => {
            if seq <= t.last_seq {
                return Admission::Stale;
            }
            t.last_seq = seq;
            t.ahead = fetched != expected;
        }
        Origin::Read { since_seq } => {
            if t.last_seq != since_seq {
                return Admission::Stale;
            }
            if fetched != held {
                t.ahead = true;
            }
        }
    }
    if fetched == held {
        Admission::Same
    } else {
        Admission::New
    }
}

/// The polling TTL: at most half the secret's `min_overlap`, so a consumer
/// that missed an event still refreshes before the old credential can be
/// revoked, and never below [`MIN_TTL`].
pub(crate) fn effective_ttl(configured: Duration, min_overlap: Option<Duration>) -> Duration {
    let bound = min_overlap.map_or(configured, |o| configured.min(o / 2));
    bound.max(MIN_TTL)
}

/// What happened to a fetched value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Swapped in; `changes` moved.
    Applied,
    /// The held version already.
    Unchanged,
    /// Older than what is known: dropped.
    Stale,
    /// Refused by the gate: the held value stays, `last_error` says why.
    Rejected,
}

struct Meta {
    tracker: Tracker,
    last_error: Option<String>,
    /// The version the gate refused last, so a poll finding it again does
    /// not warn again.
    rejected: Option<VersionNumber>,
    /// The error of the latest fetch, shared with single-flight waiters.
    last_fetch: Option<SdkError>,
    next_poll: Instant,
    /// The held value may have missed events (it came from the disk cache,
    /// or was read before the event stream carried the name): refresh it
    /// after the next stream connection.
    resync: bool,
    min_overlap: Option<Duration>,
    policy_checked: Option<Instant>,
}

/// One watched secret.
pub(crate) struct Slot {
    name: SecretName,
    snapshot: ArcSwap<Snapshot>,
    changes: watch::Sender<u64>,
    /// The seq of the latest event of this secret, of any kind.
    events: watch::Sender<u64>,
    meta: Mutex<Meta>,
    fetch_lock: tokio::sync::Mutex<()>,
    /// Completed fetches, for single flight.
    generation: AtomicU64,
    fetch_count: AtomicU64,
    ttl_ms: AtomicU64,
    gate: Option<Gate>,
}

impl Slot {
    /// A slot holding `first` (from a direct read or the disk cache).
    pub(crate) fn new(first: Snapshot, ttl: Duration, gate: Option<Gate>) -> Slot {
        Slot {
            name: first.name.clone(),
            snapshot: ArcSwap::from_pointee(first),
            changes: watch::Sender::new(0),
            events: watch::Sender::new(0),
            meta: Mutex::new(Meta {
                tracker: Tracker {
                    last_seq: 0,
                    ahead: true,
                },
                last_error: None,
                rejected: None,
                last_fetch: None,
                next_poll: Instant::now() + ttl,
                resync: false,
                min_overlap: None,
                policy_checked: None,
            }),
            fetch_lock: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
            fetch_count: AtomicU64::new(0),
            ttl_ms: AtomicU64::new(millis(ttl)),
            gate,
        }
    }

    pub(crate) fn name(&self) -> &SecretName {
        &self.name
    }

    pub(crate) fn current(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    pub(crate) fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.snapshot.load()
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce(&Snapshot) -> R) -> R {
        f(&self.snapshot.load())
    }

    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub(crate) fn events(&self) -> watch::Receiver<u64> {
        self.events.subscribe()
    }

    pub(crate) fn has_gate(&self) -> bool {
        self.gate.is_some()
    }

    pub(crate) fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms.load(Ordering::Relaxed))
    }

    pub(crate) fn fetch_count(&self) -> u64 {
        self.fetch_count.load(Ordering::Relaxed)
    }

    /// Counts a fetch made before the slot existed (the first load).
    pub(crate) fn count_fetch(&self) {
        self.fetch_count.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        self.meta().last_error.clone()
    }

    pub(crate) fn next_poll(&self) -> Instant {
        self.meta().next_poll
    }

    pub(crate) fn postpone_poll(&self, now: Instant) {
        self.meta().next_poll = now + self.ttl();
    }

    pub(crate) fn mark_resync(&self) {
        self.meta().resync = true;
    }

    /// Whether a resync was asked for; clears the request.
    pub(crate) fn take_resync(&self) -> bool {
        std::mem::take(&mut self.meta().resync)
    }

    pub(crate) fn min_overlap(&self) -> Option<Duration> {
        self.meta().min_overlap
    }

    /// Whether the policy was never read or was read more than `every` ago.
    pub(crate) fn policy_due(&self, now: Instant, every: Duration) -> bool {
        self.meta().policy_checked.is_none_or(|t| now >= t + every)
    }

    /// Records the secret's `min_overlap` (read from the server at
    /// `checked`, or from the disk cache when `None`) and sets the
    /// effective TTL from it; logs (at info) when the TTL is clamped to a
    /// new value.
    pub(crate) fn set_policy(
        &self,
        configured: Duration,
        min_overlap: Duration,
        checked: Option<Instant>,
    ) {
        let ttl = effective_ttl(configured, Some(min_overlap));
        {
            let mut m = self.meta();
            m.min_overlap = Some(min_overlap);
            if checked.is_some() {
                m.policy_checked = checked;
            }
        }
        let old = self.ttl_ms.swap(millis(ttl), Ordering::Relaxed);
        if old != millis(ttl) && ttl < configured {
            log_clamp(&self.name, configured, ttl, min_overlap);
        }
    }

    /// Feeds an event: records it, ignores it, or says what to fetch.
    pub(crate) fn on_event(&self, ev: &WatchEvent) -> Decision {
        self.events.send_if_modified(|seen| {
            let newer = ev.seq > *seen;
            if newer {
                *seen = ev.seq;
            }
            newer
        });
        let mut m = self.meta();
        let d = decide(&m.tracker, self.snapshot.load().version, ev);
        if d == Decision::Record {
            m.tracker.last_seq = ev.seq;
        }
        d
    }

    /// Offers a fetched value; swaps it in when [`admit`] and the gate
    /// agree.
    #[instrument(skip_all, fields(secret = %self.name))]
    pub(crate) fn apply(&self, origin: &Origin, fetched: Snapshot) -> Outcome {
        let mut m = self.meta();
        let held = self.snapshot.load().version;
        match admit(&mut m.tracker, held, origin, fetched.version) {
            Admission::Stale => return Outcome::Stale,
            Admission::Same => {
                m.last_error = None;
                return Outcome::Unchanged;
            }
            Admission::New => {}
        }
        if m.rejected == Some(fetched.version) {
            return Outcome::Rejected;
        }
        let candidate = Snapshot {
            seq: m.tracker.last_seq,
            ..fetched
        };
        if let Some(gate) = &self.gate {
            if let Err(why) = gate(&candidate) {
                tracing::warn!(
                    version = %candidate.version,
                    held = %held,
                    error = %why,
                    "rejected a new value of the secret; keeping the last good one"
                );
                m.rejected = Some(candidate.version);
                m.last_error = Some(why);
                return Outcome::Rejected;
            }
        }
        self.snapshot.store(Arc::new(candidate));
        m.rejected = None;
        m.last_error = None;
        drop(m);
        self.changes.send_modify(|c| *c += 1);
        Outcome::Applied
    }

    /// Swaps `snap` in unconditionally (tests and benches).
    pub(crate) fn replace(&self, snap: Snapshot) {
        self.snapshot.store(Arc::new(snap));
        self.changes.send_modify(|c| *c += 1);
    }

    /// Reads `current` from the server and offers it, sharing the fetch
    /// with concurrent callers: whoever waits while a fetch runs gets its
    /// result instead of starting another.
    ///
    /// # Errors
    ///
    /// The fetch's error (shared with the waiters).
    pub(crate) async fn refresh(&self, api: &ApiClient) -> Result<Outcome, SdkError> {
        let seen = self.generation.load(Ordering::Acquire);
        let _turn = self.fetch_lock.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            return match self.meta().last_fetch.clone() {
                Some(e) => Err(e),
                None => Ok(Outcome::Unchanged),
            };
        }
        let since_seq = self.meta().tracker.last_seq;
        let result = self.fetch(api, Selector::default()).await;
        let result = result.map(|snap| self.apply(&Origin::Read { since_seq }, snap));
        self.fetch_done(&result);
        result
    }

    /// Fetches what `ev` points `current` at, if it still needs to be
    /// fetched once this secret's earlier fetches are done.
    ///
    /// # Errors
    ///
    /// The fetch's error.
    pub(crate) async fn fetch_for_event(
        &self,
        api: &ApiClient,
        ev: &WatchEvent,
    ) -> Result<Outcome, SdkError> {
        let _turn = self.fetch_lock.lock().await;
        let (Decision::Fetch(sel), Some(&expected)) =
            (self.on_event(ev), ev.labels.get(&Label::Current))
        else {
            return Ok(Outcome::Stale);
        };
        let result = self.fetch(api, sel).await;
        let result = result.map(|snap| {
            self.apply(
                &Origin::Event {
                    seq: ev.seq,
                    expected,
                },
                snap,
            )
        });
        self.fetch_done(&result);
        result
    }

    #[instrument(skip_all, fields(secret = %self.name))]
    async fn fetch(&self, api: &ApiClient, sel: Selector) -> Result<Snapshot, SdkError> {
        self.fetch_count.fetch_add(1, Ordering::Relaxed);
        let v = api.get_value(&self.name, sel).await?;
        Ok(Snapshot {
            name: v.name,
            version: v.info.version,
            value: v.value,
            seq: 0,
        })
    }

    fn fetch_done(&self, result: &Result<Outcome, SdkError>) {
        {
            let mut m = self.meta();
            m.last_fetch = result.as_ref().err().cloned();
            if let Err(e) = result {
                m.last_error = Some(e.to_string());
            }
            m.next_poll = Instant::now() + self.ttl();
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn meta(&self) -> MutexGuard<'_, Meta> {
        self.meta.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn log_clamp(name: &SecretName, configured: Duration, ttl: Duration, min_overlap: Duration) {
    let (configured, ttl, min_overlap) = (secs(configured), secs(ttl), secs(min_overlap));
    tracing::info!(
        secret = %name,
        "polling TTL clamped from {configured} to {ttl}: it must stay below half the secret's \
         overlap window (min_overlap {min_overlap}, floor 1s) so a consumer that missed an event \
         refreshes before the old credential can be revoked"
    );
}

/// `1.5s`, `30s`, `0s`.
fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests;
