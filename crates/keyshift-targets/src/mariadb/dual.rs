//! Dual mode: one account, `user`, accepting the old and the new password.

use keyshift_core::{Credential, SecretValue};
use sqlx::mysql::MySqlConnection;
use tracing::{debug, info, warn};

use super::account::{self, mysql_methods, parse_priv, AuthMethod, MAX_ACCEPTED};
use super::server::{Flavor, Server, Strategy};
use super::sql::{mariadb_accept, native_hash};
use super::{precondition, MariaDbTarget, NATIVE_PLUGIN};
use crate::slots::parse_credential;
use crate::TargetError;

impl MariaDbTarget {
    /// `'user'@'host'` of the dual account, for messages.
    fn dual_account(&self) -> String {
        format!("'{}'@'{}'", self.config.user, self.config.host)
    }

    /// The dual account's authentication methods (MySQL: primary, then
    /// secondary); `None` when it does not exist.
    async fn dual_methods(
        &self,
        conn: &mut MySqlConnection,
        server: Server,
    ) -> Result<Option<Vec<AuthMethod>>, TargetError> {
        let (user, host) = (&self.config.user, &self.config.host);
        match server.flavor {
            Flavor::MariaDb => {
                let row: Option<String> = self
                    .bounded(
                        sqlx::query_scalar(
                            "SELECT CAST(Priv AS CHAR) FROM mysql.global_priv \
                             WHERE User = ? AND Host = ?",
                        )
                        .bind(user)
                        .bind(host)
                        .fetch_optional(&mut *conn),
                    )
                    .await
                    .map_err(|f| self.admin_error(f))?;
                Ok(row
                    .as_deref()
                    .map(parse_priv)
                    .transpose()?
                    .map(|p| p.methods))
            }
            Flavor::MySql => {
                let row: Option<(String, String, Option<String>)> = self
                    .bounded(
                        sqlx::query_as(
                            "SELECT CAST(plugin AS CHAR), CAST(authentication_string AS CHAR), \
                             CAST(JSON_UNQUOTE(JSON_EXTRACT(User_attributes, \
                             '$.additional_password')) AS CHAR) \
                             FROM mysql.user WHERE User = ? AND Host = ?",
                        )
                        .bind(user)
                        .bind(host)
                        .fetch_optional(&mut *conn),
                    )
                    .await
                    .map_err(|f| self.admin_error(f))?;
                Ok(row.map(|(plugin, primary, secondary)| {
                    mysql_methods(&plugin, &primary, secondary.as_deref())
                }))
            }
        }
    }

    async fn existing_dual_methods(
        &self,
        conn: &mut MySqlConnection,
        server: Server,
    ) -> Result<Vec<AuthMethod>, TargetError> {
        self.dual_methods(conn, server)
            .await?
            .ok_or_else(|| precondition(format!("account {} does not exist", self.dual_account())))
    }

    /// Runs `statements` in order against the dual account.
    async fn alter_dual(
        &self,
        conn: &mut MySqlConnection,
        statements: &[String],
    ) -> Result<(), TargetError> {
        let what = format!("alter account {}", self.dual_account());
        for sql in statements {
            self.execute(conn, sql, &what).await?;
        }
        Ok(())
    }

    /// The account exists and can rotate (native passwords, not empty).
    pub(super) async fn precheck_dual(
        &self,
        conn: &mut MySqlConnection,
        server: Server,
    ) -> Result<(), TargetError> {
        let methods = self.existing_dual_methods(conn, server).await?;
        account::rotatable(&self.dual_account(), &methods).map(drop)
    }

    pub(super) async fn enable_dual(
        &self,
        conn: &mut MySqlConnection,
        server: Server,
        credential: &Credential,
    ) -> Result<(), TargetError> {
        let methods = self.existing_dual_methods(conn, server).await?;
        let statements = account::enable_dual(
            server.flavor,
            &self.config.user,
            &self.config.host,
            &methods,
            credential.password(),
        )?;
        if statements.is_empty() {
            debug!("password already accepted");
            return Ok(());
        }
        self.alter_dual(conn, &statements).await?;
        info!("password added");
        Ok(())
    }

    pub(super) async fn revoke_dual(
        &self,
        conn: &mut MySqlConnection,
        server: Server,
        credential: &Credential,
    ) -> Result<(), TargetError> {
        let Some(methods) = self.dual_methods(conn, server).await? else {
            // Nothing accepts the value: the goal already holds.
            warn!("account does not exist; nothing to revoke");
            return Ok(());
        };
        let statements = account::revoke_dual(
            server.flavor,
            &self.config.user,
            &self.config.host,
            &methods,
            credential.password(),
        )?;
        if statements.is_empty() {
            debug!("password already refused");
            return Ok(());
        }
        self.alter_dual(conn, &statements).await?;
        info!("password removed");
        Ok(())
    }

    /// Makes the dual account accept exactly `values` (credentials for
    /// `user`; 1 or 2 passwords, in this order) with
    /// `ALTER USER 'u'@'h' IDENTIFIED VIA mysql_native_password USING '<hash1>' OR mysql_native_password USING '<hash2>'`:
    /// reconciliation, MariaDB only. The hashes are computed here, so the
    /// plaintext never reaches the server's logs. Any other authentication
    /// method of the account is replaced. Idempotent: nothing is altered
    /// when the account already accepts exactly these passwords.
    ///
    /// # Errors
    ///
    /// [`TargetError::Precondition`] when a value is not a credential for
    /// `user`, `values` is empty or holds more than 2 distinct passwords,
    /// the account does not exist, or the server is not a MariaDB in dual
    /// mode; the errors of any admin operation.
    #[tracing::instrument(skip_all, fields(target = %self.label, user = %self.config.user))]
    pub async fn set_accepted(&self, values: &[&SecretValue]) -> Result<(), TargetError> {
        let mut hashes: Vec<String> = Vec::with_capacity(values.len());
        for v in values {
            let c = parse_credential(v)?;
            self.check_user(&c, Some(Strategy::Dual))?;
            let h = native_hash(c.password());
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
                "an account accepts at most {MAX_ACCEPTED} passwords at once, {} given",
                hashes.len()
            )));
        }
        let mut conn = self.admin_connection().await?;
        let result = async {
            let server = self.mariadb_dual(&mut conn).await?;
            let methods = self.existing_dual_methods(&mut conn, server).await?;
            let wanted: Vec<AuthMethod> = hashes.iter().cloned().map(AuthMethod::Native).collect();
            if methods == wanted {
                debug!("already accepts exactly these passwords");
                return Ok(());
            }
            let sql = mariadb_accept(&self.config.user, &self.config.host, &hashes)?;
            self.alter_dual(&mut conn, &[sql]).await
        }
        .await;
        self.close(conn).await;
        result
    }

    /// The native password hashes (`*` + 40 uppercase hex digits) the dual
    /// account accepts now, in order (MySQL: primary, then secondary); for
    /// tests and reconciliation.
    ///
    /// # Errors
    ///
    /// [`TargetError::Precondition`] when the mode is not dual, the account
    /// does not exist or also authenticates with another plugin; the errors
    /// of any admin operation.
    #[tracing::instrument(skip_all, fields(target = %self.label, user = %self.config.user))]
    pub async fn accepted_hashes(&self) -> Result<Vec<String>, TargetError> {
        let mut conn = self.admin_connection().await?;
        let result = async {
            let (server, strategy) = self.strategy(&mut conn).await?;
            if strategy != Strategy::Dual {
                return Err(precondition("accepted_hashes is for dual mode"));
            }
            self.existing_dual_methods(&mut conn, server).await
        }
        .await;
        self.close(conn).await;
        result?
            .into_iter()
            .map(|m| match m {
                AuthMethod::Native(h) => Ok(h),
                AuthMethod::Other(plugin) => Err(precondition(format!(
                    "account {} authenticates via {plugin}: only {NATIVE_PLUGIN} accounts rotate \
                     in dual mode",
                    self.dual_account()
                ))),
            })
            .collect()
    }

    /// The server, when it is a MariaDB and the mode means dual there.
    async fn mariadb_dual(&self, conn: &mut MySqlConnection) -> Result<Server, TargetError> {
        let (server, strategy) = self.strategy(conn).await?;
        if server.flavor != Flavor::MariaDb || strategy != Strategy::Dual {
            return Err(precondition(format!(
                "set_accepted needs MariaDB in dual mode, not {server} in mode {}",
                self.config.mode.as_str()
            )));
        }
        Ok(server)
    }
}
