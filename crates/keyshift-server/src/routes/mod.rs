//! The HTTP API: `fn app(state) -> Router`, so tests call it without a socket.

mod body;
mod consumers;
mod report;
mod rotations;
mod secrets;
mod status;
mod watch;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{get, post};
use axum::{Json, Router};
use keyshift_core::api::Health;

use crate::error::ApiError;
use crate::state::AppState;

pub use body::ApiJson;

/// The whole API under `/v1` and `/metrics`, with the body limit applied
/// and every request counted.
pub fn app(state: AppState, body_limit: usize) -> Router {
    Router::new()
        .route("/metrics", get(crate::metrics::render))
        .route("/v1/health", get(health))
        .route("/v1/secrets", post(secrets::create).get(secrets::list))
        .route(
            "/v1/secrets/{*path}",
            get(secrets::get)
                .post(secrets::post)
                .put(secrets::put)
                .delete(secrets::delete),
        )
        .route("/v1/rotations", get(rotations::list))
        .route(
            "/v1/rotations/{id}",
            get(rotations::get).post(rotations::post),
        )
        .route("/v1/watch", get(watch::watch))
        .route("/v1/consumers/heartbeat", post(consumers::heartbeat))
        .route("/v1/usage", post(consumers::usage_report))
        .route("/v1/failures", post(consumers::failure_report))
        .route("/v1/audit", get(secrets::audit_log))
        .route("/v1/status", get(status::status))
        .route("/v1/tokens", post(secrets::create_token))
        .route("/v1/report", get(report::report))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(crate::metrics::track_http))
        .with_state(state)
}

async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let ok = state.store.health().await.is_ok();
    let body = Health {
        status: if ok { "ok" } else { "degraded" }.to_owned(),
        store: state.engine.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint; see docs/api.md".to_owned())
}

/// Splits `name:method` from a path tail (`prod/db:versions`).
fn split_method(path: &str) -> (&str, Option<&str>) {
    match path.rsplit_once(':') {
        Some((name, method)) => (name, Some(method)),
        None => (path, None),
    }
}

fn unknown_method(method: &str) -> ApiError {
    ApiError::NotFound(format!("no such method `:{method}`; see docs/api.md"))
}
