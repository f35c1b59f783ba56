//! `GET /v1/watch`: Server-Sent Events of version and label changes.
//!
//! The stream subscribes to the store's live events *before* reading the
//! backlog after `Last-Event-ID`, and skips anything at or below the last id
//! sent, so no event is lost or repeated between the two. A watcher that
//! falls behind the live channel is caught up from the store.

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
use tokio::sync::broadcast::error::RecvError;

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
    mut last_id: i64,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    async_stream(move |tx| async move {
        let _counted = crate::metrics::Watcher::new();
        let mut live = state.store.subscribe();
        let shutdown = state.shutdown.clone();
        let mut catch_up = true;
        loop {
            if catch_up {
                let page = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tx.closed() => return,
                    page = state.store.events_since(last_id, &patterns, PAGE) => page,
                };
                match page {
                    Ok(page) => {
                        let full = page.len() == PAGE as usize;
                        for e in &page {
                            last_id = e.id;
                            tokio::select! {
                                _ = shutdown.cancelled() => return,
                                sent = tx.send(to_sse(e)) => if sent.is_err() { return },
                            }
                        }
                        catch_up = full;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "watch catch-up failed; retrying");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tx.closed() => return,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tx.closed() => return,
                received = live.recv() => match received {
                    Ok(e) if e.id > last_id && matches(&patterns, &e.secret) => {
                        last_id = e.id;
                        if tx.send(to_sse(&e)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => catch_up = true,
                    Err(RecvError::Closed) => return,
                },
            }
        }
    })
}

/// A stream fed by a task through a small channel: the task ends when the
/// client goes away (the receiver is dropped).
fn async_stream<F, Fut>(f: F) -> impl Stream<Item = Result<SseEvent, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<SseEvent>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    futures::StreamExt::map(
        tokio_stream::wrappers::ReceiverStream::new(rx),
        Ok::<_, Infallible>,
    )
}
