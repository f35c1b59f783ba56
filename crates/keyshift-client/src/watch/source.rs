//! The handles an application reads: [`Watched`] (the raw value) and
//! [`WatchedTyped`] (the value parsed into the application's type).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use keyshift_core::VersionNumber;
use tokio::sync::watch;

use super::builder::DEFAULT_TTL;
use super::errors::SdkError;
use super::slot::Slot;
use super::Client;
use crate::{SecretSource, Snapshot};

/// A watched secret: the last good value, swapped atomically when the
/// server pushes a change (or a poll finds one).
///
/// Cheap to clone; clones share the value. Its `Debug` shows the name and
/// version, never the value. Background work stops when every [`Client`]
/// and `Watched` of a client is dropped, or on [`Client::close`].
#[derive(Clone)]
pub struct Watched {
    pub(crate) slot: Arc<Slot>,
    pub(crate) client: Option<Client>,
}

impl fmt::Debug for Watched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let snap = self.slot.current();
        f.debug_struct("Watched")
            .field("name", &snap.name)
            .field("version", &snap.version)
            .field("seq", &snap.seq)
            .finish_non_exhaustive()
    }
}

/// The snapshot [`Watched::get`] returns: a cheap guard (no shared
/// reference count is touched, so readers on several cores do not contend)
/// that derefs to the [`Snapshot`].
pub struct Current(arc_swap::Guard<Arc<Snapshot>>);

impl Current {
    /// An owned handle on the same snapshot, to keep beyond a request.
    pub fn to_arc(&self) -> Arc<Snapshot> {
        Arc::clone(&self.0)
    }
}

impl std::ops::Deref for Current {
    type Target = Snapshot;
    fn deref(&self) -> &Snapshot {
        &self.0
    }
}

impl std::fmt::Debug for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl Watched {
    /// The current value: an `ArcSwap` load, lock-free and wait-free in the
    /// common case; never waits on the network. The [`Current`] it returns
    /// derefs to the [`Snapshot`]; hold it for the duration of a request,
    /// not for ever (keep an `Arc` from [`Current::to_arc`] for that).
    pub fn get(&self) -> Current {
        Current(self.slot.load())
    }

    /// Runs `f` on the current value without taking a reference count:
    /// cheaper than [`get`](Self::get) when many threads read at once (no
    /// shared counter to bounce between cores). Keep `f` short; it must
    /// not call back into this handle's `with`.
    pub fn with<R>(&self, f: impl FnOnce(&Snapshot) -> R) -> R {
        self.slot.with(f)
    }

    /// A receiver whose value increases on every applied change. Wait on
    /// it with `changed()` or `wait_for(..)`, then call [`get`](Self::get).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.slot.changes()
    }

    /// A receiver of the sequence number of the latest event of this
    /// secret of any kind, including those that do not change the value
    /// held (a version accepted or revoked): what a [`KeyRing`] refreshes
    /// its accepted set on.
    ///
    /// [`KeyRing`]: crate::KeyRing
    pub fn events(&self) -> watch::Receiver<u64> {
        self.slot.events()
    }

    /// The polling TTL in effect: the configured one, clamped to at most
    /// half the secret's `min_overlap` and at least 1 s.
    pub fn ttl(&self) -> Duration {
        self.slot.ttl()
    }

    /// Reads the current value from the server now. Concurrent callers
    /// (and pushed changes being fetched) share one request.
    ///
    /// # Errors
    ///
    /// [`SdkError::Api`] when the server cannot be reached or refuses; the
    /// held value is unchanged.
    pub async fn refresh(&self) -> Result<Arc<Snapshot>, SdkError> {
        if let Some(client) = &self.client {
            client.shared.refresh(&self.slot).await?;
        }
        Ok(self.slot.current())
    }

    /// Reports that `count` uses of `version` failed (a login refused, a
    /// request that failed with the credential). A `canary` rotation whose
    /// share reports more failures against its new version than its policy
    /// tolerates rolls back, before any other consumer gets that version.
    /// Report the version the failed use held (from [`get`](Self::get)),
    /// not the one held now.
    ///
    /// # Errors
    ///
    /// [`SdkError::Api`] when the server cannot be reached or refuses;
    /// [`SdkError::Config`] for a handle without a server.
    pub async fn report_failures(
        &self,
        version: VersionNumber,
        count: u64,
    ) -> Result<(), SdkError> {
        let Some(client) = &self.client else {
            return Err(SdkError::Config(
                "this handle has no server to report to".to_owned(),
            ));
        };
        client
            .report_failures(self.slot.name(), version, count)
            .await
    }

    /// How many value fetches (`GET :value`) this handle's secret has made,
    /// the first load included.
    pub fn fetch_count(&self) -> u64 {
        self.slot.fetch_count()
    }

    /// The latest problem: a failed fetch, or a value rejected by
    /// validation (the last good value is still served). `None` once a
    /// fetch succeeds with an acceptable value.
    pub fn last_error(&self) -> Option<String> {
        self.slot.last_error()
    }

    /// A handle that holds `snapshot` and never talks to a server: for
    /// tests and benchmarks of code that takes a [`SecretSource`].
    #[doc(hidden)]
    pub fn fixed(snapshot: Snapshot) -> Watched {
        Watched {
            slot: Arc::new(Slot::new(snapshot, DEFAULT_TTL, None)),
            client: None,
        }
    }

    /// Swaps `snapshot` in as if the server had pushed it (no ordering
    /// checks): for tests and benchmarks.
    #[doc(hidden)]
    pub fn replace(&self, snapshot: Snapshot) {
        self.slot.replace(snapshot);
    }
}

impl SecretSource for Watched {
    fn current(&self) -> Arc<Snapshot> {
        self.slot.current()
    }

    fn changes(&self) -> watch::Receiver<u64> {
        Watched::changes(self)
    }
}

/// One accepted value of a typed secret.
pub struct TypedSnapshot<T> {
    /// The version it was parsed from.
    pub version: VersionNumber,
    /// The parsed and validated value.
    pub value: T,
    /// The event sequence it was applied at (0 for a direct read or the
    /// disk cache).
    pub seq: u64,
}

impl<T> fmt::Debug for TypedSnapshot<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedSnapshot")
            .field("version", &self.version)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// A watched secret whose value is a JSON document parsed into `T` and
/// checked by the application's validation. A new value that fails either
/// is rejected: the last good one stays, [`last_error`](Self::last_error)
/// says why, and the heartbeat keeps reporting the version in use.
pub struct WatchedTyped<T> {
    pub(crate) raw: Watched,
    pub(crate) typed: Arc<ArcSwap<TypedSnapshot<T>>>,
}

impl<T> Clone for WatchedTyped<T> {
    fn clone(&self) -> Self {
        WatchedTyped {
            raw: self.raw.clone(),
            typed: self.typed.clone(),
        }
    }
}

impl<T> fmt::Debug for WatchedTyped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchedTyped")
            .field("watched", &self.raw)
            .finish_non_exhaustive()
    }
}

impl<T> WatchedTyped<T> {
    /// The last good value: lock-free, never waits on the network.
    pub fn get(&self) -> Arc<TypedSnapshot<T>> {
        self.typed.load_full()
    }

    /// A receiver whose value increases on every accepted change.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.raw.changes()
    }

    /// Why the latest value was rejected (or the latest fetch failed).
    pub fn last_error(&self) -> Option<String> {
        self.raw.last_error()
    }

    /// The polling TTL in effect (see [`Watched::ttl`]).
    pub fn ttl(&self) -> Duration {
        self.raw.ttl()
    }

    /// Reads the current value from the server now (single flight).
    ///
    /// # Errors
    ///
    /// As [`Watched::refresh`]. A rejected value is not an error here: the
    /// last good value is returned and [`last_error`](Self::last_error)
    /// says why.
    pub async fn refresh(&self) -> Result<Arc<TypedSnapshot<T>>, SdkError> {
        self.raw.refresh().await?;
        Ok(self.get())
    }
}
