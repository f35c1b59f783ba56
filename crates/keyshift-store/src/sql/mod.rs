//! [`SqlStore`]: one implementation over sqlx's `AnyPool` for SQLite and
//! PostgreSQL, with shared SQL (placeholders `$1`, `$2`, ... work on both)
//! and per-engine DDL.

mod audit;
mod consumers;
mod decode;
mod events;
mod feed;
mod rotations;
mod schema;
mod secrets;
mod store_impl;
mod versions;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use sqlx::any::AnyPoolOptions;
use sqlx::AnyConnection;
use sqlx::{AnyPool, Transaction};
use tokio::sync::broadcast;

use keyshift_core::SecretName;

use crate::crypto::MasterKey;
use crate::error::StoreError;
use crate::model::{Engine, EventRecord};

/// Events buffered for slow subscribers before they see `Lagged`.
const EVENT_CHANNEL_CAPACITY: usize = 1024;

/// Connections in a PostgreSQL pool.
const POSTGRES_MAX_CONNECTIONS: u32 = 10;

/// How long a call waits for a PostgreSQL connection before it fails with
/// a transient error: during an outage, callers learn it soon (and fall
/// back to what they hold in memory) rather than after sqlx's 30 s.
const POSTGRES_ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

type Tx = Transaction<'static, sqlx::Any>;

/// The [`Store`](crate::Store) over SQLite or PostgreSQL.
///
/// * **SQLite** runs in WAL mode with a 5 s busy timeout and a pool of
///   **one** connection: writes are serialized in-process (SQLite allows
///   one writer anyway, and a single connection rules out `SQLITE_BUSY` on
///   lock upgrades between our own transactions). Write transactions start
///   with `BEGIN IMMEDIATE` so another process sharing the file waits on the
///   busy timeout instead of failing.
/// * **PostgreSQL** uses a pool of up to 10 connections. Each change to a
///   secret locks its row (`SELECT ... FOR UPDATE`) for the transaction, so
///   version numbers and event sequence numbers are allocated without races
///   across replicas.
///
/// Event ids come from a counter row updated in the same transaction, so
/// they are assigned in commit order: a reader of
/// [`events_since`](crate::Store::events_since) never sees id `n+1` before
/// `n` has committed. [`subscribe`](crate::Store::subscribe)rs receive
/// every committed event in id order, without gaps: this instance's own,
/// and on PostgreSQL those of every other instance on the same database
/// (other replicas), through `LISTEN`/`NOTIFY` and a catch-up read from
/// the store after each (re)connection.
pub struct SqlStore {
    pool: AnyPool,
    engine: Engine,
    key: MasterKey,
    feed: Arc<feed::Feed>,
    /// The PostgreSQL listener task, aborted with the store.
    listener: Option<tokio::task::AbortHandle>,
}

impl Drop for SqlStore {
    fn drop(&mut self) {
        if let Some(listener) = &self.listener {
            listener.abort();
        }
    }
}

impl fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("engine", &self.engine)
            .field("key_id", &self.key.id())
            .finish_non_exhaustive()
    }
}

/// The store URL of a SQLite database file at `path`
/// (`sqlite:///abs/path/keyshift.db`), with characters that URLs reserve
/// percent-encoded.
pub fn sqlite_url(path: &Path) -> String {
    let mut url = String::from("sqlite://");
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-' | b'~') {
            url.push(char::from(b));
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
}

/// `url` with `mode=rwc` (create if missing) unless it names a mode.
fn sqlite_create_mode(url: &str) -> String {
    match url.split_once('?') {
        None => format!("{url}?mode=rwc"),
        Some((_, params)) if params.split('&').any(|p| p.starts_with("mode=")) => url.to_owned(),
        Some(_) => format!("{url}&mode=rwc"),
    }
}

impl SqlStore {
    /// Opens the store at `url`: `sqlite:///abs/path/keyshift.db` (created
    /// if missing; see [`sqlite_url`]) or `postgres://...`.
    ///
    /// Runs the schema migrations, then checks the master key: the first
    /// open stores a key-check row (a known plaintext encrypted under `key`,
    /// with its id); later opens decrypt it.
    ///
    /// # Errors
    ///
    /// [`StoreError::WrongMasterKey`] if the store was initialised with
    /// another key (nothing is changed), [`StoreError::UnsupportedUrl`],
    /// [`StoreError::Migration`], or [`StoreError::Database`] if the
    /// database cannot be reached.
    pub async fn open(url: &str, key: MasterKey) -> Result<SqlStore, StoreError> {
        sqlx::any::install_default_drivers();
        let scheme = url.split_once(':').map_or("", |(s, _)| s);
        let engine = match scheme {
            "sqlite" => Engine::Sqlite,
            "postgres" | "postgresql" => Engine::Postgres,
            other => {
                return Err(StoreError::UnsupportedUrl {
                    scheme: other.chars().take(32).collect(),
                })
            }
        };
        let pool = match engine {
            Engine::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(1)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            sqlx::query("PRAGMA journal_mode = WAL")
                                .execute(&mut *conn)
                                .await?;
                            sqlx::query("PRAGMA busy_timeout = 5000")
                                .execute(&mut *conn)
                                .await?;
                            Ok(())
                        })
                    })
                    .connect(&sqlite_create_mode(url))
                    .await?
            }
            Engine::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(POSTGRES_MAX_CONNECTIONS)
                    .acquire_timeout(POSTGRES_ACQUIRE_TIMEOUT)
                    .connect(url)
                    .await?
            }
        };
        let (events, _) = broadcast::channel(EVENT_CHANNEL_CAPACITY);
        let mut store = SqlStore {
            pool,
            engine,
            key,
            feed: Arc::new(feed::Feed::new(events, 0)),
            listener: None,
        };
        let prepared = match store.migrate().await {
            Ok(()) => store.check_key().await,
            Err(e) => Err(e),
        };
        let latest = match prepared {
            Ok(()) => store.latest_event_id_impl().await,
            Err(e) => Err(e),
        };
        let latest = match latest {
            Ok(latest) => latest,
            Err(e) => {
                store.pool.close().await;
                return Err(e);
            }
        };
        store.feed = Arc::new(feed::Feed::new(store.feed.events.clone(), latest));
        if engine == Engine::Postgres {
            let task = tokio::spawn(feed::listen(
                url.to_owned(),
                store.pool.clone(),
                store.feed.clone(),
            ));
            store.listener = Some(task.abort_handle());
        }
        tracing::debug!(engine = engine.as_str(), key_id = %store.key.id(), "store opened");
        Ok(store)
    }

    /// The database behind this store.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The id of the master key in use.
    pub fn key_id(&self) -> String {
        self.key.id()
    }

    /// Closes every connection (SQLite checkpoints its WAL into the main
    /// file) and stops listening for other replicas' events. Calls made
    /// after this fail with a database error.
    pub async fn close(&self) {
        if let Some(listener) = &self.listener {
            listener.abort();
        }
        self.pool.close().await;
    }

    /// Begins a write transaction (`BEGIN IMMEDIATE` on SQLite).
    async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(match self.engine {
            Engine::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Engine::Postgres => self.pool.begin().await?,
        })
    }

    /// ` FOR UPDATE` on PostgreSQL; nothing on SQLite, where the
    /// `BEGIN IMMEDIATE` transaction already holds the write lock.
    fn for_update(&self) -> &'static str {
        match self.engine {
            Engine::Sqlite => "",
            Engine::Postgres => " FOR UPDATE",
        }
    }

    /// Commits `tx`, then sends its event to subscribers (none listening
    /// is fine); on PostgreSQL, notifies other replicas at commit.
    ///
    /// Event ids are allocated under the `counters` row lock, held until
    /// commit, so commits happen in id order; holding the feed's lock from
    /// commit to send keeps the sends in that order too.
    async fn commit_and_publish(&self, mut tx: Tx, event: EventRecord) -> Result<(), StoreError> {
        if self.engine == Engine::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(feed::CHANNEL)
                .bind(event.id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        let mut sent = self.feed.lock().await;
        let missed = feed::Feed::missed_before(&mut tx, *sent, event.id).await?;
        tx.commit().await?;
        self.feed.publish(&mut sent, missed, event);
        Ok(())
    }

    /// The id of secret `name`, locked for the transaction on PostgreSQL.
    async fn lock_secret(
        &self,
        conn: &mut AnyConnection,
        name: &SecretName,
    ) -> Result<i64, StoreError> {
        let sql = format!(
            "SELECT id FROM secrets WHERE name = $1{}",
            self.for_update()
        );
        sqlx::query_scalar(&sql)
            .bind(name.as_str())
            .fetch_optional(conn)
            .await?
            .ok_or_else(|| not_found_secret(name))
    }
}

/// [`StoreError::NotFound`] for a secret.
fn not_found_secret(name: &SecretName) -> StoreError {
    StoreError::NotFound {
        what: "secret",
        name: name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_escape_reserved_characters() {
        assert_eq!(
            sqlite_url(Path::new("/var/lib/keyshift/keyshift.db")),
            "sqlite:///var/lib/keyshift/keyshift.db"
        );
        assert_eq!(
            sqlite_url(Path::new("/tmp/a b?#%.db")),
            "sqlite:///tmp/a%20b%3F%23%25.db"
        );
    }

    /// The server spawns `open`; its future must be `Send`.
    #[test]
    fn open_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let fut = SqlStore::open("sqlite:///nonexistent/x.db", MasterKey::generate());
        assert_send(&fut);
    }

    #[test]
    fn create_mode_is_added_once() {
        assert_eq!(
            sqlite_create_mode("sqlite:///x.db"),
            "sqlite:///x.db?mode=rwc"
        );
        assert_eq!(
            sqlite_create_mode("sqlite:///x.db?cache=private"),
            "sqlite:///x.db?cache=private&mode=rwc"
        );
        assert_eq!(
            sqlite_create_mode("sqlite:///x.db?mode=ro"),
            "sqlite:///x.db?mode=ro"
        );
    }
}
