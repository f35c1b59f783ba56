//! What can go wrong talking to a keyshift server.

use keyshift_core::api::ErrorBody;
use keyshift_core::rotation::RotationId;

/// The longest piece of an unexpected answer quoted in an error message.
const SNIPPET_LEN: usize = 200;

/// An error from [`ApiClient`](crate::ApiClient).
///
/// No variant ever contains the bearer token or a secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a non-2xx status.
    ///
    /// `code` is the API's stable error code (`not_found`, `conflict`,
    /// `rotation_active`, ...; see `docs/api.md`). When the answer had no
    /// API error body (a proxy's HTML page, say), `code` is derived from the
    /// status and `message` describes the answer.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The API's error code.
        code: String,
        /// The server's message, for people.
        message: String,
        /// For `rotation_active`: the rotation that is running.
        rotation: Option<RotationId>,
    },
    /// The server could not be reached, or the connection broke or timed out.
    #[error("could not reach the keyshift server: {0}")]
    Transport(String),
    /// A 2xx answer whose body is not what the API documents.
    #[error("unexpected answer from the keyshift server: {0}")]
    Decode(String),
    /// The client's configuration is invalid (a bad base URL or token).
    #[error("invalid client configuration: {0}")]
    Config(String),
}

impl ClientError {
    /// The HTTP status, for [`ClientError::Api`].
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The API's error code, for [`ClientError::Api`].
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether this is the API's `not_found`.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some("not_found")
    }

    /// Builds the error for a non-2xx answer from its status and body.
    ///
    /// A body of the documented shape (`{"error": {"code", "message"}}`)
    /// becomes [`ClientError::Api`] with its fields. Any other body still
    /// becomes `Api`, with a code derived from the status and a message
    /// quoting the start of the body (error bodies never carry secrets).
    pub fn from_error_body(status: u16, body: &[u8]) -> ClientError {
        if let Ok(ErrorBody { error }) = serde_json::from_slice::<ErrorBody>(body) {
            return ClientError::Api {
                status,
                code: error.code,
                message: error.message,
                rotation: error.rotation,
            };
        }
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let message = if text.is_empty() {
            "the server answered with an error and no body".to_owned()
        } else {
            format!(
                "the server answered with an error and an unexpected body: {}",
                snippet(text)
            )
        };
        ClientError::Api {
            status,
            code: code_for_status(status).to_owned(),
            message,
            rotation: None,
        }
    }

    /// Wraps a transport error. reqwest's messages may name the URL, which
    /// holds only the base address, a secret's name and query parameters.
    pub(crate) fn transport(e: &reqwest::Error) -> ClientError {
        use std::error::Error as _;
        let mut msg = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            source = s.source();
        }
        ClientError::Transport(msg)
    }
}

/// The API's code for a status, for answers without an error body.
fn code_for_status(status: u16) -> &'static str {
    match status {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        409 => "conflict",
        413 => "payload_too_large",
        500 => "internal",
        503 => "unavailable",
        _ => "http_error",
    }
}

/// The first [`SNIPPET_LEN`] characters of `text` on one line.
fn snippet(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(SNIPPET_LEN)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > SNIPPET_LEN {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_decodes_into_api_error() {
        let body = br#"{"error":{"code":"not_found","message":"secret not found: prod/db"}}"#;
        let e = ClientError::from_error_body(404, body);
        assert_eq!(
            e,
            ClientError::Api {
                status: 404,
                code: "not_found".into(),
                message: "secret not found: prod/db".into(),
                rotation: None,
            }
        );
        assert!(e.is_not_found());
        assert_eq!(
            e.to_string(),
            "secret not found: prod/db (not_found, HTTP 404)"
        );
    }

    #[test]
    fn rotation_active_carries_the_running_rotation() {
        let body = br#"{"error":{"code":"rotation_active","message":"a rotation runs","rotation":"r-42"}}"#;
        let e = ClientError::from_error_body(409, body);
        match e {
            ClientError::Api { rotation, code, .. } => {
                assert_eq!(code, "rotation_active");
                assert_eq!(rotation, Some(RotationId::from("r-42")));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unexpected_error_body_keeps_the_status() {
        let e = ClientError::from_error_body(502, b"<html>\nBad Gateway\n</html>");
        assert_eq!(e.status(), Some(502));
        assert_eq!(e.code(), Some("http_error"));
        assert!(e.to_string().contains("<html> Bad Gateway </html>"), "{e}");

        let e = ClientError::from_error_body(503, b"");
        assert_eq!(e.code(), Some("unavailable"));
        assert_eq!(
            e.to_string(),
            "the server answered with an error and no body (unavailable, HTTP 503)"
        );
    }

    #[test]
    fn long_unexpected_bodies_are_cut() {
        let body = "x".repeat(10_000);
        let e = ClientError::from_error_body(500, body.as_bytes());
        assert!(e.to_string().len() < 400);
    }
}
