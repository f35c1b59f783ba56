//! The `api-key` drill's service: an HTTP endpoint that checks the caller's
//! key with the SDK's `KeyRing` middleware, the way a real service would.

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::{middleware, Router};
use keyshift_client::middleware::require_api_key;
use keyshift_client::{Client, KeyRing, KeyRingConfig};
use keyshift_core::SecretName;
use tokio_util::sync::CancellationToken;

use super::setup::DrillServer;

/// The running service.
pub struct KeyService {
    /// `http://127.0.0.1:PORT/work`.
    pub url: String,
    keyring: KeyRing,
    client: Client,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl KeyService {
    /// Starts the service; its key ring reports uses four times per
    /// `overlap` (the drill's monitoring cycle), so the overlap gate sees
    /// the last use of an old key well within the cycle after it.
    pub async fn start(
        server: &DrillServer,
        name: &SecretName,
        overlap: Duration,
    ) -> anyhow::Result<KeyService> {
        // The service watches the secret's events, so its key ring learns of
        // every accepted-set change (DualAccept, Revoke, Replace) at once.
        let client = server
            .client_builder(0)
            .consumer_id("drill-service")
            .build()?;
        let events = client.watch(name).await?.events();
        let config = KeyRingConfig::default()
            .report_every((overlap / 4).clamp(Duration::from_millis(25), Duration::from_secs(5)));
        let keyring = KeyRing::start_with(
            server.api.clone(),
            name.clone(),
            "drill-service".to_owned(),
            Some(events),
            config,
        )
        .await?;
        let app = Router::new().route("/work", get(|| async { "ok" })).layer(
            middleware::from_fn_with_state(keyring.clone(), require_api_key),
        );
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let url = format!("http://{}/work", listener.local_addr()?);
        let stop = CancellationToken::new();
        let signal = stop.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { signal.cancelled().await })
                .await;
        });
        Ok(KeyService {
            url,
            keyring,
            client,
            stop,
            task,
        })
    }

    pub async fn stop(self) {
        self.keyring.stop();
        self.client.close();
        self.stop.cancel();
        let _ = self.task.await;
    }
}
