//! Shared by the SDK's integration tests: a real in-process keyshift
//! server (fresh data dir, root token) that can stop and start again on
//! the same port, and helpers to create and change secrets through
//! `ApiClient`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use keyshift_client::{ApiClient, Client, ClientBuilder, Snapshot, Watched};
use keyshift_core::api::{AddVersion, CreateSecret, RotationInfo, StartRotation};
use keyshift_core::rotation::Status;
use keyshift_core::{Policy, SecretKind, SecretName, SecretValue, VersionNumber};
use keyshift_server::DevServer;

/// How long a test waits for a change before failing.
pub const WAIT: Duration = Duration::from_secs(20);

/// A running server; stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub token: SecretValue,
    server: DevServer,
}

impl TestServer {
    pub async fn start() -> TestServer {
        init_tracing();
        let server = DevServer::start().await.unwrap();
        TestServer {
            addr: server.addr(),
            token: server.root_token().clone(),
            server,
        }
    }

    /// Stops the server (its port is free afterwards).
    pub async fn stop(&mut self) {
        self.server.stop().await;
    }

    /// Starts again on the same data dir and the same port.
    pub async fn start_again(&mut self) {
        self.server.restart(true).await.unwrap();
        assert_eq!(self.server.addr(), self.addr, "same port");
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A fresh API client with the root token.
    pub fn admin(&self) -> ApiClient {
        ApiClient::new(&self.url(), Some(self.token.clone())).unwrap()
    }

    /// An SDK client builder with the root token and short reconnect
    /// delays.
    pub fn sdk(&self) -> ClientBuilder {
        Client::builder(&self.url())
            .token(self.token.clone())
            .backoff(Duration::from_millis(50), Duration::from_millis(500))
    }
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,keyshift_client=info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A secret name no other test uses.
pub fn unique_name(prefix: &str) -> SecretName {
    format!("sdk/{}", keyshift_testkit::unique_name(prefix))
        .parse()
        .unwrap()
}

fn policy(min_overlap: &str) -> Policy {
    serde_json::from_value(serde_json::json!({ "min_overlap": min_overlap })).unwrap()
}

/// Creates an `api-key` secret with a generated first value.
pub async fn create_api_key(api: &ApiClient, prefix: &str, min_overlap: &str) -> SecretName {
    create_api_key_with(api, prefix, policy(min_overlap)).await
}

/// Creates an `api-key` secret with `policy` and a generated first value.
pub async fn create_api_key_with(api: &ApiClient, prefix: &str, policy: Policy) -> SecretName {
    let name = unique_name(prefix);
    api.create_secret(&CreateSecret {
        name: name.clone(),
        kind: SecretKind::ApiKey,
        policy,
        target: serde_json::Value::Null,
        value: None,
        generate: true,
    })
    .await
    .unwrap();
    name
}

/// Creates a `static` secret with `value`.
pub async fn create_static(api: &ApiClient, prefix: &str, value: &str) -> SecretName {
    let name = unique_name(prefix);
    api.create_secret(&CreateSecret {
        name: name.clone(),
        kind: SecretKind::Static,
        policy: policy("10m"),
        target: serde_json::Value::Null,
        value: Some(SecretValue::new(value.to_owned()).unwrap()),
        generate: false,
    })
    .await
    .unwrap();
    name
}

/// Adds a version by hand, labelled `current`.
pub async fn put_value(api: &ApiClient, name: &SecretName, value: Option<&str>) -> VersionNumber {
    api.add_version(
        name,
        &AddVersion {
            value: value.map(|v| SecretValue::new(v.to_owned()).unwrap()),
            generate: value.is_none(),
            labels: None,
        },
    )
    .await
    .unwrap()
    .version
}

/// Starts a rotation.
pub async fn rotate(api: &ApiClient, name: &SecretName) -> RotationInfo {
    api.rotate(name, &StartRotation::default()).await.unwrap()
}

/// Waits (polling the API, bounded) until the rotation has ended.
pub async fn wait_rotation(api: &ApiClient, rotation: &RotationInfo) -> RotationInfo {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = api.get_rotation(&rotation.id).await.unwrap();
        if r.status != Status::Running {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rotation {} still running",
            rotation.id
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits on `changes()` until the watched secret holds `version`.
pub async fn wait_version(w: &Watched, version: u64) -> Arc<Snapshot> {
    let mut changes = w.changes();
    let reached = tokio::time::timeout(
        WAIT,
        changes.wait_for(|_| w.get().version == VersionNumber(version)),
    )
    .await;
    assert!(
        matches!(reached, Ok(Ok(_))),
        "still at version {} after {WAIT:?}, expected {version} (last error: {:?})",
        w.get().version,
        w.last_error()
    );
    w.get().to_arc()
}
