//! Rotation cost: a full `dual` rotation of an `api-key` secret with zero
//! waits (min_overlap 0), RUNS times one after the other: median and p99
//! from the rotation's own record (creation to the start of Done); then
//! SECRETS different secrets rotated at once: the time from the first
//! rotation's creation to the last one's end.
//!
//!   cargo run --release -p keyshift-bench --bin rotation-cost -- [--runs 100] [--secrets 100]

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use keyshift_bench::{machine, Server, Summary};
use keyshift_client::ApiClient;
use keyshift_core::api::{CreateSecret, RotationInfo, StartRotation};
use keyshift_core::rotation::Status;
use keyshift_core::{Policy, SecretKind, SecretName};

#[derive(Parser)]
struct Args {
    /// Rotations of one secret, one after the other.
    #[arg(long, default_value_t = 100)]
    runs: u32,
    /// Secrets rotated at once.
    #[arg(long, default_value_t = 100)]
    secrets: u32,
}

/// No waits: the overlap ends at once (there are no consumers).
fn no_wait_policy() -> Policy {
    Policy {
        min_overlap: Duration::ZERO,
        monitoring_cycle: Duration::from_millis(10),
        ..Policy::default()
    }
}

async fn create(api: &ApiClient, name: &SecretName) -> anyhow::Result<()> {
    api.create_secret(&CreateSecret {
        name: name.clone(),
        kind: SecretKind::ApiKey,
        policy: no_wait_policy(),
        target: serde_json::json!({}),
        value: None,
        generate: true,
    })
    .await?;
    Ok(())
}

/// Starts a rotation of `name` and polls it until it ends.
async fn rotate(api: &ApiClient, name: &SecretName) -> anyhow::Result<RotationInfo> {
    let started = api.rotate(name, &StartRotation::default()).await?;
    loop {
        let r = api.get_rotation(&started.id).await?;
        match r.status {
            Status::Running => tokio::time::sleep(Duration::from_millis(2)).await,
            Status::Succeeded => return Ok(r),
            other => bail!("rotation {} ended {other:?}: {:?}", r.id, r.reason),
        }
    }
}

/// Milliseconds from the rotation's creation to its end (Done entered).
fn length_ms(r: &RotationInfo) -> f64 {
    r.phases.last().map_or(0.0, |p| {
        p.started_at.since(r.created_at).as_secs_f64() * 1000.0
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = Server::start(None)?;
    let api = server.api()?;

    let name: SecretName = "bench/rotation-cost".parse()?;
    create(&api, &name).await?;
    // One unmeasured rotation warms the server up.
    rotate(&api, &name).await?;
    let mut lengths = Vec::new();
    for _ in 0..args.runs {
        lengths.push(length_ms(&rotate(&api, &name).await?));
    }
    let one = Summary::of(lengths).expect("at least one run");

    let names: Vec<SecretName> = (0..args.secrets)
        .map(|i| format!("bench/many-{i}").parse())
        .collect::<Result<_, _>>()?;
    for n in &names {
        create(&api, n).await?;
    }
    let wall = Instant::now();
    let all = futures::future::try_join_all(names.iter().map(|n| rotate(&api, n))).await?;
    let wall = wall.elapsed();
    let first = all.iter().map(|r| r.created_at).min().expect("rotations");
    let last = all
        .iter()
        .filter_map(|r| r.phases.last().map(|p| p.started_at))
        .max()
        .expect("rotations");
    let span_ms = last.since(first).as_secs_f64() * 1000.0;

    println!("rotation cost, {}", machine());
    println!();
    println!("| measure | value | goal |");
    println!("|---|---|---|");
    println!(
        "| one `dual` api-key rotation, median of {} | {:.1} ms | under 50 ms: {} |",
        one.n,
        one.p50,
        if one.p50 < 50.0 { "met" } else { "missed" }
    );
    println!("| same, p99 | {:.1} ms | |", one.p99);
    println!("| same, max | {:.1} ms | |", one.max);
    println!(
        "| {} secrets rotated at once: first start to last end | {:.0} ms ({:.1} rotations/s) | |",
        args.secrets,
        span_ms,
        f64::from(args.secrets) / (span_ms / 1000.0)
    );
    println!(
        "| same, wall clock of the client (with 2 ms polling) | {:.0} ms | |",
        wall.as_secs_f64() * 1000.0
    );
    Ok(())
}
