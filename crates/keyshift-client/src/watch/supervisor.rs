//! What a [`Client`](super::Client) shares with its background tasks: the
//! registry of watched secrets, the wake-ups, the cancellation token, and
//! the three loops (event stream, polling, heartbeat).
//!
//! ```text
//!  stream task ──events──► dispatch ──► Slot::fetch_for_event ─┐
//!  poll task ──every TTL──► Slot::refresh ─────────────────────┼─► ArcSwap + changes
//!  Watched::refresh ──────► Slot::refresh (single flight) ─────┘      │
//!                                              heartbeat task ◄─wake──┴─► disk cache
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use keyshift_core::api::WatchEvent;
use keyshift_core::{SecretName, SecretValue};
use reqwest::header::HeaderValue;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::instrument;

use super::builder::{hostname, process_label, Config};
use super::cache::DiskCache;
use super::errors::SdkError;
use super::slot::{Decision, Outcome, Slot};
use crate::{ApiClient, Snapshot};

/// How often a watched secret's policy is read again (its `min_overlap`
/// bounds the TTL). Policy changes are not pushed, so this bounds how long
/// a lowered overlap can go unnoticed.
pub(crate) const POLICY_REFRESH: Duration = Duration::from_secs(60);

/// How long `watch()` waits for the event stream to cover a new name
/// before reading its first value anyway.
const STREAM_WAIT: Duration = Duration::from_secs(5);

/// The latest event-stream connection attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StreamState {
    /// The name-set generation it was made for.
    pub generation: u64,
    /// Whether it connected.
    pub connected: bool,
}

#[derive(Default)]
struct Registry {
    slots: BTreeMap<SecretName, Vec<Arc<Slot>>>,
    /// Names being opened, with how many opens are in progress.
    pending: BTreeMap<SecretName, usize>,
    /// Pending names an event arrived for.
    dirty: BTreeSet<SecretName>,
    /// Bumped whenever the set of names the stream must carry changes.
    generation: u64,
}

impl Registry {
    fn names(&self) -> Vec<SecretName> {
        let set: BTreeSet<&SecretName> = self.slots.keys().chain(self.pending.keys()).collect();
        set.into_iter().cloned().collect()
    }

    fn carries(&self, name: &SecretName) -> bool {
        self.slots.contains_key(name) || self.pending.contains_key(name)
    }
}

/// Shared by a client's handles and its background tasks.
pub(crate) struct Shared {
    /// One API client per server address, in the order given.
    apis: Vec<ApiClient>,
    /// The index in `apis` of the server in use.
    active: AtomicUsize,
    pub(crate) stream_http: reqwest::Client,
    pub(crate) auth: Option<HeaderValue>,
    pub(crate) consumer_id: String,
    pub(crate) host: String,
    pub(crate) process: String,
    pub(crate) config: Config,
    pub(crate) cache: Option<Arc<DiskCache>>,
    registry: Mutex<Registry>,
    pub(crate) stream_wake: Notify,
    pub(crate) poll_wake: Notify,
    pub(crate) heartbeat_wake: Notify,
    pub(crate) stream_state: watch::Sender<StreamState>,
    pub(crate) cancel: CancellationToken,
    started: AtomicBool,
}

impl Shared {
    pub(crate) fn new(
        addrs: &[String],
        token: Option<SecretValue>,
        consumer_id: String,
        config: Config,
        cache: Option<(std::path::PathBuf, [u8; 32])>,
        options: &crate::ConnectOptions,
    ) -> Result<Shared, SdkError> {
        let config_error = |e: crate::ClientError| SdkError::Config(e.to_string());
        let auth = token.as_ref().map(bearer).transpose()?;
        // Reads of `current` name this consumer, so a canary rotation can
        // answer per consumer.
        let apis = addrs
            .iter()
            .map(|addr| {
                ApiClient::with_options(addr, token.clone(), options)
                    .map(|api| api.for_consumer(&consumer_id))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(config_error)?;
        // The stream shares the API's HTTP client, so over HTTP/2 one
        // connection carries the stream, reads and heartbeats. The client
        // has no overall timeout (the stream is meant to stay open); idle
        // streams are detected by the missing keep-alives.
        let stream_http = apis
            .first()
            .ok_or_else(|| SdkError::Config("no server address".to_owned()))?
            .http()
            .clone();
        Ok(Shared {
            apis,
            active: AtomicUsize::new(0),
            stream_http,
            auth,
            consumer_id,
            host: hostname(),
            process: process_label(),
            config,
            cache: cache.map(|(dir, key)| Arc::new(DiskCache::new(dir, key))),
            registry: Mutex::new(Registry::default()),
            stream_wake: Notify::new(),
            poll_wake: Notify::new(),
            heartbeat_wake: Notify::new(),
            stream_state: watch::Sender::new(StreamState::default()),
            cancel: CancellationToken::new(),
            started: AtomicBool::new(false),
        })
    }

    /// The API client of the server in use.
    pub(crate) fn api(&self) -> &ApiClient {
        &self.apis[self.active.load(Ordering::Relaxed) % self.apis.len()]
    }

    /// After the server at `base_url` did not answer: moves to the next
    /// address, if there are several and no other call moved already.
    /// Returns whether it moved.
    pub(crate) fn fail_over(&self, base_url: &str) -> bool {
        let n = self.apis.len();
        let Some(from) = self.apis.iter().position(|a| a.base_url() == base_url) else {
            return false;
        };
        if n < 2 {
            return false;
        }
        let to = (from + 1) % n;
        let moved = self
            .active
            .compare_exchange(from, to, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
        if moved {
            tracing::warn!(
                from = base_url,
                to = self.apis[to].base_url(),
                "the server does not answer; moving to the next address"
            );
        }
        moved
    }

    /// After the server at `base_url` did not answer: whether the client
    /// uses another one now (moved by this call, or by another before).
    pub(crate) fn moved_on(&self, base_url: &str) -> bool {
        self.fail_over(base_url) || self.api().base_url() != base_url
    }

    /// How many server addresses the client has.
    pub(crate) fn addresses(&self) -> usize {
        self.apis.len()
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the background tasks once (on the first `watch`, inside the
    /// caller's runtime).
    pub(crate) fn ensure_started(self: &Arc<Self>) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(super::stream::run(self.clone()));
        tokio::spawn(self.clone().poll_loop());
        tokio::spawn(super::heartbeat::run(self.clone()));
    }

    /// The names the stream must carry, and their generation.
    pub(crate) fn stream_names(&self) -> (Vec<SecretName>, u64) {
        let r = self.registry();
        (r.names(), r.generation)
    }

    /// Every watched slot.
    pub(crate) fn all_slots(&self) -> Vec<Arc<Slot>> {
        self.registry().slots.values().flatten().cloned().collect()
    }

    /// An existing untyped slot of `name`, shared by every `watch(name)`.
    pub(crate) fn raw_slot(&self, name: &SecretName) -> Option<Arc<Slot>> {
        self.registry()
            .slots
            .get(name)?
            .iter()
            .find(|s| !s.has_gate())
            .cloned()
    }

    /// Adds `name` to the names being opened; returns the generation the
    /// stream must reach to carry it.
    pub(crate) fn begin_open(&self, name: &SecretName) -> u64 {
        let mut r = self.registry();
        let new = !r.carries(name);
        *r.pending.entry(name.clone()).or_default() += 1;
        if new {
            r.generation += 1;
        }
        let generation = r.generation;
        drop(r);
        if new {
            self.stream_wake.notify_one();
        }
        generation
    }

    /// Ends an open of `name`: registers `slot` (or returns the untyped
    /// slot another open registered first) and says whether an event
    /// arrived for the name while it was being opened.
    pub(crate) fn end_open(
        &self,
        name: &SecretName,
        slot: Option<Arc<Slot>>,
    ) -> (Option<Arc<Slot>>, bool) {
        let mut r = self.registry();
        let dirty = r.dirty.contains(name);
        if let Some(n) = r.pending.get_mut(name) {
            *n -= 1;
            if *n == 0 {
                r.pending.remove(name);
                r.dirty.remove(name);
            }
        }
        let registered = slot.map(|slot| {
            let slots = r.slots.entry(name.clone()).or_default();
            if !slot.has_gate() {
                if let Some(existing) = slots.iter().find(|s| !s.has_gate()) {
                    return existing.clone();
                }
            }
            slots.push(slot.clone());
            slot
        });
        if !r.carries(name) {
            r.generation += 1;
        }
        (registered, dirty)
    }

    /// Waits (bounded) until a stream connection carrying generation
    /// `generation` is up; says whether it is.
    pub(crate) async fn wait_for_stream(&self, generation: u64) -> bool {
        let mut rx = self.stream_state.subscribe();
        let reached =
            tokio::time::timeout(STREAM_WAIT, rx.wait_for(|s| s.generation >= generation)).await;
        matches!(reached, Ok(Ok(s)) if s.connected)
    }

    pub(crate) fn publish_stream(&self, generation: u64, connected: bool) {
        self.stream_state.send_replace(StreamState {
            generation,
            connected,
        });
    }

    /// Hands an event to every slot of its secret; fetches run in their
    /// own tasks so one slow secret does not hold up the stream.
    pub(crate) fn dispatch(self: &Arc<Self>, ev: WatchEvent, received: Instant) {
        let slots = {
            let mut r = self.registry();
            if r.pending.contains_key(&ev.secret) {
                r.dirty.insert(ev.secret.clone());
            }
            r.slots.get(&ev.secret).cloned().unwrap_or_default()
        };
        let ev = Arc::new(ev);
        for slot in slots {
            match slot.on_event(&ev) {
                Decision::Fetch(_) => {
                    let shared = self.clone();
                    let ev = ev.clone();
                    tokio::spawn(async move { shared.apply_event(&slot, &ev, received).await });
                }
                Decision::Record | Decision::Ignore => {}
            }
        }
    }

    #[instrument(skip_all, fields(secret = %ev.secret, seq = ev.seq))]
    async fn apply_event(self: Arc<Self>, slot: &Arc<Slot>, ev: &WatchEvent, received: Instant) {
        let api = self.api();
        match slot.fetch_for_event(api, ev).await {
            Ok(Outcome::Applied) => {
                tracing::debug!(
                    version = %slot.current().version,
                    latency_us = u64::try_from(received.elapsed().as_micros()).unwrap_or(u64::MAX),
                    "applied a pushed change"
                );
                self.after_change(slot);
            }
            Ok(_) => {}
            Err(e) => {
                if e.is_unreachable() {
                    self.fail_over(api.base_url());
                }
                tracing::warn!(error = %e, "cannot fetch the value an event points at; polling will retry")
            }
        }
    }

    /// Reads `current` of `slot` (single flight) and handles the outcome.
    ///
    /// # Errors
    ///
    /// The fetch's error.
    pub(crate) async fn refresh(self: &Arc<Self>, slot: &Arc<Slot>) -> Result<Outcome, SdkError> {
        let api = self.api();
        let outcome = match slot.refresh(api).await {
            Ok(outcome) => outcome,
            Err(e) => {
                if e.is_unreachable() {
                    self.fail_over(api.base_url());
                }
                return Err(e);
            }
        };
        if outcome == Outcome::Applied {
            self.after_change(slot);
        }
        Ok(outcome)
    }

    /// After a value change: report it at once and persist it.
    pub(crate) fn after_change(self: &Arc<Self>, slot: &Arc<Slot>) {
        self.heartbeat_wake.notify_one();
        if self.cache.is_some() {
            let shared = self.clone();
            let slot = slot.clone();
            tokio::spawn(async move { shared.persist(&slot).await });
        }
    }

    /// Writes the slot's current value to the disk cache, if there is one.
    pub(crate) async fn persist(&self, slot: &Slot) {
        let Some(cache) = self.cache.clone() else {
            return;
        };
        let snap: Arc<Snapshot> = slot.current();
        let min_overlap = slot.min_overlap();
        let name = slot.name().clone();
        let written = tokio::task::spawn_blocking(move || cache.store(&snap, min_overlap)).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(secret = %name, error = %e, "cannot persist the value"),
            Err(e) => tracing::warn!(secret = %name, error = %e, "the cache writer failed"),
        }
    }

    /// After the stream (re)connected: values read before it covered them
    /// may have missed events. Without `Last-Event-ID` every slot is
    /// refreshed; with it, only those marked for resync.
    pub(crate) fn refresh_after_connect(self: &Arc<Self>, resumed: bool) {
        for slot in self.all_slots() {
            let resync = slot.take_resync();
            if resync || !resumed {
                let shared = self.clone();
                tokio::spawn(async move { shared.poll(&slot).await });
            }
        }
    }

    /// One poll of `slot`: its policy when due, then its value.
    pub(crate) async fn poll(self: Arc<Self>, slot: &Arc<Slot>) {
        let now = Instant::now();
        if slot.policy_due(now, POLICY_REFRESH) {
            match self.api().get_secret(slot.name()).await {
                Ok(info) => slot.set_policy(self.config.ttl, info.policy.min_overlap, Some(now)),
                Err(e) => {
                    tracing::debug!(secret = %slot.name(), error = %e, "cannot read the policy")
                }
            }
        }
        match self.refresh(slot).await {
            Ok(_) => {}
            Err(e) if e.is_unreachable() => {
                tracing::debug!(secret = %slot.name(), error = %e, "poll failed: server unreachable");
            }
            Err(e) => tracing::warn!(secret = %slot.name(), error = %e, "poll failed"),
        }
    }

    async fn poll_loop(self: Arc<Self>) {
        loop {
            let now = Instant::now();
            let slots = self.all_slots();
            let (due, next) = due_and_next(now, slots.iter().map(|s| s.next_poll()));
            for i in due {
                let slot = slots[i].clone();
                slot.postpone_poll(now);
                tokio::spawn(self.clone().poll_owned(slot));
            }
            let wake_at = next.unwrap_or(now + Duration::from_secs(3600));
            tokio::select! {
                () = tokio::time::sleep_until(wake_at) => {}
                () = self.poll_wake.notified() => {}
                () = self.cancel.cancelled() => return,
            }
        }
    }

    async fn poll_owned(self: Arc<Self>, slot: Arc<Slot>) {
        self.poll(&slot).await;
    }
}

/// Which deadlines are due at `now` (by index), and the earliest one that
/// is not.
pub(crate) fn due_and_next(
    now: Instant,
    deadlines: impl IntoIterator<Item = Instant>,
) -> (Vec<usize>, Option<Instant>) {
    let mut due = Vec::new();
    let mut next: Option<Instant> = None;
    for (i, d) in deadlines.into_iter().enumerate() {
        if d <= now {
            due.push(i);
        } else {
            next = Some(next.map_or(d, |n| n.min(d)));
        }
    }
    (due, next)
}

/// `Authorization: Bearer <token>`, marked sensitive so it is never logged.
fn bearer(token: &SecretValue) -> Result<HeaderValue, SdkError> {
    let mut v = HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
        SdkError::Config("the token has characters an HTTP header cannot carry".into())
    })?;
    v.set_sensitive(true);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_deadlines_are_listed_and_the_next_one_is_the_earliest_future_one() {
        let now = Instant::now();
        let s = Duration::from_secs;
        let (due, next) = due_and_next(now, [now + s(5), now - s(1), now, now + s(2)]);
        assert_eq!(due, vec![1, 2]);
        assert_eq!(next, Some(now + s(2)));
        assert_eq!(due_and_next(now, []), (vec![], None));
    }
}
