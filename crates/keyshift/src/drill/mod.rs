//! `keyshift drill`: real traffic through real rotations, failed requests
//! counted.
//!
//! ```text
//!  rotator ──rotate──► keyshift server ──SSE──► N consumers (SDK) ──requests──► service / Redis /
//!                            │                        │                        PostgreSQL / MariaDB
//!                            └── Promote start ──────►└── applied-at per version: propagation
//! ```
//!
//! For `tls` the SDK client is in the service (it serves the certificate);
//! the consumers make TLS handshakes against it.
//!
//! Layout: `setup` (server, secret, per-kind fixtures in `postgres`,
//! `mariadb`, `tls`), `service` (api-key), `consumer`, `rotator`, `report`.

mod consumer;
mod mariadb;
mod postgres;
mod report;
mod rotator;
mod service;
mod setup;
mod tls;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use keyshift_core::SecretValue;
use tokio_util::sync::CancellationToken;

use crate::cli::{DrillArgs, DrillKind};
use crate::exit;

pub use report::Report;

/// Runs the drill.
pub async fn run(args: &DrillArgs, token: Option<SecretValue>) -> anyhow::Result<ExitCode> {
    let server = setup::DrillServer::start(&args.server, token).await?;
    let target = setup::Target::create(args, &server).await?;
    // The throw-away secret and Redis user go away whatever happens.
    let result = traffic(args, &server, &target).await;
    target.cleanup(&server).await;
    server.stop().await;
    let report = result?;
    report.print(args.output.output)?;
    Ok(exit::code(if report.clean() {
        exit::SUCCESS
    } else {
        exit::DRILL_FAILURES
    }))
}

/// What the consumers send their requests to, when it runs in the drill.
pub enum Service {
    /// The api-key service, checking keys with the SDK's `KeyRing`.
    Keys(service::KeyService),
    /// The TLS service, and the accepted certificates its consumers check.
    Tls(tls::TlsService, tls::AcceptedLeaves),
}

impl Service {
    async fn start(
        args: &DrillArgs,
        server: &setup::DrillServer,
        target: &setup::Target,
        stop: &CancellationToken,
    ) -> anyhow::Result<Option<Service>> {
        Ok(match args.kind {
            DrillKind::ApiKey => Some(Service::Keys(
                service::KeyService::start(server, &target.name, args.overlap).await?,
            )),
            DrillKind::Tls => {
                let service = tls::TlsService::start(server, &target.name).await?;
                // The consumers' revocation check follows the secret's
                // events through a client of its own, as a separate
                // process would.
                let client = server
                    .client_builder(0)
                    .consumer_id("drill-tls-verifier")
                    .build()?;
                let events = client.watch(&target.name).await?.events();
                let accepted = tls::AcceptedLeaves::start(
                    server.api.clone(),
                    target.name.clone(),
                    events,
                    stop.clone(),
                )
                .await;
                let accepted = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        service.stop().await;
                        return Err(e);
                    }
                };
                // The client lives as long as the watch: until `stop`.
                let closing = stop.clone();
                tokio::spawn(async move {
                    closing.cancelled().await;
                    client.close();
                });
                Some(Service::Tls(service, accepted))
            }
            DrillKind::Redis | DrillKind::Postgres | DrillKind::MariaDb => None,
        })
    }

    /// Stops it; what it held when (for `tls`, the service holds the
    /// secret).
    async fn stop(self) -> Option<consumer::Applied> {
        match self {
            Service::Keys(s) => {
                s.stop().await;
                None
            }
            Service::Tls(s, _) => Some(s.stop().await),
        }
    }
}

/// Consumers, the service and the rotations; the report.
async fn traffic(
    args: &DrillArgs,
    server: &setup::DrillServer,
    target: &setup::Target,
) -> anyhow::Result<Report> {
    let stats = Arc::new(report::Stats::default());
    let stop = CancellationToken::new();
    let started = Instant::now();
    let service = Service::start(args, server, target, &stop).await?;
    let mut consumers = Vec::new();
    for i in 0..args.consumers {
        let consumer =
            consumer::Consumer::start(i, server, target, service.as_ref(), &stats, &stop)
                .await
                .with_context(|| format!("starting consumer {i}"));
        match consumer {
            Ok(c) => consumers.push(c),
            Err(e) => {
                stop.cancel();
                for c in consumers {
                    c.join().await;
                }
                if let Some(service) = service {
                    service.stop().await;
                }
                return Err(e);
            }
        }
    }
    let progress = report::Progress::start(args, &stats);
    let rotations = rotator::rotate(args, server, target, &progress).await;
    // Let the last rotation's traffic run for a moment, then stop.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    let mut applied = Vec::new();
    for c in consumers {
        applied.push(c.join().await);
    }
    progress.finish();
    if let Some(service) = service {
        applied.extend(service.stop().await);
    }
    Ok(Report::new(
        args,
        &stats,
        &rotations?,
        &applied,
        started.elapsed(),
    ))
}
