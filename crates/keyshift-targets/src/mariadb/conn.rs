//! Connections, bounded network operations, and how their failures map
//! to [`TargetError`]s.

use std::future::Future;

use keyshift_core::{Credential, SecretValue};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlDatabaseError};
use sqlx::{ConnectOptions, Connection};
use tracing::debug;

use super::server::Server;
use super::{config_error, protocol, MariaDbTarget};
use crate::{TargetError, Verdict};

/// The admin user when no admin credential is given.
const DEFAULT_ADMIN: &str = "root";

/// Wrong user or password: `ER_ACCESS_DENIED_ERROR`, and
/// `ER_ACCESS_DENIED_NO_PASSWORD_ERROR`, which MariaDB sometimes answers
/// for a user that does not exist.
const ACCESS_DENIED: [u16; 2] = [1045, 1698];

/// Errors a login gets from a locked account: MariaDB's and MySQL's
/// `ER_ACCOUNT_HAS_BEEN_LOCKED`.
const ACCOUNT_LOCKED: [u16; 2] = [4151, 3118];

/// `ER_CANNOT_USER`: e.g. ALTER USER of a user that does not exist.
pub(super) const ER_CANNOT_USER: u16 = 1396;

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

/// Why a network operation failed, before it is told apart per caller.
pub(super) enum Failure {
    /// Our own deadline passed.
    Timeout,
    /// The client or the server said no.
    Sql(sqlx::Error),
}

impl Failure {
    /// The server's error number, if the server answered with an error.
    pub(super) fn number(&self) -> Option<u16> {
        match self {
            Failure::Sql(sqlx::Error::Database(e)) => e
                .try_downcast_ref::<MySqlDatabaseError>()
                .map(MySqlDatabaseError::number),
            _ => None,
        }
    }
}

/// A failure's text. sqlx errors never carry the password we connected
/// with (we pass it as an option, never in a URL), nor the statement.
fn describe(failure: &Failure) -> String {
    match failure {
        Failure::Timeout => "timed out".to_owned(),
        Failure::Sql(e) => e.to_string(),
    }
}

impl MariaDbTarget {
    pub(super) async fn bounded<T>(
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
    /// the password only ever travels scrambled. Statement logging is off,
    /// so sqlx never logs a statement that carries a password.
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
    pub(super) async fn close(&self, conn: MySqlConnection) {
        let _ = tokio::time::timeout(self.timeout, conn.close()).await;
    }

    pub(super) async fn admin_connection(&self) -> Result<MySqlConnection, TargetError> {
        let (user, password) = match &self.admin {
            Some(a) => (a.username.as_str(), Some(&a.password)),
            None => (DEFAULT_ADMIN, None),
        };
        self.connect(user, password)
            .await
            .map_err(|f| self.admin_error(f))
    }

    /// `SELECT VERSION(), @@version_comment`, read.
    pub(super) async fn detect(&self, conn: &mut MySqlConnection) -> Result<Server, TargetError> {
        let (version, comment): (String, String) = self
            .bounded(
                sqlx::query_as("SELECT VERSION(), CAST(@@version_comment AS CHAR)")
                    .fetch_one(&mut *conn),
            )
            .await
            .map_err(|f| self.admin_error(f))?;
        let server = Server::parse(&version, &comment)?;
        debug!(%server, "detected");
        Ok(server)
    }

    /// Runs an admin statement over the text protocol (a bare `&str` has
    /// no arguments: sent as COM_QUERY, not prepared). `ER_CANNOT_USER`
    /// becomes a Precondition naming `what`.
    pub(super) async fn execute(
        &self,
        conn: &mut MySqlConnection,
        sql: &str,
        what: &str,
    ) -> Result<(), TargetError> {
        let exec = sqlx::Executor::execute(&mut *conn, sql);
        match self.bounded(exec).await {
            Ok(_) => Ok(()),
            Err(f) if f.number() == Some(ER_CANNOT_USER) => Err(super::precondition(format!(
                "the server could not {what} (ER_CANNOT_USER: the account may not exist)"
            ))),
            Err(f) => Err(self.statement_error(f, what)),
        }
    }

    /// Logs in as the credential's user on a fresh connection and runs
    /// `SELECT 1`. A wrong password and a locked account are `Refused`.
    pub(super) async fn login(&self, credential: &Credential) -> Result<Verdict, TargetError> {
        let user = credential.username();
        let mut conn = match self.connect(user, Some(credential.password())).await {
            Ok(conn) => conn,
            Err(f) if f.number().is_some_and(|n| ACCESS_DENIED.contains(&n)) => {
                debug!(user, "refused");
                return Ok(Verdict::Refused);
            }
            Err(f) if f.number().is_some_and(|n| ACCOUNT_LOCKED.contains(&n)) => {
                debug!(user, "refused: account locked");
                return Ok(Verdict::Refused);
            }
            Err(f) => return Err(self.classify(f, false, describe)),
        };
        let one = self
            .bounded(sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&mut conn))
            .await;
        self.close(conn).await;
        match one {
            Ok(1) => {
                debug!(user, "accepted");
                Ok(Verdict::Accepted)
            }
            Ok(n) => Err(protocol(format!("{}: SELECT 1 answered {n}", self.label))),
            Err(f) => Err(self.classify(f, false, describe)),
        }
    }

    /// An admin connection's or query's failure (the server's message may
    /// be quoted: these statements carry no secret).
    pub(super) fn admin_error(&self, failure: Failure) -> TargetError {
        self.classify(failure, true, describe)
    }

    /// An admin statement's failure. The server's message is left out: it
    /// may quote the statement, which may carry a hash or (MySQL) a
    /// password.
    fn statement_error(&self, failure: Failure, what: &str) -> TargetError {
        self.classify(failure, true, |f| match f.number() {
            Some(n) => format!("server error {n} while trying to {what}"),
            None => describe(f),
        })
    }

    /// Tells failures apart: `admin` when the connection is the admin's
    /// (a refusal then is [`TargetError::AdminRefused`]).
    fn classify(
        &self,
        failure: Failure,
        admin: bool,
        describe: impl Fn(&Failure) -> String,
    ) -> TargetError {
        let admin_user = self
            .admin
            .as_ref()
            .map_or(DEFAULT_ADMIN, |a| a.username.as_str());
        let number = failure.number();
        match number {
            Some(n) if admin && ACCESS_DENIED.contains(&n) => {
                return TargetError::AdminRefused {
                    target: self.label.clone(),
                    detail: format!("admin user {admin_user} failed to authenticate"),
                }
            }
            Some(n) if admin && PERMISSION_ERRORS.contains(&n) => {
                return TargetError::AdminRefused {
                    target: self.label.clone(),
                    detail: format!(
                        "admin user {admin_user} lacks permission: {}",
                        describe(&failure)
                    ),
                }
            }
            _ => {}
        }
        let e = match failure {
            Failure::Timeout => {
                return TargetError::Unreachable {
                    target: self.label.clone(),
                    detail: format!("no answer within {:?}", self.timeout),
                }
            }
            Failure::Sql(ref e) => e,
        };
        let transient = match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(_) => number.is_some_and(|n| TRANSIENT_ERRORS.contains(&n)),
            _ => false,
        };
        if transient {
            return TargetError::Unreachable {
                target: self.label.clone(),
                detail: describe(&failure),
            };
        }
        if matches!(e, sqlx::Error::Configuration(_)) {
            return config_error(format!(
                "mysql client refused the config: {}",
                describe(&failure)
            ));
        }
        TargetError::Protocol {
            detail: format!("{}: {}", self.label, describe(&failure)),
        }
    }
}
