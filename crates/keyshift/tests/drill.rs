//! `keyshift drill`: zero failed requests with the kind's own strategy, and
//! failures seen with `immediate` (the control run: a drill that cannot see
//! a failure proves nothing). Short runs against the real services; the
//! long ones are in docs/drill.md.

use std::process::Command;

use keyshift_testkit::{postgres_checks_passwords, service, Service};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_keyshift");

/// Consumers in every run.
const CONSUMERS: u64 = 4;

/// A drill of `kind` and what it needs: the services it talks to, and how
/// many SDK watchers note when each version arrived (every consumer, or
/// for `tls` the one service that holds the certificate).
struct Drill {
    kind: &'static str,
    args: Vec<String>,
    watchers: u64,
}

impl Drill {
    fn api_key() -> Drill {
        Drill {
            kind: "api-key",
            args: Vec::new(),
            watchers: CONSUMERS,
        }
    }

    fn redis() -> Option<Drill> {
        let url = service(Service::Redis)?;
        Some(Drill {
            kind: "redis",
            args: vec!["--redis".into(), url],
            watchers: CONSUMERS,
        })
    }

    fn postgres() -> Option<Drill> {
        let url = service(Service::Postgres)?;
        postgres_checks_passwords(&url).expect("make PostgreSQL check the drill's passwords");
        Some(Drill {
            kind: "postgres",
            args: vec!["--postgres".into(), url],
            watchers: CONSUMERS,
        })
    }

    fn mariadb() -> Option<Drill> {
        let url = service(Service::MariaDb)?;
        Some(Drill {
            kind: "mariadb",
            args: vec!["--mariadb".into(), url],
            watchers: CONSUMERS,
        })
    }

    fn tls() -> Drill {
        Drill {
            kind: "tls",
            args: Vec::new(),
            watchers: 1,
        }
    }

    /// Runs it: (exit code, JSON report).
    fn run(&self, strategy: Option<&str>, rotations: u64) -> (i32, Value) {
        let mut cmd = Command::new(BIN);
        cmd.args(["drill", "--kind", self.kind])
            .args(&self.args)
            .args(["--consumers", &CONSUMERS.to_string()])
            .args(["--rotations", &rotations.to_string(), "--overlap", "500ms"])
            .args(["--output", "json"])
            .env_remove("KEYSHIFT_TOKEN");
        if let Some(s) = strategy {
            cmd.args(["--strategy", s]);
        }
        let out = cmd.output().expect("run keyshift drill");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "drill printed no JSON ({e}): stdout {stdout} stderr {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), report)
    }

    /// With the kind's own strategy (`None`: the secret's policy, e.g.
    /// blue-green for PostgreSQL) no request fails.
    fn check_no_failure(&self, strategy: Option<&str>, expected: &str) {
        let (code, report) = self.run(strategy, 3);
        assert_eq!(report["failed_requests"], 0, "{report:#}");
        assert_eq!(report["rotations_completed"], 3, "{report:#}");
        assert_eq!(report["strategy"], expected, "{report:#}");
        assert!(report["requests"].as_u64().unwrap() > 100, "{report:#}");
        assert_eq!(
            report["propagation_ms"]["samples"],
            self.watchers * 3,
            "{} watchers x 3 rotations: {report:#}",
            self.watchers
        );
        // Every overlap lasted at least its window: the gate is checked
        // only once min_overlap has passed.
        let overlaps = &report["overlap_utilization"];
        assert_eq!(overlaps["overlaps"], 3, "{report:#}");
        let each = overlaps["each"].as_array().unwrap();
        assert_eq!(each.len(), 3, "{report:#}");
        assert!(
            each.iter().all(|o| o["ratio"].as_f64().unwrap() >= 1.0),
            "{report:#}"
        );
        assert_eq!(overlaps["allocated_s"], 0.5, "{report:#}");
        assert!(overlaps["mean"].as_f64().unwrap() >= 1.0, "{report:#}");
        assert!(
            overlaps["max"].as_f64().unwrap() >= overlaps["p50"].as_f64().unwrap(),
            "{report:#}"
        );
        assert_eq!(code, 0);
    }

    fn check_immediate_fails(&self) {
        let (code, report) = self.run(Some("immediate"), 5);
        assert!(
            report["failed_requests"].as_u64().unwrap() > 0,
            "immediate must break requests: {report:#}"
        );
        assert!(
            !report["errors"].as_array().unwrap().is_empty(),
            "{report:#}"
        );
        assert_eq!(report["strategy"], "immediate");
        assert_eq!(report["overlap_utilization"]["overlaps"], 0, "{report:#}");
        assert_eq!(report["overlap_utilization"]["mean"], Value::Null);
        assert_eq!(report["rotations_completed"], 5, "{report:#}");
        assert_eq!(code, 5, "failed requests exit 5");
    }
}

#[test]
fn api_key_drill_with_dual_fails_no_request() {
    Drill::api_key().check_no_failure(Some("dual"), "dual");
}

#[test]
fn api_key_drill_with_canary_fails_no_request() {
    Drill::api_key().check_no_failure(Some("canary"), "canary");
}

#[test]
fn api_key_drill_with_immediate_sees_failures() {
    Drill::api_key().check_immediate_fails();
}

#[test]
fn redis_drill_with_dual_fails_no_request() {
    if let Some(d) = Drill::redis() {
        d.check_no_failure(Some("dual"), "dual");
    }
}

#[test]
fn redis_drill_with_immediate_sees_failures() {
    if let Some(d) = Drill::redis() {
        d.check_immediate_fails();
    }
}

#[test]
fn postgres_drill_with_blue_green_fails_no_request() {
    if let Some(d) = Drill::postgres() {
        d.check_no_failure(None, "blue-green");
    }
}

#[test]
fn postgres_drill_with_immediate_sees_failures() {
    if let Some(d) = Drill::postgres() {
        d.check_immediate_fails();
    }
}

#[test]
fn mariadb_drill_with_dual_fails_no_request() {
    if let Some(d) = Drill::mariadb() {
        d.check_no_failure(None, "dual");
    }
}

#[test]
fn mariadb_drill_with_immediate_sees_failures() {
    if let Some(d) = Drill::mariadb() {
        d.check_immediate_fails();
    }
}

#[test]
fn tls_drill_with_dual_fails_no_request() {
    Drill::tls().check_no_failure(None, "dual");
}

#[test]
fn tls_drill_with_immediate_sees_failures() {
    Drill::tls().check_immediate_fails();
}

#[test]
fn drill_refuses_a_password_on_the_command_line() {
    let out = Command::new(BIN)
        .args(["drill", "--kind", "postgres", "--rotations", "1"])
        .args([
            "--postgres",
            "postgres://postgres:hunter2-not-a-secret@127.0.0.1:5432/postgres",
        ])
        .env_remove("KEYSHIFT_TOKEN")
        .output()
        .expect("run keyshift drill");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no password in the URL"), "{stderr}");
    assert!(
        !stderr.contains("hunter2"),
        "the password is never echoed: {stderr}"
    );
}
