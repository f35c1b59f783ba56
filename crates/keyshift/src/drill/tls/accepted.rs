//! The TLS consumers' revocation check: which leaf certificates keyshift
//! accepts right now, by SHA-256 fingerprint.
//!
//! ```text
//!  leaf secret events (SSE) ──► refresh: GET :accepted ──► fingerprints of the leaves
//!  served leaf unknown ───────► refresh that starts after the miss, check again
//! ```
//!
//! The accepted set holds whole `x509` values (certificate chain and private
//! key: an admin may read them); only the leaf certificates' fingerprints
//! are kept. A deployment would publish these (or a CRL); the drill reads
//! them from the API. A leaf seen before that is no longer accepted is
//! reported with its version: that is a revoked certificate still served.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use keyshift_client::ApiClient;
use keyshift_core::{SecretName, SecretValue, VersionNumber};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A leaf certificate's SHA-256 fingerprint.
pub type Fingerprint = [u8; 32];

/// Shared by every TLS consumer of a drill. Cheap to clone.
#[derive(Clone)]
pub struct AcceptedLeaves {
    inner: Arc<Inner>,
}

struct Inner {
    api: ApiClient,
    name: SecretName,
    accepted: ArcSwap<Vec<(Fingerprint, VersionNumber)>>,
    /// Every leaf ever accepted, to name the version of a revoked one.
    seen: Mutex<HashMap<Fingerprint, VersionNumber>>,
    /// Refreshes started so far.
    started: AtomicU64,
    /// The number of the last refresh that finished.
    finished: AtomicU64,
    /// One refresh at a time.
    refreshing: tokio::sync::Mutex<()>,
}

/// The fingerprint of the first certificate in PEM `pem`.
pub fn leaf_fingerprint(pem: &SecretValue) -> Option<Fingerprint> {
    let leaf = CertificateDer::pem_slice_iter(pem.expose().as_bytes())
        .next()?
        .ok()?;
    Some(fingerprint(&leaf))
}

pub fn fingerprint(cert: &CertificateDer<'_>) -> Fingerprint {
    Sha256::digest(cert.as_ref()).into()
}

impl AcceptedLeaves {
    /// Loads the accepted set of `name` and follows it: refreshed on every
    /// event of the secret (`events`), until `stop`.
    pub async fn start(
        api: ApiClient,
        name: SecretName,
        mut events: watch::Receiver<u64>,
        stop: CancellationToken,
    ) -> anyhow::Result<AcceptedLeaves> {
        let leaves = AcceptedLeaves {
            inner: Arc::new(Inner {
                api,
                name,
                accepted: ArcSwap::from_pointee(Vec::new()),
                seen: Mutex::new(HashMap::new()),
                started: AtomicU64::new(0),
                finished: AtomicU64::new(0),
                refreshing: tokio::sync::Mutex::new(()),
            }),
        };
        events.borrow_and_update();
        leaves.refresh_after(0).await?;
        let follower = leaves.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    changed = events.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                }
                let seen = follower.inner.started.load(Ordering::SeqCst);
                if let Err(e) = follower.refresh_after(seen).await {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "could not refresh the accepted certificates"
                    );
                }
            }
        });
        Ok(leaves)
    }

    /// The version of the accepted leaf with this fingerprint; on a miss,
    /// asks again after a refresh that started after the miss (a leaf the
    /// service received a moment before this set learnt of it is not
    /// refused).
    pub async fn check(&self, leaf: &Fingerprint) -> Result<VersionNumber, String> {
        if let Some(v) = self.lookup(leaf) {
            return Ok(v);
        }
        let seen = self.inner.started.load(Ordering::SeqCst);
        if let Err(e) = self.refresh_after(seen).await {
            return Err(format!("revocation check unavailable: {e:#}"));
        }
        if let Some(v) = self.lookup(leaf) {
            return Ok(v);
        }
        let known = self
            .inner
            .seen
            .lock()
            .ok()
            .and_then(|s| s.get(leaf).copied());
        Err(match known {
            Some(v) => format!("the server presented the revoked certificate of version {v}"),
            None => "the server presented a certificate keyshift never accepted".to_owned(),
        })
    }

    fn lookup(&self, leaf: &Fingerprint) -> Option<VersionNumber> {
        self.inner
            .accepted
            .load()
            .iter()
            .find(|(f, _)| f == leaf)
            .map(|(_, v)| *v)
    }

    /// Refreshes unless a refresh numbered above `seen` (so started after
    /// the caller's reason to refresh) has finished meanwhile.
    async fn refresh_after(&self, seen: u64) -> anyhow::Result<()> {
        let inner = &self.inner;
        let _one = inner.refreshing.lock().await;
        if inner.finished.load(Ordering::SeqCst) > seen {
            return Ok(());
        }
        let n = inner.started.fetch_add(1, Ordering::SeqCst) + 1;
        let set = inner.api.accepted(&inner.name).await?;
        let accepted: Vec<(Fingerprint, VersionNumber)> = set
            .versions
            .iter()
            .filter_map(|v| Some((leaf_fingerprint(&v.value)?, v.info.version)))
            .collect();
        if let Ok(mut seen) = inner.seen.lock() {
            seen.extend(accepted.iter().copied());
        }
        inner.accepted.store(Arc::new(accepted));
        inner.finished.store(n, Ordering::SeqCst);
        Ok(())
    }
}
