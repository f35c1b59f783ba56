//! What a watched secret holds, and the trait the helpers (key ring, pool
//! swap, Redis reconnect) build on, so they work with any source of
//! snapshots: a server-backed watch, or a fixed value in tests.

use std::sync::Arc;

use keyshift_core::{SecretName, SecretValue, VersionNumber};
use tokio::sync::watch;

/// One applied value of a secret: immutable, shared by `Arc`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The secret.
    pub name: SecretName,
    /// The version this value is.
    pub version: VersionNumber,
    /// The value.
    pub value: SecretValue,
    /// The per-secret event sequence it was applied at (0 when it came from
    /// a direct read or the disk cache).
    pub seq: u64,
}

/// Something that holds the current [`Snapshot`] of one secret and says
/// when it changes.
pub trait SecretSource: Send + Sync + 'static {
    /// The current snapshot: lock-free, never waits on the network.
    fn current(&self) -> Arc<Snapshot>;
    /// A receiver whose value increases on every applied change.
    fn changes(&self) -> watch::Receiver<u64>;
}
