//! The `postgres` kind: a throw-away group role with its two blue-green
//! slot roles, and consumers that log in afresh for every request.
//!
//! ```text
//!  keyshift_drill_<id>          group role, NOLOGIN (member of keyshift_password_auth)
//!   ├─ keyshift_drill_<id>_blue   slot: LOGIN + SCRAM verifier (the first credential)
//!   └─ keyshift_drill_<id>_green  slot: made by the first rotation
//! ```
//!
//! `ALTER ROLE .. NOLOGIN` (the revoke) ends no open session, so a request
//! on a pooled connection would prove nothing about the credential. Each
//! consumer's pool therefore closes every connection when it is released:
//! every request is a login with the credential the consumer holds at that
//! moment, then `SELECT 1`.

use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use keyshift_client::{HotSwap, Snapshot, Watched};
use keyshift_core::{Credential, SecretKind};
use keyshift_targets::{PgConfig, PgTarget, Target as _};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::{ConnectOptions as _, Connection as _, Executor as _};

use super::setup::{refuse_password, Fixture, Made};

/// The role whose members the machine's PostgreSQL asks for a password
/// (`host all +keyshift_password_auth 127.0.0.1/32 scram-sha-256` first in
/// pg_hba.conf); the drill's group joins it when it exists.
pub const PASSWORD_GROUP: &str = "keyshift_password_auth";

/// The admin the server's PostgreSQL target logs in as when its config
/// names no admin credential, which is how the drill configures it.
const ADMIN: &str = "postgres";

/// How long a consumer waits for a login before the request fails.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The drill's roles on one PostgreSQL.
pub struct PgFixture {
    admin: PgConnectOptions,
    group: String,
    slots: [String; 2],
}

impl PgFixture {
    /// Creates the group role and the first slot with a random password
    /// (through the target's own `enable`, so only a SCRAM verifier reaches
    /// the server), and checks that PostgreSQL asks the slots for their
    /// password.
    pub async fn create(url: &str, id: &str) -> anyhow::Result<Made> {
        refuse_password("--postgres", url)?;
        let admin = PgConnectOptions::from_str(url)
            .with_context(|| format!("--postgres {url}"))?
            .disable_statement_logging();
        if admin.get_username() != ADMIN {
            bail!(
                "--postgres: the drill administers PostgreSQL as `{ADMIN}`, not `{}`",
                admin.get_username()
            );
        }
        let group = format!("keyshift_drill_{id}");
        let config = PgConfig {
            address: format!("{}:{}", admin.get_host(), admin.get_port()),
            database: admin.get_database().unwrap_or(ADMIN).to_owned(),
            group: group.clone(),
            roles: None,
            admin_secret: None,
        };
        let fixture = PgFixture {
            admin,
            slots: config.slots(),
            group,
        };
        match fixture.prepare(&config).await {
            Ok(made) => Ok(made),
            Err(e) => {
                if let Err(c) = fixture.cleanup().await {
                    tracing::warn!(error = format!("{c:#}"), "could not drop the drill's roles");
                }
                Err(e)
            }
        }
    }

    async fn prepare(&self, config: &PgConfig) -> anyhow::Result<Made> {
        let mut conn = self.admin.connect().await.with_context(|| {
            format!("connecting to PostgreSQL at {} as {ADMIN}", config.address)
        })?;
        conn.execute(format!("CREATE ROLE \"{}\" NOLOGIN", self.group).as_str())
            .await
            .context("creating the drill's group role")?;
        let checks: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                .bind(PASSWORD_GROUP)
                .fetch_one(&mut conn)
                .await?;
        if checks {
            conn.execute(format!("GRANT \"{PASSWORD_GROUP}\" TO \"{}\"", self.group).as_str())
                .await
                .with_context(|| {
                    format!("making the drill's group a member of {PASSWORD_GROUP}")
                })?;
        }
        conn.close().await?;
        let first = Credential::new(&self.slots[0], keyshift_targets::random_password())?;
        let value = first.to_value();
        let target = PgTarget::new(config.clone(), None)?;
        target
            .enable(&value)
            .await
            .context("creating the drill's first login role")?;
        target.precheck(Some(&value)).await.with_context(|| {
            format!(
                "PostgreSQL must check the passwords of the drill's roles: create the role \
                 {PASSWORD_GROUP} and put `host all +{PASSWORD_GROUP} 127.0.0.1/32 scram-sha-256` \
                 first in pg_hba.conf (see docs/drill.md)"
            )
        })?;
        Ok(Made {
            fixture: Fixture::Postgres(PgFixture {
                admin: self.admin.clone(),
                group: self.group.clone(),
                slots: self.slots.clone(),
            }),
            kind: SecretKind::Postgres,
            target: serde_json::to_value(config)?,
            value: Some(value),
        })
    }

    /// Drops the slot roles and the group (those that exist).
    pub async fn cleanup(&self) -> anyhow::Result<()> {
        let mut conn = self.admin.connect().await?;
        for role in self.slots.iter().chain([&self.group]) {
            conn.execute(format!("DROP ROLE IF EXISTS \"{role}\"").as_str())
                .await
                .with_context(|| format!("dropping role {role}"))?;
        }
        conn.close().await?;
        Ok(())
    }

    /// What a consumer connects to, without credentials: the admin URL's host,
    /// port and database, no TLS (the server is local; a TLS handshake per login
    /// would only slow the drill down).
    pub fn consumer_options(&self) -> PgConnectOptions {
        let admin = &self.admin;
        PgConnectOptions::new_without_pgpass()
            .host(admin.get_host())
            .port(admin.get_port())
            .database(admin.get_database().unwrap_or(ADMIN))
            .ssl_mode(PgSslMode::Disable)
            .statement_cache_capacity(0)
            .disable_statement_logging()
    }
}

/// A consumer's pool, rebuilt by the SDK's [`HotSwap`] whenever the secret
/// changes (the new login is checked with `SELECT 1` before it is swapped
/// in). Its connections are never reused: see the module docs.
pub async fn pool(watched: Watched, address: &PgConnectOptions) -> anyhow::Result<HotSwap<PgPool>> {
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
    let retire = |old: Arc<PgPool>| async move { old.close().await };
    HotSwap::start(watched, build, retire)
        .await
        .map_err(|e| anyhow::anyhow!("the first login failed: {e}"))
}

/// One connection at a time (a consumer sends one request at a time), closed
/// when released instead of going back to the pool.
fn fresh_logins() -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(LOGIN_TIMEOUT)
        .test_before_acquire(false)
        .after_release(|_conn, _meta| Box::pin(async { Ok(false) }))
}

/// One request: a login with the pool's credential, then `SELECT 1`.
pub async fn request(pool: &HotSwap<PgPool>) -> Result<(), String> {
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

/// An error without anything that could hold a secret: the SQLSTATE and
/// the server's message (PostgreSQL never quotes a password in it), or the
/// kind of failure.
fn describe(e: sqlx::Error) -> String {
    match &e {
        sqlx::Error::Database(d) => format!(
            "postgres {}: {}",
            d.code().as_deref().unwrap_or("?"),
            d.message()
        ),
        sqlx::Error::PoolTimedOut => "postgres: login timed out".to_owned(),
        sqlx::Error::Io(io) => format!("postgres: {}", io.kind()),
        _ => "postgres: connection failed".to_owned(),
    }
}
