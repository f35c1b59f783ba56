//! What keyshift's process benchmarks share: a throw-away `keyshift serve`
//! process, its memory, and latency summaries. The benchmarks are the
//! binaries in `src/bin`, each run by a script in `bench/` (see
//! BENCHMARKS.md).
#![deny(missing_docs)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context as _};
use keyshift_client::ApiClient;
use keyshift_core::{SecretValue, Timestamp};

/// A `keyshift serve` process on a throw-away data dir, killed when
/// dropped.
pub struct Server {
    child: Child,
    bin: PathBuf,
    /// Shared with its replicas; deleted with the last of them.
    dir: Arc<tempfile::TempDir>,
    store: Option<String>,
    /// `http://127.0.0.1:PORT`.
    pub addr: String,
    /// The root token.
    pub token: SecretValue,
}

/// The `keyshift` binary: `KEYSHIFT_BIN`, or beside this benchmark's.
pub fn keyshift_bin() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("KEYSHIFT_BIN") {
        return Ok(bin.into());
    }
    let me = std::env::current_exe()?;
    let bin = me.with_file_name("keyshift");
    if !bin.exists() {
        bail!(
            "no keyshift binary at {} (build it with `cargo build --release -p keyshift`, or set KEYSHIFT_BIN)",
            bin.display()
        );
    }
    Ok(bin)
}

impl Server {
    /// `keyshift init` and `keyshift serve` on a free port, with the store
    /// at `store` (default the embedded SQLite). Returns once it listens.
    pub fn start(store: Option<&str>) -> anyhow::Result<Server> {
        let bin = keyshift_bin()?;
        let dir = tempfile::tempdir()?;
        let mut init = Command::new(&bin);
        init.args(["init", "--output", "json", "--data-dir"])
            .arg(dir.path().join("data"));
        if let Some(url) = store {
            init.env("KEYSHIFT_STORE", url);
        }
        let out = init.output().context("running keyshift init")?;
        if !out.status.success() {
            bail!("keyshift init: {}", String::from_utf8_lossy(&out.stderr));
        }
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let token = report["root_token"]
            .as_str()
            .ok_or_else(|| anyhow!("keyshift init printed no root token"))?;
        let token = SecretValue::new(token.to_owned())?;
        let (child, addr) = serve(&bin, dir.path(), store)?;
        Ok(Server {
            child,
            bin,
            dir: Arc::new(dir),
            store: store.map(str::to_owned),
            addr,
            token,
        })
    }

    /// Stops the process and starts it again on the same data: how long
    /// until it answered `/v1/health`.
    pub fn restart(&mut self) -> anyhow::Result<Duration> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let started = Instant::now();
        let (child, addr) = serve(&self.bin, self.dir.path(), self.store.as_deref())?;
        self.child = child;
        self.addr = addr;
        Ok(started.elapsed())
    }

    /// Another replica: `keyshift serve` on the same data dir and store
    /// (a PostgreSQL one: the embedded store is for one server), on a
    /// port of its own.
    pub fn replica(&self) -> anyhow::Result<Server> {
        if self.store.is_none() {
            bail!("replicas need a PostgreSQL store");
        }
        let (child, addr) = serve(&self.bin, self.dir.path(), self.store.as_deref())?;
        Ok(Server {
            child,
            bin: self.bin.clone(),
            dir: self.dir.clone(),
            store: self.store.clone(),
            addr,
            token: self.token.clone(),
        })
    }

    /// An API client with the root token.
    pub fn api(&self) -> anyhow::Result<ApiClient> {
        Ok(ApiClient::new(&self.addr, Some(self.token.clone()))?)
    }

    /// The server's resident memory, in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| anyhow!("no VmRSS for the server"))
    }

    /// One sample of `/metrics`: the value of the series named exactly
    /// `series`, if it is there.
    pub async fn metric(&self, series: &str) -> anyhow::Result<Option<f64>> {
        let page = reqwest::get(format!("{}/metrics", self.addr))
            .await?
            .text()
            .await?;
        Ok(page.lines().find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        }))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `keyshift serve` on `dir`'s data; its logs (warnings only) go to
/// `dir/serve.log`.
fn serve(bin: &Path, dir: &Path, store: Option<&str>) -> anyhow::Result<(Child, String)> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("serve.log"))?;
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(log);
    if let Some(url) = store {
        cmd.env("KEYSHIFT_STORE", url);
    }
    let mut child = cmd.spawn().context("starting keyshift serve")?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        match lines.next() {
            Some(line) => {
                if let Some(addr) = line?.split("listening on ").nth(1) {
                    break format!("http://{}", addr.trim());
                }
            }
            None => bail!(
                "keyshift serve ended before listening; see {}",
                dir.join("serve.log").display()
            ),
        }
    };
    // Keep reading, so the pipe never fills.
    std::thread::spawn(move || lines.for_each(drop));
    Ok((child, addr))
}

/// Milliseconds from `t` (a server timestamp) to `at`.
pub fn ms_since(t: Timestamp, at: SystemTime) -> f64 {
    at.duration_since(t.to_system())
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// p50, p99 and max of samples, nearest rank.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// How many samples.
    pub n: usize,
    /// The smallest.
    pub min: f64,
    /// The median.
    pub p50: f64,
    /// The 99th percentile.
    pub p99: f64,
    /// The largest.
    pub max: f64,
}

impl Summary {
    /// The summary of `samples` (None when empty).
    pub fn of(mut samples: Vec<f64>) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i]
        };
        Some(Summary {
            n: samples.len(),
            min: samples[0],
            p50: at(0.5),
            p99: at(0.99),
            max: at(1.0),
        })
    }
}

/// One line about the machine, for BENCHMARKS.md.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    format!("{cores} cores ({cpu})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_nearest_rank() {
        let s = Summary::of((1..=100).map(f64::from).collect()).unwrap();
        assert_eq!((s.n, s.p50, s.p99, s.max), (100, 50.0, 99.0, 100.0));
        assert_eq!(Summary::of(Vec::new()), None);
    }
}
