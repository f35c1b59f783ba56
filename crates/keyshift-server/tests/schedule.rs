//! Scheduled rotations with a clock moved by hand (no sleeps standing in
//! for time), jitter spreading secrets on one schedule, and emergency
//! rotations.

mod support;

use std::sync::Arc;
use std::time::Duration;

use keyshift_core::Timestamp;
use keyshift_server::scheduler::{Clock, ManualClock};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{unique_secret, TestServer};

fn ts(v: &Value) -> Timestamp {
    let s = v.as_str().unwrap_or_else(|| panic!("not a timestamp: {v}"));
    Timestamp::from_system(humantime::parse_rfc3339(s).unwrap())
}

async fn status_of(server: &TestServer, name: &str) -> (Value, Value) {
    let (code, list) = server.call(Method::GET, "/v1/status", None).await;
    assert_eq!(code, StatusCode::OK, "{list}");
    let secret = list["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} not in status: {list}"));
    (secret, list)
}

/// Waits until the scheduler has looked at the clock's time `at` or later.
async fn scheduler_caught_up(server: &TestServer, at: Timestamp) {
    for _ in 0..400 {
        let (_, list) = server.call(Method::GET, "/v1/status", None).await;
        if list["scheduler_checked_at"].is_string() && ts(&list["scheduler_checked_at"]) >= at {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the scheduler never looked at {at}");
}

async fn rotations_of(server: &TestServer, name: &str) -> Vec<Value> {
    let (code, list) = server
        .call(Method::GET, &format!("/v1/rotations?secret={name}"), None)
        .await;
    assert_eq!(code, StatusCode::OK, "{list}");
    list["rotations"].as_array().unwrap().clone()
}

async fn create(server: &TestServer, name: &str, policy: Value) {
    let body = json!({"name": name, "kind": "api-key", "generate": true, "policy": policy});
    let (code, answer) = server.call(Method::POST, "/v1/secrets", Some(body)).await;
    assert_eq!(code, StatusCode::CREATED, "{answer}");
}

#[tokio::test]
async fn a_scheduled_rotation_starts_at_its_time_and_not_before() {
    let clock = Arc::new(ManualClock::new(Timestamp::from_system(
        std::time::SystemTime::now(),
    )));
    let for_server = clock.clone();
    let server = TestServer::start_with(move |c| c.clock(for_server.clone())).await;
    let name = unique_secret("sched");
    create(
        &server,
        &name,
        json!({"min_overlap": "0s", "schedule": {"every": "1h"}}),
    )
    .await;
    let (_, info) = server
        .call(Method::GET, &format!("/v1/secrets/{name}"), None)
        .await;
    let created = ts(&info["created_at"]);

    let (status, _) = status_of(&server, &name).await;
    let due = ts(&status["next_rotation"]);
    assert_eq!(due, created.saturating_add(Duration::from_secs(3600)));
    assert_eq!(status["next_rotation_by"], "schedule");

    // A minute before it is due: nothing starts.
    clock.advance(due.since(clock.now()) - Duration::from_secs(60));
    scheduler_caught_up(&server, clock.now()).await;
    assert!(rotations_of(&server, &name).await.is_empty());

    // At its time: it starts, at the scheduler's time, and succeeds.
    clock.advance(Duration::from_secs(60));
    let started_at = clock.now();
    scheduler_caught_up(&server, started_at).await;
    let rotations = rotations_of(&server, &name).await;
    assert_eq!(rotations.len(), 1, "exactly one rotation: {rotations:?}");
    let id = rotations[0]["id"].as_str().unwrap();
    assert!(id.starts_with("s-"), "a scheduled id: {id}");
    assert_eq!(ts(&rotations[0]["created_at"]), started_at);
    let done = server.wait_rotation(id).await;
    assert_eq!(done["status"], "succeeded", "{done}");

    // The next one is an interval after this one started; the scheduler
    // looking again at the same time starts nothing more.
    clock.advance(Duration::from_millis(1));
    scheduler_caught_up(&server, clock.now()).await;
    assert_eq!(rotations_of(&server, &name).await.len(), 1);
    let (status, _) = status_of(&server, &name).await;
    assert_eq!(
        ts(&status["next_rotation"]),
        started_at.saturating_add(Duration::from_secs(3600))
    );
    assert_eq!(status["last_rotation"]["id"], id);
}

#[tokio::test]
async fn secrets_on_one_schedule_spread_over_the_jitter_window() {
    let server = TestServer::start().await;
    let prefix = unique_secret("jit");
    let names: Vec<String> = (0..100).map(|i| format!("{prefix}/db-{i}")).collect();
    for name in &names {
        create(
            &server,
            name,
            json!({"schedule": {"every": "1h", "jitter": "10m"}}),
        )
        .await;
    }
    let (code, list) = server.call(Method::GET, "/v1/status", None).await;
    assert_eq!(code, StatusCode::OK);
    let window = Duration::from_secs(600);
    let mut buckets = [0u32; 5];
    let mut offsets = Vec::new();
    for s in list["secrets"].as_array().unwrap() {
        if !names.iter().any(|n| s["name"] == n.as_str()) {
            continue;
        }
        let (_, info) = server
            .call(
                Method::GET,
                &format!("/v1/secrets/{}", s["name"].as_str().unwrap()),
                None,
            )
            .await;
        let base = ts(&info["created_at"]).saturating_add(Duration::from_secs(3600));
        let due = ts(&s["next_rotation"]);
        assert!(due >= base, "never before its time");
        let offset = due.since(base);
        assert!(offset < window, "within the jitter window: {offset:?}");
        buckets[(offset.as_secs() / 120) as usize] += 1;
        offsets.push(offset);
    }
    assert_eq!(offsets.len(), 100);
    assert!(
        buckets.iter().all(|b| *b >= 5),
        "spread over the whole window, two minutes at a time: {buckets:?}"
    );
    let spread = offsets
        .iter()
        .max()
        .unwrap()
        .saturating_sub(*offsets.iter().min().unwrap());
    assert!(spread > Duration::from_secs(480), "{spread:?}");
}

#[tokio::test]
async fn an_emergency_rotation_is_immediate_and_audited_with_its_reason() {
    let server = TestServer::start().await;
    let name = unique_secret("leak");
    create(&server, &name, json!({"min_overlap": "1h"})).await;
    let path = format!("/v1/secrets/{name}:rotate");

    for (body, why) in [
        (json!({"emergency": "  "}), "needs a reason"),
        (
            json!({"emergency": "leaked", "strategy": "dual"}),
            "is immediate",
        ),
    ] {
        let (code, answer) = server.call(Method::POST, &path, Some(body)).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{answer}");
        assert!(answer.to_string().contains(why), "{answer}");
    }

    let (code, r) = server
        .call(
            Method::POST,
            &path,
            Some(json!({"emergency": "posted in a public repo"})),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{r}");
    assert_eq!(r["strategy"], "immediate");
    assert_eq!(r["emergency"], "posted in a public repo");
    // min_overlap is an hour: only an immediate rotation finishes now.
    let done = server.wait_rotation(r["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let phases = support::phases(&done);
    assert!(phases.contains(&"replace".to_owned()), "{phases:?}");
    assert!(!phases.contains(&"overlap".to_owned()), "{phases:?}");

    let (_, audit) = server
        .call(Method::GET, &format!("/v1/audit?secret={name}"), None)
        .await;
    let emergency = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "rotation.emergency")
        .unwrap_or_else(|| panic!("no emergency entry: {audit}"));
    assert!(
        emergency["detail"]
            .as_str()
            .unwrap()
            .contains("posted in a public repo"),
        "{emergency}"
    );
    assert_eq!(emergency["rotation"], r["id"]);
}

#[tokio::test]
async fn a_certificate_is_renewed_at_two_thirds_of_its_lifetime() {
    let clock = Arc::new(ManualClock::new(Timestamp::from_system(
        std::time::SystemTime::now(),
    )));
    let for_server = clock.clone();
    let server = TestServer::start_with(move |c| c.clock(for_server.clone())).await;
    let ca = unique_secret("ca");
    let (code, answer) = server
        .call(
            Method::POST,
            "/v1/secrets",
            Some(json!({"name": ca, "kind": "x509-ca", "target": {"common_name": "schedule test CA"}})),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{answer}");
    let leaf = unique_secret("leaf");
    let body = json!({
        "name": leaf, "kind": "x509", "policy": {"min_overlap": "0s"},
        "target": {"ca_secret": ca, "names": ["service.test"], "lifetime": "90days"},
    });
    let (code, answer) = server.call(Method::POST, "/v1/secrets", Some(body)).await;
    assert_eq!(code, StatusCode::CREATED, "{answer}");

    let (status, _) = status_of(&server, &leaf).await;
    assert_eq!(status["next_rotation_by"], "certificate-age", "{status}");
    let due = ts(&status["next_rotation"]);
    let two_thirds = clock.now().saturating_add(Duration::from_secs(60 * 86_400));
    // Within the leaf's backdating for clock skew (a minute or two).
    assert!(
        due <= two_thirds && two_thirds.since(due) < Duration::from_secs(300),
        "due {due}, two thirds of 90 days from now {two_thirds}"
    );

    clock.advance(due.since(clock.now()) - Duration::from_secs(60));
    scheduler_caught_up(&server, clock.now()).await;
    assert!(rotations_of(&server, &leaf).await.is_empty(), "not before");

    clock.advance(Duration::from_secs(61));
    scheduler_caught_up(&server, clock.now()).await;
    let rotations = rotations_of(&server, &leaf).await;
    // Oldest last: the renewal the certificate's age called for.
    let first = rotations.last().expect("a renewal started");
    assert!(first["id"].as_str().unwrap().starts_with("s-"), "{first}");
    let done = server.wait_rotation(first["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
}
