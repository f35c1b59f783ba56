//! The one error type of the HTTP API.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keyshift_core::api::{ErrorBody, ErrorDetail};
use keyshift_core::rotation::RotationId;
use keyshift_store::StoreError;

/// An error answered to an API caller.
///
/// Its message is safe to show: it never carries a secret value or an
/// internal detail. Internal errors are logged where they are converted.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// No valid token (401).
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// The token lacks the scope (403).
    #[error("{0}")]
    Forbidden(String),
    /// The thing asked for does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// Another rotation of this secret runs (409).
    #[error("a rotation of this secret is already running: {0}")]
    RotationActive(RotationId),
    /// The body is over the limit (413).
    #[error("request body is too large")]
    PayloadTooLarge,
    /// The store does not answer (503).
    #[error("the store is unavailable; try again")]
    Unavailable,
    /// Something went wrong inside; details are in the server log (500).
    #[error("internal error; see the server log")]
    Internal,
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::RotationActive(_) => (StatusCode::CONFLICT, "rotation_active"),
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// Logs an internal error and returns [`ApiError::Internal`].
    pub fn internal(context: &str, err: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %err, "{context}");
        ApiError::Internal
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let rotation = match &self {
            ApiError::RotationActive(id) => Some(id.clone()),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message: self.to_string(),
                rotation,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::from_store(&e)
    }
}

impl ApiError {
    /// The answer to a store error (one shared by several requests, as a
    /// failed batch of heartbeats is).
    pub fn from_store(e: &StoreError) -> ApiError {
        match e {
            StoreError::NotFound { .. } => ApiError::NotFound(e.to_string()),
            StoreError::AlreadyExists { .. } | StoreError::Conflict(_) => {
                ApiError::Conflict(e.to_string())
            }
            StoreError::RotationActive { id } => ApiError::RotationActive(id.clone()),
            e if e.is_transient() => {
                tracing::warn!(error = %e, "store unavailable");
                ApiError::Unavailable
            }
            e => ApiError::internal("store error", e),
        }
    }
}
