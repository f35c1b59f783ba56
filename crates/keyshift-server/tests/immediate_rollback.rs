//! An `immediate` rotation whose Replace fails after refusing the old
//! credential rolls back to a `current` the target accepts (I1). Its own
//! test binary: it sets the process-wide test hook before the server starts.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{unique_secret, TestServer};

#[tokio::test]
async fn failed_replace_rolls_back_to_an_accepted_current() {
    std::env::set_var("KEYSHIFT_TEST_REFUSE_VERIFY", "replace");
    let server = TestServer::start().await;
    let name = unique_secret("replace");
    let (status, body) = server
        .call(
            Method::POST,
            "/v1/secrets",
            Some(json!({"name": name, "kind": "api-key", "generate": true, "policy": {"strategy": "immediate"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, r) = server
        .call(Method::POST, &format!("/v1/secrets/{name}:rotate"), None)
        .await;
    let done = server.wait_rotation(r["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "rolled_back", "{done}");
    let (_, info) = server
        .call(Method::GET, &format!("/v1/secrets/{name}"), None)
        .await;
    assert_eq!(info["labels"]["current"], 1);
    let (_, accepted) = server
        .call(Method::GET, &format!("/v1/secrets/{name}:accepted"), None)
        .await;
    let versions: Vec<u64> = accepted["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(
        versions,
        [1],
        "I1: the restored current is the only accepted version"
    );
}
