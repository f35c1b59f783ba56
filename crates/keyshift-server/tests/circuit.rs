//! After `circuit_failures` failed rotations in a row, a secret's circuit
//! opens: no rotation starts (on its own, or by hand unless forced), the
//! status and the audit log say so. Its own test binary: it sets the
//! process-wide test hook that makes verification fail.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{unique_secret, TestServer};

#[tokio::test]
async fn three_failed_rotations_open_the_circuit() {
    std::env::set_var("KEYSHIFT_TEST_REFUSE_VERIFY", "dual_accept");
    let server = TestServer::start().await;
    let name = unique_secret("circuit");
    let body = json!({
        "name": name, "kind": "api-key", "generate": true,
        "policy": {"schedule": {"every": "1m"}, "circuit_failures": 3, "circuit_open": "5m"},
    });
    let (code, answer) = server.call(Method::POST, "/v1/secrets", Some(body)).await;
    assert_eq!(code, StatusCode::CREATED, "{answer}");
    let path = format!("/v1/secrets/{name}:rotate");

    for _ in 0..3 {
        let done = support::rotate_and_wait(&server, &name).await;
        assert_eq!(done["status"], "rolled_back", "{done}");
    }

    let (code, refused) = server.call(Method::POST, &path, Some(json!({}))).await;
    assert_eq!(code, StatusCode::CONFLICT, "{refused}");
    assert!(refused.to_string().contains("circuit"), "{refused}");

    let (_, list) = server.call(Method::GET, "/v1/status", None).await;
    let status = list["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name.as_str())
        .unwrap()
        .clone();
    let until = status["circuit_open_until"].as_str().expect("circuit open");
    // The schedule waits for the circuit.
    assert!(
        status["next_rotation"].as_str().unwrap() >= until,
        "{status}"
    );

    let (_, audit) = server
        .call(Method::GET, &format!("/v1/audit?secret={name}"), None)
        .await;
    let opened: Vec<_> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "circuit.open")
        .collect();
    assert_eq!(opened.len(), 1, "{audit}");

    // An operator may force one more try.
    let (code, forced) = server
        .call(Method::POST, &path, Some(json!({"force": true})))
        .await;
    assert_eq!(code, StatusCode::CREATED, "{forced}");
    let done = server.wait_rotation(forced["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "rolled_back");
}
