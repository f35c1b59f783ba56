//! Shared by the server's integration tests: an in-process server on a
//! free port with a fresh data dir and its root token, and a small client.
#![allow(dead_code)]

use std::net::SocketAddr;

use keyshift_server::DevServer;
use keyshift_testkit::RedisUser;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A running server; stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub token: String,
    pub http: reqwest::Client,
    server: DevServer,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|config| config).await
    }

    /// A server whose config `configure` changes (a manual clock, say).
    pub async fn start_with(
        configure: impl Fn(keyshift_server::ServeConfig) -> keyshift_server::ServeConfig
            + Send
            + Sync
            + 'static,
    ) -> TestServer {
        let server = DevServer::start_with(configure).await.unwrap();
        TestServer {
            addr: server.addr(),
            token: server.root_token().expose().to_owned(),
            http: reqwest::Client::new(),
            server,
        }
    }

    /// Stops and starts again on the same data dir (a new port).
    pub async fn restart(&mut self) {
        self.server.restart(false).await.unwrap();
        self.addr = self.server.addr();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A request with the root token.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_as(Some(&self.token), method, path, body).await
    }

    pub async fn call_as(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, json)
    }

    /// Waits (by polling the API, bounded) until the rotation is no longer running.
    pub async fn wait_rotation(&self, id: &str) -> Value {
        for _ in 0..600 {
            let (status, body) = self
                .call(Method::GET, &format!("/v1/rotations/{id}"), None)
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            if body["status"] != "running" {
                return body;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("rotation {id} still running after 30 s");
    }
}

/// A secret name no other test uses.
pub fn unique_secret(prefix: &str) -> String {
    format!("test/{}", keyshift_testkit::unique_name(prefix))
}

/// Creates an `api-key` secret with a generated first value.
pub async fn create_api_key(server: &TestServer, name: &str, min_overlap: &str) {
    let body = json!({"name": name, "kind": "api-key", "generate": true, "policy": {"min_overlap": min_overlap}});
    let (status, answer) = server.call(Method::POST, "/v1/secrets", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}

/// Creates a `redis` secret for `user` whose current value is its password.
pub async fn create_redis_secret(
    server: &TestServer,
    user: &RedisUser,
    min_overlap: &str,
) -> String {
    let name = unique_secret("redis");
    let address = user.url.trim_start_matches("redis://").to_owned();
    let body = json!({
        "name": name, "kind": "redis", "value": user.password,
        "target": {"address": address, "user": user.name},
        "policy": {"min_overlap": min_overlap},
    });
    let (status, answer) = server.call(Method::POST, "/v1/secrets", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    name
}

/// Starts a rotation of `name`; returns its id.
pub async fn start_rotation(server: &TestServer, name: &str) -> String {
    let (status, rotation) = server
        .call(
            Method::POST,
            &format!("/v1/secrets/{name}:rotate"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rotation}");
    rotation["id"].as_str().unwrap().to_owned()
}

/// Starts a rotation of `name` and waits until it is no longer running.
pub async fn rotate_and_wait(server: &TestServer, name: &str) -> Value {
    let id = start_rotation(server, name).await;
    server.wait_rotation(&id).await
}

/// The phase names of a rotation, in order.
pub fn phases(rotation: &Value) -> Vec<String> {
    rotation["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap().to_owned())
        .collect()
}
