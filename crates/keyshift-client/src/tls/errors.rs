//! [`TlsError`]: why a [`CertResolver`](super::CertResolver) could not
//! start.

use std::path::PathBuf;

/// Why a [`CertResolver`](super::CertResolver) could not start. Later
/// updates never fail this way: a bad one is refused and reported by
/// [`last_error`](super::CertResolver::last_error) while the previous
/// certificate stays in service.
///
/// Never carries key material: parse errors say what is wrong, not where
/// in the PEM.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A [`CertResolverBuilder`](super::CertResolverBuilder) setting is out
    /// of range, or no Tokio runtime is running.
    #[error("invalid TLS resolver configuration: {0}")]
    Config(&'static str),
    /// A certificate or key file could not be read at start.
    #[error("could not read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The first certificate is unusable: the chain or the key does not
    /// parse, or the key is not the certificate's. There is no previous
    /// certificate to keep serving.
    #[error("the certificate from {origin} is unusable: {reason}")]
    Invalid {
        /// Where it came from: a secret and version, or the file paths.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
}
