//! How a server is configured.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::notify::NotifyConfig;
use crate::scheduler::{Clock, SystemClock};

/// The largest request body accepted: 1 MiB. A secret value is at most
/// 64 KiB; anything bigger is a mistake or an attack.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// What `keyshift serve` runs on.
#[derive(Clone)]
pub struct ServeConfig {
    /// Holds `master.key` and (for the embedded store) `keyshift.db`.
    pub data_dir: PathBuf,
    /// Where to listen. Port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// A store URL (`postgres://...`); default the SQLite file in `data_dir`.
    pub store_url: Option<String>,
    /// The request body limit in bytes.
    pub body_limit: usize,
    /// The scheduler's clock (tests move a manual one).
    pub clock: Arc<dyn Clock>,
    /// Where every rotation's phase changes are published.
    pub notify: NotifyConfig,
    /// How long this replica's lease on a rotation it drives lasts unless
    /// renewed (every third of it); another replica takes the rotation
    /// over once it expires.
    pub lease_ttl: Duration,
    /// This replica's id, the owner of its leases. Default: `local` on the
    /// embedded SQLite store (one server per file, so a restarted server
    /// takes its rotations back at once), `<hostname>:<pid>:<random>` on
    /// PostgreSQL.
    pub replica_id: Option<String>,
}

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeConfig")
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("store_url", &self.store_url.as_ref().map(|_| "<set>"))
            .field("body_limit", &self.body_limit)
            .field("notify", &self.notify)
            .field("lease_ttl", &self.lease_ttl)
            .field("replica_id", &self.replica_id)
            .finish_non_exhaustive()
    }
}

impl ServeConfig {
    /// A config with defaults: listen on 127.0.0.1:8200, SQLite in `data_dir`.
    #[must_use]
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], 8200)),
            store_url: None,
            body_limit: DEFAULT_BODY_LIMIT,
            clock: Arc::new(SystemClock),
            notify: NotifyConfig::default(),
            lease_ttl: crate::orchestrator::Lease::DEFAULT_TTL,
            replica_id: None,
        }
    }

    /// Leases on rotations last `ttl` unless renewed.
    #[must_use]
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// This replica's id (see [`ServeConfig::replica_id`]).
    #[must_use]
    pub fn replica_id(mut self, id: Option<String>) -> Self {
        self.replica_id = id;
        self
    }

    /// The scheduler reads time from `clock`.
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Publish every rotation's phase changes as `notify` says.
    #[must_use]
    pub fn notify(mut self, notify: NotifyConfig) -> Self {
        self.notify = notify;
        self
    }

    /// Listen on `addr`.
    #[must_use]
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Use the store at `url` instead of the embedded one.
    #[must_use]
    pub fn store_url(mut self, url: Option<String>) -> Self {
        self.store_url = url;
        self
    }

    /// The path of the master key file.
    pub fn key_path(&self) -> PathBuf {
        self.data_dir.join(KEY_FILE)
    }

    /// The path of the embedded SQLite store.
    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join(DB_FILE)
    }
}

/// The master key's file name in the data dir.
pub const KEY_FILE: &str = "master.key";
/// The SQLite store's file name in the data dir.
pub const DB_FILE: &str = "keyshift.db";
