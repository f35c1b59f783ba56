//! [`CertResolver`]: the handle rustls asks for a certificate, and the
//! state its source task updates.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use tokio::sync::{watch, Notify};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::builder::CertResolverBuilder;
use super::errors::TlsError;
use super::load::Loaded;
use crate::SecretSource;

/// Serves the current certificate of a keyshift `x509` secret or of PEM
/// files to every new TLS handshake, and swaps it when the source changes.
///
/// Implements [`ResolvesServerCert`] (and [`ResolvesClientCert`], for a
/// client presenting a rotating certificate). Each handshake takes an
/// `Arc` of the certificate current at that moment (a lock-free load), so
/// connections established before a swap keep theirs.
///
/// An update whose chain or key does not parse, or whose key is not the
/// certificate's, is refused: the previous certificate stays in service,
/// a warning is logged and [`last_error`](Self::last_error) says why.
///
/// Cheap to clone; clones share the certificate and the source task, which
/// stops when the last clone is dropped (a rustls config holds one). Its
/// `Debug` shows where the certificate came from and the counters, never a
/// key.
#[derive(Clone)]
pub struct CertResolver {
    pub(super) inner: Arc<Inner>,
    /// Wakes the file source for an immediate re-read (`None` for a secret).
    pub(super) recheck: Option<Arc<Notify>>,
    _stop: Arc<DropGuard>,
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertResolver")
            .field("origin", &self.origin())
            .field("swaps", &self.swaps())
            .field("rejections", &self.rejections())
            .field("last_error", &self.last_error())
            .finish_non_exhaustive()
    }
}

/// What the handles and the source task share.
pub(super) struct Inner {
    current: ArcSwap<CertifiedKey>,
    origin: ArcSwap<String>,
    last_error: ArcSwapOption<String>,
    swaps: AtomicU64,
    rejections: AtomicU64,
    /// Moves on every swap and every refusal.
    updates: watch::Sender<u64>,
}

impl Inner {
    pub(super) fn new(first: Loaded) -> Inner {
        tracing::info!(
            origin = %first.origin,
            fingerprint = %first.fingerprint(),
            "serving a TLS certificate"
        );
        Inner {
            current: ArcSwap::from_pointee(first.key),
            origin: ArcSwap::from_pointee(first.origin),
            last_error: ArcSwapOption::empty(),
            swaps: AtomicU64::new(0),
            rejections: AtomicU64::new(0),
            updates: watch::Sender::new(0),
        }
    }

    /// Serves `next` to new handshakes from now on.
    pub(super) fn swap(&self, next: Loaded) {
        let fingerprint = next.fingerprint();
        self.current.store(Arc::new(next.key));
        let from = self.origin.swap(Arc::new(next.origin));
        self.last_error.store(None);
        self.swaps.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            from = %from,
            to = %self.origin.load(),
            fingerprint = %fingerprint,
            "swapped in a new TLS certificate; established connections keep the old one"
        );
        self.updates.send_modify(|n| *n += 1);
    }

    /// Keeps serving the current certificate and reports why the update
    /// from `origin` was refused. `why` must not quote key material.
    pub(super) fn refuse(&self, origin: &str, why: String) {
        tracing::warn!(
            origin = %origin,
            kept = %self.origin.load(),
            error = %why,
            "refused a TLS certificate update; keeping the current certificate"
        );
        self.last_error.store(Some(Arc::new(why)));
        self.rejections.fetch_add(1, Ordering::Relaxed);
        self.updates.send_modify(|n| *n += 1);
    }

    /// The source is back to what is served: the last refusal is moot.
    pub(super) fn clear_error(&self) {
        if self.last_error.swap(None).is_some() {
            tracing::info!(origin = %self.origin.load(), "the TLS certificate source is back to the served certificate");
            self.updates.send_modify(|n| *n += 1);
        }
    }
}

impl CertResolver {
    pub(super) fn new(
        inner: Arc<Inner>,
        recheck: Option<Arc<Notify>>,
        stop: CancellationToken,
    ) -> Self {
        CertResolver {
            inner,
            recheck,
            _stop: Arc::new(stop.drop_guard()),
        }
    }

    /// Starts configuring a resolver (crypto provider, recheck period).
    pub fn builder() -> CertResolverBuilder {
        CertResolverBuilder::default()
    }

    /// Follows `source`, a watched `x509` secret whose value is PEM: the
    /// certificate chain (leaf first) and the leaf's private key. See
    /// [`CertResolverBuilder::from_watched`].
    ///
    /// # Errors
    ///
    /// [`TlsError::Invalid`] when the current value is unusable;
    /// [`TlsError::Config`] outside a Tokio runtime.
    pub fn from_watched(source: impl SecretSource) -> Result<CertResolver, TlsError> {
        Self::builder().from_watched(source)
    }

    /// Follows PEM files: `cert` holds the chain (leaf first), `key` the
    /// private key (it may be the same file). See
    /// [`CertResolverBuilder::from_files`].
    ///
    /// # Errors
    ///
    /// [`TlsError::Read`] when a file cannot be read, [`TlsError::Invalid`]
    /// when its content is unusable, [`TlsError::Config`] outside a Tokio
    /// runtime.
    pub fn from_files(
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<CertResolver, TlsError> {
        Self::builder().from_files(cert, key)
    }

    /// The certificate new handshakes get: lock-free, never waits.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.inner.current.load_full()
    }

    /// Where the served certificate came from: `secret NAME version N`, or
    /// `files CERT + KEY`.
    pub fn origin(&self) -> String {
        self.inner.origin.load().as_ref().clone()
    }

    /// How many times a new certificate was swapped in (the first is not a
    /// swap).
    pub fn swaps(&self) -> u64 {
        self.inner.swaps.load(Ordering::Relaxed)
    }

    /// How many updates were refused.
    pub fn rejections(&self) -> u64 {
        self.inner.rejections.load(Ordering::Relaxed)
    }

    /// Why the latest update was refused, while the source still holds it;
    /// `None` once a good certificate is swapped in (or the source is back
    /// to the one served).
    pub fn last_error(&self) -> Option<String> {
        self.inner.last_error.load().as_deref().cloned()
    }

    /// A receiver whose value increases on every swap and every refused
    /// update: wait on it (`changed()`, `wait_for(..)`) instead of sleeping,
    /// then read [`swaps`](Self::swaps) or [`last_error`](Self::last_error).
    pub fn updates(&self) -> watch::Receiver<u64> {
        self.inner.updates.subscribe()
    }

    /// Asks a file source to re-read the files now (after the settle
    /// delay), without waiting for a notification or the periodic check;
    /// does nothing for a secret source, which is pushed its changes.
    pub fn recheck(&self) {
        if let Some(wake) = &self.recheck {
            wake.notify_one();
        }
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for CertResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
