//! What the CLI's integration tests share: a `keyshift serve` process.
#![allow(dead_code)] // each test binary uses part of it

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// The `keyshift` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_keyshift");

/// A `keyshift serve` process, killed when dropped.
pub struct Serve {
    child: Child,
    /// Where it listens (`127.0.0.1:PORT`).
    pub addr: String,
    /// Its stderr, a line at a time.
    pub stderr: mpsc::Receiver<String>,
}

impl Serve {
    /// `keyshift serve` on `dir` (made by [`init`]) on a free port, with
    /// `args` more and `env` set; returns once it listens.
    pub fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Serve {
        Self::start_at(dir, "127.0.0.1:0", args, env)
    }

    /// [`start`](Self::start), listening on `listen` (`127.0.0.1:PORT`:
    /// a replica restarted on its old address).
    pub fn start_at(dir: &Path, listen: &str, args: &[&str], env: &[(&str, &str)]) -> Serve {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--data-dir"])
            .arg(dir)
            .args(["--listen", listen])
            .args(args)
            .env_remove("KEYSHIFT_MASTER_KEY")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn keyshift serve");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (addr_tx, addr_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let _ = addr_tx.send(addr.trim().to_owned());
                }
            }
        });
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (err_tx, err_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let _ = err_tx.send(line);
            }
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server printed its address");
        Serve {
            child,
            addr,
            stderr: err_rx,
        }
    }

    /// Waits for the test hook to report halting `at` a phase boundary.
    pub fn wait_for_halt(&self, at: &str) {
        let want = format!("halted at {at}");
        loop {
            let line = self
                .stderr
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("server never reached {at}"));
            if line.contains(&want) {
                return;
            }
        }
    }

    /// SIGKILL, reaped, and every line it wrote to stderr.
    pub fn stop(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The reader thread ends, and with it the channel, at the pipe's end.
        self.stderr.iter().collect()
    }

    /// SIGKILL, and reaped.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix
        self.child.wait().unwrap();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `keyshift init` of `dir`: the root token.
pub fn init(dir: &Path) -> String {
    init_env(dir, &[])
}

/// `keyshift init` of `dir` with its store at `store` (a PostgreSQL URL):
/// the root token.
pub fn init_with_store(dir: &Path, store: &str) -> String {
    init_env(dir, &[("KEYSHIFT_STORE", store)])
}

fn init_env(dir: &Path, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(["init", "--output", "json", "--data-dir"])
        .arg(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["root_token"].as_str().unwrap().to_owned()
}

/// A database of its own on the local PostgreSQL (through `psql`), for a
/// store that several replicas share; dropped on drop.
pub struct Database {
    admin: String,
    name: String,
    /// Its URL: the admin URL's server and user, this database.
    pub url: String,
}

impl Database {
    /// Creates it on the server of `admin` (a PostgreSQL URL).
    pub fn create(admin: &str) -> Database {
        let name = keyshift_testkit::unique_name("ks_replicas");
        psql(admin, &format!("CREATE DATABASE {name}"));
        let (base, query) = admin.split_once('?').unwrap_or((admin, ""));
        let (server, _) = base.rsplit_once('/').unwrap();
        let url = match query {
            "" => format!("{server}/{name}"),
            q => format!("{server}/{name}?{q}"),
        };
        Database {
            admin: admin.to_owned(),
            name,
            url,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        psql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn psql(url: &str, sql: &str) {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-tAqc", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The JSON report `keyshift drill --output json` printed.
pub fn drill_report(out: &std::process::Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "drill printed no JSON ({e}): stdout {stdout} stderr {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}
