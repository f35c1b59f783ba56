//! A failed verification rolls back against the real Redis. Its own test
//! binary: it sets the process-wide test hook before the server starts.

mod support;

use keyshift_testkit::{service, RedisUser, Service};
use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{unique_secret, TestServer};

#[tokio::test]
async fn failed_verification_rolls_back_leaving_the_old_password_the_only_one() {
    let Some(url) = service(Service::Redis) else {
        return;
    };
    // DualAccept really adds the new password to Redis, then its
    // verification is reported refused: the rollback must remove it.
    std::env::set_var("KEYSHIFT_TEST_REFUSE_VERIFY", "dual_accept");
    let user = RedisUser::create(&url);
    let server = TestServer::start().await;
    let name = unique_secret("redis");
    let address = url.trim_start_matches("redis://").to_owned();
    let (status, body) = server
        .call(
            Method::POST,
            "/v1/secrets",
            Some(json!({
                "name": name, "kind": "redis", "value": user.password,
                "target": {"address": address, "user": user.name},
                "policy": {"min_overlap": "0s"},
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, rotation) = server
        .call(
            Method::POST,
            &format!("/v1/secrets/{name}:rotate"),
            Some(json!({})),
        )
        .await;
    let done = server.wait_rotation(rotation["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "rolled_back", "{done}");
    let phases: Vec<&str> = done["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        [
            "precheck",
            "generate",
            "dual_accept",
            "roll_back",
            "rolled_back"
        ]
    );

    let (_, new) = server
        .call(
            Method::GET,
            &format!("/v1/secrets/{name}:value?version=2"),
            None,
        )
        .await;
    assert_eq!(new["state"], "failed");
    assert!(
        !user.logs_in(new["value"].as_str().unwrap()),
        "the new password must be gone"
    );
    assert!(
        user.logs_in(&user.password),
        "the old password must still work"
    );
    assert_eq!(user.password_count(), 1, "the old password is the only one");
    let (_, current) = server
        .call(Method::GET, &format!("/v1/secrets/{name}:value"), None)
        .await;
    assert_eq!(current["version"], 1);
}
