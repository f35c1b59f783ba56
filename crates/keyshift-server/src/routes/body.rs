//! A JSON body extractor whose errors are ours: 400 for malformed JSON,
//! 413 over the limit, and messages that never echo the body.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Like `axum::Json`, with [`ApiError`] rejections.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        parse(&bytes).map(ApiJson)
    }
}

/// The body's bytes, with [`ApiError`] rejections (413 over the limit),
/// for handlers that parse the body only for some methods.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|r| {
                if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::BadRequest("could not read the request body".to_owned())
                }
            })
    }
}

/// Parses a JSON body. serde's messages can quote the input (`unknown
/// variant `<what was sent>``, `invalid type: string "..."`), so only the
/// parts that name our schema are kept.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let detail = if e.is_data() {
            data_error(&e.to_string(), e.line(), e.column())
        } else {
            format!("malformed JSON at line {} column {}", e.line(), e.column())
        };
        ApiError::BadRequest(format!("invalid request body: {detail}"))
    })
}

fn data_error(text: &str, line: usize, column: usize) -> String {
    if text.starts_with("missing field `") {
        return text.to_owned();
    }
    for prefix in ["unknown field `", "unknown variant `"] {
        if let Some(rest) = text.strip_prefix(prefix) {
            // Drop what was sent; keep what was expected.
            if let Some((_, expected)) = rest.split_once('`') {
                return format!("{}{expected}", prefix.trim_end_matches(" `"));
            }
        }
    }
    if text.contains(['"', '`', '\'']) {
        format!("a field has the wrong type or value at line {line} column {column}")
    } else {
        text.to_owned()
    }
}

/// Like `axum::extract::Query`, with [`ApiError`] rejections: a JSON 400
/// that names no input.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|_| {
                ApiError::BadRequest(
                    "invalid query string: a parameter is missing or has the wrong type; see docs/api.md"
                        .to_owned(),
                )
            })
    }
}

/// Like `axum::extract::Path` for one string, with [`ApiError`]
/// rejections (a path that is not valid UTF-8 once percent-decoded).
pub struct ApiPath(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ApiPath {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|_| ApiError::BadRequest("invalid path: it must be UTF-8".to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        n: u32,
    }

    #[test]
    fn messages_never_echo_string_values() {
        let err = parse::<Body>(br#"{"n": "hunter2"}"#)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        let err = parse::<Body>(br#"{"hunter2": 1}"#).unwrap_err().to_string();
        assert!(err.contains("unknown field, expected `n`"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = parse::<Body>(b"{}").unwrap_err().to_string();
        assert!(err.contains("missing field `n`"), "{err}");
        let err = parse::<Body>(b"{nope").unwrap_err().to_string();
        assert!(err.contains("malformed JSON"), "{err}");
    }
}
