//! `GET /v1/watch`: events with per-secret sequence numbers, resume with
//! `Last-Event-ID`, and scope checks.

mod support;

use std::time::Duration;

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{unique_secret, TestServer};

/// Reads SSE events (id, data) from a response until `n` arrived (bounded).
async fn read_events(resp: reqwest::Response, n: usize) -> Vec<(i64, Value)> {
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while events.len() < n {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("events arrive within 10 s")
            .expect("stream open")
            .unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut id = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(v) = line
                    .strip_prefix("id: ")
                    .or_else(|| line.strip_prefix("id:"))
                {
                    id = v.trim().parse().ok();
                }
                if let Some(v) = line
                    .strip_prefix("data: ")
                    .or_else(|| line.strip_prefix("data:"))
                {
                    data = serde_json::from_str(v.trim()).ok();
                }
            }
            if let (Some(id), Some(data)) = (id, data) {
                events.push((id, data));
            }
        }
    }
    events
}

async fn watch(server: &TestServer, names: &str, last_id: Option<i64>) -> reqwest::Response {
    let mut req = server
        .http
        .get(server.url("/v1/watch"))
        .query(&[("names", names)])
        .bearer_auth(&server.token);
    if let Some(id) = last_id {
        req = req.header("Last-Event-ID", id.to_string());
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp
}

#[tokio::test]
async fn a_rotation_streams_label_changes_in_sequence_and_resumes_after_a_disconnect() {
    let server = TestServer::start().await;
    let name = unique_secret("watch");
    let prefix = name.rsplit_once('/').unwrap().0.to_owned() + "/*";
    let live = watch(&server, &prefix, None).await;

    let (status, _) = server
        .call(
            Method::POST,
            "/v1/secrets",
            Some(json!({"name": name, "kind": "api-key", "generate": true, "policy": {"min_overlap": "0s"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, rotation) = server
        .call(Method::POST, &format!("/v1/secrets/{name}:rotate"), None)
        .await;
    let done = server.wait_rotation(rotation["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded");

    // created, v1 added, v2 added (pending), v2 active, labels moved,
    // v1 revoked: at least 6 events, all of this secret, seq increasing.
    let events = read_events(live, 6).await;
    let seqs: Vec<u64> = events
        .iter()
        .map(|(_, e)| e["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(events.iter().all(|(_, e)| e["secret"] == name.as_str()));
    let promote = events
        .iter()
        .find(|(_, e)| e["kind"] == "labels_moved" && e["labels"]["current"] == 2)
        .expect("a labels_moved event points current at v2");
    assert_eq!(promote.1["labels"]["previous"], 1);
    for (_, e) in &events {
        assert!(e.get("value").is_none(), "events never carry a value: {e}");
    }

    // Resume from the second event: everything after it, nothing before.
    let second = events[1].0;
    let resumed = read_events(watch(&server, &name, Some(second)).await, events.len() - 2).await;
    let resumed_ids: Vec<i64> = resumed.iter().map(|(id, _)| *id).collect();
    let expected: Vec<i64> = events[2..].iter().map(|(id, _)| *id).collect();
    assert_eq!(resumed_ids, expected);
}

#[tokio::test]
async fn watching_needs_read_on_every_pattern() {
    let server = TestServer::start().await;
    let (_, created) = server
        .call(
            Method::POST,
            "/v1/tokens",
            Some(json!({"grants": [{"scope": "read", "pattern": "team-a/*"}]})),
        )
        .await;
    let token = created["token"].as_str().unwrap();
    let status = |names: &'static str| {
        let req = server
            .http
            .get(server.url("/v1/watch"))
            .query(&[("names", names)])
            .bearer_auth(token);
        async move { req.send().await.unwrap().status() }
    };
    assert_eq!(status("team-a/*").await, StatusCode::OK);
    assert_eq!(status("team-a/db").await, StatusCode::OK);
    assert_eq!(status("*").await, StatusCode::FORBIDDEN);
    assert_eq!(status("team-b/db").await, StatusCode::FORBIDDEN);
    assert_eq!(status("../x").await, StatusCode::BAD_REQUEST);
}
