//! The MariaDB/MySQL target.
//!
//! # Values
//!
//! A `mariadb` secret's value is a [`Credential`], the JSON
//! `{"username": "...", "password": "..."}`, so a consumer gets the user
//! name with the password (in blue-green mode the user changes from one
//! rotation to the next). Every operation reads the value first; a value
//! for a user this target does not manage is a
//! [`TargetError::Precondition`] naming the expected user(s), never the
//! password.
//!
//! # Modes ([`MariaDbMode`])
//!
//! ```text
//!  dual:        'app'@'%'  accepts  old ─┬─ new      (one account, two passwords)
//!  blue-green:  'app_blue'@'%'   old  ──► LOCKED    (two accounts taking turns,
//!               'app_green'@'%'  new  ──► live       both with the role `app`)
//! ```
//!
//! `auto` (the default) is dual where the server can do it, else
//! blue-green; the server is asked (`SELECT VERSION(), @@version_comment`)
//! by every operation that connects as admin. Statements, per server:
//!
//! | | dual enable | dual revoke |
//! |---|---|---|
//! | MariaDB 10.4+ | `ALTER USER 'u'@'h' IDENTIFIED VIA mysql_native_password USING '*<old>' OR mysql_native_password USING '*<new>'` | the same with the one left |
//! | MySQL 8.0.14+ | `ALTER USER 'u'@'h' IDENTIFIED BY '<new>' RETAIN CURRENT PASSWORD` | the secondary: `ALTER USER 'u'@'h' DISCARD OLD PASSWORD`; the primary (a rollback): `ALTER USER 'u'@'h' IDENTIFIED WITH mysql_native_password AS '*<secondary>'`, then `DISCARD OLD PASSWORD` |
//!
//! Blue-green (MariaDB 10.4.2+, MySQL 8.0+: roles and `ACCOUNT LOCK`):
//! `user` names a role the operator made (`CREATE ROLE app` and its
//! grants); the slots are `users`, default `<user>_blue`/`<user>_green`.
//! [`Target::generate`] picks the slot the current value does not use.
//! Enabling a slot: `CREATE USER IF NOT EXISTS 'x'@'h' <auth> ACCOUNT LOCK`
//! when missing, `GRANT app TO 'x'@'h'`, `SET DEFAULT ROLE app FOR 'x'@'h'`
//! (MySQL: `SET DEFAULT ROLE ALL TO 'x'@'h'`), then
//! `ALTER USER 'x'@'h' <auth> ACCOUNT UNLOCK`, where `<auth>` is
//! `IDENTIFIED VIA mysql_native_password USING '*<hash>'` on MariaDB and
//! `IDENTIFIED BY '<password>'` on MySQL. A slot that is unlocked with
//! another password may be in use and is never changed (Precondition).
//! Revoking: nothing when the slot no longer accepts the value (missing,
//! locked, or holding another password: compared by hash on MariaDB, by
//! logging in on MySQL), else `ALTER USER 'x'@'h' ACCOUNT LOCK`; the
//! account keeps its password, so enabling the same value again is an
//! instant rollback.
//!
//! # Where passwords travel
//!
//! On MariaDB, passwords reach the server only as native hashes
//! (`'*' + HEX(SHA1(SHA1(password)))`, computed here), so the plaintext is
//! in no statement, general or binary log; it travels only in the
//! scrambled `mysql_native_password` handshake that logs in to verify.
//! MySQL has no pre-hashed form of `RETAIN CURRENT PASSWORD` (and its
//! default `caching_sha2_password` hashes are salted server-side), so on
//! MySQL the statements carry the plaintext over the admin connection (use
//! TLS to the server); MySQL rewrites the password out of its general,
//! slow and binary logs unless started with `--log-raw`. Statements are
//! never logged here, and their errors never quote the server's message.
//!
//! # What is observable
//!
//! [`Target::usage`] counts the sessions of the value's user in
//! `information_schema.PROCESSLIST` (the admin needs `PROCESS`): `Some(n)`
//! in blue-green mode, where each version has its own user (the count
//! includes sessions opened with an earlier password of the same slot:
//! locking ends no open session). In dual mode both passwords log in as
//! the same user, so per-version usage is not observable and it returns
//! `None`. Like Redis, revoking ends no open session: a consumer must
//! reconnect.
//!
//! # Untested
//!
//! Only MariaDB 10.11 runs in the tests. The MySQL statements are unit
//! tested as strings; MySQL dual mode manages `mysql_native_password`
//! accounts only (it tells the primary from the secondary by hash), and
//! was never run against a MySQL server, nor was blue-green on MySQL.
//!
//! ```no_run
//! use keyshift_core::{Credential, SecretValue};
//! use keyshift_targets::{MariaDbConfig, MariaDbTarget, Target, Verdict};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config: MariaDbConfig = serde_json::from_str(
//!     r#"{"address": "127.0.0.1:3306", "user": "app", "mode": "blue-green"}"#,
//! )?;
//! let target = MariaDbTarget::new(config, None)?;
//! target.precheck(None).await?;
//! let blue = target.generate(None).await?.expect("a credential");
//! target.enable(&blue).await?;
//! assert_eq!(Credential::parse(&blue)?.username(), "app_blue");
//! let green = target.generate(Some(&blue)).await?.expect("a credential");
//! target.enable(&green).await?; // both log in now
//! target.revoke(&blue).await?; // app_blue is locked
//! assert_eq!(target.verify(&blue).await?, Verdict::Refused);
//! # Ok(())
//! # }
//! ```

mod account;
mod blue_green;
mod config;
mod conn;
mod dual;
mod server;
mod sql;

use std::fmt;
use std::time::Duration;

use keyshift_core::{Credential, SecretValue};
use tracing::debug;

pub use config::{MariaDbConfig, MariaDbMode};
use server::{Server, Strategy};

use crate::slots::{next_credential, parse_credential};
use crate::{random_password, AdminCredential, Target, TargetError, Verdict, DEFAULT_TIMEOUT};

/// The port used when `address` names none.
const DEFAULT_PORT: u16 = 3306;

/// The only authentication plugin whose hashes are compared here.
const NATIVE_PLUGIN: &str = "mysql_native_password";

fn config_error(detail: impl Into<String>) -> TargetError {
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

/// A MariaDB/MySQL account (dual mode) or pair of slot accounts
/// (blue-green mode) whose credential keyshift rotates.
///
/// Values are [`Credential`] JSON (`{"username": "...", "password": "..."}`):
/// for `user` in dual mode, for one of the two slot users in blue-green
/// mode ([`MariaDbMode`]). [`Target::usage`] is `Some` (the slot user's
/// sessions) in blue-green mode and `None` in dual mode, where both
/// passwords log in as the same user. Dual mode on MySQL manages
/// `mysql_native_password` accounts only, and its statements carry the
/// new password in plaintext (MySQL has no pre-hashed `RETAIN CURRENT
/// PASSWORD`); MySQL support is not tested against a server.
///
/// The admin needs `CREATE USER`, the right to grant the blue-green role
/// (its creator has it `WITH ADMIN OPTION`), `SELECT` on the `mysql`
/// schema, and `PROCESS` for usage.
///
/// Admin statements run on a fresh connection logged in with the admin
/// credential (or `root` without a password); every network operation
/// (connect, each statement, close) is bounded by a timeout
/// ([`DEFAULT_TIMEOUT`] unless set with
/// [`with_timeout`](MariaDbTarget::with_timeout)).
pub struct MariaDbTarget {
    config: MariaDbConfig,
    /// The blue-green slots; `None` in dual mode.
    slots: Option<[String; 2]>,
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
            .field("mode", &self.config.mode)
            .field("slots", &self.slots)
            .field("admin", &self.admin)
            .field("timeout", &self.timeout)
            .finish()
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
        let (host, port) = config::parse_address(&config.address)?;
        let slots = match config.mode {
            MariaDbMode::Dual => None,
            _ => Some(config.slots()?),
        };
        let label = if host.contains(':') {
            format!("mariadb [{host}]:{port}")
        } else {
            format!("mariadb {host}:{port}")
        };
        Ok(MariaDbTarget {
            config,
            slots,
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

    /// The strategy the config fixes without asking the server.
    fn fixed_strategy(&self) -> Option<Strategy> {
        match self.config.mode {
            MariaDbMode::Auto => None,
            MariaDbMode::Dual => Some(Strategy::Dual),
            MariaDbMode::BlueGreen => Some(Strategy::BlueGreen),
        }
    }

    /// The server behind `conn` and the strategy the mode means there.
    async fn strategy(
        &self,
        conn: &mut sqlx::mysql::MySqlConnection,
    ) -> Result<(Server, Strategy), TargetError> {
        let server = self.detect(conn).await?;
        let strategy = server.strategy(self.config.mode)?;
        Ok((server, strategy))
    }

    /// The strategy, asking the server only in auto mode.
    async fn resolve(&self) -> Result<Strategy, TargetError> {
        if let Some(s) = self.fixed_strategy() {
            return Ok(s);
        }
        let mut conn = self.admin_connection().await?;
        let result = self.strategy(&mut conn).await;
        self.close(conn).await;
        result.map(|(_, s)| s)
    }

    /// The blue-green slots. Invariant: set whenever the mode is not dual,
    /// and only a non-dual mode resolves to blue-green.
    fn slots(&self) -> Result<&[String; 2], TargetError> {
        self.slots
            .as_ref()
            .ok_or_else(|| config_error("blue-green needs slot users (mode is dual)"))
    }

    /// Checks that `credential` is for a user this target manages under
    /// `strategy` (`None`: either strategy's).
    fn check_user(
        &self,
        credential: &Credential,
        strategy: Option<Strategy>,
    ) -> Result<(), TargetError> {
        let got = credential.username();
        let user = &self.config.user;
        let slots = self.slots.as_ref();
        let is_slot = slots.is_some_and(|s| s.iter().any(|x| x == got));
        let (ok, expected) = match (strategy, slots) {
            (Some(Strategy::Dual), _) | (None, None) => (got == user, format!("user {user}")),
            (Some(Strategy::BlueGreen), Some([a, b])) => {
                (is_slot, format!("blue-green slot {a} or {b}"))
            }
            (Some(Strategy::BlueGreen), None) => (false, "blue-green slots (none)".to_owned()),
            (None, Some([a, b])) => (
                got == user || is_slot,
                format!("user {user} (dual) or blue-green slot {a} or {b}"),
            ),
        };
        if ok {
            Ok(())
        } else {
            Err(precondition(format!(
                "the credential is for user {got}, but this target manages {expected}"
            )))
        }
    }

    /// Reads `value` and checks its user before any network operation.
    fn credential(&self, value: &SecretValue) -> Result<Credential, TargetError> {
        let credential = parse_credential(value)?;
        self.check_user(&credential, self.fixed_strategy())?;
        Ok(credential)
    }
}

#[async_trait::async_trait]
impl Target for MariaDbTarget {
    #[tracing::instrument(skip_all, fields(target = %self.label, user = %self.config.user))]
    async fn precheck(&self, current: Option<&SecretValue>) -> Result<(), TargetError> {
        let current = current.map(|v| self.credential(v)).transpose()?;
        let mut conn = self.admin_connection().await?;
        let result = async {
            let (server, strategy) = self.strategy(&mut conn).await?;
            if let Some(c) = &current {
                self.check_user(c, Some(strategy))?;
            }
            match strategy {
                Strategy::Dual => self.precheck_dual(&mut conn, server).await,
                Strategy::BlueGreen => self.precheck_blue_green(&mut conn, server).await,
            }
        }
        .await;
        self.close(conn).await;
        result?;
        if let Some(c) = current {
            if self.login(&c).await? == Verdict::Refused {
                return Err(precondition(format!(
                    "the current credential (user {}) no longer logs in",
                    c.username()
                )));
            }
        }
        debug!("precheck passed");
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(target = %self.label, user = %self.config.user))]
    async fn generate(
        &self,
        current: Option<&SecretValue>,
    ) -> Result<Option<SecretValue>, TargetError> {
        let current_credential = current.map(|v| self.credential(v)).transpose()?;
        let value = match self.resolve().await? {
            Strategy::Dual => {
                if let Some(c) = &current_credential {
                    self.check_user(c, Some(Strategy::Dual))?;
                }
                Credential::new(&self.config.user, random_password())
                    .map_err(|e| config_error(e.to_string()))?
                    .to_value()
            }
            Strategy::BlueGreen => next_credential(self.slots()?, current)?,
        };
        Ok(Some(value))
    }

    #[tracing::instrument(skip_all, fields(target = %self.label, user = %self.config.user))]
    async fn enable(&self, value: &SecretValue) -> Result<(), TargetError> {
        let credential = self.credential(value)?;
        let mut conn = self.admin_connection().await?;
        let result = async {
            let (server, strategy) = self.strategy(&mut conn).await?;
            self.check_user(&credential, Some(strategy))?;
            match strategy {
                Strategy::Dual => self.enable_dual(&mut conn, server, &credential).await,
                Strategy::BlueGreen => self.enable_blue_green(&mut conn, server, &credential).await,
            }
        }
        .await;
        self.close(conn).await;
        result
    }

    #[tracing::instrument(skip_all, fields(target = %self.label, user = %self.config.user))]
    async fn revoke(&self, value: &SecretValue) -> Result<(), TargetError> {
        let credential = self.credential(value)?;
        let mut conn = self.admin_connection().await?;
        let result = async {
            let (server, strategy) = self.strategy(&mut conn).await?;
            self.check_user(&credential, Some(strategy))?;
            match strategy {
                Strategy::Dual => self.revoke_dual(&mut conn, server, &credential).await,
                Strategy::BlueGreen => self.revoke_blue_green(&mut conn, server, &credential).await,
            }
        }
        .await;
        self.close(conn).await;
        result
    }

    /// Logs in as the value's user. In auto mode the server is not asked,
    /// so the user may be the dual user or either slot.
    #[tracing::instrument(skip_all, fields(target = %self.label, user = %self.config.user))]
    async fn verify(&self, value: &SecretValue) -> Result<Verdict, TargetError> {
        let credential = self.credential(value)?;
        self.login(&credential).await
    }

    #[tracing::instrument(skip_all, fields(target = %self.label, user = %self.config.user))]
    async fn usage(&self, value: &SecretValue) -> Result<Option<u64>, TargetError> {
        let credential = self.credential(value)?;
        if self.fixed_strategy() == Some(Strategy::Dual) {
            return Ok(None);
        }
        let mut conn = self.admin_connection().await?;
        let result = async {
            let (_, strategy) = self.strategy(&mut conn).await?;
            self.check_user(&credential, Some(strategy))?;
            match strategy {
                Strategy::Dual => Ok(None),
                Strategy::BlueGreen => self
                    .sessions(&mut conn, credential.username())
                    .await
                    .map(Some),
            }
        }
        .await;
        self.close(conn).await;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretValue {
        SecretValue::new(s.to_owned()).unwrap()
    }

    fn target(mode: MariaDbMode) -> MariaDbTarget {
        let config = MariaDbConfig {
            address: "127.0.0.1:3306".into(),
            user: "app".into(),
            host: "%".into(),
            mode,
            users: None,
            admin_secret: None,
        };
        MariaDbTarget::new(config, None).unwrap()
    }

    fn cred(user: &str, password: &str) -> Credential {
        Credential::new(user, secret(password)).unwrap()
    }

    #[test]
    fn users_are_checked_per_mode_without_quoting_the_password() {
        let dual = target(MariaDbMode::Dual);
        dual.check_user(&cred("app", "pw-1"), dual.fixed_strategy())
            .unwrap();
        let e = dual
            .check_user(&cred("app_blue", "pw-secret-1"), dual.fixed_strategy())
            .unwrap_err();
        assert!(matches!(e, TargetError::Precondition { .. }), "{e}");
        assert!(e.to_string().contains("manages user app"), "{e}");
        assert!(!format!("{e} {e:?}").contains("pw-secret-1"));

        let bg = target(MariaDbMode::BlueGreen);
        for u in ["app_blue", "app_green"] {
            bg.check_user(&cred(u, "pw"), bg.fixed_strategy()).unwrap();
        }
        let e = bg
            .check_user(&cred("app", "pw"), bg.fixed_strategy())
            .unwrap_err();
        assert!(e.to_string().contains("slot app_blue or app_green"), "{e}");

        let auto = target(MariaDbMode::Auto);
        for u in ["app", "app_blue", "app_green"] {
            auto.check_user(&cred(u, "pw"), None).unwrap();
        }
        assert!(auto.check_user(&cred("other", "pw"), None).is_err());
        assert!(auto
            .check_user(&cred("app_blue", "pw"), Some(Strategy::Dual))
            .is_err());
    }

    #[test]
    fn bare_passwords_are_refused_before_any_connection() {
        let t = target(MariaDbMode::Dual);
        let e = t.credential(&secret("a-bare-password")).unwrap_err();
        assert!(matches!(e, TargetError::Precondition { .. }), "{e}");
        assert!(!e.to_string().contains("a-bare-password"), "{e}");
    }

    #[test]
    fn target_debug_redacts_the_admin_password() {
        let admin = AdminCredential {
            username: "ops".into(),
            password: secret("the-admin-password"),
        };
        let mut t = target(MariaDbMode::Auto);
        t.admin = Some(admin);
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("the-admin-password"), "{dbg}");
        assert!(dbg.contains("app_green"), "{dbg}");
    }
}
