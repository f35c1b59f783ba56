//! `keyshift drill`: real traffic through real rotations, failed requests
//! counted.
//!
//! ```text
//!  rotator ──rotate──► keyshift server ──SSE──► N consumers (SDK) ──requests──► service / Redis
//!                            │                        │
//!                            └── Promote start ──────►└── applied-at per version: propagation
//! ```

mod consumer;
mod report;
mod rotator;
mod service;
mod setup;

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
    let server = setup::DrillServer::start(args.server.as_deref(), token).await?;
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

/// Consumers, the service and the rotations; the report.
async fn traffic(
    args: &DrillArgs,
    server: &setup::DrillServer,
    target: &setup::Target,
) -> anyhow::Result<Report> {
    let stats = Arc::new(report::Stats::default());
    let stop = CancellationToken::new();
    let started = Instant::now();
    let service = match args.kind {
        DrillKind::ApiKey => Some(service::KeyService::start(server, &target.name).await?),
        DrillKind::Redis => None,
    };
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
        service.stop().await;
    }
    Ok(Report::new(
        args,
        &stats,
        &rotations?,
        &applied,
        started.elapsed(),
    ))
}
