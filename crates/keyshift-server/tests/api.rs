//! The API's answers to good and bad requests: codes, bodies, auth.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{create_api_key, phases, rotate_and_wait, unique_secret, TestServer};

/// Method, path, body, token ("root" for the root token), status, error code.
type Case = (
    Method,
    String,
    Option<Value>,
    Option<&'static str>,
    StatusCode,
    &'static str,
);

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no code>")
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_the_server_keeps_serving() {
    let server = TestServer::start().await;
    let name = unique_secret("bad");
    create_api_key(&server, &name, "0s").await;

    let long = "a".repeat(300);
    let cases: Vec<Case> = vec![
        (
            Method::PUT,
            format!("/v1/secrets/{name}:policy"),
            Some(json!({"strategy": "blue-green"})),
            Some("root"),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::PUT,
            format!("/v1/secrets/{name}:policy"),
            Some(json!({"strategy": "canary", "canary_share": 0})),
            Some("root"),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::POST,
            "/v1/failures".into(),
            Some(json!({"reporter": "has space", "failures": []})),
            Some("root"),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::POST,
            "/v1/failures".into(),
            Some(
                json!({"reporter": "c1", "failures": [{"secret": "test/nope", "version": 1, "count": 1}]}),
            ),
            Some("root"),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Method::GET,
            "/v1/secrets/test/nope:value".into(),
            None,
            Some("root"),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Method::GET,
            "/v1/secrets/..%2Fx".into(),
            None,
            Some("root"),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::GET,
            "/v1/secrets/a//b".into(),
            None,
            Some("root"),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::GET,
            format!("/v1/secrets/{long}"),
            None,
            Some("root"),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::GET,
            "/v1/secrets/a%0Ab".into(),
            None,
            Some("root"),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::GET,
            "/v1/secrets/a%01b".into(),
            None,
            Some("root"),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::GET,
            format!("/v1/secrets/{name}:value"),
            None,
            None,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            Method::GET,
            format!("/v1/secrets/{name}:value"),
            None,
            Some("ks.0000000000000000.nope"),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            Method::GET,
            format!("/v1/secrets/{name}:value"),
            None,
            Some("garbage"),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            Method::POST,
            "/v1/secrets".into(),
            Some(json!({"name": "../x", "kind": "api-key"})),
            Some("root"),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::POST,
            "/v1/secrets".into(),
            Some(json!({"name": "x", "kind": "nope"})),
            Some("root"),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::POST,
            format!("/v1/secrets/{name}:rotate"),
            Some(json!({"strategy": "sideways"})),
            Some("root"),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::GET,
            format!("/v1/secrets/{name}:nope"),
            None,
            Some("root"),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Method::GET,
            "/v1/rotations/r-unknown".into(),
            None,
            Some("root"),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Method::GET,
            "/v1/nowhere".into(),
            None,
            Some("root"),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (method, path, body, token, want, want_code) in cases {
        let token = token.map(|t| {
            if t == "root" {
                server.token.clone()
            } else {
                t.to_owned()
            }
        });
        let (status, answer) = server
            .call_as(token.as_deref(), method.clone(), &path, body)
            .await;
        assert_eq!(status, want, "{method} {path}: {answer}");
        assert_eq!(code(&answer), want_code, "{method} {path}: {answer}");
        assert!(answer["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }

    // Malformed JSON and an oversized body.
    let resp = server
        .http
        .post(server.url("/v1/secrets"))
        .bearer_auth(&server.token)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let big = format!("{{\"value\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let resp = server
        .http
        .post(server.url(&format!("/v1/secrets/{name}:versions")))
        .bearer_auth(&server.token)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(code(&body), "payload_too_large");

    // A bad query string is a JSON 400 too.
    for path in [
        "/v1/watch",
        "/v1/rotations?limit=lots",
        "/v1/secrets?prefix",
    ] {
        let (status, answer) = server.call(Method::GET, path, None).await;
        if path == "/v1/secrets?prefix" {
            assert_eq!(status, StatusCode::OK, "an empty prefix is fine: {answer}");
            continue;
        }
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {answer}");
        assert_eq!(code(&answer), "bad_request", "{path}: {answer}");
    }

    // Still serving.
    let (status, _) = server
        .call(Method::GET, &format!("/v1/secrets/{name}:value"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn scopes_are_enforced_per_name_pattern() {
    let server = TestServer::start().await;
    let name = unique_secret("scoped");
    create_api_key(&server, &name, "0s").await;
    let (status, created) = server
        .call(
            Method::POST,
            "/v1/tokens",
            Some(json!({"description": "reader", "grants": [{"scope": "read", "pattern": "test/*"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let reader = created["token"].as_str().unwrap().to_owned();

    let (status, _) = server
        .call_as(
            Some(&reader),
            Method::GET,
            &format!("/v1/secrets/{name}:value"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server
        .call_as(
            Some(&reader),
            Method::POST,
            &format!("/v1/secrets/{name}:rotate"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(code(&body), "forbidden");
    let (status, _) = server
        .call_as(
            Some(&reader),
            Method::DELETE,
            &format!("/v1/secrets/{name}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = server
        .call_as(
            Some(&reader),
            Method::GET,
            "/v1/secrets/prod/other:value",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = server
        .call_as(
            Some(&reader),
            Method::POST,
            "/v1/tokens",
            Some(json!({"grants": []})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn two_concurrent_rotations_one_runs_the_other_gets_409_naming_it() {
    let server = TestServer::start().await;
    let name = unique_secret("race");
    // A long overlap keeps the first rotation running.
    create_api_key(&server, &name, "1h").await;
    let path = format!("/v1/secrets/{name}:rotate");
    let (a, b) = tokio::join!(
        server.call(Method::POST, &path, Some(json!({}))),
        server.call(Method::POST, &path, Some(json!({}))),
    );
    let (winner, loser) = if a.0 == StatusCode::CREATED {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(winner.0, StatusCode::CREATED, "{}", winner.1);
    assert_eq!(loser.0, StatusCode::CONFLICT, "{}", loser.1);
    assert_eq!(code(&loser.1), "rotation_active");
    assert_eq!(loser.1["error"]["rotation"], winner.1["id"]);

    // The same idempotency key twice returns the same rotation.
    let id = winner.1["id"].as_str().unwrap();
    let (status, again) = server
        .call(Method::POST, &path, Some(json!({"id": id})))
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], id);

    // Roll it back so the secret is free again, then the key starts a new one.
    let (status, body) = server
        .call(
            Method::POST,
            &format!("/v1/rotations/{id}:rollback"),
            Some(json!({"reason": "test"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let done = server.wait_rotation(id).await;
    assert_eq!(done["status"], "rolled_back", "{done}");
    let (status, _) = server
        .call(Method::POST, &path, Some(json!({"id": "r-second"})))
        .await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn api_key_dual_rotation_moves_labels_and_revokes_the_old_key() {
    let server = TestServer::start().await;
    let name = unique_secret("dual");
    create_api_key(&server, &name, "0s").await;
    let (_, before) = server
        .call(Method::GET, &format!("/v1/secrets/{name}:value"), None)
        .await;
    let done = rotate_and_wait(&server, &name).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        phases(&done),
        [
            "precheck",
            "generate",
            "dual_accept",
            "promote",
            "overlap",
            "revoke",
            "done"
        ]
    );
    for p in done["phases"].as_array().unwrap() {
        assert_eq!(p["outcome"], "ok", "{p}");
        assert!(p["ended_at"].is_string(), "{p}");
    }

    let (_, after) = server
        .call(Method::GET, &format!("/v1/secrets/{name}:value"), None)
        .await;
    assert_eq!(after["version"], 2);
    assert_ne!(after["value"], before["value"]);
    let (_, accepted) = server
        .call(Method::GET, &format!("/v1/secrets/{name}:accepted"), None)
        .await;
    let accepted: Vec<u64> = accepted["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(accepted, [2]);
    let (_, versions) = server
        .call(Method::GET, &format!("/v1/secrets/{name}:versions"), None)
        .await;
    assert_eq!(versions["versions"][0]["state"], "revoked");
    assert_eq!(versions["versions"][0]["labels"], json!(["previous"]));
    assert_eq!(versions["versions"][1]["labels"], json!(["current"]));
}

#[tokio::test]
async fn static_secrets_do_not_rotate() {
    let server = TestServer::start().await;
    let name = unique_secret("static");
    let (status, _) = server
        .call(
            Method::POST,
            "/v1/secrets",
            Some(json!({"name": name, "kind": "static", "value": "a plain value"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = server
        .call(Method::POST, &format!("/v1/secrets/{name}:rotate"), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn a_target_config_cannot_read_secrets_its_author_may_not_administer() {
    let server = TestServer::start().await;
    let victim = "team-b/db";
    let (status, _) = server
        .call(
            Method::POST,
            "/v1/secrets",
            Some(json!({"name": victim, "kind": "static", "value": "VICTIM-value"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, created) = server
        .call(
            Method::POST,
            "/v1/tokens",
            Some(json!({"grants": [{"scope": "admin", "pattern": "team-a/*"}]})),
        )
        .await;
    let token = created["token"].as_str().unwrap();
    let (status, body) = server
        .call_as(
            Some(token),
            Method::POST,
            "/v1/secrets",
            Some(
                json!({"name": "team-a/x", "kind": "redis", "value": "whatever-password",
                        "target": {"address": "127.0.0.1:1", "user": "u", "admin_secret": victim}}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

#[tokio::test]
async fn versions_and_grants_out_of_range_are_400_not_500() {
    let server = TestServer::start().await;
    let name = unique_secret("range");
    create_api_key(&server, &name, "0s").await;
    let (status, body) = server
        .call(
            Method::GET,
            &format!("/v1/secrets/{name}:value?version=18446744073709551615"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = server
        .call(
            Method::POST,
            "/v1/consumers/heartbeat",
            Some(json!({"consumer_id": "c", "holds": [{"secret": name, "version": 18446744073709551615u64}]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    for pattern in ["prod*", "prod/", "a//b/*"] {
        let (status, body) = server
            .call(
                Method::POST,
                "/v1/tokens",
                Some(json!({"grants": [{"scope": "read", "pattern": pattern}]})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{pattern}: {body}");
    }
}

#[tokio::test]
async fn hand_put_versions_wait_for_the_running_rotation() {
    let server = TestServer::start().await;
    let name = unique_secret("busy");
    create_api_key(&server, &name, "1h").await;
    let (_, rotation) = server
        .call(Method::POST, &format!("/v1/secrets/{name}:rotate"), None)
        .await;
    let (status, body) = server
        .call(
            Method::POST,
            &format!("/v1/secrets/{name}:versions"),
            Some(json!({"generate": true})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(code(&body), "rotation_active");
    assert_eq!(body["error"]["rotation"], rotation["id"]);
}
