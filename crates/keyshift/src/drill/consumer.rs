//! One drill consumer: an SDK client watching the secret, sending requests
//! with whatever value `get()` returns, and noting when each version
//! arrived.

use std::sync::Arc;
use std::time::SystemTime;

use keyshift_client::{Client, Watched};
use keyshift_core::VersionNumber;
use tokio_util::sync::CancellationToken;

use super::report::Stats;
use super::service::KeyService;
use super::setup::{DrillServer, Target};

/// When a consumer started holding each version.
pub type Applied = Vec<(VersionNumber, SystemTime)>;

pub struct Consumer {
    client: Client,
    traffic: tokio::task::JoinHandle<()>,
    watcher: tokio::task::JoinHandle<Applied>,
}

enum Channel {
    Http {
        http: reqwest::Client,
        url: String,
    },
    Redis {
        con: redis::aio::MultiplexedConnection,
        user: String,
        key: String,
    },
}

impl Consumer {
    pub async fn start(
        i: u32,
        server: &DrillServer,
        target: &Target,
        service: Option<&KeyService>,
        stats: &Arc<Stats>,
        stop: &CancellationToken,
    ) -> anyhow::Result<Consumer> {
        let client = Client::builder(&server.addr)
            .token(server.token.clone())
            .consumer_id(format!("drill-{i}"))
            .build()?;
        let watched = client.watch(&target.name).await?;
        let channel = match (service, &target.redis) {
            (Some(s), _) => Channel::Http {
                http: reqwest::Client::new(),
                url: s.url.clone(),
            },
            (None, Some((url, user))) => Channel::Redis {
                con: redis::Client::open(url.as_str())?
                    .get_multiplexed_async_connection()
                    .await?,
                user: user.clone(),
                key: format!("keyshift:drill:{}:{i}", target.name),
            },
            (None, None) => anyhow::bail!("drill target has no traffic channel"),
        };
        let traffic = tokio::spawn(send_requests(
            channel,
            watched.clone(),
            stats.clone(),
            stop.clone(),
        ));
        let watcher = tokio::spawn(note_versions(watched, stop.clone()));
        Ok(Consumer {
            client,
            traffic,
            watcher,
        })
    }

    /// Waits for the consumer's tasks and returns when it held each version.
    pub async fn join(self) -> Applied {
        let _ = self.traffic.await;
        let applied = self.watcher.await.unwrap_or_default();
        self.client.close();
        applied
    }
}

async fn send_requests(
    mut channel: Channel,
    watched: Watched,
    stats: Arc<Stats>,
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        let snapshot = watched.get();
        let result = match &mut channel {
            Channel::Http { http, url } => http
                .get(url.as_str())
                .header("x-api-key", snapshot.value.expose())
                .send()
                .await
                .map_err(|e| format!("request failed: {e}"))
                .and_then(|r| match r.status().as_u16() {
                    200 => Ok(()),
                    s => Err(format!("HTTP {s} with version {}", snapshot.version)),
                }),
            Channel::Redis { con, user, key } => redis::pipe()
                .cmd("AUTH")
                .arg(user.as_str())
                .arg(snapshot.value.expose())
                .ignore()
                .cmd("INCR")
                .arg(key.as_str())
                .ignore()
                .query_async::<()>(con)
                .await
                .map_err(|e| match e.code() {
                    Some(code) => format!("redis {code} with version {}", snapshot.version),
                    None => format!("redis {:?} with version {}", e.kind(), snapshot.version),
                }),
        };
        stats.record(result);
    }
}

async fn note_versions(watched: Watched, stop: CancellationToken) -> Applied {
    let mut applied = vec![(watched.get().version, SystemTime::now())];
    let mut changes = watched.changes();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return applied,
            changed = changes.changed() => {
                if changed.is_err() {
                    return applied;
                }
                let at = SystemTime::now();
                let version = watched.get().version;
                if applied.last().map(|(v, _)| *v) != Some(version) {
                    applied.push((version, at));
                }
            }
        }
    }
}
