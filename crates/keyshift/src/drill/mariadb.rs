//! The `mariadb` kind: a throw-away user `keyshift_drill_<id>'@'%'` whose
//! password rotates in dual mode (two passwords valid at once), and
//! consumers that log in afresh for every request.
//!
//! Changing a user's passwords ends no open session, so a request on a
//! pooled connection would prove nothing about the password. Each
//! consumer's pool therefore closes every connection when it is released:
//! every request is a login with the password the consumer holds at that
//! moment, then `SELECT 1`.

use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use keyshift_client::{HotSwap, Snapshot, Watched};
use keyshift_core::{Credential, SecretKind};
use keyshift_targets::{MariaDbConfig, MariaDbMode, MariaDbTarget, Target as _};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlSslMode};
use sqlx::{ConnectOptions as _, Connection as _, Executor as _};

use super::setup::{refuse_password, Fixture, Made};

/// The admin the server's MariaDB target logs in as when its config names
/// no admin credential, which is how the drill configures it.
const ADMIN: &str = "root";

/// How long a consumer waits for a login before the request fails.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The drill's user on one MariaDB.
pub struct MariaDbFixture {
    admin: MySqlConnectOptions,
    user: String,
}

impl MariaDbFixture {
    /// Creates the user, locked, gives it a random password through the
    /// target's own code (so only the password's hash reaches the server),
    /// unlocks it and prechecks the target as the server will.
    pub async fn create(url: &str, id: &str) -> anyhow::Result<Made> {
        refuse_password("--mariadb", url)?;
        let admin = MySqlConnectOptions::from_str(url)
            .with_context(|| format!("--mariadb {url}"))?
            .ssl_mode(MySqlSslMode::Disabled)
            .disable_statement_logging();
        if admin.get_username() != ADMIN {
            bail!(
                "--mariadb: the drill administers MariaDB as `{ADMIN}`, not `{}`",
                admin.get_username()
            );
        }
        let fixture = MariaDbFixture {
            admin,
            user: format!("keyshift_drill_{id}"),
        };
        match fixture.prepare().await {
            Ok(made) => Ok(made),
            Err(e) => {
                if let Err(c) = fixture.cleanup().await {
                    tracing::warn!(error = format!("{c:#}"), "could not drop the drill's user");
                }
                Err(e)
            }
        }
    }

    fn account(&self) -> String {
        format!("'{}'@'%'", self.user)
    }

    async fn prepare(&self) -> anyhow::Result<Made> {
        let address = format!("{}:{}", self.admin.get_host(), self.admin.get_port());
        let mut conn = self
            .admin
            .connect()
            .await
            .with_context(|| format!("connecting to MariaDB at {address} as {ADMIN}"))?;
        // Locked until it has a password: never an account without one.
        conn.execute(format!("CREATE USER {} ACCOUNT LOCK", self.account()).as_str())
            .await
            .context("creating the drill's MariaDB user")?;
        let config = MariaDbConfig {
            address,
            user: self.user.clone(),
            host: "%".to_owned(),
            mode: MariaDbMode::Dual,
            users: None,
            admin_secret: None,
        };
        let first = Credential::new(&self.user, keyshift_targets::random_password())?;
        let value = first.to_value();
        let target = MariaDbTarget::new(config.clone(), None)?;
        target
            .set_accepted(&[&value])
            .await
            .context("giving the drill's MariaDB user its first password")?;
        conn.execute(format!("ALTER USER {} ACCOUNT UNLOCK", self.account()).as_str())
            .await
            .context("unlocking the drill's MariaDB user")?;
        conn.close().await?;
        target
            .precheck(Some(&value))
            .await
            .context("checking the drill's MariaDB user")?;
        Ok(Made {
            fixture: Fixture::MariaDb(MariaDbFixture {
                admin: self.admin.clone(),
                user: self.user.clone(),
            }),
            kind: SecretKind::MariaDb,
            target: serde_json::to_value(config)?,
            value: Some(value),
        })
    }

    /// Drops the user if it exists.
    pub async fn cleanup(&self) -> anyhow::Result<()> {
        let mut conn = self.admin.connect().await?;
        conn.execute(format!("DROP USER IF EXISTS {}", self.account()).as_str())
            .await
            .context("dropping the drill's MariaDB user")?;
        conn.close().await?;
        Ok(())
    }

    /// What a consumer connects to, without credentials: the admin URL's
    /// host and port, no database, no TLS, and none of the session set-up
    /// statements sqlx sends by default (a login and `SELECT 1` is all a
    /// request is).
    pub fn consumer_options(&self) -> MySqlConnectOptions {
        MySqlConnectOptions::new()
            .host(self.admin.get_host())
            .port(self.admin.get_port())
            .ssl_mode(MySqlSslMode::Disabled)
            .statement_cache_capacity(0)
            .pipes_as_concat(false)
            .no_engine_substitution(false)
            .timezone(None)
            .set_names(false)
            .disable_statement_logging()
    }
}

/// A consumer's pool, rebuilt by the SDK's [`HotSwap`] whenever the secret
/// changes (the new password is checked with `SELECT 1` before it is
/// swapped in). Its connections are never reused: see the module docs.
pub async fn pool(
    watched: Watched,
    address: &MySqlConnectOptions,
) -> anyhow::Result<HotSwap<MySqlPool>> {
    let base = address.clone();
    let build = move |snap: Arc<Snapshot>| {
        let base = base.clone();
        async move {
            let login = Credential::parse(&snap.value).map_err(|e| e.to_string())?;
            let options = base
                .username(login.username())
                .password(login.password().expose());
            let pool = fresh_logins()
                .connect_with(options)
                .await
                .map_err(describe)?;
            match pool.execute("SELECT 1").await {
                Ok(_) => Ok(pool),
                Err(e) => {
                    pool.close().await;
                    Err(describe(e))
                }
            }
        }
    };
    let retire = |old: Arc<MySqlPool>| async move { old.close().await };
    HotSwap::start(watched, build, retire)
        .await
        .map_err(|e| anyhow::anyhow!("the first login failed: {e}"))
}

/// One connection at a time (a consumer sends one request at a time),
/// closed when released instead of going back to the pool.
fn fresh_logins() -> MySqlPoolOptions {
    MySqlPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(LOGIN_TIMEOUT)
        .test_before_acquire(false)
        .after_release(|_conn, _meta| Box::pin(async { Ok(false) }))
}

/// One request: a login with the pool's password, then `SELECT 1`.
pub async fn request(pool: &HotSwap<MySqlPool>) -> Result<(), String> {
    let version = pool.version();
    let current = pool.get();
    let result = async {
        let mut conn = current.acquire().await?;
        (&mut *conn).execute("SELECT 1").await?;
        Ok::<_, sqlx::Error>(())
    }
    .await;
    result.map_err(|e| format!("{} with version {version}", describe(e)))
}

/// An error without anything that could hold a secret: the server's error
/// number (its message names the user and host, never the password), or
/// the kind of failure.
fn describe(e: sqlx::Error) -> String {
    match &e {
        sqlx::Error::Database(d) => format!(
            "mariadb {}: {}",
            d.code().as_deref().unwrap_or("?"),
            d.message()
        ),
        sqlx::Error::PoolTimedOut => "mariadb: login timed out".to_owned(),
        sqlx::Error::Io(io) => format!("mariadb: {}", io.kind()),
        _ => "mariadb: connection failed".to_owned(),
    }
}
