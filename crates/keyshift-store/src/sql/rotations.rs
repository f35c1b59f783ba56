//! Rotations, stored as JSON with an `active` flag under a unique partial
//! index: at most one active rotation per secret (invariant I3).

use keyshift_core::rotation::{Rotation, RotationId};
use keyshift_core::{SecretName, Timestamp};
use sqlx::any::AnyArguments;
use sqlx::AnyConnection;
use sqlx::Arguments;

use super::decode::{now_millis, parse};
use super::SqlStore;
use crate::error::{is_unique_violation, StoreError};
use crate::model::{CreateRotation, RotationFilter};

fn not_found_rotation(id: &RotationId) -> StoreError {
    StoreError::NotFound {
        what: "rotation",
        name: id.to_string(),
    }
}

fn active_flag(rotation: &Rotation) -> i64 {
    i64::from(!rotation.phase.is_terminal())
}

fn decode_rotation(state: &str) -> Result<Rotation, StoreError> {
    Ok(serde_json::from_str(state)?)
}

impl SqlStore {
    /// The id of `secret`'s active rotation, if one exists.
    pub(super) async fn active_rotation(
        &self,
        conn: &mut AnyConnection,
        secret: &SecretName,
    ) -> Result<Option<RotationId>, StoreError> {
        let id: Option<String> =
            sqlx::query_scalar("SELECT id FROM rotations WHERE secret = $1 AND active = 1")
                .bind(secret.as_str())
                .fetch_optional(conn)
                .await?;
        id.map(|s| parse::<RotationId>("id", &s)).transpose()
    }

    /// After a unique violation: is it our own id (an idempotent retry) or
    /// another active rotation of the secret?
    async fn classify_conflict(&self, rotation: &Rotation) -> Result<CreateRotation, StoreError> {
        match self.get_rotation_impl(&rotation.id).await {
            Ok(stored) => return Ok(CreateRotation::Existing(stored)),
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let mut conn = self.pool.acquire().await?;
        match self.active_rotation(&mut conn, &rotation.secret).await? {
            Some(id) => Err(StoreError::RotationActive { id }),
            None => Err(StoreError::Conflict(format!(
                "rotation {} of {} conflicted with a concurrent change; retry",
                rotation.id, rotation.secret
            ))),
        }
    }

    pub(super) async fn create_rotation_impl(
        &self,
        rotation: &Rotation,
    ) -> Result<CreateRotation, StoreError> {
        let state = serde_json::to_string(rotation)?;
        let mut tx = self.begin().await?;
        self.lock_secret(&mut tx, &rotation.secret).await?;
        let stored: Option<String> =
            sqlx::query_scalar("SELECT state FROM rotations WHERE id = $1")
                .bind(rotation.id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(stored) = stored {
            return Ok(CreateRotation::Existing(decode_rotation(&stored)?));
        }
        let now = now_millis();
        let inserted = sqlx::query(
            "INSERT INTO rotations (id, secret, active, state, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(rotation.id.as_str())
        .bind(rotation.secret.as_str())
        .bind(active_flag(rotation))
        .bind(state)
        .bind(rotation.created_at.as_millis())
        .bind(now)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {
                tx.commit().await?;
                Ok(CreateRotation::Created)
            }
            Err(e) if is_unique_violation(&e) => {
                // PostgreSQL has aborted the transaction: end it, then look.
                tx.rollback().await?;
                self.classify_conflict(rotation).await
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn save_rotation_impl(&self, rotation: &Rotation) -> Result<(), StoreError> {
        self.save_rotation_as(rotation, None).await
    }

    /// Saves `rotation`; with `owner`, only while that replica holds its
    /// lease, which an ended rotation gives up.
    pub(super) async fn save_rotation_as(
        &self,
        rotation: &Rotation,
        owner: Option<&str>,
    ) -> Result<(), StoreError> {
        let active = active_flag(rotation);
        let sql = match owner {
            None => "UPDATE rotations SET state = $1, active = $2, updated_at = $3 WHERE id = $4",
            Some(_) => {
                "UPDATE rotations SET state = $1, active = $2, updated_at = $3, \
                 lease_owner = CASE WHEN $2 = 1 THEN lease_owner END, \
                 lease_until = CASE WHEN $2 = 1 THEN lease_until END \
                 WHERE id = $4 AND lease_owner = $5"
            }
        };
        let mut query = sqlx::query(sql)
            .bind(serde_json::to_string(rotation)?)
            .bind(active)
            .bind(now_millis())
            .bind(rotation.id.as_str());
        if let Some(owner) = owner {
            query = query.bind(owner);
        }
        let updated = query.execute(&self.pool).await;
        match updated {
            Ok(done) if done.rows_affected() == 0 => {
                // Missing, or (with an owner) leased by another replica.
                let exists: Option<i64> =
                    sqlx::query_scalar("SELECT 1 FROM rotations WHERE id = $1")
                        .bind(rotation.id.as_str())
                        .fetch_optional(&self.pool)
                        .await?;
                match (exists, owner) {
                    (Some(_), Some(_)) => Err(StoreError::LeaseLost {
                        id: rotation.id.clone(),
                    }),
                    _ => Err(not_found_rotation(&rotation.id)),
                }
            }
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => {
                // Re-activating a finished rotation while another is active.
                let mut conn = self.pool.acquire().await?;
                match self.active_rotation(&mut conn, &rotation.secret).await? {
                    Some(id) => Err(StoreError::RotationActive { id }),
                    None => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn lease_rotation_impl(
        &self,
        id: &RotationId,
        owner: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        let taken = sqlx::query(
            "UPDATE rotations SET lease_owner = $1, lease_until = $2 \
             WHERE id = $3 AND active = 1 \
             AND (lease_owner IS NULL OR lease_owner = $1 OR lease_until <= $4)",
        )
        .bind(owner)
        .bind(until.as_millis())
        .bind(id.as_str())
        .bind(now.as_millis())
        .execute(&self.pool)
        .await?;
        if taken.rows_affected() == 1 {
            return Ok(true);
        }
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM rotations WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        match exists {
            Some(_) => Ok(false),
            None => Err(not_found_rotation(id)),
        }
    }

    pub(super) async fn release_rotation_impl(
        &self,
        id: &RotationId,
        owner: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE rotations SET lease_owner = NULL, lease_until = NULL \
             WHERE id = $1 AND lease_owner = $2",
        )
        .bind(id.as_str())
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn leasable_rotations_impl(
        &self,
        owner: &str,
        now: Timestamp,
    ) -> Result<Vec<Rotation>, StoreError> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT state FROM rotations WHERE active = 1 \
             AND (lease_owner IS NULL OR lease_owner = $1 OR lease_until <= $2) \
             ORDER BY created_at, ord",
        )
        .bind(owner)
        .bind(now.as_millis())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|s| decode_rotation(s)).collect()
    }

    pub(super) async fn get_rotation_impl(&self, id: &RotationId) -> Result<Rotation, StoreError> {
        let stored: String = sqlx::query_scalar("SELECT state FROM rotations WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found_rotation(id))?;
        decode_rotation(&stored)
    }

    pub(super) async fn list_rotations_impl(
        &self,
        filter: &RotationFilter,
    ) -> Result<Vec<Rotation>, StoreError> {
        if filter.limit == 0 {
            return Ok(Vec::new());
        }
        let mut sql = String::from("SELECT state FROM rotations WHERE 1 = 1");
        let mut args = AnyArguments::default();
        let mut bound = 0;
        if let Some(secret) = &filter.secret {
            bound += 1;
            sql.push_str(&format!(" AND secret = ${bound}"));
            args.add(secret.as_str().to_owned())
                .map_err(|e| StoreError::InvalidData(format!("binding a secret name: {e}")))?;
        }
        if let Some(since) = filter.since {
            bound += 1;
            sql.push_str(&format!(" AND created_at >= ${bound}"));
            args.add(since.as_millis())
                .map_err(|e| StoreError::InvalidData(format!("binding a time: {e}")))?;
        }
        if filter.active_only {
            sql.push_str(" AND active = 1");
        }
        sql.push_str(&format!(
            " ORDER BY created_at DESC, ord DESC LIMIT {}",
            filter.limit
        ));
        let rows: Vec<String> = sqlx::query_scalar_with(&sql, args)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|s| decode_rotation(s)).collect()
    }
}
