//! The secret source: follows a watched `x509` secret.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use subtle::ConstantTimeEq;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::errors::TlsError;
use super::load::{certified_key, Loaded};
use super::resolver::{CertResolver, Inner};
use crate::{SecretSource, Snapshot};

/// Loads the current value of `source` and spawns the task that follows it.
pub(super) fn start<S: SecretSource>(
    source: S,
    provider: Arc<CryptoProvider>,
    runtime: &tokio::runtime::Handle,
) -> Result<CertResolver, TlsError> {
    let mut changes = source.changes();
    // Seen before the first load: a change during it is not missed.
    changes.borrow_and_update();
    let snap = source.current();
    let first = load(&snap, &provider).map_err(|reason| TlsError::Invalid {
        origin: origin(&snap),
        reason,
    })?;
    let inner = Arc::new(Inner::new(first));
    let stop = CancellationToken::new();
    let follower = Follower {
        inner: inner.clone(),
        source,
        changes,
        provider,
        last: snap.value.sha256(),
        stop: stop.clone(),
    };
    runtime.spawn(follower.run());
    Ok(CertResolver::new(inner, None, stop))
}

fn origin(snap: &Snapshot) -> String {
    format!("secret {} version {}", snap.name, snap.version)
}

#[tracing::instrument(skip_all, fields(secret = %snap.name, version = %snap.version))]
fn load(snap: &Snapshot, provider: &CryptoProvider) -> Result<Loaded, String> {
    let pem = snap.value.expose().as_bytes();
    let key = certified_key(pem, pem, provider)?;
    Ok(Loaded {
        key,
        origin: origin(snap),
    })
}

struct Follower<S> {
    inner: Arc<Inner>,
    source: S,
    changes: watch::Receiver<u64>,
    provider: Arc<CryptoProvider>,
    /// SHA-256 of the last value loaded or refused.
    last: [u8; 32],
    stop: CancellationToken,
}

impl<S: SecretSource> Follower<S> {
    async fn run(mut self) {
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                changed = self.changes.changed() => {
                    if changed.is_err() {
                        tracing::debug!("secret source closed; serving the last certificate");
                        return;
                    }
                }
            }
            let snap = self.source.current();
            let digest = snap.value.sha256();
            if bool::from(digest.ct_eq(&self.last)) {
                continue;
            }
            self.last = digest;
            match load(&snap, &self.provider) {
                Ok(next) => self.inner.swap(next),
                Err(why) => self.inner.refuse(&origin(&snap), why),
            }
        }
    }
}
