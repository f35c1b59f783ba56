//! Heartbeats: every interval, and right after a value changes, the
//! consumer tells the server which version of each watched secret it
//! holds. The overlap gate reads these before revoking an old credential.

use std::collections::BTreeMap;
use std::sync::Arc;

use keyshift_core::api::{Heartbeat, Holding, MAX_HEARTBEAT_INTERVAL_MS};
use keyshift_core::{SecretName, VersionNumber};

use super::errors::unreachable;
use super::slot::Slot;
use super::supervisor::Shared;

/// Sends heartbeats until the client is closed.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut problem: Option<String> = None;
    loop {
        let beat = Heartbeat {
            consumer_id: shared.consumer_id.clone(),
            host: Some(shared.host.clone()),
            process: Some(shared.process.clone()),
            holds: holdings(&shared.all_slots()),
            interval_ms: Some(
                u64::try_from(shared.config.heartbeat_interval.as_millis())
                    .unwrap_or(u64::MAX)
                    .clamp(1, MAX_HEARTBEAT_INTERVAL_MS),
            ),
        };
        if !beat.holds.is_empty() {
            tokio::select! {
                () = send(&shared, &beat, &mut problem) => {}
                () = shared.cancel.cancelled() => return,
            }
        }
        tokio::select! {
            () = tokio::time::sleep(shared.config.heartbeat_interval) => {}
            () = shared.heartbeat_wake.notified() => {}
            () = shared.cancel.cancelled() => return,
        }
    }
}

async fn send(shared: &Shared, beat: &Heartbeat, problem: &mut Option<String>) {
    let api = shared.api();
    match api.heartbeat(beat).await {
        Ok(()) => {
            if problem.take().is_some() {
                tracing::info!("heartbeats accepted again");
            }
        }
        Err(e) if e.status() == Some(404) => {
            tracing::debug!("the server has no heartbeat endpoint (404); will keep trying");
        }
        Err(e) if unreachable(&e) => {
            shared.fail_over(api.base_url());
            tracing::debug!(error = %e, "heartbeat failed: server unreachable")
        }
        Err(e) => {
            let msg = e.to_string();
            if problem.as_deref() != Some(msg.as_str()) {
                tracing::warn!(error = %msg, "heartbeat refused");
            }
            *problem = Some(msg);
        }
    }
}

/// One holding per secret. When several handles of one secret disagree
/// (a typed one kept an older good value), the lowest version is
/// reported: the overlap gate must not think the old one unused.
pub(crate) fn holdings(slots: &[Arc<Slot>]) -> Vec<Holding> {
    let mut held: BTreeMap<SecretName, VersionNumber> = BTreeMap::new();
    for slot in slots {
        let v = slot.current().version;
        held.entry(slot.name().clone())
            .and_modify(|h| *h = (*h).min(v))
            .or_insert(v);
    }
    held.into_iter()
        .map(|(secret, version)| Holding {
            secret,
            version: Some(version),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use keyshift_core::SecretValue;

    use super::*;
    use crate::Snapshot;

    fn slot(name: &str, version: u64) -> Arc<Slot> {
        let snap = Snapshot {
            name: name.parse().unwrap(),
            version: VersionNumber(version),
            value: SecretValue::new("v".into()).unwrap(),
            seq: 0,
        };
        Arc::new(Slot::new(snap, Duration::from_secs(30), None))
    }

    #[test]
    fn each_secret_is_reported_once_with_its_lowest_held_version() {
        let holds = holdings(&[slot("b/x", 3), slot("a/y", 1), slot("b/x", 2)]);
        let got: Vec<(String, Option<u64>)> = holds
            .into_iter()
            .map(|h| (h.secret.to_string(), h.version.map(|v| v.0)))
            .collect();
        assert_eq!(
            got,
            vec![("a/y".to_owned(), Some(1)), ("b/x".to_owned(), Some(2))]
        );
    }
}
