//! Shared by the server's integration tests: an in-process server on a
//! free port with a fresh data dir and its root token, and a small client.
#![allow(dead_code)]

use std::net::SocketAddr;

use keyshift_server::{init, ServeConfig, Server};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// A running server; stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub token: String,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let report = init(dir.path()).await.unwrap();
        let token = report.root_token.expose().to_owned();
        let mut server = TestServer {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            token,
            dir,
            http: reqwest::Client::new(),
            stop: CancellationToken::new(),
            task: None,
        };
        server.boot().await;
        server
    }

    async fn boot(&mut self) {
        let config = ServeConfig::new(self.dir.path().to_owned())
            .listen(SocketAddr::from(([127, 0, 0, 1], 0)));
        let server = Server::start(config).await.unwrap();
        self.addr = server.local_addr().unwrap();
        self.stop = CancellationToken::new();
        let stop = self.stop.clone();
        self.task = Some(tokio::spawn(async move {
            server
                .run(async move { stop.cancelled().await })
                .await
                .unwrap();
        }));
    }

    /// Stops and starts again on the same data dir (a new port).
    pub async fn restart(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
        self.boot().await;
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

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A secret name no other test uses.
pub fn unique_secret(prefix: &str) -> String {
    format!("test/{}", keyshift_testkit::unique_name(prefix))
}
