//! The overlap gate on consumers' evidence: a live consumer that still
//! holds the old version holds the revocation past `min_overlap`; when it
//! moves, or goes stale, the rotation proceeds; at `max_overlap`,
//! `on_timeout` revokes (naming the stragglers) or holds; an operator may
//! force it. Uses of the old version reported by verifiers, and sessions
//! of the old role PostgreSQL sees, hold it too. Consumers here are real
//! heartbeats and usage reports to the real API.

mod support;
mod target_kinds;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::Connection;
use support::{start_rotation, unique_secret, TestServer};
use target_kinds::{Kind, Postgres};

async fn create(server: &TestServer, policy: Value) -> String {
    let name = unique_secret("gate");
    let body = json!({"name": name, "kind": "api-key", "generate": true, "policy": policy});
    let (status, answer) = server.call(Method::POST, "/v1/secrets", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    name
}

async fn heartbeat(server: &TestServer, consumer: &str, name: &str, version: u64) {
    let beat = json!({"consumer_id": consumer, "holds": [{"secret": name, "version": version}]});
    let (status, answer) = server
        .call(Method::POST, "/v1/consumers/heartbeat", Some(beat))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
}

async fn rotation(server: &TestServer, id: &str) -> Value {
    let (status, body) = server
        .call(Method::GET, &format!("/v1/rotations/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Polls until the gate has held `checks` times or more (each check
/// records `checked_at`; bounded).
async fn wait_held(server: &TestServer, id: &str) -> Value {
    for _ in 0..400 {
        let r = rotation(server, id).await;
        if r["gate"]["held"].is_string() {
            return r;
        }
        assert_eq!(r["status"], "running", "ended before the gate held: {r}");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the gate of {id} never held");
}

/// Polls until the gate has been checked again after `seen` (bounded).
async fn next_check(server: &TestServer, id: &str, seen: &Value) -> Value {
    for _ in 0..400 {
        let r = rotation(server, id).await;
        if r["gate"]["checked_at"] != seen["gate"]["checked_at"] {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the gate of {id} was not checked again");
}

/// `(consumer id, status)` of every consumer of `name`.
async fn consumer_statuses(server: &TestServer, name: &str) -> Vec<(String, String)> {
    let (status, list) = server
        .call(Method::GET, &format!("/v1/secrets/{name}:consumers"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let field = |k: &str| c[k].as_str().unwrap().to_owned();
            (field("consumer_id"), field("status"))
        })
        .collect()
}

async fn audit_actions(server: &TestServer, name: &str) -> Vec<Value> {
    let (_, audit) = server
        .call(Method::GET, &format!("/v1/audit?secret={name}"), None)
        .await;
    audit["entries"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_consumer_on_the_old_version_holds_the_gate_until_it_moves() {
    let server = TestServer::start().await;
    let name = create(
        &server,
        json!({"min_overlap": "0s", "monitoring_cycle": "200ms", "consumer_stale_after": "1h"}),
    )
    .await;
    heartbeat(&server, "stuck-pod", &name, 1).await;
    heartbeat(&server, "moved-pod", &name, 1).await;
    let id = start_rotation(&server, &name).await;

    let held = wait_held(&server, &id).await;
    assert_eq!(held["phase"], "overlap", "{held}");
    let stragglers = held["gate"]["stragglers"].as_array().unwrap();
    assert_eq!(stragglers.len(), 2, "{held}");
    assert!(held["gate"]["held"].as_str().unwrap().contains("stuck-pod"));

    heartbeat(&server, "moved-pod", &name, 2).await;
    let statuses = consumer_statuses(&server, &name).await;
    assert_eq!(
        statuses,
        [
            ("moved-pod".to_owned(), "migrated".to_owned()),
            ("stuck-pod".to_owned(), "pending".to_owned())
        ]
    );
    // Still held by the one that did not move, check after check.
    let again = next_check(&server, &id, &held).await;
    assert_eq!(again["phase"], "overlap", "{again}");
    assert_eq!(again["gate"]["stragglers"], json!(["stuck-pod"]), "{again}");

    heartbeat(&server, "stuck-pod", &name, 2).await;
    let done = server.wait_rotation(&id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["gate"]["passed_by"], "gate");
    let audit = audit_actions(&server, &name).await;
    assert!(
        audit.iter().any(|e| e["action"] == "rotation.gate"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn a_stale_consumer_stops_holding_the_gate() {
    let server = TestServer::start().await;
    let name = create(
        &server,
        json!({"min_overlap": "0s", "monitoring_cycle": "200ms", "consumer_stale_after": "1s"}),
    )
    .await;
    heartbeat(&server, "gone-pod", &name, 1).await;
    let id = start_rotation(&server, &name).await;
    let held = wait_held(&server, &id).await;
    assert_eq!(held["gate"]["stragglers"], json!(["gone-pod"]), "{held}");
    assert_eq!(
        consumer_statuses(&server, &name).await,
        [("gone-pod".to_owned(), "pending".to_owned())]
    );
    // No more heartbeats: a second later it is stale and the gate opens.
    let done = server.wait_rotation(&id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["gate"]["passed_by"], "gate");
    assert_eq!(
        consumer_statuses(&server, &name).await,
        [("gone-pod".to_owned(), "stale".to_owned())]
    );
}

#[tokio::test]
async fn a_consumer_that_misses_its_heartbeats_stops_holding_the_gate() {
    let server = TestServer::start().await;
    // Stale after 3 missed heartbeats of its announced 200 ms; the 1 h
    // fallback is for consumers that announce nothing.
    let name = create(
        &server,
        json!({"min_overlap": "0s", "monitoring_cycle": "200ms",
               "stale_after_missed": 3, "consumer_stale_after": "1h"}),
    )
    .await;
    let beat = json!({"consumer_id": "gone-pod", "interval_ms": 200,
                      "holds": [{"secret": name, "version": 1}]});
    let sent = std::time::SystemTime::now();
    let (status, answer) = server
        .call(Method::POST, "/v1/consumers/heartbeat", Some(beat))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    heartbeat(&server, "silent-pod", &name, 2).await;
    let id = start_rotation(&server, &name).await;
    let held = wait_held(&server, &id).await;
    assert_eq!(held["gate"]["stragglers"], json!(["gone-pod"]), "{held}");

    let done = server.wait_rotation(&id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(
        phase_start(&done, "revoke") >= sent + std::time::Duration::from_millis(590),
        "held until three heartbeats were missed: {done}"
    );
    assert_eq!(
        consumer_statuses(&server, &name).await,
        [
            ("gone-pod".to_owned(), "stale".to_owned()),
            ("silent-pod".to_owned(), "migrated".to_owned())
        ]
    );
    // An announced interval must be sane.
    let beat =
        json!({"consumer_id": "x", "interval_ms": 0, "holds": [{"secret": name, "version": 2}]});
    let (status, _) = server
        .call(Method::POST, "/v1/consumers/heartbeat", Some(beat))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn on_timeout_revoke_names_the_stragglers_and_hold_waits_for_the_operator() {
    let server = TestServer::start().await;
    let revoke = create(
        &server,
        json!({"min_overlap": "0s", "max_overlap": "1s", "on_timeout": "revoke",
               "monitoring_cycle": "200ms", "consumer_stale_after": "1h"}),
    )
    .await;
    heartbeat(&server, "stuck-pod", &revoke, 1).await;
    let id = start_rotation(&server, &revoke).await;
    let done = server.wait_rotation(&id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["gate"]["passed_by"], "max_overlap", "{done}");
    assert_eq!(done["gate"]["stragglers"], json!(["stuck-pod"]), "{done}");
    let audit = audit_actions(&server, &revoke).await;
    let gate = audit
        .iter()
        .find(|e| e["action"] == "rotation.gate")
        .expect("the gate's audit entry");
    assert!(
        gate["detail"].as_str().unwrap().contains("stuck-pod"),
        "{gate}"
    );

    let hold = create(
        &server,
        json!({"min_overlap": "0s", "max_overlap": "300ms", "on_timeout": "hold",
               "monitoring_cycle": "100ms", "consumer_stale_after": "1h"}),
    )
    .await;
    heartbeat(&server, "stuck-pod", &hold, 1).await;
    let id = start_rotation(&server, &hold).await;
    // Held past max_overlap: checked after the timeout, still in Overlap.
    loop {
        let r = wait_held(&server, &id).await;
        let checked = r["gate"]["checked_at"].as_str().unwrap().to_owned();
        let promoted = r["phases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["phase"] == "promote")
            .unwrap()["ended_at"]
            .as_str()
            .unwrap()
            .to_owned();
        let timeout =
            humantime::parse_rfc3339(&promoted).unwrap() + std::time::Duration::from_millis(300);
        if humantime::parse_rfc3339(&checked).unwrap() >= timeout {
            assert_eq!(r["phase"], "overlap", "hold keeps it: {r}");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (status, advanced) = server
        .call(Method::POST, &format!("/v1/rotations/{id}:advance"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{advanced}");
    let done = server.wait_rotation(&id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["gate"]["passed_by"], "operator");
    let audit = audit_actions(&server, &hold).await;
    let advance = audit
        .iter()
        .find(|e| e["action"] == "rotation.advance")
        .expect("the operator's advance is audited");
    assert!(
        advance["detail"].as_str().unwrap().contains("stuck-pod"),
        "{advance}"
    );
    // Advancing a finished rotation is a conflict.
    let (status, _) = server
        .call(Method::POST, &format!("/v1/rotations/{id}:advance"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

/// The start of `phase` in `r`'s history.
fn phase_start(r: &Value, phase: &str) -> std::time::SystemTime {
    let record = r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == phase)
        .unwrap_or_else(|| panic!("no {phase} in {r}"));
    humantime::parse_rfc3339(record["started_at"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn reported_uses_of_the_old_version_hold_the_gate_for_a_full_cycle() {
    let server = TestServer::start().await;
    let cycle = std::time::Duration::from_millis(500);
    let name = create(
        &server,
        json!({"min_overlap": "0s", "monitoring_cycle": "500ms", "consumer_stale_after": "1h"}),
    )
    .await;
    let report = |version: u64| json!({"reporter": "verifier-1", "counts": [{"secret": name, "version": version, "count": 3}]});
    let id = start_rotation(&server, &name).await;
    // A caller no consumer registry knows of keeps using version 1.
    let held = loop {
        let (status, answer) = server
            .call(Method::POST, "/v1/usage", Some(report(1)))
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
        let r = rotation(&server, &id).await;
        if r["gate"]["held"].is_string() {
            break r;
        }
        assert_eq!(r["status"], "running", "ended before the gate held: {r}");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };
    let why = held["gate"]["held"].as_str().unwrap();
    assert!(why.contains("version 1 was used"), "{held}");
    assert!(held["gate"]["migration"]["old_uses"].as_u64().unwrap() >= 3);
    assert_eq!(
        held["gate"]["stragglers"],
        json!(null),
        "no consumer is named: {held}"
    );

    // Uses of the new version do not hold it; the last use of the old one
    // does, for one full cycle.
    let (status, _) = server
        .call(Method::POST, "/v1/usage", Some(report(1)))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let last_old_use = std::time::SystemTime::now();
    let (status, _) = server
        .call(Method::POST, "/v1/usage", Some(report(2)))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let done = server.wait_rotation(&id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["gate"]["passed_by"], "gate", "{done}");
    assert_eq!(done["gate"]["migration"]["old_uses"], 0, "{done}");
    assert!(
        phase_start(&done, "revoke") >= last_old_use + cycle,
        "revoked less than a cycle after the last use: {done}"
    );
}

#[tokio::test]
async fn an_open_postgres_session_of_the_old_role_holds_the_gate() {
    let Some(pg) = Postgres::new(true).await else {
        return;
    };
    let server = TestServer::start().await;
    let name = target_kinds::create(
        &server,
        &pg,
        json!({"min_overlap": "0s", "monitoring_cycle": "300ms", "consumer_stale_after": "1h"}),
    )
    .await;
    let old = target_kinds::value(&server, &name, "label=current").await;
    let session = pg.session(&old).await;
    let id = start_rotation(&server, &name).await;

    let held = wait_held(&server, &id).await;
    assert_eq!(held["phase"], "overlap", "{held}");
    assert!(
        held["gate"]["held"]
            .as_str()
            .unwrap()
            .contains("1 open session(s) of version 1"),
        "{held}"
    );
    assert_eq!(held["gate"]["migration"]["old_sessions"], 1, "{held}");
    // Held again at the next check, while the session stays open.
    let again = next_check(&server, &id, &held).await;
    assert_eq!(again["phase"], "overlap", "{again}");
    assert!(again["gate"]["held"].is_string(), "{again}");

    session.close().await.unwrap();
    let done = server.wait_rotation(&id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["gate"]["passed_by"], "gate", "{done}");
    assert_eq!(done["gate"]["migration"]["old_sessions"], 0, "{done}");
    assert!(
        !pg.logs_in(&old).await,
        "the old role is refused after revoke"
    );
}
