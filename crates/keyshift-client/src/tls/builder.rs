//! [`CertResolverBuilder`]: how a [`CertResolver`] loads keys and watches
//! files.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;

use super::errors::TlsError;
use super::resolver::CertResolver;
use super::{files, secret};
use crate::SecretSource;

/// How often a file source re-reads its files even without a filesystem
/// notification: 10 s. Notifications make a swap immediate; this bounds
/// the delay where they do not arrive (no inotify, network filesystems,
/// a symlink whose target directory is not watched).
pub const DEFAULT_RECHECK: Duration = Duration::from_secs(10);

/// How long a file source waits after a notification before reading:
/// 100 ms, so a writer that replaces the certificate and then the key is
/// usually read once, with both files new.
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(100);

/// Configures a [`CertResolver`]. [`Default`] gives the values documented
/// on each setter.
#[derive(Clone)]
pub struct CertResolverBuilder {
    pub(super) provider: Option<Arc<CryptoProvider>>,
    pub(super) recheck: Duration,
    pub(super) settle: Duration,
    pub(super) notify: bool,
}

impl fmt::Debug for CertResolverBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertResolverBuilder")
            .field("custom_provider", &self.provider.is_some())
            .field("recheck", &self.recheck)
            .field("settle", &self.settle)
            .field("notify", &self.notify)
            .finish()
    }
}

impl Default for CertResolverBuilder {
    fn default() -> Self {
        Self {
            provider: None,
            recheck: DEFAULT_RECHECK,
            settle: DEFAULT_SETTLE,
            notify: true,
        }
    }
}

impl CertResolverBuilder {
    /// The crypto provider that loads private keys. Default: the process
    /// default ([`CryptoProvider::get_default`]) if one is installed, else
    /// *ring*.
    #[must_use]
    pub fn provider(mut self, provider: Arc<CryptoProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// How often a file source re-reads its files without a notification.
    /// Default [`DEFAULT_RECHECK`].
    #[must_use]
    pub fn recheck_every(mut self, every: Duration) -> Self {
        self.recheck = every;
        self
    }

    /// How long a file source waits after a notification before reading.
    /// Default [`DEFAULT_SETTLE`].
    #[must_use]
    pub fn settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    /// Whether a file source watches its directories for changes (inotify
    /// on Linux). Default `true`; with `false`, only the periodic check
    /// picks up changes. Where watching cannot start, the periodic check
    /// is used and a warning logged.
    #[must_use]
    pub fn notify(mut self, on: bool) -> Self {
        self.notify = on;
        self
    }

    /// Checks the settings; the one place they are validated.
    ///
    /// # Errors
    ///
    /// [`TlsError::Config`] when `recheck_every` is zero.
    pub fn validate(&self) -> Result<(), TlsError> {
        if self.recheck.is_zero() {
            return Err(TlsError::Config("recheck_every must be longer than zero"));
        }
        Ok(())
    }

    /// A resolver serving the value of `source` (normally a
    /// [`Watched`](crate::Watched) `x509` secret): PEM holding the
    /// certificate chain, leaf first, and the leaf's private key. On every
    /// change of the source, the new value is checked and swapped in, or
    /// refused. The task following the source stops when the last clone of
    /// the resolver is dropped.
    ///
    /// Must be called inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`TlsError::Invalid`] when the current value is unusable;
    /// [`TlsError::Config`] when a setting is invalid or no Tokio runtime
    /// is running.
    pub fn from_watched(self, source: impl SecretSource) -> Result<CertResolver, TlsError> {
        self.validate()?;
        let runtime = runtime()?;
        secret::start(source, self.crypto(), &runtime)
    }

    /// A resolver serving PEM files: `cert` holds the certificate chain
    /// (leaf first; other sections are skipped), `key` the private key
    /// (PKCS#8, PKCS#1 or SEC1; it may be the same file as `cert`).
    ///
    /// The directories of both paths are watched (and those of the files
    /// the paths resolve to through symlinks), and the files are re-read
    /// every [`recheck_every`](Self::recheck_every) as well. A change is
    /// swapped in only once both files parse and the key is the
    /// certificate's, so replacing the files by rename, flipping a
    /// Kubernetes-style `..data` symlink, and writing the two files one
    /// after the other all work; a half-written state is refused and
    /// reported, and the certificate served so far stays. Content is
    /// compared by hash, so a notification that changes nothing swaps
    /// nothing.
    ///
    /// Must be called inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`TlsError::Read`] when a file cannot be read, [`TlsError::Invalid`]
    /// when the content is unusable, [`TlsError::Config`] when a setting
    /// is invalid or no Tokio runtime is running.
    pub fn from_files(
        self,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<CertResolver, TlsError> {
        self.validate()?;
        let runtime = runtime()?;
        let paths = files::Paths {
            cert: cert.as_ref().to_path_buf(),
            key: key.as_ref().to_path_buf(),
        };
        files::start(paths, self, &runtime)
    }

    pub(super) fn crypto(&self) -> Arc<CryptoProvider> {
        self.provider.clone().unwrap_or_else(|| {
            CryptoProvider::get_default()
                .cloned()
                .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
        })
    }
}

fn runtime() -> Result<tokio::runtime::Handle, TlsError> {
    tokio::runtime::Handle::try_current()
        .map_err(|_| TlsError::Config("a CertResolver must be started inside a Tokio runtime"))
}
