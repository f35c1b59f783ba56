//! The MariaDB 10.4+ user target.
//!
//! A MariaDB 10.4+ account may accept several authentication methods at
//! once (`IDENTIFIED VIA a OR b`), which is the overlap:
//!
//! ```sql
//! ALTER USER 'u'@'h' IDENTIFIED VIA mysql_native_password USING '*<hash old>'
//!                                OR mysql_native_password USING '*<hash new>'
//! ```
//!
//! Passwords go to the server only as native password hashes
//! (`'*' + HEX(SHA1(SHA1(password)))`, computed here), so the plaintext never
//! reaches the server's statement, general or binary log; it travels only in
//! the scrambled `mysql_native_password` handshake that logs in when
//! verifying. MySQL (whose overlap is `RETAIN CURRENT PASSWORD`) is refused.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use keyshift_core::{SecretName, SecretValue};
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlDatabaseError};
use sqlx::{ConnectOptions, Connection};
use tracing::{debug, info, warn};

use crate::{AdminCredential, Target, TargetError, Verdict, DEFAULT_TIMEOUT};

/// The port used when `address` names none.
const DEFAULT_PORT: u16 = 3306;

/// The admin user when no admin credential is given.
const DEFAULT_ADMIN: &str = "root";

/// The longest user or host part accepted.
const MAX_IDENT_LEN: usize = 80;

/// The only authentication plugin this target manages.
const NATIVE_PLUGIN: &str = "mysql_native_password";

/// How many passwords a user may accept at once (old and new).
const MAX_ACCEPTED: usize = 2;

/// `ER_ACCESS_DENIED_ERROR`: wrong user or password.
const ER_ACCESS_DENIED: u16 = 1045;

/// Server error numbers meaning the admin lacks a privilege.
const PERMISSION_ERRORS: [u16; 6] = [
    1044, // ER_DBACCESS_DENIED_ERROR
    1142, // ER_TABLEACCESS_DENIED_ERROR
    1143, // ER_COLUMNACCESS_DENIED_ERROR
    1227, // ER_SPECIFIC_ACCESS_DENIED_ERROR
    1370, // ER_PROCACCESS_DENIED_ERROR
    1820, // ER_MUST_CHANGE_PASSWORD
];

/// Server error numbers meaning "busy for now, ask again later".
const TRANSIENT_ERRORS: [u16; 7] = [
    1040, // ER_CON_COUNT_ERROR: too many connections
    1053, // ER_SERVER_SHUTDOWN
    1129, // ER_HOST_IS_BLOCKED
    1203, // ER_TOO_MANY_USER_CONNECTIONS
    1205, // ER_LOCK_WAIT_TIMEOUT
    1213, // ER_LOCK_DEADLOCK
    1927, // ER_CONNECTION_KILLED
];

/// `ER_CANNOT_USER`: e.g. ALTER USER of a user that does not exist.
const ER_CANNOT_USER: u16 = 1396;

fn any_host() -> String {
    "%".to_owned()
}

/// Config of a MariaDB user target, as stored (JSON) on a secret.
///
/// ```
/// let c: keyshift_targets::MariaDbConfig = serde_json::from_str(
///     r#"{"address": "10.0.0.7:3306", "user": "orders", "admin_secret": "prod/mariadb/admin"}"#,
/// ).unwrap();
/// assert_eq!(c.host, "%");
/// c.validate().unwrap();
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MariaDbConfig {
    /// `host:port` (or `host`, port 3306; IPv6 as `[::1]:3306`) of the
    /// server. No URL, no credentials.
    pub address: String,
    /// The managed user name (the `'user'` of `'user'@'host'`).
    pub user: String,
    /// The user's host part (the `'host'` of `'user'@'host'`), default `%`.
    #[serde(default = "any_host")]
    pub host: String,
    /// Name of another keyshift secret holding the admin credential
    /// (resolved by the server; the JSON form
    /// `{"username": "...", "password": "..."}`); `None` = `root` without a
    /// password.
    #[serde(default)]
    pub admin_secret: Option<String>,
}

impl MariaDbConfig {
    /// Checks the config: `user` and `host` are 1 to 80 characters of
    /// `[A-Za-z0-9_.%-]` (so they quote safely), `address` parses as
    /// `host[:port]`, and `admin_secret`, if given, is a valid secret name.
    ///
    /// # Errors
    ///
    /// [`TargetError::Config`].
    pub fn validate(&self) -> Result<(), TargetError> {
        validate_ident("user", &self.user)?;
        validate_ident("host", &self.host)?;
        parse_address(&self.address)?;
        if let Some(name) = &self.admin_secret {
            name.parse::<SecretName>()
                .map_err(|e| config(format!("admin_secret is not a valid secret name: {e}")))?;
        }
        Ok(())
    }
}

/// `user`/`host` parts: a charset that needs no escaping inside `'...'`.
fn validate_ident(what: &str, s: &str) -> Result<(), TargetError> {
    if s.is_empty() || s.len() > MAX_IDENT_LEN {
        return Err(config(format!(
            "{what} must be 1 to {MAX_IDENT_LEN} characters long"
        )));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '%' | '-'))
    {
        return Err(config(format!(
            "{what} may contain only letters, digits, `_`, `.`, `%` and `-`"
        )));
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

/// The `mysql_native_password` hash of `value`:
/// `'*' + uppercase hex(SHA1(SHA1(password)))`, what `PASSWORD()` returns.
fn native_hash(value: &SecretValue) -> String {
    let stage1 = Sha1::digest(value.expose().as_bytes());
    let stage2 = Sha1::digest(stage1);
    format!("*{}", hex::encode_upper(stage2))
}

/// Whether `s` is a well-formed native hash (`*` + 40 uppercase hex digits),
/// the only thing that may be put between quotes in `USING '...'`.
fn is_native_hash(s: &str) -> bool {
    s.len() == 41
        && s.starts_with('*')
        && s[1..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

/// `ALTER USER 'user'@'host' IDENTIFIED VIA mysql_native_password USING
/// '<hash>' [OR mysql_native_password USING '<hash>' ...]`.
///
/// Built only from validated identifiers and hashes, so no plaintext can
/// reach it and nothing in it needs escaping.
fn alter_user_sql(user: &str, host: &str, hashes: &[String]) -> Result<String, TargetError> {
    validate_ident("user", user)?;
    validate_ident("host", host)?;
    if hashes.is_empty() {
        return Err(precondition(
            "refusing to leave the user without a password",
        ));
    }
    let mut methods = Vec::with_capacity(hashes.len());
    for h in hashes {
        if !is_native_hash(h) {
            return Err(protocol("not a mysql_native_password hash"));
        }
        methods.push(format!("{NATIVE_PLUGIN} USING '{h}'"));
    }
    Ok(format!(
        "ALTER USER '{user}'@'{host}' IDENTIFIED VIA {}",
        methods.join(" OR ")
    ))
}

/// One way the account authenticates, from `mysql.global_priv`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AuthMethod {
    /// `mysql_native_password` with this hash (`""` = empty password).
    Native(String),
    /// Another plugin (ed25519, unix_socket, ...), by name.
    Other(String),
}

/// Reads the account's authentication methods from its `mysql.global_priv`
/// `Priv` JSON: the top-level `plugin`/`authentication_string`, or, when
/// there is an `auth_or` array, its entries in order (an empty entry `{}`
/// stands for the top-level method).
fn parse_priv(json: &str) -> Result<Vec<AuthMethod>, TargetError> {
    let bad = |what: &str| protocol(format!("mysql.global_priv: {what}"));
    let v: serde_json::Value = serde_json::from_str(json).map_err(|_| bad("Priv is not JSON"))?;
    let obj = v.as_object().ok_or_else(|| bad("Priv is not an object"))?;
    let method =
        |o: &serde_json::Map<String, serde_json::Value>| -> Result<AuthMethod, TargetError> {
            let plugin = o
                .get("plugin")
                .and_then(|p| p.as_str())
                .unwrap_or(NATIVE_PLUGIN);
            let auth = o
                .get("authentication_string")
                .and_then(|a| a.as_str())
                .unwrap_or("");
            if plugin == NATIVE_PLUGIN {
                Ok(AuthMethod::Native(auth.to_ascii_uppercase()))
            } else {
                Ok(AuthMethod::Other(plugin.to_owned()))
            }
        };
    let top = method(obj)?;
    let Some(or) = obj.get("auth_or") else {
        return Ok(vec![top]);
    };
    let entries = or
        .as_array()
        .ok_or_else(|| bad("auth_or is not an array"))?;
    let mut methods = Vec::with_capacity(entries.len());
    for e in entries {
        let e = e
            .as_object()
            .ok_or_else(|| bad("auth_or has a non-object"))?;
        methods.push(if e.is_empty() {
            top.clone()
        } else {
            method(e)?
        });
    }
    if methods.is_empty() {
        methods.push(top);
    }
    Ok(methods)
}

/// A MariaDB 10.4+ user whose password keyshift rotates.
///
/// Admin statements run on a fresh connection logged in with the admin
/// credential (or `root` without a password); every network operation
/// (connect, each statement, close) is bounded by a timeout
/// ([`DEFAULT_TIMEOUT`] unless set with
/// [`with_timeout`](MariaDbTarget::with_timeout)). Only
/// `mysql_native_password` accounts are managed.
pub struct MariaDbTarget {
    config: MariaDbConfig,
    host: String,
    port: u16,
    admin: Option<AdminCredential>,
    timeout: Duration,
    /// Names the target in errors: the address (never credentials).
    label: String,
}

impl fmt::Debug for MariaDbTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MariaDbTarget")
            .field("address", &self.config.address)
            .field("user", &self.config.user)
            .field("host", &self.config.host)
            .field("admin", &self.admin)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Why a network operation failed, before it is told apart per caller.
enum Failure {
    /// Our own deadline passed.
    Timeout,
    /// The client or the server said no.
    Sql(sqlx::Error),
}

impl Failure {
    /// The server's error number, if the server answered with an error.
    fn number(&self) -> Option<u16> {
        match self {
            Failure::Sql(sqlx::Error::Database(e)) => e
                .try_downcast_ref::<MySqlDatabaseError>()
                .map(MySqlDatabaseError::number),
            _ => None,
        }
    }
}

impl MariaDbTarget {
    /// A target for `config`, administered with `admin` (or as `root`
    /// without a password when `None`). Connects to nothing yet.
    ///
    /// # Errors
    ///
    /// [`TargetError::Config`] when the config does not validate.
    pub fn new(
        config: MariaDbConfig,
        admin: Option<AdminCredential>,
    ) -> Result<MariaDbTarget, TargetError> {
        config.validate()?;
        let (host, port) = parse_address(&config.address)?;
        let label = if host.contains(':') {
            format!("mariadb [{host}]:{port}")
        } else {
            format!("mariadb {host}:{port}")
        };
        Ok(MariaDbTarget {
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
    pub fn with_timeout(mut self, timeout: Duration) -> MariaDbTarget {
        self.timeout = timeout;
        self
    }

    /// The config this target was built from.
    pub fn config(&self) -> &MariaDbConfig {
        &self.config
    }

    /// The bound on each network operation.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Makes the user accept exactly `values` (1 or 2 passwords, in this
    /// order) with
    /// `ALTER USER 'u'@'h' IDENTIFIED VIA mysql_native_password USING '<hash1>' OR mysql_native_password USING '<hash2>'`.
    /// The hashes are computed here, so the plaintext never reaches the
    /// server's logs. Any other authentication method of the user is
    /// replaced. Idempotent: nothing is altered when the user already
    /// accepts exactly these passwords.
    ///
    /// # Errors
    ///
    /// [`TargetError::Precondition`] when `values` is empty or holds more
    /// than 2 distinct passwords, or the user does not exist; the errors of
    /// any admin operation.
    #[tracing::instrument(skip_all, fields(target = %self.label, user = %self.config.user))]
    pub async fn set_accepted(&self, values: &[&SecretValue]) -> Result<(), TargetError> {
        let mut hashes: Vec<String> = Vec::with_capacity(values.len());
        for v in values {
            let h = native_hash(v);
            if !hashes.contains(&h) {
                hashes.push(h);
            }
        }
        if hashes.is_empty() {
            return Err(precondition(
                "refusing to leave the user without a password",
            ));
        }
        if hashes.len() > MAX_ACCEPTED {
            return Err(precondition(format!(
                "a user accepts at most {MAX_ACCEPTED} passwords at once, {} given",
                hashes.len()
            )));
        }
        let mut conn = self.admin_connection().await?;
        let result = async {
            let methods = self.existing_methods(&mut conn).await?;
            let wanted: Vec<AuthMethod> = hashes.iter().cloned().map(AuthMethod::Native).collect();
            if methods == wanted {
                debug!("already accepts exactly these passwords");
                return Ok(());
            }
            self.alter(&mut conn, &hashes).await
        }
        .await;
        self.close(conn).await;
        result
    }

    /// The native password hashes (`*` + 40 uppercase hex digits) the user
    /// accepts now, in order, read from `mysql.global_priv`; for tests and
    /// reconciliation.
    ///
    /// # Errors
    ///
    /// [`TargetError::Precondition`] when the user does not exist or also
    /// authenticates with another plugin; the errors of any admin
    /// operation.
    #[tracing::instrument(skip_all, fields(target = %self.label, user = %self.config.user))]
    pub async fn accepted_hashes(&self) -> Result<Vec<String>, TargetError> {
        let mut conn = self.admin_connection().await?;
        let result = self.existing_methods(&mut conn).await;
        self.close(conn).await;
        let methods = result?;
        self.native_only(&methods)
    }

    /// The hashes of `methods`, or Precondition when one is not a native
    /// password.
    fn native_only(&self, methods: &[AuthMethod]) -> Result<Vec<String>, TargetError> {
        methods
            .iter()
            .map(|m| match m {
                AuthMethod::Native(h) => Ok(h.clone()),
                AuthMethod::Other(plugin) => Err(precondition(format!(
                    "mariadb user {} authenticates via {plugin}: only {NATIVE_PLUGIN} users can be rotated",
                    self.account()
                ))),
            })
            .collect()
    }

    /// Like [`native_only`](Self::native_only), and refuses an empty
    /// password (any client without a password logs in; adding one would
    /// lock them out).
    fn rotatable(&self, methods: &[AuthMethod]) -> Result<Vec<String>, TargetError> {
        let hashes = self.native_only(methods)?;
        if hashes.iter().any(String::is_empty) {
            return Err(precondition(format!(
                "mariadb user {} has an empty password; give it a password first",
                self.account()
            )));
        }
        if !hashes.iter().all(|h| is_native_hash(h)) {
            return Err(protocol(format!(
                "mariadb user {} has a malformed {NATIVE_PLUGIN} hash",
                self.account()
            )));
        }
        Ok(hashes)
    }

    /// `'user'@'host'` for messages.
    fn account(&self) -> String {
        format!("'{}'@'{}'", self.config.user, self.config.host)
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

    /// A fresh connection logged in as `user` with `password` (none when
    /// `None`), with no default database. The cleartext plugin stays off:
    /// the password only ever travels scrambled.
    async fn connect(
        &self,
        user: &str,
        password: Option<&SecretValue>,
    ) -> Result<MySqlConnection, Failure> {
        let mut options = MySqlConnectOptions::new()
            .host(&self.host)
            .port(self.port)
            .username(user)
            .enable_cleartext_plugin(false)
            .disable_statement_logging();
        if let Some(p) = password {
            options = options.password(p.expose());
        }
        self.bounded(options.connect()).await
    }

    /// Closes `conn` politely (bounded); a failure only drops it.
    async fn close(&self, conn: MySqlConnection) {
        let _ = tokio::time::timeout(self.timeout, conn.close()).await;
    }

    async fn admin_connection(&self) -> Result<MySqlConnection, TargetError> {
        let (user, password) = match &self.admin {
            Some(a) => (a.username.as_str(), Some(&a.password)),
            None => (DEFAULT_ADMIN, None),
        };
        self.connect(user, password)
            .await
            .map_err(|f| self.admin_error(f))
    }

    /// `SELECT VERSION()`: MariaDB 10.4 or later, else Precondition.
    async fn check_version(&self, conn: &mut MySqlConnection) -> Result<(), TargetError> {
        let version: String = self
            .bounded(sqlx::query_scalar("SELECT VERSION()").fetch_one(&mut *conn))
            .await
            .map_err(|f| self.admin_error(f))?;
        check_version(&version)
    }

    /// The user's authentication methods; `None` when it does not exist.
    async fn methods(
        &self,
        conn: &mut MySqlConnection,
    ) -> Result<Option<Vec<AuthMethod>>, TargetError> {
        let row: Option<String> = self
            .bounded(
                sqlx::query_scalar(
                    "SELECT CAST(Priv AS CHAR) FROM mysql.global_priv WHERE User = ? AND Host = ?",
                )
                .bind(&self.config.user)
                .bind(&self.config.host)
                .fetch_optional(&mut *conn),
            )
            .await
            .map_err(|f| self.admin_error(f))?;
        row.as_deref().map(parse_priv).transpose()
    }

    async fn existing_methods(
        &self,
        conn: &mut MySqlConnection,
    ) -> Result<Vec<AuthMethod>, TargetError> {
        self.methods(conn)
            .await?
            .ok_or_else(|| precondition(format!("mariadb user {} does not exist", self.account())))
    }

    /// Runs the `ALTER USER` for `hashes` (text protocol, not prepared).
    async fn alter(
        &self,
        conn: &mut MySqlConnection,
        hashes: &[String],
    ) -> Result<(), TargetError> {
        let sql = alter_user_sql(&self.config.user, &self.config.host, hashes)?;
        // A bare `&str` has no arguments: sent as COM_QUERY (text
        // protocol), not prepared.
        let exec = sqlx::Executor::execute(&mut *conn, sql.as_str());
        match self.bounded(exec).await {
            Ok(_) => Ok(()),
            Err(f) if f.number() == Some(ER_CANNOT_USER) => Err(precondition(format!(
                "mariadb user {} does not exist",
                self.account()
            ))),
            Err(f) => Err(self.admin_error(f)),
        }
    }

    fn admin_error(&self, failure: Failure) -> TargetError {
        let admin = self
            .admin
            .as_ref()
            .map_or(DEFAULT_ADMIN, |a| a.username.as_str());
        match failure.number() {
            Some(ER_ACCESS_DENIED) => TargetError::AdminRefused {
                target: self.label.clone(),
                detail: format!("admin user {admin} failed to authenticate"),
            },
            Some(n) if PERMISSION_ERRORS.contains(&n) => TargetError::AdminRefused {
                target: self.label.clone(),
                detail: format!(
                    "admin user {admin} lacks permission: {}",
                    describe(&failure)
                ),
            },
            _ => self.common_error(failure),
        }
    }

    /// Errors that mean the same for admin and verify connections.
    fn common_error(&self, failure: Failure) -> TargetError {
        let e = match failure {
            Failure::Timeout => return self.timed_out(),
            Failure::Sql(ref e) => e,
        };
        let transient = match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(_) => failure
                .number()
                .is_some_and(|n| TRANSIENT_ERRORS.contains(&n)),
            _ => false,
        };
        if transient {
            return TargetError::Unreachable {
                target: self.label.clone(),
                detail: describe(&failure),
            };
        }
        if matches!(e, sqlx::Error::Configuration(_)) {
            return config(format!(
                "mysql client refused the config: {}",
                describe(&failure)
            ));
        }
        TargetError::Protocol {
            detail: format!("{}: {}", self.label, describe(&failure)),
        }
    }

    fn timed_out(&self) -> TargetError {
        TargetError::Unreachable {
            target: self.label.clone(),
            detail: format!("no answer within {:?}", self.timeout),
        }
    }
}

/// A failure's text. sqlx errors never carry the password we connected
/// with (we pass it as an option, never in a URL).
fn describe(failure: &Failure) -> String {
    match failure {
        Failure::Timeout => "timed out".to_owned(),
        Failure::Sql(e) => e.to_string(),
    }
}

/// Accepts `VERSION()` of MariaDB 10.4 or later.
fn check_version(version: &str) -> Result<(), TargetError> {
    if !version.to_ascii_lowercase().contains("mariadb") {
        return Err(precondition(
            "MySQL is not supported yet: RETAIN CURRENT PASSWORD is planned",
        ));
    }
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(str::parse::<u32>);
    let (Some(Ok(major)), Some(Ok(minor))) = (parts.next(), parts.next()) else {
        return Err(protocol(format!("unreadable server version `{version}`")));
    };
    if (major, minor) < (10, 4) {
        return Err(precondition(format!(
            "MariaDB {major}.{minor} is too old: accepting two passwords at once needs 10.4 or later"
        )));
    }
    Ok(())
}

#[async_trait::async_trait]
impl Target for MariaDbTarget {
    #[tracing::instrument(skip_all, fields(target = %self.label, user = %self.config.user))]
    async fn precheck(&self, current: Option<&SecretValue>) -> Result<(), TargetError> {
        let mut conn = self.admin_connection().await?;
        let result = async {
            self.check_version(&mut conn).await?;
            let methods = self.existing_methods(&mut conn).await?;
            self.rotatable(&methods).map(drop)
        }
        .await;
        self.close(conn).await;
        result?;
        if let Some(current) = current {
            if self.verify(current).await? == Verdict::Refused {
                return Err(precondition("the current credential no longer logs in"));
            }
        }
        debug!("precheck passed");
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(target = %self.label, user = %self.config.user))]
    async fn enable(&self, value: &SecretValue) -> Result<(), TargetError> {
        let mut conn = self.admin_connection().await?;
        let result = async {
            let methods = self.existing_methods(&mut conn).await?;
            let mut hashes = self.rotatable(&methods)?;
            let hash = native_hash(value);
            if hashes.contains(&hash) {
                debug!("password already accepted");
                return Ok(());
            }
            hashes.dedup();
            if hashes.len() >= MAX_ACCEPTED {
                return Err(precondition(format!(
                    "mariadb user {} already accepts {} passwords; revoke one before enabling another",
                    self.account(),
                    hashes.len()
                )));
            }
            hashes.push(hash);
            self.alter(&mut conn, &hashes).await?;
            info!("password added");
            Ok(())
        }
        .await;
        self.close(conn).await;
        result
    }

    #[tracing::instrument(skip_all, fields(target = %self.label, user = %self.config.user))]
    async fn revoke(&self, value: &SecretValue) -> Result<(), TargetError> {
        let mut conn = self.admin_connection().await?;
        let result = async {
            let Some(methods) = self.methods(&mut conn).await? else {
                // Nothing accepts the value: the goal already holds.
                warn!("mariadb user does not exist; nothing to revoke");
                return Ok(());
            };
            let hash = native_hash(value);
            if !methods.contains(&AuthMethod::Native(hash.clone())) {
                debug!("password already refused");
                return Ok(());
            }
            let rest: Vec<AuthMethod> = methods
                .into_iter()
                .filter(|m| *m != AuthMethod::Native(hash.clone()))
                .collect();
            if rest.is_empty() {
                return Err(precondition(
                    "refusing to leave the user without a password",
                ));
            }
            let rest = self.rotatable(&rest)?;
            self.alter(&mut conn, &rest).await?;
            info!("password removed");
            Ok(())
        }
        .await;
        self.close(conn).await;
        result
    }

    #[tracing::instrument(skip_all, fields(target = %self.label, user = %self.config.user))]
    async fn verify(&self, value: &SecretValue) -> Result<Verdict, TargetError> {
        let mut conn = match self.connect(&self.config.user, Some(value)).await {
            Ok(conn) => conn,
            Err(f) if f.number() == Some(ER_ACCESS_DENIED) => {
                debug!("refused");
                return Ok(Verdict::Refused);
            }
            Err(f) => return Err(self.common_error(f)),
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
            Err(f) => Err(self.common_error(f)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretValue {
        SecretValue::new(s.to_owned()).unwrap()
    }

    fn cfg(address: &str, user: &str) -> MariaDbConfig {
        MariaDbConfig {
            address: address.to_owned(),
            user: user.to_owned(),
            host: "%".to_owned(),
            admin_secret: None,
        }
    }

    #[test]
    fn native_hash_matches_password_function() {
        // SELECT PASSWORD('password') on MariaDB 10.11.
        let h = native_hash(&secret("password"));
        assert_eq!(h, "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19");
        assert!(is_native_hash(&h));
        assert!(!is_native_hash("*2470c0c06dee42fd1618bb99005adca2ec9d1e19"));
    }

    #[test]
    fn alter_user_statements_carry_no_plaintext() {
        let old = secret("old-plaintext-password-123");
        let new = secret("new-plaintext-password-456");
        let hashes = [native_hash(&old), native_hash(&new)];
        let sql = alter_user_sql("app", "%", &hashes).unwrap();
        assert_eq!(
            sql,
            format!(
                "ALTER USER 'app'@'%' IDENTIFIED VIA mysql_native_password USING '{}' OR mysql_native_password USING '{}'",
                hashes[0], hashes[1]
            )
        );
        for v in [&old, &new] {
            assert!(!sql.contains(v.expose()), "{sql}");
        }
        let one = alter_user_sql("app", "10.0.%", &hashes[1..]).unwrap();
        assert!(!one.contains(" OR "), "{one}");
        assert!(!one.contains(new.expose()));
    }

    #[test]
    fn alter_user_refuses_bad_input() {
        let h = native_hash(&secret("some-password-abcdef"));
        assert!(alter_user_sql("app", "%", &[]).is_err());
        assert!(alter_user_sql("a'pp", "%", std::slice::from_ref(&h)).is_err());
        assert!(alter_user_sql("app", "%'", std::slice::from_ref(&h)).is_err());
        assert!(alter_user_sql("app", "%", &["plaintext".to_owned()]).is_err());
        assert!(alter_user_sql("app", "%", &["*' OR 1".to_owned()]).is_err());
    }

    #[test]
    fn priv_json_parses_single_and_or_forms() {
        let single = r#"{"access":0,"plugin":"mysql_native_password","authentication_string":"*2b602296a79e0a8784acc5c88d92e46588cca3c3"}"#;
        assert_eq!(
            parse_priv(single).unwrap(),
            vec![AuthMethod::Native(
                "*2B602296A79E0A8784ACC5C88D92E46588CCA3C3".into()
            )]
        );
        let or = r#"{"plugin":"mysql_native_password","authentication_string":"*2B602296A79E0A8784ACC5C88D92E46588CCA3C3","auth_or":[{},{"plugin":"mysql_native_password","authentication_string":"*B27918D2D9402882CEADA0EF687D35FBDC137D72"}]}"#;
        assert_eq!(
            parse_priv(or).unwrap(),
            vec![
                AuthMethod::Native("*2B602296A79E0A8784ACC5C88D92E46588CCA3C3".into()),
                AuthMethod::Native("*B27918D2D9402882CEADA0EF687D35FBDC137D72".into()),
            ]
        );
        let one_or = r#"{"plugin":"mysql_native_password","authentication_string":"*2B602296A79E0A8784ACC5C88D92E46588CCA3C3","auth_or":[{}]}"#;
        assert_eq!(parse_priv(one_or).unwrap().len(), 1);
        let socket = r#"{"plugin":"unix_socket","authentication_string":""}"#;
        assert_eq!(
            parse_priv(socket).unwrap(),
            vec![AuthMethod::Other("unix_socket".into())]
        );
        assert!(parse_priv("not json").is_err());
        assert!(parse_priv(r#"{"auth_or": 3}"#).is_err());
    }

    #[test]
    fn versions() {
        check_version("10.11.19-MariaDB-0+deb12u1").unwrap();
        check_version("10.4.0-MariaDB").unwrap();
        check_version("11.4.2-MariaDB-log").unwrap();
        assert!(matches!(
            check_version("10.3.39-MariaDB"),
            Err(TargetError::Precondition { .. })
        ));
        let e = check_version("8.0.36").unwrap_err();
        assert!(e.to_string().contains("MySQL is not supported yet"), "{e}");
    }

    #[test]
    fn config_checks_identifiers_and_addresses() {
        for a in ["127.0.0.1:3306", "db.internal", "[::1]:3306", "db:3307"] {
            cfg(a, "app")
                .validate()
                .unwrap_or_else(|e| panic!("{a}: {e}"));
        }
        assert_eq!(parse_address("db").unwrap(), ("db".into(), 3306));
        assert_eq!(parse_address("[::1]:3307").unwrap(), ("::1".into(), 3307));
        for a in [
            "",
            "mysql://127.0.0.1:3306",
            "root:pw@127.0.0.1:3306",
            "127.0.0.1:notaport",
            "127.0.0.1:0",
            " 127.0.0.1:3306",
            ":3306",
        ] {
            let e = cfg(a, "app").validate().unwrap_err();
            assert!(matches!(e, TargetError::Config { .. }), "{a:?}");
            assert!(!e.to_string().contains("pw@"), "{e}");
        }
        for u in ["", "a'b", "a b", "a\\b", "a`b", &"x".repeat(81)] {
            assert!(cfg("127.0.0.1:3306", u).validate().is_err(), "{u:?}");
        }
        cfg("127.0.0.1:3306", &"x".repeat(80)).validate().unwrap();
        let mut c = cfg("127.0.0.1:3306", "app_1.x-y");
        c.host = "10.0.%".into();
        c.validate().unwrap();
        c.host = "'; DROP".into();
        assert!(c.validate().is_err());
    }

    #[test]
    fn config_json_defaults_and_refuses_unknown_fields() {
        let c: MariaDbConfig =
            serde_json::from_str(r#"{"address":"127.0.0.1:3306","user":"app"}"#).unwrap();
        assert_eq!(c.host, "%");
        assert!(c.admin_secret.is_none());
        assert!(serde_json::from_str::<MariaDbConfig>(
            r#"{"address":"127.0.0.1:3306","user":"app","password":"x"}"#
        )
        .is_err());
    }

    #[test]
    fn target_debug_redacts_the_admin_password() {
        let admin = AdminCredential {
            username: "ops".into(),
            password: secret("the-admin-password"),
        };
        let t = MariaDbTarget::new(cfg("127.0.0.1:3306", "app"), Some(admin)).unwrap();
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("the-admin-password"), "{dbg}");
        assert!(dbg.contains("app"));
    }
}
