//! One drill consumer: an SDK client watching the secret, sending requests
//! with whatever value `get()` returns (or, for the database kinds, with the
//! pool the SDK's `HotSwap` rebuilt from it), and noting when each version
//! arrived. A TLS consumer holds no secret: it checks what the service
//! presents.

use std::sync::Arc;
use std::time::SystemTime;

use keyshift_client::{Client, HotSwap, Watched};
use keyshift_core::VersionNumber;
use sqlx::{MySqlPool, PgPool};
use tokio_util::sync::CancellationToken;

use super::report::Stats;
use super::setup::{DrillServer, Fixture, Target};
use super::{mariadb, postgres, tls, Service};

/// When a consumer started holding each version.
pub type Applied = Vec<(VersionNumber, SystemTime)>;

pub struct Consumer {
    /// `None` for a TLS consumer: it holds no secret, the service does.
    client: Option<Client>,
    traffic: tokio::task::JoinHandle<()>,
    watcher: Option<tokio::task::JoinHandle<Applied>>,
}

enum Channel {
    Http {
        http: reqwest::Client,
        url: String,
        watched: Watched,
    },
    Redis {
        con: redis::aio::MultiplexedConnection,
        user: String,
        key: String,
        watched: Watched,
    },
    Postgres(HotSwap<PgPool>),
    MariaDb(HotSwap<MySqlPool>),
    Tls(tls::Caller),
}

impl Consumer {
    pub async fn start(
        i: u32,
        server: &DrillServer,
        target: &Target,
        service: Option<&Service>,
        stats: &Arc<Stats>,
        stop: &CancellationToken,
    ) -> anyhow::Result<Consumer> {
        if let (Fixture::Tls(fixture), Some(Service::Tls(tls, accepted))) =
            (&target.fixture, service)
        {
            let channel = Channel::Tls(fixture.caller(tls.addr, accepted)?);
            let traffic = tokio::spawn(send_requests(channel, stats.clone(), stop.clone()));
            return Ok(Consumer {
                client: None,
                traffic,
                watcher: None,
            });
        }
        let client = server
            .client_builder(i as usize)
            .consumer_id(format!("drill-{i}"))
            .build()?;
        let watched = client.watch(&target.name).await?;
        let channel = match (&target.fixture, service) {
            (Fixture::ApiKey, Some(Service::Keys(s))) => Channel::Http {
                http: reqwest::Client::new(),
                url: s.url.clone(),
                watched: watched.clone(),
            },
            (Fixture::Redis { url, user }, _) => Channel::Redis {
                con: redis::Client::open(url.as_str())?
                    .get_multiplexed_async_connection()
                    .await?,
                user: user.clone(),
                key: format!("keyshift:drill:{}:{i}", target.name),
                watched: watched.clone(),
            },
            (Fixture::Postgres(pg), _) => {
                Channel::Postgres(postgres::pool(watched.clone(), &pg.consumer_options()).await?)
            }
            (Fixture::MariaDb(my), _) => {
                Channel::MariaDb(mariadb::pool(watched.clone(), &my.consumer_options()).await?)
            }
            _ => anyhow::bail!("drill target has no traffic channel"),
        };
        let traffic = tokio::spawn(send_requests(channel, stats.clone(), stop.clone()));
        let watcher = tokio::spawn(note_versions(watched, stop.clone()));
        Ok(Consumer {
            client: Some(client),
            traffic,
            watcher: Some(watcher),
        })
    }

    /// Waits for the consumer's tasks and returns when it held each version
    /// (nothing for a consumer that holds no secret).
    pub async fn join(self) -> Applied {
        let _ = self.traffic.await;
        let applied = match self.watcher {
            Some(w) => w.await.unwrap_or_default(),
            None => Applied::new(),
        };
        if let Some(client) = self.client {
            client.close();
        }
        applied
    }
}

async fn send_requests(mut channel: Channel, stats: Arc<Stats>, stop: CancellationToken) {
    while !stop.is_cancelled() {
        let result = match &mut channel {
            Channel::Http { http, url, watched } => {
                let snapshot = watched.get();
                http.get(url.as_str())
                    .header("x-api-key", snapshot.value.expose())
                    .send()
                    .await
                    .map_err(|e| format!("request failed: {e}"))
                    .and_then(|r| match r.status().as_u16() {
                        200 => Ok(()),
                        s => Err(format!("HTTP {s} with version {}", snapshot.version)),
                    })
            }
            Channel::Redis {
                con,
                user,
                key,
                watched,
            } => {
                let snapshot = watched.get();
                redis::pipe()
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
                    })
            }
            Channel::Postgres(pool) => postgres::request(pool).await,
            Channel::MariaDb(pool) => mariadb::request(pool).await,
            Channel::Tls(caller) => caller.request().await,
        };
        stats.record(result);
    }
}

/// Notes when `watched` started holding each version, until `stop`.
pub async fn note_versions(watched: Watched, stop: CancellationToken) -> Applied {
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
