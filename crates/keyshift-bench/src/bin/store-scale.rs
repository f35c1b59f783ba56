//! Scale of the store: SECRETS secrets with VERSIONS versions each, loaded
//! through the API into a `keyshift serve` process on the embedded SQLite
//! store or on PostgreSQL (`--store postgres://...`); then the server is
//! restarted and READS reads of random secrets' current values are timed
//! (most miss the server's read cache: the store answers them). Reports the
//! load time, the restart time, the reads' median and p99, and the
//! server's memory.
//!
//!   cargo run --release -p keyshift-bench --bin store-scale -- [--store URL] [--secrets 100000]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use futures::{StreamExt as _, TryStreamExt as _};
use keyshift_bench::{machine, Server, Summary};
use keyshift_client::{ApiClient, Selector};
use keyshift_core::api::{AddVersion, CreateSecret};
use keyshift_core::{Label, Policy, SecretKind, SecretName, SecretValue};
use rand::Rng as _;

#[derive(Parser)]
struct Args {
    /// The store: default the embedded SQLite; a postgres:// URL (an empty
    /// database) for PostgreSQL.
    #[arg(long, env = "KEYSHIFT_BENCH_STORE")]
    store: Option<String>,
    /// Secrets to load.
    #[arg(long, default_value_t = 100_000)]
    secrets: usize,
    /// Versions of each.
    #[arg(long, default_value_t = 3)]
    versions: usize,
    /// Reads timed after the restart.
    #[arg(long, default_value_t = 20_000)]
    reads: usize,
    /// Requests in flight at once, loading and reading.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
}

fn name(i: usize) -> anyhow::Result<SecretName> {
    Ok(format!("scale/team-{}/svc-{i}", i % 100).parse()?)
}

fn value(i: usize, v: usize) -> anyhow::Result<SecretValue> {
    Ok(SecretValue::new(format!(
        "value-{i}-{v}-{}",
        "x".repeat(32)
    ))?)
}

async fn load_one(api: &ApiClient, i: usize, versions: usize) -> anyhow::Result<()> {
    let name = name(i)?;
    api.create_secret(&CreateSecret {
        name: name.clone(),
        kind: SecretKind::Static,
        policy: Policy::default(),
        target: serde_json::json!({}),
        value: Some(value(i, 1)?),
        generate: false,
    })
    .await?;
    for v in 2..=versions {
        api.add_version(
            &name,
            &AddVersion {
                value: Some(value(i, v)?),
                generate: false,
                labels: None,
            },
        )
        .await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let engine = if args.store.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let mut server = Server::start(args.store.as_deref())?;
    let api = server.api()?;

    let done = AtomicUsize::new(0);
    let started = Instant::now();
    futures::stream::iter(0..args.secrets)
        .map(|i| {
            let (api, done) = (&api, &done);
            async move {
                load_one(api, i, args.versions).await?;
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n % 10_000 == 0 {
                    eprintln!(
                        "store-scale ({engine}): {n} secrets loaded in {:.0?}",
                        started.elapsed()
                    );
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(args.concurrency)
        .try_collect::<()>()
        .await?;
    let load = started.elapsed();
    let rss_loaded = server.rss_kib()?;

    let restart = server.restart()?;
    let api = server.api()?;
    let picks: Vec<usize> = {
        let mut rng = rand::thread_rng();
        (0..args.reads)
            .map(|_| rng.gen_range(0..args.secrets))
            .collect()
    };
    let latencies: Vec<f64> = futures::stream::iter(picks)
        .map(|i| {
            let api = &api;
            async move {
                let name = name(i)?;
                let t = Instant::now();
                let v = api
                    .get_value(&name, Selector::Label(Label::Current))
                    .await?;
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                anyhow::ensure!(
                    v.info.version.0 == args.versions as u64,
                    "{name}: wrong version"
                );
                anyhow::Ok(ms)
            }
        })
        .buffer_unordered(args.concurrency)
        .try_collect()
        .await?;
    let reads = Summary::of(latencies).context("no reads")?;
    let rss_read = server.rss_kib()?;

    let mib = |kib: u64| kib as f64 / 1024.0;
    println!("store scale ({engine}), {}", machine());
    println!();
    println!("| measure | {engine} |");
    println!("|---|---|");
    println!(
        "| load {} secrets x {} versions through the API ({} in flight) | {:.1} s ({:.0} writes/s) |",
        args.secrets,
        args.versions,
        args.concurrency,
        load.as_secs_f64(),
        (args.secrets * args.versions) as f64 / load.as_secs_f64()
    );
    println!("| server RSS after loading | {:.1} MiB |", mib(rss_loaded));
    println!("| restart until listening | {:.2} s |", secs(restart));
    println!(
        "| read of a random secret's current value, median / p99 ({} reads, {} in flight) | {:.2} / {:.2} ms |",
        reads.n, args.concurrency, reads.p50, reads.p99
    );
    println!("| server RSS after the reads | {:.1} MiB |", mib(rss_read));
    Ok(())
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
