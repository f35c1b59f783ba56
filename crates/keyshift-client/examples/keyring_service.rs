//! A tiny HTTP service that accepts API keys with a [`KeyRing`]: a request
//! needs a key of the accepted set in `x-api-key`; a key older than the
//! current one still works and the answer says `Deprecation: true`, so the
//! client moves over before the old key is revoked.
//!
//! ```text
//! KEYSHIFT_ADDR=http://127.0.0.1:8200 KEYSHIFT_TOKEN=ks.... LISTEN=127.0.0.1:8080 \
//!   cargo run -p keyshift-client --example keyring_service -- prod/api/keys
//! curl -i -H "x-api-key: $KEY" http://127.0.0.1:8080/hello
//! ```

use std::process::ExitCode;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use keyshift_client::{Client, KeyRing};
use keyshift_core::{SecretName, SecretValue};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "keyshift_client=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let name: SecretName = std::env::args()
        .nth(1)
        .ok_or("usage: keyring_service SECRET_NAME (with KEYSHIFT_ADDR and KEYSHIFT_TOKEN set)")?
        .parse()?;
    let addr = std::env::var("KEYSHIFT_ADDR").unwrap_or_else(|_| "http://127.0.0.1:8200".into());
    let token = std::env::var("KEYSHIFT_TOKEN").map_err(|_| "KEYSHIFT_TOKEN is not set")?;
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());

    // The watch pushes changes of the secret, so the key ring refreshes at
    // once instead of at its next periodic refresh.
    let client = Client::builder(&addr)
        .token(SecretValue::new(token)?)
        .build()?;
    let watched = client.watch(&name).await?;
    let ring = KeyRing::start(
        client.api().clone(),
        name.clone(),
        client.consumer_id().to_owned(),
        Some(watched.changes()),
    )
    .await?;

    let app = Router::new()
        .route("/hello", get(|| async { "hello\n" }))
        .layer(middleware::from_fn_with_state(ring.clone(), require_key));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!(
        "listening on {listen}; accepting versions {:?} of {name}",
        ring.accepted_versions()
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    ring.stop(); // reports the last uses
    client.close();
    Ok(())
}

/// Lets a request through only with an accepted `x-api-key`.
async fn require_key(State(ring): State<KeyRing>, req: Request, next: Next) -> Response {
    let presented = req.headers().get("x-api-key").and_then(|v| v.to_str().ok());
    let verdict = match presented {
        Some(key) => ring.verify(key).await,
        None => None,
    };
    let Some(key) = verdict else {
        return (StatusCode::UNAUTHORIZED, "a valid x-api-key is required\n").into_response();
    };
    let mut resp = next.run(req).await;
    if key.deprecated {
        resp.headers_mut()
            .insert("deprecation", HeaderValue::from_static("true"));
    }
    resp
}
