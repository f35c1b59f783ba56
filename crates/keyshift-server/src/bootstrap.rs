//! `keyshift init` and `keyshift serve`: creating a data dir, opening the
//! store with the master key, binding, resuming rotations, serving.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use keyshift_core::api::{Grant, Scope};
use keyshift_core::SecretValue;
use keyshift_store::{sqlite_url, KeyError, MasterKey, NewAudit, SqlStore, Store, StoreError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cache::ReadCache;
use crate::config::ServeConfig;
use crate::heartbeats::Heartbeats;
use crate::notify::Notifier;
use crate::orchestrator::{Lease, Orchestrator, TestHooks};
use crate::routes;
use crate::scheduler::Scheduler;
use crate::state::{now, AppState, Shared};

/// Why the server could not be set up or run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data dir already holds a master key.
    #[error("{0} is already initialized (it has a master key); use another --data-dir")]
    AlreadyInitialized(PathBuf),
    /// No master key: neither the key file nor `KEYSHIFT_MASTER_KEY`.
    #[error("no master key at {0} and KEYSHIFT_MASTER_KEY is not set: run `keyshift init` first")]
    NoMasterKey(PathBuf),
    /// The master key could not be read or created.
    #[error("master key")]
    Key(#[from] KeyError),
    /// The store refused to open (a wrong master key is one case).
    #[error("store")]
    Store(#[from] StoreError),
    /// The data dir or listener failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The notification settings are invalid.
    #[error("notifications: {0}")]
    Notify(String),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
    let context = context.into();
    move |source| ServerError::Io { context, source }
}

/// What `init` made.
pub struct InitReport {
    /// The root token (admin on `*`): shown once, stored only hashed.
    pub root_token: SecretValue,
    /// The master key file.
    pub key_path: PathBuf,
    /// The store URL, without user or password.
    pub store_url: String,
}

/// Creates `data_dir` (mode 0700), its master key (0600), the embedded
/// store, and a root token.
///
/// # Errors
///
/// [`ServerError::AlreadyInitialized`] if a key exists there; IO and store
/// errors.
pub async fn init(data_dir: &Path) -> Result<InitReport, ServerError> {
    init_with_store(data_dir, None).await
}

/// [`init`], with the store at `store_url` (a `postgres://` URL shared by
/// replicas) instead of the embedded one: the master key goes to
/// `data_dir`, the root token to that store.
///
/// # Errors
///
/// As [`init`]; a store that does not open.
pub async fn init_with_store(
    data_dir: &Path,
    store_url: Option<&str>,
) -> Result<InitReport, ServerError> {
    let config = ServeConfig::new(data_dir.to_owned());
    let key_path = config.key_path();
    if key_path.exists() {
        return Err(ServerError::AlreadyInitialized(data_dir.to_owned()));
    }
    create_private_dir(data_dir)?;
    let key = MasterKey::create(&key_path)?;
    let url = match store_url {
        Some(url) => url.to_owned(),
        None => sqlite_url(&config.sqlite_path()),
    };
    let store = SqlStore::open(&url, key).await?;
    let root_token = mint_root(&store).await?;
    Ok(InitReport {
        root_token,
        key_path,
        store_url: without_password(&url),
    })
}

/// `url` with any `user:password@` left out, to print.
fn without_password(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

async fn mint_root(store: &SqlStore) -> Result<SecretValue, ServerError> {
    let grants = [Grant {
        scope: Scope::Admin,
        pattern: "*".to_owned(),
    }];
    let minted = crate::auth::mint("root token (keyshift init)", &grants, now());
    store.create_token(&minted.record).await?;
    store
        .append_audit(&NewAudit {
            actor: "keyshift init".to_owned(),
            action: "token.create".to_owned(),
            secret: None,
            version: None,
            rotation: None,
            outcome: "ok".to_owned(),
            detail: Some(format!("root token:{}", minted.record.id)),
            at: now(),
        })
        .await?;
    Ok(minted.token)
}

fn create_private_dir(dir: &Path) -> Result<(), ServerError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(format!("creating {}", dir.display())))
}

/// A bound server, ready to run.
pub struct Server {
    listener: TcpListener,
    state: AppState,
    body_limit: usize,
}

impl Server {
    /// Opens the store (master key from `KEYSHIFT_MASTER_KEY` or the data
    /// dir's key file), binds the listener and resumes every unfinished
    /// rotation.
    ///
    /// # Errors
    ///
    /// No or wrong master key, a store that does not open, a port in use.
    pub async fn start(config: ServeConfig) -> Result<Server, ServerError> {
        let key = match MasterKey::from_env()? {
            Some(key) => key,
            None if config.key_path().exists() => MasterKey::load(&config.key_path())?,
            None => return Err(ServerError::NoMasterKey(config.key_path())),
        };
        let url = match &config.store_url {
            Some(url) => url.clone(),
            None => sqlite_url(&config.sqlite_path()),
        };
        let store = SqlStore::open(&url, key).await?;
        let engine = store.engine().as_str();
        let store: Arc<dyn Store> = Arc::new(store);
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(io(format!("listening on {}", config.listen)))?;
        let shutdown = CancellationToken::new();
        let notifier = Notifier::new(store.clone(), config.notify.clone(), shutdown.clone())
            .map_err(ServerError::Notify)?;
        let owner = config.replica_id.clone().unwrap_or_else(|| match engine {
            "sqlite" => "local".to_owned(),
            _ => default_replica_id(),
        });
        tracing::info!(replica = %owner, lease = ?config.lease_ttl, "replica");
        let orchestrator = Orchestrator::new(
            store.clone(),
            TestHooks::from_env(),
            shutdown.clone(),
            notifier,
            Lease {
                owner: owner.into(),
                ttl: config.lease_ttl,
            },
        );
        let resumed = orchestrator.sweep().await?;
        if resumed > 0 {
            tracing::info!(resumed, "resumed unfinished rotations");
        }
        let scheduler = Arc::new(Scheduler::new(
            store.clone(),
            orchestrator.clone(),
            config.clock.clone(),
        ));
        Ok(Server {
            listener,
            state: AppState::new(Shared {
                cache: Arc::new(ReadCache::new(store.as_ref())),
                heartbeats: Heartbeats::start(store.clone()),
                store,
                orchestrator,
                scheduler,
                engine,
                shutdown,
            }),
            body_limit: config.body_limit,
        })
    }

    /// The address it listens on (useful with port 0).
    ///
    /// # Errors
    ///
    /// When the socket cannot say.
    pub fn local_addr(&self) -> Result<SocketAddr, ServerError> {
        self.listener.local_addr().map_err(io("local address"))
    }

    /// Serves until `shutdown` completes, then stops watch streams and
    /// rotation drivers (their state is persisted; they resume at the next
    /// start).
    ///
    /// # Errors
    ///
    /// When the listener fails.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let cancel = self.state.shutdown.clone();
        tokio::spawn(self.state.scheduler.clone().run(cancel.clone()));
        tokio::spawn(self.state.orchestrator.clone().run_sweeper(cancel.clone()));
        tokio::spawn(crate::metrics::upkeep(cancel.clone()));
        tokio::spawn(crate::metrics::probe_store(
            self.state.store.clone(),
            cancel.clone(),
        ));
        let app = routes::app(self.state, self.body_limit);
        tracing::info!(addr = ?self.listener.local_addr().ok(), "keyshift listening");
        let signal = cancel.clone();
        axum::serve(self.listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                signal.cancel();
            })
            .await
            .map_err(io("serving"))?;
        cancel.cancel();
        Ok(())
    }
}

/// `<hostname>:<pid>:<4 random hex digits>`: unique per process.
fn default_replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "keyshift".to_owned());
    format!(
        "{host}:{}:{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

#[cfg(test)]
mod tests {
    use super::without_password;

    #[test]
    fn printed_store_urls_carry_no_password() {
        assert_eq!(
            without_password("postgres://ks:hunter2@db.internal:5432/keyshift"),
            "postgres://db.internal:5432/keyshift"
        );
        assert_eq!(
            without_password("postgres://db/keyshift"),
            "postgres://db/keyshift"
        );
    }
}
