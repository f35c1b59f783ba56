//! `GET /v1/watch`: Server-Sent Events of version and label changes.
//!
//! The stream subscribes to the store's live events *before* reading the
//! backlog after `Last-Event-ID`, and skips anything at or below the last id
//! sent, so no event is lost or repeated between the two. A watcher that
//! falls behind the live channel is caught up from the store.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use keyshift_core::api::{Scope, WatchEvent, WatchEventKind};
use keyshift_core::SecretName;
use keyshift_store::{EventKind, EventRecord};
use serde::Deserialize;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use super::body::ApiQuery;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// Events read from the store per catch-up query.
const PAGE: u32 = 500;

#[derive(Deserialize)]
pub struct WatchQuery {
    names: String,
}

/// `GET /v1/watch?names=a,prod/*`.
pub async fn watch(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<WatchQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let patterns = parse_patterns(&q.names)?;
    for p in &patterns {
        if !caller.can_pattern(Scope::Read, p) {
            return Err(ApiError::Forbidden(format!("token lacks `read` on {p}")));
        }
    }
    let last_id = match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .ok_or_else(|| ApiError::BadRequest("Last-Event-ID must be an event id".to_owned()))?,
        // A new watcher starts from now: the latest event id.
        None => latest_id(&state).await?,
    };
    let stream = events(state, patterns, last_id);
    Ok(Sse::new(stream).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(15))
            .text("keep-alive"),
    ))
}

fn parse_patterns(names: &str) -> Result<Vec<String>, ApiError> {
    let patterns: Vec<String> = names
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if patterns.is_empty() {
        return Err(ApiError::BadRequest(
            "`names` must list at least one name or pattern".to_owned(),
        ));
    }
    for p in &patterns {
        let valid = p == "*"
            || match p.strip_suffix('*') {
                Some(prefix) => SecretName::new(prefix.trim_end_matches('/')).is_ok(),
                None => SecretName::new(p).is_ok(),
            };
        if !valid {
            return Err(ApiError::BadRequest(format!(
                "invalid name or pattern `{p}`"
            )));
        }
    }
    Ok(patterns)
}

async fn latest_id(state: &AppState) -> Result<i64, ApiError> {
    Ok(state.store.latest_event_id().await?)
}

fn matches(patterns: &[String], name: &SecretName) -> bool {
    patterns.iter().any(|p| name.matches(p))
}

fn to_sse(e: &EventRecord) -> SseEvent {
    let kind = match e.kind {
        EventKind::SecretCreated => WatchEventKind::SecretCreated,
        EventKind::VersionAdded => WatchEventKind::VersionAdded,
        EventKind::LabelsMoved => WatchEventKind::LabelsMoved,
        EventKind::VersionState => WatchEventKind::VersionState,
        EventKind::SecretDeleted => WatchEventKind::SecretDeleted,
    };
    let body = WatchEvent {
        id: e.id,
        secret: e.secret.clone(),
        seq: e.seq,
        kind,
        version: e.version,
        labels: e.labels.clone(),
        at: e.at,
    };
    SseEvent::default()
        .id(e.id.to_string())
        .event(kind.as_str())
        .json_data(&body)
        // Invariant: WatchEvent serializes (plain fields only).
        .unwrap_or_else(|_| SseEvent::default().comment("unserializable event"))
}

fn events(
    state: AppState,
    patterns: Vec<String>,
    last_id: i64,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let watch = Watch {
        live: state.store.subscribe(),
        shutdown: state.shutdown.clone(),
        state,
        patterns,
        last_id,
        catch_up: true,
        pending: VecDeque::new(),
        _counted: crate::metrics::Counted::watcher(),
    };
    // No task and no channel per watcher: the stream is polled by the
    // connection, and dropped with it when the client goes away.
    futures::stream::unfold(watch, |mut w| async move {
        let event = w.next().await?;
        Some((Ok(event), w))
    })
}

/// One watcher's position: what it has been sent, and what is next.
struct Watch {
    state: AppState,
    patterns: Vec<String>,
    /// The id of the last event sent.
    last_id: i64,
    live: broadcast::Receiver<EventRecord>,
    shutdown: CancellationToken,
    /// Whether to read the store (at the start, after a full page, after
    /// falling behind the live events).
    catch_up: bool,
    /// Events of the last page read, not sent yet.
    pending: VecDeque<SseEvent>,
    _counted: crate::metrics::Counted,
}

impl Watch {
    /// The next event to send; None ends the stream (shutdown).
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            if self.catch_up {
                let page = tokio::select! {
                    _ = self.shutdown.cancelled() => return None,
                    page = self.state.store.events_since(self.last_id, &self.patterns, PAGE) => page,
                };
                match page {
                    Ok(page) => {
                        self.catch_up = page.len() == PAGE as usize;
                        for e in &page {
                            self.last_id = e.id;
                            self.pending.push_back(to_sse(e));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "watch catch-up failed; retrying");
                        tokio::select! {
                            _ = self.shutdown.cancelled() => return None,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
                continue;
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                received = self.live.recv() => match received {
                    Ok(e) if e.id > self.last_id && matches(&self.patterns, &e.secret) => {
                        self.last_id = e.id;
                        return Some(to_sse(&e));
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => self.catch_up = true,
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    }
}
