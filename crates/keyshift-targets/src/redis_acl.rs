//! The Redis 6+ ACL user target.
//!
//! A Redis ACL user may hold several passwords at once, which is the overlap:
//! `ACL SETUSER u #<sha256>` adds one and `ACL SETUSER u !<sha256>` removes
//! one. Passwords go to Redis only as SHA-256 digests; the plaintext travels
//! only in the `AUTH`/`HELLO` that logs in when verifying.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use keyshift_core::{SecretName, SecretValue};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionInfo, ErrorKind, IntoConnectionInfo, RedisError};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::{Target, TargetError, Verdict};

/// How long a network operation (connect, one command) may take before it
/// counts as [`TargetError::Unreachable`], unless [`RedisTarget::with_timeout`]
/// says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The user name an admin credential given as a bare password logs in as.
const DEFAULT_USER: &str = "default";

/// Server error codes that mean "busy for now, ask again later".
const TRANSIENT_CODES: [&str; 6] = [
    "LOADING",
    "TRYAGAIN",
    "MASTERDOWN",
    "CLUSTERDOWN",
    "BUSY",
    "READONLY",
];

/// Config of a Redis ACL user target, as stored (JSON) on a secret of kind
/// `redis`.
///
/// ```
/// let c: keyshift_targets::RedisConfig = serde_json::from_str(
///     r#"{"address": "redis://10.0.0.5:6379", "user": "orders", "admin_secret": "prod/redis/admin"}"#,
/// ).unwrap();
/// c.validate().unwrap();
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `host:port` or a `redis://` URL without credentials (a URL that
    /// carries a user name or password is refused).
    pub address: String,
    /// The ACL user whose passwords rotate.
    pub user: String,
    /// Name of another keyshift secret holding the admin credential
    /// (resolved by the server); `None` = connect without auth, as the
    /// default user.
    #[serde(default)]
    pub admin_secret: Option<String>,
}

impl RedisConfig {
    /// Checks the config: `user` is non-empty, has no spaces or control
    /// characters and is not `default`; `address` parses and carries no
    /// credentials; `admin_secret`, if given, is a valid secret name.
    ///
    /// # Errors
    ///
    /// [`TargetError::Config`], which never repeats a password found in the
    /// address.
    pub fn validate(&self) -> Result<(), TargetError> {
        validate_user(&self.user)?;
        parse_address(&self.address)?;
        if let Some(name) = &self.admin_secret {
            name.parse::<SecretName>()
                .map_err(|e| TargetError::Config {
                    detail: format!("admin_secret is not a valid secret name: {e}"),
                })?;
        }
        Ok(())
    }
}

fn validate_user(user: &str) -> Result<(), TargetError> {
    if user.is_empty() {
        return Err(config("user is empty"));
    }
    if user.len() > 256 {
        return Err(config("user is longer than 256 bytes"));
    }
    if user.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(config("user must not contain spaces or control characters"));
    }
    if user == DEFAULT_USER {
        return Err(config(
            "user must not be `default`: rotate a dedicated ACL user, the default user serves unauthenticated clients",
        ));
    }
    Ok(())
}

/// Parses `address` into connection info without credentials.
fn parse_address(address: &str) -> Result<ConnectionInfo, TargetError> {
    if address.is_empty() {
        return Err(config("address is empty"));
    }
    // Never echo an address that may hold userinfo.
    let shown = if address.contains('@') || address.chars().any(char::is_control) {
        "(not shown)".to_owned()
    } else {
        format!("`{address}`")
    };
    if address.trim() != address {
        return Err(config(format!(
            "address {shown} has leading or trailing spaces"
        )));
    }
    let url = if address.contains("://") {
        address.to_owned()
    } else {
        format!("redis://{address}")
    };
    let info = url.as_str().into_connection_info().map_err(|_| {
        config(format!(
            "address {shown} is neither host:port nor a redis:// URL"
        ))
    })?;
    if info.redis.password.is_some() || info.redis.username.is_some() {
        return Err(config(
            "address must not carry credentials: store the admin credential as a secret and name it in admin_secret",
        ));
    }
    if !info.addr.is_supported() {
        return Err(config(format!(
            "address {shown} needs a transport this build does not support (TLS?)"
        )));
    }
    Ok(info)
}

fn config(detail: impl Into<String>) -> TargetError {
    TargetError::Config {
        detail: detail.into(),
    }
}

/// An admin credential: parsed from a secret value that is either JSON
/// `{"username": "...", "password": "..."}` or a bare password (user
/// `default`).
///
/// Its `Debug` shows the user name and redacts the password.
#[derive(Clone)]
pub struct AdminCredential {
    /// The ACL user to log in as.
    pub username: String,
    /// Its password.
    pub password: SecretValue,
}

impl fmt::Debug for AdminCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminCredential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl AdminCredential {
    /// Reads an admin credential from a secret's value.
    ///
    /// A value that starts with `{` must be a JSON object with exactly the
    /// string fields `username` and `password`; any other value is a bare
    /// password for the `default` user (a bare password that starts with `{`
    /// must be written in the JSON form).
    ///
    /// # Errors
    ///
    /// [`TargetError::Config`] when the JSON form is malformed. The message
    /// never quotes the value.
    #[tracing::instrument(skip_all)]
    pub fn parse(value: &SecretValue) -> Result<AdminCredential, TargetError> {
        let raw = value.expose();
        if !raw.trim_start().starts_with('{') {
            return Ok(AdminCredential {
                username: DEFAULT_USER.to_owned(),
                password: value.clone(),
            });
        }
        // serde_json's messages may quote the input: never show them.
        let expected = "expected {\"username\": \"...\", \"password\": \"...\"}";
        let Ok(serde_json::Value::Object(mut map)) = serde_json::from_str(raw) else {
            return Err(config(format!(
                "admin credential starts with `{{` but is not a JSON object ({expected})"
            )));
        };
        let username = match map.remove("username") {
            Some(serde_json::Value::String(s)) => s,
            _ => {
                return Err(config(format!(
                    "admin credential lacks a string `username` ({expected})"
                )))
            }
        };
        let password = match map.remove("password") {
            Some(serde_json::Value::String(s)) => s,
            _ => {
                return Err(config(format!(
                    "admin credential lacks a string `password` ({expected})"
                )))
            }
        };
        if !map.is_empty() {
            return Err(config(format!(
                "admin credential has fields other than username and password ({expected})"
            )));
        }
        if username.is_empty()
            || username
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(config(
                "admin credential's username is empty or has spaces or control characters",
            ));
        }
        let password = SecretValue::new(password)
            .map_err(|e| config(format!("admin credential's password: {e}")))?;
        Ok(AdminCredential { username, password })
    }
}

/// A Redis 6+ ACL user whose passwords keyshift rotates.
///
/// Admin commands (`ACL GETUSER`, `ACL SETUSER`) run on a fresh connection
/// logged in with the admin credential (or none); every network operation is
/// bounded by a timeout ([`DEFAULT_TIMEOUT`] unless set with
/// [`with_timeout`](RedisTarget::with_timeout)).
pub struct RedisTarget {
    config: RedisConfig,
    /// Where to connect, without credentials.
    info: ConnectionInfo,
    admin: Option<AdminCredential>,
    timeout: Duration,
    /// Names the target in errors: the address (never credentials).
    label: String,
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTarget")
            .field("address", &self.config.address)
            .field("user", &self.config.user)
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
    Redis(RedisError),
}

/// What `ACL GETUSER` says about the managed user.
#[derive(Debug, Default, PartialEq, Eq)]
struct UserInfo {
    flags: Vec<String>,
    digests: Vec<[u8; 32]>,
}

impl RedisTarget {
    /// A target for `config`, administered with `admin` (or as the default
    /// user without auth when `None`). Connects to nothing yet.
    ///
    /// # Errors
    ///
    /// [`TargetError::Config`] when the config does not validate.
    pub fn new(
        config: RedisConfig,
        admin: Option<AdminCredential>,
    ) -> Result<RedisTarget, TargetError> {
        config.validate()?;
        let info = parse_address(&config.address)?;
        let label = format!("redis {}", info.addr);
        Ok(RedisTarget {
            config,
            info,
            admin,
            timeout: DEFAULT_TIMEOUT,
            label,
        })
    }

    /// Bounds every network operation (connect, each command) by `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> RedisTarget {
        self.timeout = timeout;
        self
    }

    /// The config this target was built from.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// The bound on each network operation.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// SHA-256 digests of the passwords the user accepts now (from
    /// `ACL GETUSER`), for tests and reconciliation.
    ///
    /// # Errors
    ///
    /// [`TargetError::Precondition`] when the user does not exist, and the
    /// errors of any admin operation.
    pub async fn accepted_digests(&self) -> Result<Vec<[u8; 32]>, TargetError> {
        let mut conn = self.admin_connection().await?;
        Ok(self.existing_user(&mut conn).await?.digests)
    }

    async fn bounded<T>(
        &self,
        fut: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Failure::Redis(e)),
            Err(_) => Err(Failure::Timeout),
        }
    }

    /// A fresh connection logged in as `login` (or not logged in).
    async fn connect(
        &self,
        login: Option<(&str, &SecretValue)>,
    ) -> Result<MultiplexedConnection, Failure> {
        let mut info = self.info.clone();
        if let Some((user, password)) = login {
            info.redis.username = Some(user.to_owned());
            info.redis.password = Some(password.expose().to_owned());
        }
        let client = redis::Client::open(info).map_err(Failure::Redis)?;
        let settings = AsyncConnectionConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout);
        self.bounded(client.get_multiplexed_async_connection_with_config(&settings))
            .await
    }

    async fn admin_connection(&self) -> Result<MultiplexedConnection, TargetError> {
        let login = self
            .admin
            .as_ref()
            .map(|a| (a.username.as_str(), &a.password));
        self.connect(login).await.map_err(|f| self.admin_error(f))
    }

    /// `ACL GETUSER`: `None` when the user does not exist.
    async fn user_info(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> Result<Option<UserInfo>, TargetError> {
        let cmd = acl_getuser_cmd(&self.config.user);
        let reply: redis::Value = self
            .bounded(cmd.query_async(conn))
            .await
            .map_err(|f| self.admin_error(f))?;
        parse_getuser(&reply)
    }

    async fn existing_user(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> Result<UserInfo, TargetError> {
        self.user_info(conn)
            .await?
            .ok_or_else(|| TargetError::Precondition {
                detail: format!("redis user {} does not exist", self.config.user),
            })
    }

    fn refuse_nopass(&self, user: &UserInfo) -> Result<(), TargetError> {
        if user.flags.iter().any(|f| f == "nopass") {
            return Err(TargetError::Precondition {
                detail: format!(
                    "redis user {} is `nopass` (any password logs in); adding a password would lock its clients out, give it a password first",
                    self.config.user
                ),
            });
        }
        Ok(())
    }

    fn admin_error(&self, failure: Failure) -> TargetError {
        let e = match failure {
            Failure::Timeout => return self.timed_out(),
            Failure::Redis(e) => e,
        };
        let admin = self
            .admin
            .as_ref()
            .map_or("(no credential)", |a| a.username.as_str());
        if is_auth_failure(&e) {
            return TargetError::AdminRefused {
                target: self.label.clone(),
                detail: format!("admin user {admin} failed to authenticate"),
            };
        }
        match e.code() {
            Some("NOPERM") => TargetError::AdminRefused {
                target: self.label.clone(),
                detail: format!("admin user {admin} lacks permission: {e}"),
            },
            Some("NOAUTH") => TargetError::AdminRefused {
                target: self.label.clone(),
                detail: "the server requires authentication: set admin_secret".to_owned(),
            },
            _ => self.common_error(e),
        }
    }

    /// Errors that mean the same for admin and verify connections.
    fn common_error(&self, e: RedisError) -> TargetError {
        if e.is_io_error()
            || e.is_timeout()
            || e.is_connection_refusal()
            || e.is_connection_dropped()
            || e.code().is_some_and(|c| TRANSIENT_CODES.contains(&c))
        {
            return TargetError::Unreachable {
                target: self.label.clone(),
                detail: e.to_string(),
            };
        }
        if e.kind() == ErrorKind::InvalidClientConfig {
            return config(format!("redis client refused the config: {e}"));
        }
        TargetError::Protocol {
            detail: format!("{}: {e}", self.label),
        }
    }

    fn timed_out(&self) -> TargetError {
        TargetError::Unreachable {
            target: self.label.clone(),
            detail: format!("no answer within {:?}", self.timeout),
        }
    }
}

#[async_trait::async_trait]
impl Target for RedisTarget {
    #[tracing::instrument(skip_all, fields(target = %self.label, user = %self.config.user))]
    async fn precheck(&self, current: Option<&SecretValue>) -> Result<(), TargetError> {
        let mut conn = self.admin_connection().await?;
        let user = self.existing_user(&mut conn).await?;
        self.refuse_nopass(&user)?;
        if let Some(current) = current {
            if self.verify(current).await? == Verdict::Refused {
                return Err(TargetError::Precondition {
                    detail: "the current credential no longer logs in".to_owned(),
                });
            }
        }
        debug!("precheck passed");
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(target = %self.label, user = %self.config.user))]
    async fn enable(&self, value: &SecretValue) -> Result<(), TargetError> {
        let mut conn = self.admin_connection().await?;
        let user = self.existing_user(&mut conn).await?;
        let digest = value.sha256();
        if user.digests.contains(&digest) {
            debug!("password already accepted");
            return Ok(());
        }
        // Without this check, adding a password to a `nopass` user would
        // make its other clients' logins fail.
        self.refuse_nopass(&user)?;
        let cmd = acl_add_password_cmd(&self.config.user, &digest);
        self.bounded(cmd.query_async::<()>(&mut conn))
            .await
            .map_err(|f| self.admin_error(f))?;
        info!("password added");
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(target = %self.label, user = %self.config.user))]
    async fn revoke(&self, value: &SecretValue) -> Result<(), TargetError> {
        let mut conn = self.admin_connection().await?;
        let Some(user) = self.user_info(&mut conn).await? else {
            // Nothing accepts the value: the goal already holds. (Never
            // SETUSER here, it would create the user.)
            warn!("redis user does not exist; nothing to revoke");
            return Ok(());
        };
        let digest = value.sha256();
        if !user.digests.contains(&digest) {
            debug!("password already refused");
            return Ok(());
        }
        let cmd = acl_remove_password_cmd(&self.config.user, &digest);
        match self.bounded(cmd.query_async::<()>(&mut conn)).await {
            Ok(()) => {
                info!("password removed");
                Ok(())
            }
            // Removed concurrently since we read it: the goal holds.
            Err(Failure::Redis(e))
                if e.kind() == ErrorKind::ResponseError
                    && e.detail().is_some_and(|d| d.contains("does not exist")) =>
            {
                debug!("password removed concurrently");
                Ok(())
            }
            Err(f) => Err(self.admin_error(f)),
        }
    }

    #[tracing::instrument(skip_all, fields(target = %self.label, user = %self.config.user))]
    async fn verify(&self, value: &SecretValue) -> Result<Verdict, TargetError> {
        let mut conn = match self.connect(Some((&self.config.user, value))).await {
            Ok(conn) => conn,
            Err(Failure::Redis(e)) if is_auth_failure(&e) => {
                debug!("refused");
                return Ok(Verdict::Refused);
            }
            Err(Failure::Timeout) => return Err(self.timed_out()),
            Err(Failure::Redis(e)) => return Err(self.common_error(e)),
        };
        // Logged in; a PING proves the connection serves commands. A user
        // not allowed to PING has still authenticated.
        let ping = redis::cmd("PING");
        match self
            .bounded(ping.query_async::<redis::Value>(&mut conn))
            .await
        {
            Ok(_) => {}
            Err(Failure::Redis(e)) if e.code() == Some("NOPERM") => {}
            Err(Failure::Redis(e)) if is_auth_failure(&e) => return Ok(Verdict::Refused),
            Err(Failure::Timeout) => return Err(self.timed_out()),
            Err(Failure::Redis(e)) => return Err(self.common_error(e)),
        }
        debug!("accepted");
        Ok(Verdict::Accepted)
    }
}

/// Whether `e` is the server refusing a login (RESP2 `AUTH` or RESP3
/// `HELLO ... AUTH`).
fn is_auth_failure(e: &RedisError) -> bool {
    e.kind() == ErrorKind::AuthenticationFailed || e.code() == Some("WRONGPASS")
}

fn acl_getuser_cmd(user: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("ACL");
    cmd.arg("GETUSER").arg(user);
    cmd
}

/// `ACL SETUSER <user> #<hex>`: built from the digest, so the plaintext
/// cannot reach it.
fn acl_add_password_cmd(user: &str, digest: &[u8; 32]) -> redis::Cmd {
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER")
        .arg(user)
        .arg(format!("#{}", hex::encode(digest)));
    cmd
}

/// `ACL SETUSER <user> !<hex>`: built from the digest, so the plaintext
/// cannot reach it.
fn acl_remove_password_cmd(user: &str, digest: &[u8; 32]) -> redis::Cmd {
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER")
        .arg(user)
        .arg(format!("!{}", hex::encode(digest)));
    cmd
}

fn protocol(detail: impl Into<String>) -> TargetError {
    TargetError::Protocol {
        detail: detail.into(),
    }
}

fn text(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        redis::Value::SimpleString(s) => Some(s.clone()),
        redis::Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

fn list(v: &redis::Value) -> Option<&[redis::Value]> {
    match v {
        redis::Value::Array(items) | redis::Value::Set(items) => Some(items),
        _ => None,
    }
}

fn texts(v: &redis::Value, field: &str) -> Result<Vec<String>, TargetError> {
    list(v)
        .ok_or_else(|| protocol(format!("ACL GETUSER `{field}` is not a list")))?
        .iter()
        .map(|item| {
            text(item).ok_or_else(|| protocol(format!("ACL GETUSER `{field}` has a non-string")))
        })
        .collect()
}

/// Reads `ACL GETUSER`'s reply (RESP2 flat key/value array or RESP3 map).
fn parse_getuser(reply: &redis::Value) -> Result<Option<UserInfo>, TargetError> {
    let pairs: Vec<(&redis::Value, &redis::Value)> = match reply {
        redis::Value::Nil => return Ok(None),
        redis::Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
        redis::Value::Array(items) if items.len() % 2 == 0 => items
            .chunks_exact(2)
            .map(|pair| (&pair[0], &pair[1]))
            .collect(),
        _ => return Err(protocol("ACL GETUSER answered neither nil nor a map")),
    };
    let mut user = UserInfo::default();
    let mut saw_passwords = false;
    for (key, value) in pairs {
        match text(key).as_deref() {
            Some("flags") => user.flags = texts(value, "flags")?,
            Some("passwords") => {
                saw_passwords = true;
                for hex_digest in texts(value, "passwords")? {
                    let mut digest = [0u8; 32];
                    hex::decode_to_slice(&hex_digest, &mut digest).map_err(|_| {
                        protocol(
                            "ACL GETUSER `passwords` has an entry that is not a SHA-256 hex digest",
                        )
                    })?;
                    user.digests.push(digest);
                }
            }
            _ => {}
        }
    }
    if !saw_passwords {
        return Err(protocol("ACL GETUSER answered no `passwords` field"));
    }
    Ok(Some(user))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretValue {
        SecretValue::new(s.to_owned()).unwrap()
    }

    fn cfg(address: &str, user: &str) -> RedisConfig {
        RedisConfig {
            address: address.to_owned(),
            user: user.to_owned(),
            admin_secret: None,
        }
    }

    #[test]
    fn password_commands_carry_only_the_digest() {
        let value = secret("plaintext-password-123456");
        let hex_digest = hex::encode(value.sha256());
        for (cmd, sigil) in [
            (acl_add_password_cmd("app", &value.sha256()), '#'),
            (acl_remove_password_cmd("app", &value.sha256()), '!'),
        ] {
            let packed = String::from_utf8(cmd.get_packed_command()).unwrap();
            assert!(!packed.contains(value.expose()), "{packed}");
            assert!(packed.contains(&format!("{sigil}{hex_digest}")), "{packed}");
            assert!(packed.contains("SETUSER") && packed.contains("app"));
            // Only the password modifier: never on/off, keys or commands.
            assert_eq!(cmd.args_iter().count(), 4);
        }
    }

    #[test]
    fn config_accepts_host_port_and_urls() {
        for a in [
            "127.0.0.1:6379",
            "localhost:6380",
            "redis.internal",
            "[::1]:6379",
            "redis://10.0.0.1:6379",
            "redis://10.0.0.1:6379/2",
        ] {
            cfg(a, "app")
                .validate()
                .unwrap_or_else(|e| panic!("{a}: {e}"));
        }
    }

    #[test]
    fn config_refuses_credentials_in_the_address_without_echoing_them() {
        for a in [
            "redis://:hunter2secret@127.0.0.1:6379",
            "redis://admin:hunter2secret@127.0.0.1:6379",
            "admin:hunter2secret@127.0.0.1:6379",
            "redis://admin@127.0.0.1:6379",
        ] {
            let e = cfg(a, "app").validate().unwrap_err();
            assert!(matches!(e, TargetError::Config { .. }), "{a}: {e}");
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains("hunter2secret"), "{shown}");
        }
    }

    #[test]
    fn config_refuses_bad_users_and_addresses() {
        for u in ["", "default", "has space", "tab\there", "nul\0"] {
            assert!(
                matches!(
                    cfg("127.0.0.1:6379", u).validate(),
                    Err(TargetError::Config { .. })
                ),
                "{u:?}"
            );
        }
        for a in [
            "",
            " 127.0.0.1:6379",
            "127.0.0.1:notaport",
            "http://x:1",
            "redis://",
        ] {
            assert!(
                matches!(cfg(a, "app").validate(), Err(TargetError::Config { .. })),
                "{a:?}"
            );
        }
        let mut c = cfg("127.0.0.1:6379", "app");
        c.admin_secret = Some("../bad".into());
        assert!(matches!(c.validate(), Err(TargetError::Config { .. })));
        c.admin_secret = Some("prod/redis/admin".into());
        c.validate().unwrap();
    }

    #[test]
    fn config_json_refuses_unknown_fields_and_defaults_admin() {
        let c: RedisConfig =
            serde_json::from_str(r#"{"address":"127.0.0.1:6379","user":"app"}"#).unwrap();
        assert!(c.admin_secret.is_none());
        assert!(serde_json::from_str::<RedisConfig>(
            r#"{"address":"127.0.0.1:6379","user":"app","password":"x"}"#
        )
        .is_err());
    }

    #[test]
    fn admin_credential_reads_both_forms_and_redacts() {
        let bare = AdminCredential::parse(&secret("bare-admin-pw")).unwrap();
        assert_eq!(bare.username, "default");
        assert_eq!(bare.password.expose(), "bare-admin-pw");
        let json = AdminCredential::parse(&secret(
            r#"{"username": "ops", "password": "json-admin-pw"}"#,
        ))
        .unwrap();
        assert_eq!(json.username, "ops");
        assert_eq!(json.password.expose(), "json-admin-pw");
        for c in [&bare, &json] {
            let dbg = format!("{c:?}");
            assert!(!dbg.contains("admin-pw"), "{dbg}");
            assert!(dbg.contains(&c.username));
        }
    }

    #[test]
    fn admin_credential_errors_never_quote_the_value() {
        for raw in [
            r#"{"username": "ops", "password": 7, "x": "leaky-value"}"#,
            r#"{"username": "ops"}"#,
            r#"{"username": "", "password": "leaky-value"}"#,
            r#"{"username": "ops", "password": "leaky-value", "extra": 1}"#,
            r#"{"user": "leaky-value"}"#,
            r#"{"username": "ops", "password": "leaky-value""#,
        ] {
            let e = AdminCredential::parse(&secret(raw)).unwrap_err();
            assert!(matches!(e, TargetError::Config { .. }), "{raw}: {e}");
            assert!(!format!("{e} {e:?}").contains("leaky-value"), "{e}");
        }
    }

    #[test]
    fn getuser_replies_parse_in_resp2_and_resp3() {
        use redis::Value as V;
        let d = secret("some-password-abcdef").sha256();
        let b = |s: &str| V::BulkString(s.as_bytes().to_vec());
        let resp2 = V::Array(vec![
            b("flags"),
            V::Array(vec![b("on")]),
            b("passwords"),
            V::Array(vec![b(&hex::encode(d))]),
            b("commands"),
            b("+@all"),
        ]);
        let resp3 = V::Map(vec![
            (V::SimpleString("flags".into()), V::Set(vec![b("on")])),
            (b("passwords"), V::Array(vec![b(&hex::encode(d))])),
        ]);
        let want = UserInfo {
            flags: vec!["on".into()],
            digests: vec![d],
        };
        assert_eq!(parse_getuser(&resp2).unwrap(), Some(UserInfo { ..want }));
        assert_eq!(parse_getuser(&resp3).unwrap().unwrap().digests, vec![d]);
        assert_eq!(parse_getuser(&V::Nil).unwrap(), None);
        assert!(parse_getuser(&V::Int(1)).is_err());
        let bad = V::Array(vec![b("passwords"), V::Array(vec![b("nothex")])]);
        assert!(matches!(
            parse_getuser(&bad),
            Err(TargetError::Protocol { .. })
        ));
    }

    #[test]
    fn target_debug_redacts_the_admin_password() {
        let admin = AdminCredential::parse(&secret("the-admin-password")).unwrap();
        let t = RedisTarget::new(cfg("127.0.0.1:6379", "app"), Some(admin)).unwrap();
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("the-admin-password"), "{dbg}");
        assert!(dbg.contains("app"));
    }
}
