//! Heartbeats and usage reports reach the store and read back per secret.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{unique_secret, TestServer};

#[tokio::test]
async fn heartbeats_record_the_version_each_consumer_holds() {
    let server = TestServer::start().await;
    let name = unique_secret("hb");
    let (status, _) = server
        .call(
            Method::POST,
            "/v1/secrets",
            Some(json!({"name": name, "kind": "api-key", "generate": true})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    for (id, version) in [("app-1", 1), ("app-2", 1), ("app-1", 1)] {
        let (status, body) = server
            .call(
                Method::POST,
                "/v1/consumers/heartbeat",
                Some(json!({"consumer_id": id, "host": "h", "holds": [{"secret": name, "version": version}]})),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
    let (status, list) = server
        .call(Method::GET, &format!("/v1/secrets/{name}:consumers"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let ids: Vec<&str> = list["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["consumer_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["app-1", "app-2"]);
    assert_eq!(list["consumers"][0]["version"], 1);
    assert_eq!(list["consumers"][0]["host"], "h");

    // Bad ids, unknown secrets and missing scope are refused.
    let bad = [
        (
            json!({"consumer_id": "has space", "holds": []}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"consumer_id": "x", "holds": [{"secret": "test/none-such", "version": 1}]}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"consumer_id": "x", "host": "a\nb", "holds": []}),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (body, want) in bad {
        let (status, answer) = server
            .call(Method::POST, "/v1/consumers/heartbeat", Some(body))
            .await;
        assert_eq!(status, want, "{answer}");
    }
    let (_, token) = server
        .call(
            Method::POST,
            "/v1/tokens",
            Some(json!({"grants": [{"scope": "read", "pattern": "other/*"}]})),
        )
        .await;
    let (status, _) = server
        .call_as(
            token["token"].as_str(),
            Method::POST,
            "/v1/consumers/heartbeat",
            Some(json!({"consumer_id": "x", "holds": [{"secret": name, "version": 1}]})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn usage_reports_add_up_per_version() {
    let server = TestServer::start().await;
    let name = unique_secret("usage");
    server
        .call(
            Method::POST,
            "/v1/secrets",
            Some(json!({"name": name, "kind": "api-key", "generate": true})),
        )
        .await;
    for count in [3, 4] {
        let (status, body) = server
            .call(
                Method::POST,
                "/v1/usage",
                Some(json!({"reporter": "gw-1", "counts": [{"secret": name, "version": 1, "count": count}]})),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
    let (status, usage) = server
        .call(Method::GET, &format!("/v1/secrets/{name}:usage"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{usage}");
    let total: u64 = usage["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 7);
    let (status, _) = server
        .call(
            Method::GET,
            &format!("/v1/secrets/{name}:usage?since=yesterday"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
