//! `keyshift drill`: zero failed requests with `dual`, and failures seen
//! with `immediate` (the control run: a drill that cannot see a failure
//! proves nothing). Short runs; the long ones are benchmarks (BENCHMARKS.md).

use std::process::Command;

use keyshift_testkit::{service, Service};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_keyshift");

fn drill(kind: &str, strategy: &str, rotations: &str) -> (i32, Value) {
    let out = Command::new(BIN)
        .args(["drill", "--kind", kind, "--strategy", strategy])
        .args([
            "--consumers",
            "4",
            "--rotations",
            rotations,
            "--overlap",
            "500ms",
        ])
        .args(["--output", "json"])
        .env_remove("KEYSHIFT_TOKEN")
        .output()
        .expect("run keyshift drill");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "drill printed no JSON ({e}): stdout {stdout} stderr {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

fn check_dual(kind: &str) {
    let (code, report) = drill(kind, "dual", "3");
    assert_eq!(report["failed_requests"], 0, "{report:#}");
    assert_eq!(report["rotations_completed"], 3, "{report:#}");
    assert!(report["requests"].as_u64().unwrap() > 100, "{report:#}");
    assert_eq!(
        report["propagation_ms"]["samples"], 12,
        "4 consumers x 3 rotations: {report:#}"
    );
    assert_eq!(code, 0);
}

fn check_immediate(kind: &str) {
    let (code, report) = drill(kind, "immediate", "5");
    assert!(
        report["failed_requests"].as_u64().unwrap() > 0,
        "immediate must break requests: {report:#}"
    );
    assert!(
        !report["errors"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
    assert_eq!(report["strategy"], "immediate");
    assert_eq!(code, 5, "failed requests exit 5");
}

#[test]
fn api_key_drill_with_dual_fails_no_request() {
    check_dual("api-key");
}

#[test]
fn api_key_drill_with_immediate_sees_failures() {
    check_immediate("api-key");
}

#[test]
fn redis_drill_with_dual_fails_no_request() {
    if service(Service::Redis).is_none() {
        return;
    }
    check_dual("redis");
}

#[test]
fn redis_drill_with_immediate_sees_failures() {
    if service(Service::Redis).is_none() {
        return;
    }
    check_immediate("redis");
}
