//! Hot swap: rebuild what a credential went into (a database pool, a Redis
//! connection) when the secret changes, check it, and swap it in atomically.
//!
//! ```text
//!  SecretSource ── changes() ──► supervisor task: build(snapshot) = a new T, checked
//!                                  ├─ ok:     swap it into the ArcSwap; retire(old T)
//!                                  │          once nobody holds it
//!                                  └─ failed: keep the old T; retry after 500 ms doubling
//!                                             to 30 s, or at once on a newer snapshot
//!  get() ── lock-free ArcSwap load ──► Arc<T>
//! ```
//!
//! [`HotSwap`] is the one mechanism; `pg_pool` and `mysql_pool` (features
//! `sqlx-postgres`, `sqlx-mysql`) and `redis_connection` (feature `redis`)
//! are ready-made builders on top of it.
//!
//! The old value is handed to `retire` once nobody holds it any more (each
//! [`get`](HotSwap::get) returns an `Arc`; holding it across a piece of
//! work keeps the old value alive until that work ends), or after
//! [`RETIRE_GRACE`] at the latest. For a pool, retiring is `pool.close()`:
//! checked-out connections finish what they do, idle ones close.
//!
//! See [`HotSwap`] for an example.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use keyshift_core::VersionNumber;
use subtle::ConstantTimeEq;
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::{SecretSource, Snapshot};

/// The first wait before retrying a failed build: 500 ms, long enough for a
/// credential that was just pushed to reach the system that checks it.
pub const RETRY_FIRST: Duration = Duration::from_millis(500);

/// The longest wait between retries of a failed build: 30 s, so a broken
/// credential does not hammer the database, and a fixed one is picked up
/// within half a minute even without a new snapshot.
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// The longest time an old value waits for its holders to let go before it
/// is retired anyway: 30 s, longer than a request should take.
pub const RETIRE_GRACE: Duration = Duration::from_secs(30);

/// How often a retiring value checks whether anybody still holds it.
const RETIRE_POLL: Duration = Duration::from_millis(20);

/// A value built from a secret (a pool, a connection, a client), rebuilt,
/// checked and swapped atomically whenever the secret changes.
///
/// Cheap to clone: clones share the value and its supervisor task, which
/// stops when the last clone is dropped.
///
/// ```no_run
/// use std::sync::Arc;
/// use keyshift_client::{HotSwap, SecretSource, Snapshot};
///
/// /// A client for some HTTP upstream that takes a bearer token.
/// struct Upstream { token: String }
///
/// # async fn demo(source: impl SecretSource) -> Result<(), std::io::Error> {
/// let upstream = HotSwap::start(
///     source,
///     |snap: Arc<Snapshot>| async move {
///         // Build *and check*: an error keeps the old value.
///         let token = snap.value.expose().to_owned();
///         Ok::<_, std::io::Error>(Upstream { token })
///     },
///     |_old: Arc<Upstream>| async {},
/// )
/// .await?;
/// let client = upstream.get(); // lock-free, never waits on the network
/// # drop(client);
/// # Ok(()) }
/// ```
pub struct HotSwap<T> {
    inner: Arc<Handle<T>>,
}

impl<T> Clone for HotSwap<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T> fmt::Debug for HotSwap<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &self.inner.shared;
        f.debug_struct("HotSwap")
            .field("version", &shared.current.load().version)
            .field("swaps", &shared.swaps.load(Ordering::Relaxed))
            .field("last_error", &shared.last_error.load().as_deref())
            .finish_non_exhaustive()
    }
}

/// What the handles share; the supervisor's end of it is `Shared`.
struct Handle<T> {
    shared: Arc<Shared<T>>,
    /// Stops the supervisor when the last handle goes.
    _stop: DropGuard,
}

struct Shared<T> {
    current: ArcSwap<Built<T>>,
    last_error: ArcSwapOption<String>,
    swaps: AtomicU64,
}

/// A value and the snapshot it was built from (its version and the digest
/// of its value, never the value itself).
struct Built<T> {
    value: Arc<T>,
    version: VersionNumber,
    digest: [u8; 32],
}

impl<T> Built<T> {
    fn new(value: T, snap: &Snapshot) -> Self {
        Self {
            value: Arc::new(value),
            version: snap.version,
            digest: snap.value.sha256(),
        }
    }

    /// Whether this was built from the same value as `snap`.
    fn matches(&self, snap: &Snapshot) -> bool {
        self.version == snap.version && bool::from(self.digest.ct_eq(&snap.value.sha256()))
    }
}

impl<T: Send + Sync + 'static> HotSwap<T> {
    /// Builds the first `T` from `source.current()` with `build`, then
    /// supervises: on every change of the source it builds a new `T`; on
    /// success swaps it in atomically and hands the old one to `retire`
    /// (once nobody holds it, or after [`RETIRE_GRACE`]); on failure keeps
    /// the old one, logs, records [`last_error`](Self::last_error), and
    /// retries with backoff ([`RETRY_FIRST`] doubling to [`RETRY_MAX`])
    /// until it works or a newer snapshot arrives.
    ///
    /// `build` must also *check* what it built (a pool runs `SELECT 1`), so
    /// a credential the server refuses never replaces one that works. Its
    /// error is logged and kept as text: it must never contain the secret
    /// (database drivers' authentication errors do not).
    ///
    /// Must be called inside a Tokio runtime (the supervisor is a task).
    ///
    /// # Errors
    ///
    /// The first build's error: there is no old value to keep.
    pub async fn start<S, B, Fut, E, R, RFut>(
        source: S,
        build: B,
        retire: R,
    ) -> Result<HotSwap<T>, E>
    where
        S: SecretSource,
        B: Fn(Arc<Snapshot>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
        R: Fn(Arc<T>) -> RFut + Send + Sync + 'static,
        RFut: Future<Output = ()> + Send + 'static,
    {
        let mut changes = source.changes();
        // Seen before the first build: a change during it is not missed.
        changes.borrow_and_update();
        let snap = source.current();
        let first = build(snap.clone()).await?;
        let shared = Arc::new(Shared {
            current: ArcSwap::from_pointee(Built::new(first, &snap)),
            last_error: ArcSwapOption::empty(),
            swaps: AtomicU64::new(0),
        });
        let stop = CancellationToken::new();
        let supervisor = Supervisor {
            shared: shared.clone(),
            source,
            build,
            retire: Arc::new(retire),
            changes,
            stop: stop.clone(),
            source_open: true,
        };
        tokio::spawn(supervisor.run());
        Ok(HotSwap {
            inner: Arc::new(Handle {
                shared,
                _stop: stop.drop_guard(),
            }),
        })
    }
}

impl<T> HotSwap<T> {
    /// The current value: lock-free (an `ArcSwap` load), never waits.
    ///
    /// Hold the `Arc` for the length of one piece of work (a request, a
    /// transaction), not longer: an old value is retired once nobody holds
    /// it.
    pub fn get(&self) -> Arc<T> {
        self.inner.shared.current.load().value.clone()
    }

    /// The version of the snapshot the current value was built from.
    pub fn version(&self) -> VersionNumber {
        self.inner.shared.current.load().version
    }

    /// Why the last build failed, while the source has a snapshot that
    /// could not be built yet; `None` once the value is up to date.
    pub fn last_error(&self) -> Option<String> {
        self.inner.shared.last_error.load().as_deref().cloned()
    }

    /// How many times a new value was swapped in (the first build is not a
    /// swap).
    pub fn swaps(&self) -> u64 {
        self.inner.shared.swaps.load(Ordering::Relaxed)
    }
}

/// The task that rebuilds on change.
struct Supervisor<T, S, B, R> {
    shared: Arc<Shared<T>>,
    source: S,
    build: B,
    retire: Arc<R>,
    changes: watch::Receiver<u64>,
    stop: CancellationToken,
    /// False once the source dropped its sender: only retries remain.
    source_open: bool,
}

/// How one attempt to catch up ended.
enum Attempt {
    /// The value matches the source's snapshot.
    UpToDate,
    /// The build failed; retry after the backoff or on a change.
    Failed,
}

impl<T, S, B, Fut, E, R, RFut> Supervisor<T, S, B, R>
where
    T: Send + Sync + 'static,
    S: SecretSource,
    B: Fn(Arc<Snapshot>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
    R: Fn(Arc<T>) -> RFut + Send + Sync + 'static,
    RFut: Future<Output = ()> + Send + 'static,
{
    async fn run(mut self) {
        // A change during the first build is pending in `changes`.
        while self.wait_for_change().await {
            if !self.catch_up().await {
                return;
            }
        }
    }

    /// Waits for the source to change; false on shutdown.
    async fn wait_for_change(&mut self) -> bool {
        if !self.source_open {
            self.stop.cancelled().await;
            return false;
        }
        tokio::select! {
            _ = self.stop.cancelled() => false,
            changed = self.changes.changed() => {
                if changed.is_err() {
                    tracing::debug!("secret source closed; keeping the last value");
                    self.source_open = false;
                    self.stop.cancelled().await;
                    return false;
                }
                true
            }
        }
    }

    /// Builds until the value matches the source's latest snapshot, backing
    /// off between failures; a new snapshot restarts the backoff. False on
    /// shutdown.
    async fn catch_up(&mut self) -> bool {
        let mut backoff = RETRY_FIRST;
        loop {
            let Some(attempt) = self.attempt().await else {
                return false;
            };
            if let Attempt::UpToDate = attempt {
                return true;
            }
            let sleep = tokio::time::sleep(backoff);
            tokio::select! {
                _ = self.stop.cancelled() => return false,
                () = sleep => backoff = (backoff * 2).min(RETRY_MAX),
                changed = self.changes.changed(), if self.source_open => {
                    match changed {
                        Ok(()) => backoff = RETRY_FIRST,
                        Err(_) => self.source_open = false,
                    }
                }
            }
        }
    }

    /// One build of the latest snapshot, if the value is not built from it
    /// already. `None` on shutdown.
    async fn attempt(&mut self) -> Option<Attempt> {
        self.changes.borrow_and_update();
        let snap = self.source.current();
        if self.shared.current.load().matches(&snap) {
            self.shared.last_error.store(None);
            return Some(Attempt::UpToDate);
        }
        let result = tokio::select! {
            _ = self.stop.cancelled() => return None,
            r = (self.build)(snap.clone()) => r,
        };
        match result {
            Ok(value) => {
                self.swap_in(value, &snap);
                Some(Attempt::UpToDate)
            }
            Err(e) => {
                let error = e.to_string();
                tracing::warn!(
                    secret = %snap.name,
                    version = %snap.version,
                    kept = %self.shared.current.load().version,
                    error = %error,
                    "could not build from the new secret version; keeping the old value"
                );
                self.shared.last_error.store(Some(Arc::new(error)));
                Some(Attempt::Failed)
            }
        }
    }

    fn swap_in(&self, value: T, snap: &Snapshot) {
        let old = self.shared.current.swap(Arc::new(Built::new(value, snap)));
        self.shared.swaps.fetch_add(1, Ordering::Relaxed);
        self.shared.last_error.store(None);
        tracing::info!(
            secret = %snap.name,
            from = %old.version,
            to = %snap.version,
            "swapped in a value built from the new secret version"
        );
        let old_value = old.value.clone();
        drop(old);
        tokio::spawn(retire_when_released(old_value, self.retire.clone()));
    }
}

/// Waits until `old` has no other holder (or [`RETIRE_GRACE`] passed), then
/// retires it.
async fn retire_when_released<T, R, RFut>(old: Arc<T>, retire: Arc<R>)
where
    R: Fn(Arc<T>) -> RFut,
    RFut: Future<Output = ()>,
{
    let deadline = tokio::time::Instant::now() + RETIRE_GRACE;
    while Arc::strong_count(&old) > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(RETIRE_POLL).await;
    }
    if Arc::strong_count(&old) > 1 {
        tracing::warn!(
            grace_s = RETIRE_GRACE.as_secs(),
            "an old value is still held after the grace period; retiring it anyway"
        );
    }
    retire(old).await;
}

/// The one build-check-swap-close mechanism behind [`pg_pool_with`] and
/// [`mysql_pool_with`]: `connect` gives the full connect options (password
/// included) for a snapshot.
#[cfg(any(feature = "sqlx-postgres", feature = "sqlx-mysql"))]
async fn sql_pool<DB, S, F>(
    source: S,
    pool: sqlx::pool::PoolOptions<DB>,
    connect: F,
) -> Result<HotSwap<sqlx::Pool<DB>>, sqlx::Error>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    S: SecretSource,
    F: Fn(&Snapshot) -> <DB::Connection as sqlx::Connection>::Options + Send + Sync + 'static,
{
    let build = move |snap: Arc<Snapshot>| {
        let options = connect(&snap);
        let pool = pool.clone();
        async move {
            let pool = pool.connect_with(options).await?;
            match sqlx::query::<DB>("SELECT 1").execute(&pool).await {
                Ok(_) => Ok(pool),
                Err(e) => {
                    pool.close().await;
                    Err(e)
                }
            }
        }
    };
    HotSwap::start(source, build, |old: Arc<sqlx::Pool<DB>>| async move {
        old.close().await;
    })
    .await
}

#[cfg(feature = "sqlx-postgres")]
pub use pg::{pg_pool, pg_pool_with};

#[cfg(feature = "sqlx-postgres")]
mod pg {
    use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

    use super::*;

    /// A PostgreSQL pool that follows `source`: see [`pg_pool_with`], with
    /// sqlx's default pool options.
    ///
    /// # Errors
    ///
    /// The first pool's connection or `SELECT 1` error.
    pub async fn pg_pool<S, F>(source: S, options: F) -> Result<HotSwap<PgPool>, sqlx::Error>
    where
        S: SecretSource,
        F: Fn(&Snapshot) -> PgConnectOptions + Send + Sync + 'static,
    {
        pg_pool_with(source, PgPoolOptions::new(), options).await
    }

    /// A PostgreSQL pool that follows `source`.
    ///
    /// The snapshot's value is **the password alone**: `options` gives
    /// everything else (host, port, user, database, TLS) and the password
    /// is set from the value on what it returns. Each new pool is checked
    /// with `SELECT 1` before it is swapped in; the old pool is retired
    /// with [`PgPool::close`] (connections in use finish their work and
    /// close when released, idle ones close at once).
    ///
    /// For a credential that carries more than a password (a JSON document
    /// with user and password, say), use [`HotSwap::start`] with a build
    /// function of your own, on the model of this one.
    ///
    /// # Errors
    ///
    /// The first pool's connection or `SELECT 1` error.
    pub async fn pg_pool_with<S, F>(
        source: S,
        pool: PgPoolOptions,
        options: F,
    ) -> Result<HotSwap<PgPool>, sqlx::Error>
    where
        S: SecretSource,
        F: Fn(&Snapshot) -> PgConnectOptions + Send + Sync + 'static,
    {
        super::sql_pool(source, pool, move |snap: &Snapshot| {
            options(snap).password(snap.value.expose())
        })
        .await
    }
}

#[cfg(feature = "sqlx-mysql")]
pub use mysql::{mysql_pool, mysql_pool_with};

#[cfg(feature = "sqlx-mysql")]
mod mysql {
    use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};

    use super::*;

    /// A MySQL or MariaDB pool that follows `source`: see
    /// [`mysql_pool_with`], with sqlx's default pool options.
    ///
    /// # Errors
    ///
    /// The first pool's connection or `SELECT 1` error.
    pub async fn mysql_pool<S, F>(source: S, options: F) -> Result<HotSwap<MySqlPool>, sqlx::Error>
    where
        S: SecretSource,
        F: Fn(&Snapshot) -> MySqlConnectOptions + Send + Sync + 'static,
    {
        mysql_pool_with(source, MySqlPoolOptions::new(), options).await
    }

    /// A MySQL or MariaDB pool that follows `source`.
    ///
    /// As [`pg_pool_with`](super::pg_pool_with): the snapshot's value is
    /// the password alone, `options` gives the rest; each new pool is
    /// checked with `SELECT 1`, the old one retired with
    /// [`MySqlPool::close`].
    ///
    /// # Errors
    ///
    /// The first pool's connection or `SELECT 1` error.
    pub async fn mysql_pool_with<S, F>(
        source: S,
        pool: MySqlPoolOptions,
        options: F,
    ) -> Result<HotSwap<MySqlPool>, sqlx::Error>
    where
        S: SecretSource,
        F: Fn(&Snapshot) -> MySqlConnectOptions + Send + Sync + 'static,
    {
        super::sql_pool(source, pool, move |snap: &Snapshot| {
            options(snap).password(snap.value.expose())
        })
        .await
    }
}
