//! What can go wrong watching a secret.

use keyshift_core::SecretName;

use crate::ClientError;

/// An error of the consumer SDK ([`Client`](crate::Client) and the handles
/// it returns).
///
/// No variant ever contains a secret value, the bearer token or the disk
/// cache's key.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SdkError {
    /// The server answered with an error (`not_found`, `forbidden`, ...) or
    /// a request failed; see [`ClientError`].
    #[error(transparent)]
    Api(#[from] ClientError),
    /// The server cannot be reached (or answers 5xx) and no cached value of
    /// the secret exists (no disk cache configured, or no file for it yet).
    #[error("secret {name} is unavailable: {reason}, and there is no cached value")]
    Unavailable {
        /// The secret.
        name: SecretName,
        /// Why the server could not give it (a transport error, a 5xx).
        reason: String,
    },
    /// The disk cache could not be written or read: an IO error, or a file
    /// that does not decrypt (corrupt, or written under another key). A
    /// file that does not decrypt is never served.
    #[error("disk cache: {0}")]
    Cache(String),
    /// A typed secret's first value does not parse or does not pass the
    /// application's validation, so there is no good value to serve.
    #[error("invalid secret value: {0}")]
    Invalid(String),
    /// The SDK's configuration is invalid (builder values, a bad address or
    /// token), or the client was closed.
    #[error("invalid SDK configuration: {0}")]
    Config(String),
}

impl SdkError {
    /// Whether the error means the server could not be reached or could
    /// not answer (transport failure or a 5xx): the cases where a cached
    /// value is served instead.
    pub fn is_unreachable(&self) -> bool {
        match self {
            SdkError::Api(e) => unreachable(e),
            SdkError::Unavailable { .. } => true,
            _ => false,
        }
    }
}

/// A transport failure or a 5xx: the server is not there to ask.
pub(crate) fn unreachable(e: &ClientError) -> bool {
    match e {
        ClientError::Transport(_) => true,
        ClientError::Api { status, .. } => *status >= 500,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_failures_and_5xx_count_as_unreachable() {
        assert!(unreachable(&ClientError::Transport("refused".into())));
        let api = |status: u16, code: &str| ClientError::Api {
            status,
            code: code.into(),
            message: "m".into(),
            rotation: None,
        };
        assert!(unreachable(&api(503, "unavailable")));
        assert!(!unreachable(&api(404, "not_found")));
        assert!(!unreachable(&api(403, "forbidden")));
        assert!(!SdkError::Invalid("x".into()).is_unreachable());
    }
}
