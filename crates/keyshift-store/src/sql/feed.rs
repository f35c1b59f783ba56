//! The live feed: committed events, sent to this instance's subscribers in
//! id order and without gaps, whichever replica wrote them.
//!
//! Event ids are given in commit order (the `counters` row is locked until
//! commit), so when event `n` is committed every event before it is too.
//! The feed remembers the last id it sent. A local commit sends its own
//! event, after any it has not sent yet (written by other replicas), which
//! it reads in its own transaction before committing: every event before
//! its own is committed by then, and visible to it.
//!
//! Nothing waits for a pool connection while holding the feed's lock (a
//! writer uses its transaction's connection; the listener takes one before
//! the lock), so writers holding every connection while waiting for the
//! lock cannot starve its holder. On PostgreSQL each event-writing transaction also runs
//! `pg_notify('keyshift_events', id)`, and a listener task reads and sends
//! what it has not seen when a notification arrives, and after every
//! (re)connection, since `NOTIFY` is not replayed: nothing is lost while
//! the listener is away, only delayed.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{AnyConnection, AnyPool};
use tokio::sync::{broadcast, Mutex, MutexGuard};

use super::events::events_since;
use crate::error::StoreError;
use crate::model::EventRecord;

/// The PostgreSQL notification channel; the payload is the event's id.
pub(super) const CHANNEL: &str = "keyshift_events";

/// Events read from the store per catch-up query.
const PAGE: u32 = 500;

/// How long the listener waits before connecting again, or before reading
/// again after a failed read.
const RETRY: Duration = Duration::from_secs(1);

/// Every pattern: the feed carries every secret's events.
fn all() -> [String; 1] {
    ["*".to_owned()]
}

pub(super) struct Feed {
    pub(super) events: broadcast::Sender<EventRecord>,
    /// The id of the last event sent. Held from a local commit to its send,
    /// so sends stay in id order.
    sent: Mutex<i64>,
}

impl Feed {
    /// A feed that has sent everything up to `latest`.
    pub(super) fn new(events: broadcast::Sender<EventRecord>, latest: i64) -> Feed {
        Feed {
            events,
            sent: Mutex::new(latest),
        }
    }

    /// Locks the feed for a commit: take it before committing, then
    /// [`publish`](Self::publish).
    pub(super) async fn lock(&self) -> MutexGuard<'_, i64> {
        self.sent.lock().await
    }

    /// The events before `id` not sent yet, read on `conn` (the
    /// transaction that wrote event `id`, before it commits).
    pub(super) async fn missed_before(
        conn: &mut AnyConnection,
        sent: i64,
        id: i64,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let mut missed = Vec::new();
        let mut after = sent;
        while after + 1 < id {
            let page = events_since(conn, after, &all(), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.id;
            missed.extend(page.into_iter().filter(|e| e.id < id));
        }
        Ok(missed)
    }

    /// Sends `missed` (from [`missed_before`](Self::missed_before)), then
    /// `event`, just committed, skipping what was sent already.
    pub(super) fn publish(&self, sent: &mut i64, missed: Vec<EventRecord>, event: EventRecord) {
        for e in missed.into_iter().chain(std::iter::once(event)) {
            if e.id > *sent {
                *sent = e.id;
                let _ = self.events.send(e);
            }
        }
    }

    /// Sends every committed event not sent yet.
    pub(super) async fn catch_up(&self, pool: &AnyPool) -> Result<(), StoreError> {
        // The connection first, then the lock (see the module's comment).
        let mut conn = pool.acquire().await?;
        let mut sent = self.sent.lock().await;
        loop {
            let page = events_since(&mut conn, *sent, &all(), PAGE).await?;
            let full = page.len() == PAGE as usize;
            for event in page {
                *sent = event.id;
                let _ = self.events.send(event);
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Whether event `id` was sent already.
    async fn has_sent(&self, id: i64) -> bool {
        *self.sent.lock().await >= id
    }
}

/// Listens for other replicas' events until aborted (the store's drop).
pub(super) async fn listen(url: String, pool: AnyPool, feed: Arc<Feed>) {
    let mut failures = 0u32;
    loop {
        let mut listener = match connect(&url).await {
            Ok(l) => l,
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(error = %e, "the event listener cannot connect; retrying every second");
                }
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        if failures > 0 {
            tracing::info!("the event listener is connected again");
        }
        failures = 0;
        // Whatever was committed while not listening.
        let mut behind = feed.catch_up(&pool).await.is_err();
        loop {
            let received = if behind {
                match tokio::time::timeout(RETRY, listener.try_recv()).await {
                    Ok(r) => r,
                    // Nothing new within a second: read the store again.
                    Err(_) => {
                        behind = feed.catch_up(&pool).await.is_err();
                        continue;
                    }
                }
            } else {
                listener.try_recv().await
            };
            match received {
                Ok(Some(n)) => {
                    let id = n.payload().parse::<i64>().unwrap_or(i64::MAX);
                    if behind || !feed.has_sent(id).await {
                        behind = feed.catch_up(&pool).await.is_err();
                    }
                }
                Ok(None) => {
                    tracing::info!("the event listener lost its connection; catching up");
                    behind = feed.catch_up(&pool).await.is_err();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the event listener failed; reconnecting");
                    tokio::time::sleep(RETRY).await;
                    break;
                }
            }
        }
    }
}

async fn connect(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}
