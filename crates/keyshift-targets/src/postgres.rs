//! The PostgreSQL blue-green target.
//!
//! PostgreSQL keeps one password per role, so two credentials are valid at
//! once only as two roles: the *slots* `<group>_blue` and `<group>_green`,
//! login roles that get their privileges from one group role. A rotation
//! puts a fresh password into the idle slot and switches consumers to it;
//! the old slot keeps working through the overlap and is then disabled.
//!
//! ```text
//!                 ┌──────────── group (privileges, NOLOGIN) ────────────┐
//!                 │                                                     │
//!   current ──► app_blue  (LOGIN, password A)      app_green (idle) ◄── pending
//! ```
//!
//! The statements, run by the admin on a fresh connection (identifiers are
//! validated names, always double-quoted):
//!
//! ```sql
//! -- enable: the slot role may log in with the new password
//! CREATE ROLE "app_green" NOLOGIN;                  -- only when missing
//! GRANT "app" TO "app_green";                        -- only when not a member
//! ALTER ROLE "app_green" WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>';
//! -- revoke: the role and its password stay, for an instant rollback
//! ALTER ROLE "app_blue" NOLOGIN;
//! -- usage
//! SELECT count(*) FROM pg_stat_activity WHERE usename = $1;
//! ```
//!
//! The SCRAM-SHA-256 verifier is computed here (16-byte random salt, 4096
//! iterations); PostgreSQL stores a pre-hashed verifier as is, so the
//! plaintext never reaches the server's statement log, `pg_stat_statements`
//! or `pg_authid`. It travels only inside the SCRAM handshake of the login
//! that verifies it.
//!
//! What is observable: whether a slot role exists, its group membership and
//! whether it may log in (`pg_roles`), and its open sessions
//! (`pg_stat_activity`, which is [`Target::usage`]). What is not: which
//! password a role has (only superusers may read `pg_authid`, and this
//! target never does), and when a role last logged in (PostgreSQL does not
//! record it). So [`Target::verify`] logs in to find out.
//!
//! `ALTER ROLE .. NOLOGIN` refuses new logins only: sessions already open
//! stay open until they end (a pool must reconnect to move over;
//! `pg_terminate_backend` would cut them, and this target never calls it).
//!
//! pg_hba.conf must check passwords for the slot roles, e.g.
//! `host all +app 0.0.0.0/0 scram-sha-256` (`md5` works too) above any
//! `trust` line. Where it trusts them, every password logs in, so neither
//! verify nor revoke can tell credentials apart: [`Target::precheck`]
//! refuses such a setup. Avoid the `password` method, which makes the
//! client send the plaintext.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use keyshift_core::{valid_username, Credential, SecretName, SecretValue};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use tracing::{debug, field, info, Span};

use crate::scram;
use crate::slots::{next_credential, parse_credential};
use crate::{random_password, Target, TargetError, Verdict, DEFAULT_TIMEOUT};

/// The port used when `address` names none.
const DEFAULT_PORT: u16 = 5432;

/// The admin user when no admin credential is given.
const DEFAULT_ADMIN: &str = "postgres";

/// The longest database name PostgreSQL keeps (NAMEDATALEN - 1).
const MAX_DATABASE_LEN: usize = 63;

/// Role names PostgreSQL reserves (compared case-insensitively here).
const RESERVED_ROLES: [&str; 5] = [
    "public",
    "none",
    "current_user",
    "session_user",
    "current_role",
];

/// SQLSTATE `invalid_password`: wrong password, or (with password auth) an
/// unknown role.
const INVALID_PASSWORD: &str = "28P01";
/// SQLSTATE `invalid_authorization_specification`: the role may not log in
/// (NOLOGIN), does not exist (trust auth), or no pg_hba.conf line allows it.
const INVALID_AUTHORIZATION: &str = "28000";
/// SQLSTATE `insufficient_privilege`.
const INSUFFICIENT_PRIVILEGE: &str = "42501";
/// SQLSTATE `duplicate_object`: CREATE ROLE of a role that exists.
const DUPLICATE_OBJECT: &str = "42710";
/// SQLSTATE `unique_violation`: a concurrent CREATE ROLE of the same name.
const UNIQUE_VIOLATION: &str = "23505";
/// SQLSTATE `undefined_object`: e.g. GRANT of a group that does not exist.
const UNDEFINED_OBJECT: &str = "42704";
/// SQLSTATE `invalid_catalog_name`: the database does not exist.
const INVALID_CATALOG_NAME: &str = "3D000";

/// SQLSTATEs meaning "busy or going away for now, ask again later" (besides
/// class 08, connection exceptions).
const TRANSIENT_STATES: [&str; 7] = [
    "53000", // insufficient_resources
    "53300", // too_many_connections
    "57P01", // admin_shutdown
    "57P02", // crash_shutdown
    "57P03", // cannot_connect_now (starting up, recovering)
    "40001", // serialization_failure
    "40P01", // deadlock_detected
];

fn default_database() -> String {
    "postgres".to_owned()
}

/// Config of a PostgreSQL blue-green target, as stored (JSON) on a secret.
///
/// ```
/// let c: keyshift_targets::PgConfig = serde_json::from_str(
///     r#"{"address": "10.0.0.7", "group": "orders", "admin_secret": "prod/pg/admin"}"#,
/// ).unwrap();
/// c.validate().unwrap();
/// assert_eq!(c.database, "postgres");
/// assert_eq!(c.slots(), ["orders_blue".to_owned(), "orders_green".to_owned()]);
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgConfig {
    /// `host:port` (or `host`, port 5432; IPv6 as `[::1]:5432`) of the
    /// server. No URL, no credentials.
    pub address: String,
    /// The database to log in to, default `postgres`.
    #[serde(default = "default_database")]
    pub database: String,
    /// The group role that holds the privileges; it must exist. The slot
    /// roles are made members of it.
    pub group: String,
    /// The two slot roles; default `[<group>_blue, <group>_green]`.
    #[serde(default)]
    pub roles: Option<[String; 2]>,
    /// Name of another keyshift secret holding the admin credential (a
    /// [`Credential`], resolved by the server); `None` = `postgres` without
    /// a password.
    #[serde(default)]
    pub admin_secret: Option<String>,
}

impl PgConfig {
    /// The two slot roles, blue first: `roles`, or `<group>_blue` and
    /// `<group>_green`.
    pub fn slots(&self) -> [String; 2] {
        match &self.roles {
            Some(roles) => roles.clone(),
            None => [
                format!("{}_blue", self.group),
                format!("{}_green", self.group),
            ],
        }
    }

    /// Checks the config: the group and both slots are
    /// [`valid_username`]s (so they quote safely), not names PostgreSQL
    /// reserves; the slots differ from each other and from the group;
    /// `database` is 1 to 63 printable characters; `address` parses as
    /// `host[:port]`; and `admin_secret`, if given, is a valid secret name.
    ///
    /// # Errors
    ///
    /// [`TargetError::Config`].
    pub fn validate(&self) -> Result<(), TargetError> {
        validate_role("group", &self.group)?;
        let slots = self.slots();
        for slot in &slots {
            validate_role("slot role", slot)?;
            if slot.starts_with("pg_") {
                return Err(config(format!(
                    "slot role {slot}: names starting with pg_ are reserved"
                )));
            }
            if *slot == self.group {
                return Err(config(format!("slot role {slot} is the group itself")));
            }
        }
        if slots[0] == slots[1] {
            return Err(config(format!(
                "the two slot roles must differ (both are {})",
                slots[0]
            )));
        }
        if self.database.is_empty()
            || self.database.len() > MAX_DATABASE_LEN
            || self.database.chars().any(char::is_control)
        {
            return Err(config(format!(
                "database must be 1 to {MAX_DATABASE_LEN} characters without control characters"
            )));
        }
        parse_address(&self.address)?;
        if let Some(name) = &self.admin_secret {
            name.parse::<SecretName>()
                .map_err(|e| config(format!("admin_secret is not a valid secret name: {e}")))?;
        }
        Ok(())
    }
}

fn validate_role(what: &str, name: &str) -> Result<(), TargetError> {
    if !valid_username(name) {
        return Err(config(format!(
            "{what} `{name}` must be 1-63 of [A-Za-z0-9_], not starting with a digit"
        )));
    }
    if RESERVED_ROLES.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        return Err(config(format!("{what} `{name}` is reserved by PostgreSQL")));
    }
    Ok(())
}

/// `host[:port]` or `[v6]:port` into (host, port).
fn parse_address(address: &str) -> Result<(String, u16), TargetError> {
    if address.is_empty() {
        return Err(config("address is empty"));
    }
    if address.contains('@') || address.contains('/') {
        return Err(config(
            "address must be host:port (no URL, no credentials: name the admin credential in admin_secret)",
        ));
    }
    if address.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(config(
            "address must not contain spaces or control characters",
        ));
    }
    let bad = || config(format!("address `{address}` is not host:port"));
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(bad)?),
        };
        (host, port)
    } else {
        match address.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (address, None),
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p != 0 => p,
            _ => return Err(bad()),
        },
    };
    Ok((host.to_owned(), port))
}

fn config(detail: impl Into<String>) -> TargetError {
    TargetError::Config {
        detail: detail.into(),
    }
}

fn precondition(detail: impl Into<String>) -> TargetError {
    TargetError::Precondition {
        detail: detail.into(),
    }
}

fn protocol(detail: impl Into<String>) -> TargetError {
    TargetError::Protocol {
        detail: detail.into(),
    }
}

/// `"name"` for a validated role name (nothing in it needs escaping).
fn quoted(name: &str) -> Result<String, TargetError> {
    if !valid_username(name) {
        return Err(protocol("refusing to quote an unvalidated role name"));
    }
    Ok(format!("\"{name}\""))
}

/// `ALTER ROLE "role" WITH LOGIN PASSWORD '<verifier>'`: built only from a
/// validated name and a well-formed verifier, so no plaintext can reach it.
fn login_sql(role: &str, verifier: &str) -> Result<String, TargetError> {
    if !scram::is_verifier(verifier) {
        return Err(protocol("not a SCRAM-SHA-256 verifier"));
    }
    Ok(format!(
        "ALTER ROLE {} WITH LOGIN PASSWORD '{verifier}'",
        quoted(role)?
    ))
}

/// Why a network operation failed, before it is told apart per caller.
enum Failure {
    /// Our own deadline passed.
    Timeout,
    /// The client or the server said no.
    Sql(sqlx::Error),
}

impl Failure {
    /// The server's SQLSTATE, if the server answered with an error.
    fn sqlstate(&self) -> Option<String> {
        match self {
            Failure::Sql(sqlx::Error::Database(e)) => e.code().map(|c| c.into_owned()),
            _ => None,
        }
    }

    fn is(&self, state: &str) -> bool {
        self.sqlstate().as_deref() == Some(state)
    }

    /// The failure's text with `password` (if any) blanked out. sqlx's
    /// messages carry the server's text, not our options; this is a second
    /// line of defence.
    fn describe(&self, password: Option<&SecretValue>) -> String {
        let text = match self {
            Failure::Timeout => "timed out".to_owned(),
            Failure::Sql(e) => e.to_string(),
        };
        match password.map(SecretValue::expose) {
            Some(p) if !p.is_empty() => text.replace(p, "<redacted>"),
            _ => text,
        }
    }
}

/// A PostgreSQL group whose two login roles (slots) take turns.
///
/// Every operation opens fresh connections (nothing is pooled between
/// calls); each network step (connect, each statement, close) is bounded
/// by a timeout ([`DEFAULT_TIMEOUT`] unless set with
/// [`with_timeout`](PgTarget::with_timeout)).
///
/// [`enable`](Target::enable) and [`revoke`](Target::revoke) only ever
/// touch the two slot roles; they never drop a role or end a session.
pub struct PgTarget {
    config: PgConfig,
    slots: [String; 2],
    host: String,
    port: u16,
    admin: Option<Credential>,
    timeout: Duration,
    /// Names the target in errors: the address (never credentials).
    label: String,
}

impl fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTarget")
            .field("address", &self.config.address)
            .field("database", &self.config.database)
            .field("group", &self.config.group)
            .field("slots", &self.slots)
            .field("admin", &self.admin) // Credential's Debug redacts the password
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl PgTarget {
    /// A target for `config`, administered with `admin` (or as `postgres`
    /// without a password when `None`; libpq's `PGPASSWORD` then applies if
    /// set). Connects to nothing yet.
    ///
    /// # Errors
    ///
    /// [`TargetError::Config`] when the config does not validate.
    pub fn new(config: PgConfig, admin: Option<Credential>) -> Result<PgTarget, TargetError> {
        config.validate()?;
        let (host, port) = parse_address(&config.address)?;
        let label = if host.contains(':') {
            format!("postgres [{host}]:{port}")
        } else {
            format!("postgres {host}:{port}")
        };
        Ok(PgTarget {
            slots: config.slots(),
            config,
            host,
            port,
            admin,
            timeout: DEFAULT_TIMEOUT,
            label,
        })
    }

    /// Bounds every network operation (connect, each statement) by
    /// `timeout`.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> PgTarget {
        self.timeout = timeout;
        self
    }

    /// The config this target was built from.
    pub fn config(&self) -> &PgConfig {
        &self.config
    }

    /// The two slot roles, blue first.
    pub fn slots(&self) -> &[String; 2] {
        &self.slots
    }

    /// The bound on each network operation.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The slot `credential` logs in as, or Precondition: this target
    /// never touches another role.
    fn slot_of<'c>(&self, credential: &'c Credential) -> Result<&'c str, TargetError> {
        let user = credential.username();
        if self.slots.iter().any(|s| s == user) {
            return Ok(user);
        }
        Err(precondition(format!(
            "user {user} is neither blue-green slot ({} or {}) of group {}",
            self.slots[0], self.slots[1], self.config.group
        )))
    }

    fn admin_user(&self) -> &str {
        self.admin
            .as_ref()
            .map_or(DEFAULT_ADMIN, Credential::username)
    }

    async fn bounded<T>(
        &self,
        fut: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Failure::Sql(e)),
            Err(_) => Err(Failure::Timeout),
        }
    }

    /// A fresh connection to the configured database as `user` with
    /// `password`. Options are built field by field (never a URL), no
    /// `.pgpass` is read, and statements are not logged by sqlx.
    async fn connect(
        &self,
        user: &str,
        password: Option<&SecretValue>,
    ) -> Result<PgConnection, Failure> {
        let mut options = PgConnectOptions::new_without_pgpass()
            .host(&self.host)
            .port(self.port)
            .username(user)
            .database(&self.config.database)
            .application_name("keyshift")
            .disable_statement_logging();
        if let Some(p) = password {
            options = options.password(p.expose());
        }
        self.bounded(options.connect()).await
    }

    /// Closes `conn` politely (bounded); a failure only drops it.
    async fn close(&self, conn: PgConnection) {
        let _ = tokio::time::timeout(self.timeout, conn.close()).await;
    }

    async fn admin_connection(&self) -> Result<PgConnection, TargetError> {
        let password = self.admin.as_ref().map(Credential::password);
        self.connect(self.admin_user(), password)
            .await
            .map_err(|f| self.admin_error(f))
    }

    /// Runs one admin statement (simple query protocol, not prepared).
    async fn execute(&self, conn: &mut PgConnection, sql: &str) -> Result<(), Failure> {
        self.bounded(sqlx::Executor::execute(&mut *conn, sql))
            .await
            .map(drop)
    }

    /// Whether the admin may manage roles (SUPERUSER or CREATEROLE).
    async fn check_admin(&self, conn: &mut PgConnection) -> Result<(), TargetError> {
        let may: Option<bool> = self
            .bounded(
                sqlx::query_scalar(
                    "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user",
                )
                .fetch_optional(&mut *conn),
            )
            .await
            .map_err(|f| self.admin_error(f))?;
        if may != Some(true) {
            return Err(TargetError::AdminRefused {
                target: self.label.clone(),
                detail: format!(
                    "admin user {} may not manage roles (needs SUPERUSER or CREATEROLE)",
                    self.admin_user()
                ),
            });
        }
        Ok(())
    }

    async fn role_exists(&self, conn: &mut PgConnection, role: &str) -> Result<bool, TargetError> {
        self.bounded(
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                .bind(role)
                .fetch_one(&mut *conn),
        )
        .await
        .map_err(|f| self.admin_error(f))
    }

    /// Precondition unless the group role exists.
    async fn require_group(&self, conn: &mut PgConnection) -> Result<(), TargetError> {
        if self.role_exists(conn, &self.config.group).await? {
            Ok(())
        } else {
            Err(self.missing_group())
        }
    }

    fn missing_group(&self) -> TargetError {
        precondition(format!(
            "group role {} does not exist on {}; create it (NOLOGIN) and grant it the privileges the slots need",
            self.config.group, self.label
        ))
    }

    /// `CREATE ROLE "role" NOLOGIN` unless it exists; a concurrent creator
    /// winning the race is fine.
    async fn ensure_role(&self, conn: &mut PgConnection, role: &str) -> Result<(), TargetError> {
        if self.role_exists(conn, role).await? {
            return Ok(());
        }
        let sql = format!("CREATE ROLE {} NOLOGIN", quoted(role)?);
        match self.execute(conn, &sql).await {
            Ok(()) => {
                info!(role, "slot role created");
                Ok(())
            }
            Err(f) if f.is(DUPLICATE_OBJECT) || f.is(UNIQUE_VIOLATION) => {
                debug!(role, "slot role created concurrently");
                Ok(())
            }
            Err(f) => Err(self.admin_error(f)),
        }
    }

    /// `GRANT "group" TO "role"` unless it is a direct member already.
    async fn ensure_member(&self, conn: &mut PgConnection, role: &str) -> Result<(), TargetError> {
        let group = &self.config.group;
        let member: bool = self
            .bounded(
                sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM pg_auth_members m \
                     JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member \
                     WHERE g.rolname = $1 AND u.rolname = $2)",
                )
                .bind(group)
                .bind(role)
                .fetch_one(&mut *conn),
            )
            .await
            .map_err(|f| self.admin_error(f))?;
        if member {
            return Ok(());
        }
        let sql = format!("GRANT {} TO {}", quoted(group)?, quoted(role)?);
        match self.execute(conn, &sql).await {
            Ok(()) => {
                info!(role, group = %group, "slot role joined the group");
                Ok(())
            }
            Err(f) if f.is(UNDEFINED_OBJECT) => Err(self.missing_group()),
            Err(f) => Err(self.admin_error(f)),
        }
    }

    /// Errors of an admin connection or statement.
    fn admin_error(&self, failure: Failure) -> TargetError {
        let password = self.admin.as_ref().map(Credential::password);
        let admin = self.admin_user();
        match failure.sqlstate().as_deref() {
            Some(INVALID_PASSWORD | INVALID_AUTHORIZATION) => TargetError::AdminRefused {
                target: self.label.clone(),
                detail: format!(
                    "admin user {admin} failed to log in: {}",
                    failure.describe(password)
                ),
            },
            Some(INSUFFICIENT_PRIVILEGE) => TargetError::AdminRefused {
                target: self.label.clone(),
                detail: format!(
                    "admin user {admin} lacks permission: {}",
                    failure.describe(password)
                ),
            },
            _ => self.common_error(failure, password),
        }
    }

    /// Errors that mean the same for admin and verify connections.
    fn common_error(&self, failure: Failure, password: Option<&SecretValue>) -> TargetError {
        let detail = failure.describe(password);
        let e = match &failure {
            Failure::Timeout => {
                return TargetError::Unreachable {
                    target: self.label.clone(),
                    detail: format!("no answer within {:?}", self.timeout),
                }
            }
            Failure::Sql(e) => e,
        };
        let state = failure.sqlstate();
        let transient = match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(_) => state
                .as_deref()
                .is_some_and(|s| s.starts_with("08") || TRANSIENT_STATES.contains(&s)),
            _ => false,
        };
        if transient {
            return TargetError::Unreachable {
                target: self.label.clone(),
                detail,
            };
        }
        if state.as_deref() == Some(INVALID_CATALOG_NAME) {
            return precondition(format!(
                "database {} does not exist on {}",
                self.config.database, self.label
            ));
        }
        if matches!(e, sqlx::Error::Configuration(_)) {
            return config(format!("postgres client refused the config: {detail}"));
        }
        protocol(format!("{}: {detail}", self.label))
    }

    /// The precheck's safety check: a wrong password for `user` must be
    /// refused, else pg_hba.conf trusts the role and nothing can be verified.
    async fn check_passwords_are_checked(&self, user: &str) -> Result<(), TargetError> {
        let wrong = Credential::new(user, random_password())
            .map_err(|e| protocol(e.to_string()))?
            .to_value();
        if self.verify(&wrong).await? == Verdict::Accepted {
            return Err(precondition(format!(
                "{} let {user} log in with a wrong password: pg_hba.conf trusts this role, so keyshift \
                 cannot verify rotations; require scram-sha-256 (md5 also works) for it, e.g. \
                 `host all +{} <network> scram-sha-256` above any trust line",
                self.label, self.config.group
            )));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Target for PgTarget {
    /// No side effects: the admin logs in and may manage roles (SUPERUSER
    /// or CREATEROLE), the group exists, and `current` (if Some) is a slot's
    /// credential that logs in, while a wrong password for its role is
    /// refused (pg_hba.conf checks passwords; that attempt shows in the
    /// server's log as one failed login).
    ///
    /// # Errors
    ///
    /// [`TargetError::AdminRefused`], [`TargetError::Precondition`] (with
    /// the reason), [`TargetError::Unreachable`].
    #[tracing::instrument(skip_all, fields(target = %self.label, group = %self.config.group))]
    async fn precheck(&self, current: Option<&SecretValue>) -> Result<(), TargetError> {
        // Parse first: a malformed current fails without connecting.
        let current_user = match current {
            Some(v) => Some(self.slot_of(&parse_credential(v)?)?.to_owned()),
            None => None,
        };
        let mut conn = self.admin_connection().await?;
        let result = async {
            self.check_admin(&mut conn).await?;
            self.require_group(&mut conn).await
        }
        .await;
        self.close(conn).await;
        result?;
        if let (Some(current), Some(user)) = (current, current_user) {
            if self.verify(current).await? == Verdict::Refused {
                return Err(precondition(format!(
                    "the current credential (user {user}) no longer logs in"
                )));
            }
            self.check_passwords_are_checked(&user).await?;
        }
        debug!("precheck passed");
        Ok(())
    }

    /// The idle slot with a fresh random password; no side effect.
    #[tracing::instrument(skip_all, fields(target = %self.label, group = %self.config.group))]
    async fn generate(
        &self,
        current: Option<&SecretValue>,
    ) -> Result<Option<SecretValue>, TargetError> {
        Ok(Some(next_credential(&self.slots, current)?))
    }

    /// Creates the value's slot role if missing (NOLOGIN), makes it a member
    /// of the group, then `ALTER ROLE .. WITH LOGIN PASSWORD '<SCRAM
    /// verifier>'`. Running it again leaves the same password accepted
    /// (with a fresh salt). Enabling the slot that is in use with another
    /// password would replace that password: only enable what
    /// [`generate`](Target::generate) made.
    ///
    /// # Errors
    ///
    /// [`TargetError::Precondition`] when the value's user is not a slot or
    /// the group does not exist; the errors of any admin operation.
    #[tracing::instrument(skip_all, fields(target = %self.label, user = field::Empty))]
    async fn enable(&self, value: &SecretValue) -> Result<(), TargetError> {
        let credential = parse_credential(value)?;
        let user = self.slot_of(&credential)?;
        Span::current().record("user", user);
        let login = login_sql(user, &scram::verifier(credential.password()))?;
        let mut conn = self.admin_connection().await?;
        let result = async {
            self.require_group(&mut conn).await?;
            self.ensure_role(&mut conn, user).await?;
            self.ensure_member(&mut conn, user).await?;
            self.execute(&mut conn, &login)
                .await
                .map_err(|f| self.admin_error(f))
        }
        .await;
        self.close(conn).await;
        result?;
        info!("slot role may log in with the new password");
        Ok(())
    }

    /// Nothing when the value is already refused (also when its role has
    /// since got another password, or does not exist); else
    /// `ALTER ROLE .. NOLOGIN`. The role keeps its password and membership,
    /// so enabling the same value again is an instant rollback. Sessions
    /// already open stay open.
    ///
    /// # Errors
    ///
    /// [`TargetError::Precondition`] when the value's user is not a slot;
    /// the errors of [`verify`](Target::verify) and of any admin operation.
    #[tracing::instrument(skip_all, fields(target = %self.label, user = field::Empty))]
    async fn revoke(&self, value: &SecretValue) -> Result<(), TargetError> {
        let credential = parse_credential(value)?;
        let user = self.slot_of(&credential)?;
        Span::current().record("user", user);
        if self.verify(value).await? == Verdict::Refused {
            debug!("already refused");
            return Ok(());
        }
        let sql = format!("ALTER ROLE {} NOLOGIN", quoted(user)?);
        let mut conn = self.admin_connection().await?;
        let result = self
            .execute(&mut conn, &sql)
            .await
            .map_err(|f| self.admin_error(f));
        self.close(conn).await;
        result?;
        info!("slot role may no longer log in (its password is kept for rollback)");
        Ok(())
    }

    /// Logs in as the value's user on a fresh connection and runs
    /// `SELECT 1`. Wrong password, NOLOGIN, unknown role or a pg_hba.conf
    /// `reject` are `Ok(Refused)`.
    ///
    /// # Errors
    ///
    /// [`TargetError::Unreachable`] (connection refused, timeout, too many
    /// connections, server starting or shutting down);
    /// [`TargetError::Precondition`] when the database does not exist or
    /// the role may not connect to it; [`TargetError::Protocol`] otherwise.
    #[tracing::instrument(skip_all, fields(target = %self.label, user = field::Empty))]
    async fn verify(&self, value: &SecretValue) -> Result<Verdict, TargetError> {
        let credential = parse_credential(value)?;
        let user = credential.username();
        Span::current().record("user", user);
        let password = credential.password();
        let mut conn = match self.connect(user, Some(password)).await {
            Ok(conn) => conn,
            Err(f) if f.is(INVALID_PASSWORD) || f.is(INVALID_AUTHORIZATION) => {
                debug!(reason = %f.describe(Some(password)), "refused");
                return Ok(Verdict::Refused);
            }
            Err(f) if f.is(INSUFFICIENT_PRIVILEGE) => {
                return Err(precondition(format!(
                    "{user} logs in but may not connect to database {}: {}",
                    self.config.database,
                    f.describe(Some(password))
                )))
            }
            Err(f) => return Err(self.common_error(f, Some(password))),
        };
        let one = self
            .bounded(sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&mut conn))
            .await;
        self.close(conn).await;
        match one {
            Ok(1) => {
                debug!("accepted");
                Ok(Verdict::Accepted)
            }
            Ok(n) => Err(protocol(format!("{}: SELECT 1 answered {n}", self.label))),
            Err(f) => Err(self.common_error(f, Some(password))),
        }
    }

    /// The open sessions of the value's role (all databases), from
    /// `pg_stat_activity`; it cannot tell which password a session used.
    ///
    /// # Errors
    ///
    /// The errors of any admin operation.
    #[tracing::instrument(skip_all, fields(target = %self.label, user = field::Empty))]
    async fn usage(&self, value: &SecretValue) -> Result<Option<u64>, TargetError> {
        let credential = parse_credential(value)?;
        let user = credential.username();
        Span::current().record("user", user);
        let mut conn = self.admin_connection().await?;
        let count = self
            .bounded(
                sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FROM pg_stat_activity WHERE usename = $1",
                )
                .bind(user)
                .fetch_one(&mut conn),
            )
            .await
            .map_err(|f| self.admin_error(f));
        self.close(conn).await;
        let count = count?;
        u64::try_from(count)
            .map(Some)
            .map_err(|_| protocol(format!("{}: negative session count {count}", self.label)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(address: &str, group: &str) -> PgConfig {
        PgConfig {
            address: address.to_owned(),
            database: default_database(),
            group: group.to_owned(),
            roles: None,
            admin_secret: None,
        }
    }

    #[test]
    fn slots_default_to_blue_and_green() {
        let c = cfg("db", "orders");
        assert_eq!(
            c.slots(),
            ["orders_blue".to_owned(), "orders_green".to_owned()]
        );
        let mut c = cfg("db", "orders");
        c.roles = Some(["o_a".into(), "o_b".into()]);
        assert_eq!(c.slots(), ["o_a".to_owned(), "o_b".to_owned()]);
        c.validate().unwrap();
    }

    #[test]
    fn config_checks_names() {
        for group in [
            "",
            "1app",
            "a-b",
            "a\"b",
            "public",
            "PUBLIC",
            "none",
            &"x".repeat(64),
        ] {
            assert!(cfg("db", group).validate().is_err(), "{group:?}");
        }
        // The derived slot names must fit too: 58 + "_green" > 63.
        assert!(cfg("db", &"x".repeat(58)).validate().is_err());
        cfg("db", &"x".repeat(57)).validate().unwrap();
        // A predefined role may be the group, but slots may not be pg_*.
        assert!(cfg("db", "pg_read_all_data").validate().is_err());
        let mut c = cfg("db", "pg_read_all_data");
        c.roles = Some(["reader_blue".into(), "reader_green".into()]);
        c.validate().unwrap();
        for roles in [
            ["a", "a"],
            ["app", "b"],
            ["a", "app"],
            ["pg_a", "b"],
            ["a", "current_user"],
            ["a", "b;"],
        ] {
            let mut c = cfg("db", "app");
            c.roles = Some(roles.map(str::to_owned));
            let e = c.validate().unwrap_err();
            assert!(matches!(e, TargetError::Config { .. }), "{roles:?}");
        }
        let mut c = cfg("db", "app");
        c.database = String::new();
        assert!(c.validate().is_err());
        c.database = "orders".into();
        c.admin_secret = Some("prod/pg/admin".into());
        c.validate().unwrap();
        c.admin_secret = Some("bad//name".into());
        assert!(c.validate().is_err());
    }

    #[test]
    fn config_checks_addresses() {
        for a in ["127.0.0.1:5432", "db.internal", "[::1]:5433", "[::1]"] {
            cfg(a, "app")
                .validate()
                .unwrap_or_else(|e| panic!("{a}: {e}"));
        }
        assert_eq!(parse_address("db").unwrap(), ("db".into(), 5432));
        assert_eq!(parse_address("[::1]:5433").unwrap(), ("::1".into(), 5433));
        for a in [
            "",
            "postgres://127.0.0.1:5432",
            "postgres:pw@127.0.0.1:5432",
            "127.0.0.1:notaport",
            "127.0.0.1:0",
            " 127.0.0.1",
            ":5432",
            "[::1]5432",
        ] {
            let e = cfg(a, "app").validate().unwrap_err();
            assert!(matches!(e, TargetError::Config { .. }), "{a:?}");
            assert!(!e.to_string().contains("pw@"), "{e}");
        }
    }

    #[test]
    fn config_json_defaults_and_refuses_unknown_fields() {
        let c: PgConfig = serde_json::from_str(r#"{"address":"127.0.0.1","group":"app"}"#).unwrap();
        assert_eq!(c.database, "postgres");
        assert!(c.roles.is_none() && c.admin_secret.is_none());
        let c: PgConfig = serde_json::from_str(
            r#"{"address":"127.0.0.1","group":"app","roles":["app_a","app_b"]}"#,
        )
        .unwrap();
        assert_eq!(c.slots()[1], "app_b");
        assert!(serde_json::from_str::<PgConfig>(
            r#"{"address":"127.0.0.1","group":"app","password":"x"}"#
        )
        .is_err());
        assert!(serde_json::from_str::<PgConfig>(
            r#"{"address":"127.0.0.1","group":"app","roles":["only_one"]}"#
        )
        .is_err());
    }

    #[test]
    fn login_statement_carries_the_verifier_not_the_password() {
        let pw = SecretValue::new("plaintext-password-0123456789".into()).unwrap();
        let verifier = scram::verifier(&pw);
        let sql = login_sql("app_blue", &verifier).unwrap();
        assert_eq!(
            sql,
            format!("ALTER ROLE \"app_blue\" WITH LOGIN PASSWORD '{verifier}'")
        );
        assert!(!sql.contains(pw.expose()));
        assert!(login_sql("app_blue", pw.expose()).is_err());
        assert!(login_sql("app\"; DROP", &verifier).is_err());
    }

    #[test]
    fn target_debug_redacts_the_admin_password() {
        let pw = SecretValue::new("the-admin-password".into()).unwrap();
        let admin = Credential::new("ops", pw).unwrap();
        let t = PgTarget::new(cfg("127.0.0.1", "app"), Some(admin)).unwrap();
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("the-admin-password"), "{dbg}");
        assert!(dbg.contains("app_green") && dbg.contains("ops"), "{dbg}");
    }

    #[test]
    fn failures_blank_out_the_password() {
        let pw = SecretValue::new("s3cret-pw-xyz".into()).unwrap();
        let f = Failure::Sql(sqlx::Error::Protocol("echoed s3cret-pw-xyz back".into()));
        assert_eq!(
            f.describe(Some(&pw)),
            "encountered unexpected or invalid data: echoed <redacted> back"
        );
    }
}
