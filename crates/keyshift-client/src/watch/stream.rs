//! The event stream: one `GET /v1/watch?names=...` per client, carrying
//! every watched name, reconnected with `Last-Event-ID` after a failure
//! (with backoff) and at once when the set of names grows.

use std::sync::Arc;
use std::time::Duration;

use keyshift_core::api::WatchEvent;
use keyshift_core::SecretName;
use rand::rngs::StdRng;
use rand::SeedableRng;
use reqwest::header::{ACCEPT, AUTHORIZATION};
use tokio::time::Instant;

use super::backoff::Backoff;
use super::sse::{Message, Parser};
use super::supervisor::Shared;
use crate::ClientError;

/// The server sends a keep-alive every 15 s: three missed in a row mean
/// the connection is dead even if TCP has not noticed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(45);

/// How long the server may take to answer the stream request.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a connection ended.
enum End {
    Cancelled,
    NamesChanged,
    Broken(String),
}

/// Runs the stream until the client is closed.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut backoff = Backoff::new(
        shared.config.backoff_min,
        shared.config.backoff_max,
        StdRng::from_entropy(),
    );
    let mut last_id: Option<i64> = None;
    let mut failures = 0u32;
    loop {
        let (names, generation) = shared.stream_names();
        if names.is_empty() {
            tokio::select! {
                () = shared.stream_wake.notified() => continue,
                () = shared.cancel.cancelled() => return,
            }
        }
        let server = shared.api().base_url().to_owned();
        let opened = tokio::select! {
            r = open(&shared, &server, &names, last_id) => r,
            () = shared.cancel.cancelled() => return,
        };
        match opened {
            Ok(resp) => {
                shared.publish_stream(generation, true);
                if failures > 0 {
                    tracing::info!(names = names.len(), "event stream reconnected");
                }
                failures = 0;
                backoff.reset();
                shared.refresh_after_connect(last_id.is_some());
                match read(&shared, resp, &names, &mut last_id).await {
                    End::Cancelled => return,
                    End::NamesChanged => continue,
                    End::Broken(why) => {
                        failures = 1;
                        tracing::info!(reason = %why, "event stream ended; reconnecting");
                        // Another replica at once, resuming after the last
                        // event (ids are the store's, the same on all).
                        if shared.moved_on(&server) {
                            continue;
                        }
                    }
                }
            }
            Err(e) => {
                shared.publish_stream(generation, false);
                failures += 1;
                // The next address at once, until each was tried; then
                // the backoff.
                if shared.moved_on(&server) && (failures as usize) < shared.addresses() {
                    continue;
                }
                if failures == 1 {
                    tracing::warn!(error = %e, "cannot open the event stream; retrying with backoff (polling continues)");
                } else {
                    tracing::debug!(error = %e, failures, "cannot open the event stream");
                }
            }
        }
        let delay = backoff.next_delay();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shared.stream_wake.notified() => {}
            () = shared.cancel.cancelled() => return,
        }
    }
}

/// Opens the stream for `names` on `server`, resuming after `last_id`.
async fn open(
    shared: &Shared,
    server: &str,
    names: &[SecretName],
    last_id: Option<i64>,
) -> Result<reqwest::Response, ClientError> {
    let joined = names
        .iter()
        .map(SecretName::as_str)
        .collect::<Vec<_>>()
        .join(",");
    let url = format!("{server}/v1/watch");
    let mut req = shared
        .stream_http
        .get(url)
        .query(&[("names", joined)])
        .header(ACCEPT, "text/event-stream");
    if let Some(auth) = &shared.auth {
        req = req.header(AUTHORIZATION, auth.clone());
    }
    if let Some(id) = last_id {
        req = req.header("Last-Event-ID", id.to_string());
    }
    let resp = tokio::time::timeout(OPEN_TIMEOUT, req.send())
        .await
        .map_err(|_| {
            ClientError::Transport("the server did not answer the watch request in 30 s".into())
        })?
        .map_err(|e| ClientError::transport(&e))?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.bytes().await.unwrap_or_default();
        return Err(ClientError::from_error_body(status.as_u16(), &body));
    }
    Ok(resp)
}

/// Reads events until the connection ends, the names change or the client
/// closes.
async fn read(
    shared: &Arc<Shared>,
    mut resp: reqwest::Response,
    names: &[SecretName],
    last_id: &mut Option<i64>,
) -> End {
    let mut parser = Parser::default();
    loop {
        let chunk = tokio::select! {
            () = shared.cancel.cancelled() => return End::Cancelled,
            () = shared.stream_wake.notified() => {
                if shared.stream_names().0 != names {
                    return End::NamesChanged;
                }
                continue;
            }
            c = tokio::time::timeout(IDLE_TIMEOUT, resp.chunk()) => c,
        };
        let bytes = match chunk {
            Err(_) => return End::Broken("no data, not even a keep-alive, for 45 s".into()),
            Ok(Err(e)) => return End::Broken(ClientError::transport(&e).to_string()),
            Ok(Ok(None)) => return End::Broken("the server closed the stream".into()),
            Ok(Ok(Some(b))) => b,
        };
        let received = Instant::now();
        let messages = match parser.push(&bytes) {
            Ok(m) => m,
            Err(e) => return End::Broken(e),
        };
        for m in messages {
            handle(shared, &m, last_id, received);
        }
    }
}

fn handle(shared: &Arc<Shared>, m: &Message, last_id: &mut Option<i64>, received: Instant) {
    match serde_json::from_str::<WatchEvent>(&m.data) {
        Ok(ev) => {
            *last_id = Some(ev.id);
            shared.dispatch(ev, received);
        }
        Err(e) => {
            if let Some(id) = m.id.as_deref().and_then(|s| s.trim().parse().ok()) {
                *last_id = Some(id);
            }
            tracing::warn!(event = %m.event, error = %e, "undecodable watch event skipped");
        }
    }
}
