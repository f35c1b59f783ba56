//! Counting, live progress and the final report.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use keyshift_core::api::RotationInfo;
use keyshift_core::report::overlap_length;
use keyshift_core::rotation::{Phase, Status};
use serde::Serialize;

use super::consumer::Applied;
use crate::cli::{DrillArgs, DrillKind, Output};

/// How many distinct error messages the report keeps.
const MAX_ERRORS: usize = 5;

/// Shared by every consumer.
#[derive(Default)]
pub struct Stats {
    requests: AtomicU64,
    failed: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Stats {
    /// Counts one request.
    pub fn record(&self, result: Result<(), String>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if let Err(message) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            // A poisoned lock only loses error texts, never counts.
            if let Ok(mut errors) = self.errors.lock() {
                if let Some(n) = errors.get_mut(&message) {
                    *n += 1;
                } else if errors.len() < MAX_ERRORS {
                    errors.insert(message, 1);
                }
            }
        }
    }
}

/// A live line on stderr (when it is a terminal).
pub struct Progress {
    bar: Option<ProgressBar>,
    stats: Arc<Stats>,
    done: AtomicU64,
    total: u32,
}

impl Progress {
    pub fn start(args: &DrillArgs, stats: &Arc<Stats>) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(u64::from(args.rotations));
            bar.set_style(
                ProgressStyle::with_template("{spinner} drill {pos}/{len} rotations  {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            stats: stats.clone(),
            done: AtomicU64::new(0),
            total: args.rotations,
        }
    }

    pub fn rotation_done(&self, r: &RotationInfo) {
        let requests = self.stats.requests.load(Ordering::Relaxed);
        let failed = self.stats.failed.load(Ordering::Relaxed);
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        match &self.bar {
            Some(bar) => {
                bar.inc(1);
                bar.set_message(format!("{requests} requests, {failed} failed"));
            }
            None => eprintln!(
                "drill: rotation {} {} ({}/{}), {requests} requests, {failed} failed",
                r.id,
                r.status.as_str(),
                done,
                self.total
            ),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Percentiles of propagation latency, in milliseconds.
#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub samples: usize,
}

/// How long each overlap lasted against the window allocated to it (the
/// policy's `min_overlap`, `--overlap`): 1.0 is an overlap that ended as
/// soon as it could; above, the gate held it while consumers moved.
#[derive(Debug, Serialize)]
pub struct OverlapUtilization {
    /// The window allocated to each overlap, in seconds.
    pub allocated_s: f64,
    /// Overlaps measured: those that ended (immediate has none).
    pub overlaps: usize,
    /// Used / allocated, over the overlaps; null when none was measured or
    /// nothing was allocated.
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub max: Option<f64>,
    /// The longest overlap, in seconds.
    pub longest_s: Option<f64>,
    /// Each overlap, in the order the rotations ran.
    pub each: Vec<OverlapUse>,
}

/// How long one rotation's overlap lasted.
#[derive(Debug, Serialize)]
pub struct OverlapUse {
    pub rotation: String,
    pub used_s: f64,
    /// Used / allocated; null when nothing was allocated.
    pub ratio: Option<f64>,
}

/// A distinct error and how often it happened.
#[derive(Debug, Serialize)]
pub struct ErrorCount {
    pub message: String,
    pub count: u64,
}

/// The drill's result; its JSON form is documented in docs/drill.md.
#[derive(Debug, Serialize)]
pub struct Report {
    pub kind: &'static str,
    pub strategy: String,
    pub consumers: u32,
    pub duration_s: f64,
    pub requests: u64,
    pub failed_requests: u64,
    pub requests_per_second: f64,
    pub errors: Vec<ErrorCount>,
    pub rotations_requested: u32,
    pub rotations_completed: u32,
    pub rotations_not_completed: Vec<String>,
    pub propagation_ms: Latency,
    pub overlap_utilization: OverlapUtilization,
}

impl Report {
    pub fn new(
        args: &DrillArgs,
        stats: &Stats,
        rotations: &[RotationInfo],
        applied: &[Applied],
        elapsed: Duration,
    ) -> Report {
        let requests = stats.requests.load(Ordering::Relaxed);
        let errors = stats
            .errors
            .lock()
            .map(|e| {
                e.iter()
                    .map(|(message, count)| ErrorCount {
                        message: message.clone(),
                        count: *count,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let completed = rotations
            .iter()
            .filter(|r| r.status == Status::Succeeded)
            .count();
        let not_completed = rotations
            .iter()
            .filter(|r| r.status != Status::Succeeded)
            .map(|r| {
                format!(
                    "{}: {} ({})",
                    r.id,
                    r.status.as_str(),
                    r.reason.as_deref().unwrap_or("-")
                )
            })
            .collect();
        Report {
            kind: kind_name(args.kind),
            strategy: rotations
                .first()
                .map_or_else(|| "-".to_owned(), |r| r.strategy.as_str().to_owned()),
            consumers: args.consumers,
            duration_s: round(elapsed.as_secs_f64()),
            requests,
            failed_requests: stats.failed.load(Ordering::Relaxed),
            requests_per_second: round(requests as f64 / elapsed.as_secs_f64().max(0.001)),
            errors,
            rotations_requested: args.rotations,
            rotations_completed: u32::try_from(completed).unwrap_or(u32::MAX),
            rotations_not_completed: not_completed,
            propagation_ms: propagation(rotations, applied),
            overlap_utilization: overlap_utilization(rotations, args.overlap),
        }
    }

    /// No failed request and every rotation completed.
    pub fn clean(&self) -> bool {
        self.failed_requests == 0 && self.rotations_completed == self.rotations_requested
    }

    pub fn print(&self, output: Output) -> anyhow::Result<()> {
        match output {
            Output::Json => println!("{}", serde_json::to_string_pretty(self)?),
            Output::Text => {
                let p = &self.propagation_ms;
                println!(
                    "drill {} ({}), {} consumers, {:.1} s",
                    self.kind, self.strategy, self.consumers, self.duration_s
                );
                println!(
                    "  requests             {} ({:.0}/s)",
                    self.requests, self.requests_per_second
                );
                println!("  failed requests      {}", self.failed_requests);
                println!(
                    "  rotations completed  {}/{}",
                    self.rotations_completed, self.rotations_requested
                );
                println!(
                    "  propagation          p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
                    p.p50, p.p99, p.max, p.samples
                );
                let o = &self.overlap_utilization;
                if let (Some(mean), Some(max)) = (o.mean, o.max) {
                    println!(
                        "  overlap utilization  mean {mean:.2}, max {max:.2} of {:.1} s allocated ({} overlaps)",
                        o.allocated_s, o.overlaps
                    );
                }
                for e in &self.errors {
                    println!("  error x{}: {}", e.count, e.message);
                }
                for r in &self.rotations_not_completed {
                    println!("  not completed: {r}");
                }
            }
        }
        Ok(())
    }
}

/// The kind as `--kind` spells it.
fn kind_name(kind: DrillKind) -> &'static str {
    match kind {
        DrillKind::ApiKey => "api-key",
        DrillKind::Redis => "redis",
        DrillKind::Postgres => "postgres",
        DrillKind::MariaDb => "mariadb",
        DrillKind::Tls => "tls",
    }
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// For each completed Promote, the time until each consumer held the new
/// version, measured from the start of Promote; a canary's share, which
/// got it before Promote, from the start of the Canary phase.
fn propagation(rotations: &[RotationInfo], applied: &[Applied]) -> Latency {
    let mut samples: Vec<f64> = Vec::new();
    for r in rotations {
        let (Some(new), Some(promote)) = (
            r.new_version,
            r.phases.iter().find(|p| p.phase == Phase::Promote),
        ) else {
            continue;
        };
        let start = promote.started_at.to_system();
        let canary = r.phases.iter().find(|p| p.phase == Phase::Canary);
        for consumer in applied {
            if let Some((_, at)) = consumer.iter().find(|(v, _)| *v == new) {
                let from = match canary {
                    Some(c) if *at < start => c.started_at.to_system(),
                    _ => start,
                };
                let ms = at
                    .duration_since(from)
                    .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
                samples.push(ms);
            }
        }
    }
    samples.sort_by(f64::total_cmp);
    let pct = |q: f64| percentile(&samples, q).unwrap_or(0.0);
    Latency {
        p50: pct(0.50),
        p99: pct(0.99),
        max: pct(1.0),
        samples: samples.len(),
    }
}

/// The `q` quantile (nearest rank) of `sorted`, rounded; None when empty.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(round(sorted[i]))
}

/// Each ended Overlap phase's length against `allocated`.
fn overlap_utilization(rotations: &[RotationInfo], allocated: Duration) -> OverlapUtilization {
    let window = allocated.as_secs_f64();
    let ratio = |used: f64| (window > 0.0).then(|| round(used / window));
    let each: Vec<OverlapUse> = rotations
        .iter()
        .filter_map(|r| Some((r, overlap_length(&r.phases)?.as_secs_f64())))
        .map(|(r, used)| OverlapUse {
            rotation: r.id.to_string(),
            used_s: round(used),
            ratio: ratio(used),
        })
        .collect();
    let mut used: Vec<f64> = each.iter().map(|o| o.used_s).collect();
    used.sort_by(f64::total_cmp);
    let ratios: Vec<f64> = if window > 0.0 {
        used.iter().map(|u| u / window).collect()
    } else {
        Vec::new()
    };
    let mean =
        (!ratios.is_empty()).then(|| round(ratios.iter().sum::<f64>() / ratios.len() as f64));
    OverlapUtilization {
        allocated_s: round(window),
        overlaps: used.len(),
        mean,
        p50: percentile(&ratios, 0.50),
        max: percentile(&ratios, 1.0),
        longest_s: used.last().copied(),
        each,
    }
}
