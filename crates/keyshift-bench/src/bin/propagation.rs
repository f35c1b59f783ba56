//! Propagation: N SDK watchers (each its own `keyshift_client::Client`, so
//! its own connections) watch one `api-key` secret on a `keyshift serve`
//! process; each of R rotations is promoted and the time from the start of
//! Promote (the rotation's record) to each watcher holding the new version
//! is measured: p50, p99 and max over all watchers and rotations. The
//! secret's long overlap keeps the SDK's polling fallback slow, so the push
//! is what is measured; each overlap is then ended with `advance`. Also the
//! server's memory per idle watcher: its RSS with the N watchers connected
//! and idle, less its RSS before them, over N.
//!
//!   cargo run --release -p keyshift-bench --bin propagation -- --watchers 1000,10000 [--rotations 5]
//!
//! Needs a file descriptor per watcher (two with `--http1`) in this process
//! and in the server's: see bench/propagation.sh.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context as _};
use clap::Parser;
use keyshift_bench::{machine, ms_since, Server, Summary};
use keyshift_client::{Client, ConnectOptions, Watched};
use keyshift_core::api::{CreateSecret, StartRotation};
use keyshift_core::rotation::{Phase, Status};
use keyshift_core::{Policy, SecretKind, SecretName, VersionNumber};
use tokio::sync::{mpsc, Semaphore};

#[derive(Parser)]
struct Args {
    /// How many watchers, one run per number (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    watchers: Vec<usize>,
    /// Rotations measured per run.
    #[arg(long, default_value_t = 5)]
    rotations: u32,
    /// How often each watcher sends its heartbeat.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    heartbeat: Duration,
    /// Watchers connecting at once while they start.
    #[arg(long, default_value_t = 100)]
    connect_concurrency: usize,
    /// HTTP/1.1 instead of HTTP/2: each watcher then holds two
    /// connections (its event stream, and its reads and heartbeats).
    #[arg(long)]
    http1: bool,
    /// The store: default the embedded SQLite; a postgres:// URL (an empty
    /// database) for --across-replicas.
    #[arg(long, env = "KEYSHIFT_BENCH_STORE")]
    store: Option<String>,
    /// Two replicas on the store: the watchers watch the second, the
    /// rotations run on the first (events cross through the store's
    /// LISTEN/NOTIFY). Needs --store.
    #[arg(long, requires = "store")]
    across_replicas: bool,
}

/// This process's limit of open files (the server it starts inherits it).
fn open_files_limit() -> Option<usize> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

/// The overlap of the watched secret.
const OVERLAP: Duration = Duration::from_secs(60);

struct Run {
    watchers: usize,
    propagation: Summary,
    rss_before_kib: u64,
    rss_idle_kib: u64,
    connect_s: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut runs = Vec::new();
    for &n in &args.watchers {
        eprintln!("propagation: {n} watchers");
        runs.push(run(&args, n).await?);
    }
    println!("propagation, {}", machine());
    println!(
        "{} rotations per run, promote (start of Promote, from the rotation record) to each SDK watcher holding the new version; heartbeats every {:?}; {}",
        args.rotations,
        args.heartbeat,
        if args.http1 {
            "HTTP/1.1, two connections per watcher"
        } else {
            "HTTP/2 (h2c), one connection per watcher"
        }
    );
    if args.across_replicas {
        println!(
            "two replicas on one PostgreSQL store: rotations on the first, watchers on the second"
        );
    }
    println!();
    println!("| watchers | min ms | p50 ms | p99 ms | max ms | samples | server RSS idle / before | per idle watcher | connect all |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &runs {
        let per = (r.rss_idle_kib.saturating_sub(r.rss_before_kib)) as f64 / r.watchers as f64;
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.1} / {:.1} MiB | {:.1} KiB | {:.1} s |",
            r.watchers,
            r.propagation.min,
            r.propagation.p50,
            r.propagation.p99,
            r.propagation.max,
            r.propagation.n,
            r.rss_idle_kib as f64 / 1024.0,
            r.rss_before_kib as f64 / 1024.0,
            per,
            r.connect_s,
        );
    }
    Ok(())
}

async fn run(args: &Args, n: usize) -> anyhow::Result<Run> {
    // Each watcher holds one HTTP/2 connection, or two HTTP/1.1 ones (its
    // event stream, and reads and heartbeats), on each side.
    let per_watcher = if args.http1 { 2 } else { 1 };
    let needed = per_watcher * n + 200;
    if let Some(limit) = open_files_limit().filter(|l| *l < needed) {
        bail!(
            "{n} watchers need about {needed} open files in this process and in the server's; the limit is {limit} (raise it with `ulimit -n`; the hard limit is `ulimit -Hn`)"
        );
    }
    let server = Server::start(args.store.as_deref())?;
    let replica = if args.across_replicas {
        Some(server.replica()?)
    } else {
        None
    };
    // Where the watchers are: the second replica, or the one server.
    let watched_on = replica.as_ref().unwrap_or(&server);
    let api = server.api()?;
    let name: SecretName = "bench/propagation".parse()?;
    api.create_secret(&CreateSecret {
        name: name.clone(),
        kind: SecretKind::ApiKey,
        // A long overlap keeps the SDK's polling fallback at its default
        // 30 s (it polls at most every min_overlap / 2): what is measured is
        // the push. Each rotation's overlap is ended by `advance`.
        policy: Policy {
            min_overlap: OVERLAP,
            ..Policy::default()
        },
        target: serde_json::json!({}),
        value: None,
        generate: true,
    })
    .await?;
    // Warm the server up, then take its memory before any watcher.
    for _ in 0..100 {
        api.get_secret(&name).await?;
    }
    let rss_before_kib = watched_on.rss_kib()?;

    // Start the watchers, a bounded number connecting at once.
    let started = std::time::Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel::<(VersionNumber, SystemTime)>();
    let gate = Arc::new(Semaphore::new(args.connect_concurrency));
    let mut setups = Vec::with_capacity(n);
    for i in 0..n {
        let gate = gate.clone();
        let (addr, token, name) = (
            watched_on.addr.clone(),
            watched_on.token.clone(),
            name.clone(),
        );
        let heartbeat = args.heartbeat;
        let connect = if args.http1 {
            ConnectOptions::default()
        } else {
            ConnectOptions::default().http2_prior_knowledge()
        };
        setups.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let client = Client::builder(&addr)
                .token(token)
                .consumer_id(format!("bench-{i}"))
                .heartbeat_interval(heartbeat)
                .connect(connect)
                .build()?;
            let watched = client.watch(&name).await?;
            anyhow::Ok((client, watched))
        }));
    }
    let mut clients = Vec::with_capacity(n);
    for s in setups {
        let (client, watched) = s.await??;
        tokio::spawn(report_changes(watched, tx.clone()));
        clients.push(client);
    }
    drop(tx);
    // Every watcher's event stream is open when the server counts them.
    loop {
        let open = watched_on.metric("keyshift_watchers").await?.unwrap_or(0.0);
        if open as usize >= n {
            break;
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!("only {open} of {n} event streams opened in 5 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let connect_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle_kib = watched_on.rss_kib()?;

    let mut samples = Vec::new();
    for _ in 0..args.rotations {
        let rotation = api.rotate(&name, &StartRotation::default()).await?;
        let mut arrived = Vec::with_capacity(n);
        let mut new_version = None;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while arrived.len() < n {
            let (version, at) = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .with_context(|| format!("{} of {n} watchers moved within 60 s", arrived.len()))?
                .context("watchers ended")?;
            let new = match new_version {
                Some(v) => v,
                None => {
                    let r = api.get_rotation(&rotation.id).await?;
                    let v = r
                        .new_version
                        .context("a promoted rotation has a new version")?;
                    new_version = Some(v);
                    v
                }
            };
            if version == new {
                arrived.push(at);
            }
        }
        // End the overlap (every watcher has moved), wait for the rotation
        // to end, then read when Promote started.
        let mut advanced = false;
        let record = loop {
            if !advanced {
                advanced = api
                    .advance(&rotation.id, Some("bench".to_owned()))
                    .await
                    .is_ok();
            }
            let r = api.get_rotation(&rotation.id).await?;
            if r.status != Status::Running {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if record.status != Status::Succeeded {
            bail!(
                "rotation {} ended {:?}: {:?}",
                record.id,
                record.status,
                record.reason
            );
        }
        let promote = record
            .phases
            .iter()
            .find(|p| p.phase == Phase::Promote)
            .context("the rotation has a Promote phase")?
            .started_at;
        samples.extend(arrived.into_iter().map(|at| ms_since(promote, at)));
    }
    for c in &clients {
        c.close();
    }
    Ok(Run {
        watchers: n,
        propagation: Summary::of(samples).context("no samples")?,
        rss_before_kib,
        rss_idle_kib,
        connect_s,
    })
}

/// Sends (version, when) each time `watched` changes.
async fn report_changes(watched: Watched, tx: mpsc::UnboundedSender<(VersionNumber, SystemTime)>) {
    let mut changes = watched.changes();
    while changes.changed().await.is_ok() {
        let at = SystemTime::now();
        if tx.send((watched.get().version, at)).is_err() {
            return;
        }
    }
}
