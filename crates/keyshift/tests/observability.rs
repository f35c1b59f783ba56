//! What operators see of a drill run against a `keyshift serve` process:
//! `/metrics` has the rotation, phase and overlap series with the drill's
//! counts, `keyshift report --output json` gives the five health figures,
//! and with `--log-format json` every line a rotation logs carries its id.

mod support;

use std::collections::{HashMap, HashSet};
use std::process::Command;

use serde_json::Value;
use support::{init, Serve, BIN};

const ROTATIONS: u64 = 3;
const CONSUMERS: u64 = 4;

/// The samples of a Prometheus text page: `name{labels}` → value.
fn samples(page: &str) -> HashMap<String, f64> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn sample(all: &HashMap<String, f64>, series: &str) -> f64 {
    *all.get(series).unwrap_or_else(|| {
        let mut names: Vec<&String> = all.keys().collect();
        names.sort();
        panic!("no series {series} in /metrics; it has {names:#?}")
    })
}

fn keyshift(token: &str, addr: &str, args: &[&str]) -> Value {
    let out = Command::new(BIN)
        .args(args)
        .args(["--output", "json", "--addr", &format!("http://{addr}")])
        .env("KEYSHIFT_TOKEN", token)
        .output()
        .expect("run keyshift");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "keyshift {args:?}: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[test]
fn metrics_report_and_json_logs_after_a_drill() {
    let dir = tempfile::tempdir().unwrap();
    let token = init(dir.path());
    let server = Serve::start(dir.path(), &["--log-format", "json"], &[]);
    let addr = server.addr.clone();

    let drill = keyshift(
        &token,
        &addr,
        &[
            "drill",
            "--kind",
            "api-key",
            "--consumers",
            &CONSUMERS.to_string(),
            "--rotations",
            &ROTATIONS.to_string(),
            "--overlap",
            "500ms",
            "--server",
            &format!("http://{addr}"),
        ],
    );
    assert_eq!(drill["failed_requests"], 0, "{drill:#}");
    assert_eq!(drill["rotations_completed"], ROTATIONS, "{drill:#}");

    // /metrics needs no token.
    let page = reqwest::blocking::get(format!("http://{addr}/metrics"))
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.text())
        .expect("GET /metrics");
    let m = samples(&page);
    let n = ROTATIONS as f64;
    let k = r#"kind="api-key""#;
    assert_eq!(
        sample(
            &m,
            &format!(r#"keyshift_rotations_started_total{{{k},strategy="dual"}}"#)
        ),
        n
    );
    assert_eq!(
        sample(
            &m,
            &format!(r#"keyshift_rotations_total{{{k},strategy="dual",outcome="succeeded"}}"#)
        ),
        n
    );
    assert_eq!(sample(&m, "keyshift_rotations_running"), 0.0);
    assert_eq!(sample(&m, "keyshift_rotation_success_ratio"), 1.0);
    for phase in [
        "precheck",
        "generate",
        "dual_accept",
        "promote",
        "overlap",
        "revoke",
    ] {
        assert_eq!(
            sample(
                &m,
                &format!(
                    r#"keyshift_rotation_phase_duration_seconds_count{{{k},phase="{phase}"}}"#
                )
            ),
            n,
            "phase {phase}"
        );
    }
    // Every overlap is counted, and lasted at least its 500 ms window:
    // none used half of it or less.
    assert_eq!(
        sample(
            &m,
            &format!("keyshift_rotation_overlap_utilization_count{{{k}}}")
        ),
        n
    );
    assert_eq!(
        sample(
            &m,
            &format!(r#"keyshift_rotation_overlap_utilization_bucket{{{k},le="0.5"}}"#)
        ),
        0.0
    );
    let overlap_s = sample(&m, &format!("keyshift_rotation_overlap_seconds_sum{{{k}}}"));
    assert!(overlap_s >= 0.5 * n, "overlaps summed to {overlap_s} s");
    assert_eq!(
        sample(
            &m,
            &format!(r#"keyshift_rotation_time_to_revoke_seconds_count{{{k},strategy="dual"}}"#)
        ),
        n
    );
    assert_eq!(
        sample(
            &m,
            &format!("keyshift_rotation_migration_velocity_per_minute_count{{{k}}}")
        ),
        n
    );
    // The drill's consumers watched, and its service read `:accepted`.
    let watches = sample(
        &m,
        r#"keyshift_http_requests_total{method="GET",route="/v1/watch",status="200"}"#,
    );
    assert!(watches >= CONSUMERS as f64, "{watches} watch requests");
    assert!(
        m.keys().any(|s| s.starts_with(
            r#"keyshift_http_request_duration_seconds_count{method="GET",route="/v1/secrets/{name}:accepted"}"#
        )),
        "{page}"
    );
    assert!(
        !page.contains("drill"),
        "a secret's name reached a label: {page}"
    );

    // The report over the same rotations.
    let report = keyshift(&token, &addr, &["report", "--since", "1h"]);
    assert_eq!(report["rotations"], ROTATIONS, "{report:#}");
    assert_eq!(report["succeeded"], ROTATIONS, "{report:#}");
    assert_eq!(report["success_rate"], 1.0, "{report:#}");
    assert_eq!(report["incidents_per_rotation"], 0.0, "{report:#}");
    let mttr = report["mean_time_to_rotate_s"].as_f64().unwrap();
    assert!(
        mttr >= 0.5,
        "time to rotate {mttr} s is less than the overlap"
    );
    let util = report["overlap_utilization"].as_f64().unwrap();
    let drill_util = drill["overlap_utilization"]["mean"].as_f64().unwrap();
    assert!(
        (util - drill_util).abs() < 0.01,
        "report says {util}, the drill {drill_util}"
    );
    let velocity = report["migration_velocity_per_min"].as_f64().unwrap();
    assert!(velocity > 0.0, "{report:#}");

    // JSON logs: each phase change is a JSON line in its rotation's span.
    let lines = server.stop();
    let ids: HashSet<String> = drill["overlap_utilization"]["each"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["rotation"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len() as u64, ROTATIONS);
    let mut phase_lines = 0u64;
    let mut seen = HashSet::new();
    for line in lines {
        let v: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["target"] != "keyshift_server::orchestrator::driver" {
            continue;
        }
        let id = v["span"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("a rotation's line without its id: {line}"));
        assert!(ids.contains(id), "{line}");
        seen.insert(id.to_owned());
        if v["fields"]["message"] == "phase" {
            phase_lines += 1;
        }
    }
    assert_eq!(seen, ids);
    // Precheck → Generate → DualAccept → Promote → Overlap → Revoke → Done.
    assert_eq!(phase_lines, 6 * ROTATIONS, "phase lines");
}
