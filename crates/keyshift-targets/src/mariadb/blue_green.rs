//! Blue-green mode: two slot accounts taking turns, sharing the privileges
//! of the role `user`.

use keyshift_core::Credential;
use sqlx::mysql::MySqlConnection;
use tracing::{debug, info};

use super::account::{is_role, parse_priv, AuthMethod};
use super::server::{Flavor, Server};
use super::sql::{account, enable_slot, lock_slot, native_hash, SlotState};
use super::{precondition, protocol, MariaDbTarget};
use crate::{TargetError, Verdict};

impl MariaDbTarget {
    /// Whether the role `user` exists: on MariaDB a `mysql.global_priv`
    /// row with an empty host and `is_role`; on MySQL the account
    /// `user`@`%`, which is what `CREATE ROLE` makes.
    async fn role_exists(
        &self,
        conn: &mut MySqlConnection,
        server: Server,
    ) -> Result<bool, TargetError> {
        let role = &self.config.user;
        match server.flavor {
            Flavor::MariaDb => {
                let row: Option<String> = self
                    .bounded(
                        sqlx::query_scalar(
                            "SELECT CAST(Priv AS CHAR) FROM mysql.global_priv \
                             WHERE User = ? AND Host = ''",
                        )
                        .bind(role)
                        .fetch_optional(&mut *conn),
                    )
                    .await
                    .map_err(|f| self.admin_error(f))?;
                Ok(row.as_deref().map(is_role).transpose()?.unwrap_or(false))
            }
            Flavor::MySql => {
                let n: i64 = self
                    .bounded(
                        sqlx::query_scalar(
                            "SELECT COUNT(*) FROM mysql.user WHERE User = ? AND Host = '%'",
                        )
                        .bind(role)
                        .fetch_one(&mut *conn),
                    )
                    .await
                    .map_err(|f| self.admin_error(f))?;
                Ok(n > 0)
            }
        }
    }

    async fn require_role(
        &self,
        conn: &mut MySqlConnection,
        server: Server,
    ) -> Result<(), TargetError> {
        if self.role_exists(conn, server).await? {
            return Ok(());
        }
        Err(precondition(format!(
            "role {role} does not exist on {server}: blue-green mode grants it to the slot users, \
             so create it first (CREATE ROLE {role}) and grant it their privileges",
            role = self.config.user
        )))
    }

    /// The role exists (the slot users need not).
    pub(super) async fn precheck_blue_green(
        &self,
        conn: &mut MySqlConnection,
        server: Server,
    ) -> Result<(), TargetError> {
        self.require_role(conn, server).await
    }

    /// The slot account of `credential`, and whether it accepts the
    /// credential's password: from `mysql.global_priv` on MariaDB; on
    /// MySQL from `mysql.user.account_locked` and, for an unlocked
    /// account, a login (its hashes are salted).
    async fn slot_state(
        &self,
        conn: &mut MySqlConnection,
        server: Server,
        credential: &Credential,
    ) -> Result<SlotState, TargetError> {
        let (user, host) = (credential.username(), &self.config.host);
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
                let Some(json) = row else {
                    return Ok(SlotState::Missing);
                };
                let p = parse_priv(&json)?;
                let own = [AuthMethod::Native(native_hash(credential.password()))];
                Ok(if p.locked {
                    SlotState::Locked
                } else if p.methods == own {
                    SlotState::LiveWithValue
                } else {
                    SlotState::LiveWithOther
                })
            }
            Flavor::MySql => {
                let row: Option<String> = self
                    .bounded(
                        sqlx::query_scalar(
                            "SELECT CAST(account_locked AS CHAR) FROM mysql.user \
                             WHERE User = ? AND Host = ?",
                        )
                        .bind(user)
                        .bind(host)
                        .fetch_optional(&mut *conn),
                    )
                    .await
                    .map_err(|f| self.admin_error(f))?;
                Ok(match row.as_deref() {
                    None => SlotState::Missing,
                    Some("Y") => SlotState::Locked,
                    Some("N") => match self.login(credential).await? {
                        Verdict::Accepted => SlotState::LiveWithValue,
                        Verdict::Refused => SlotState::LiveWithOther,
                    },
                    Some(other) => {
                        return Err(protocol(format!(
                            "mysql.user.account_locked is `{other}`, not Y or N"
                        )))
                    }
                })
            }
        }
    }

    /// Makes the credential's slot accept it, with the role as its default
    /// role, and unlocks it.
    pub(super) async fn enable_blue_green(
        &self,
        conn: &mut MySqlConnection,
        server: Server,
        credential: &Credential,
    ) -> Result<(), TargetError> {
        self.require_role(conn, server).await?;
        let state = self.slot_state(conn, server, credential).await?;
        let (slot, host) = (credential.username(), &self.config.host);
        let statements = enable_slot(
            server.flavor,
            &self.config.user,
            slot,
            host,
            credential.password(),
            state,
        )?;
        let what = format!("enable blue-green slot {}", account(slot, host)?);
        for sql in &statements {
            self.execute(conn, sql, &what).await?;
        }
        match state {
            SlotState::LiveWithValue => debug!(slot, "slot already live with this password"),
            _ => info!(slot, ?state, "slot enabled"),
        }
        Ok(())
    }

    /// Locks the credential's slot when it accepts the credential; nothing
    /// when it does not (missing, locked, or holding another password).
    pub(super) async fn revoke_blue_green(
        &self,
        conn: &mut MySqlConnection,
        server: Server,
        credential: &Credential,
    ) -> Result<(), TargetError> {
        let state = self.slot_state(conn, server, credential).await?;
        let slot = credential.username();
        if state != SlotState::LiveWithValue {
            debug!(slot, ?state, "slot already refuses this credential");
            return Ok(());
        }
        let account = account(slot, &self.config.host)?;
        let sql = lock_slot(slot, &self.config.host)?;
        self.execute(conn, &sql, &format!("lock blue-green slot {account}"))
            .await?;
        info!(slot, "slot locked");
        Ok(())
    }

    /// Open sessions of `user`, any host, from
    /// `information_schema.PROCESSLIST` (the admin needs `PROCESS` to see
    /// other users' sessions).
    pub(super) async fn sessions(
        &self,
        conn: &mut MySqlConnection,
        user: &str,
    ) -> Result<u64, TargetError> {
        let n: i64 = self
            .bounded(
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = ?",
                )
                .bind(user)
                .fetch_one(&mut *conn),
            )
            .await
            .map_err(|f| self.admin_error(f))?;
        u64::try_from(n).map_err(|_| protocol(format!("PROCESSLIST counted {n} sessions")))
    }
}
