//! Secrets: metadata, policy, target; creation and deletion.

use std::collections::BTreeMap;

use keyshift_core::{Label, Policy, SecretKind, SecretName, Timestamp};
use sqlx::any::AnyRow;
use sqlx::AnyConnection;
use sqlx::Row;

use super::decode::{self, parse, ts};
use super::events::{insert_event, load_labels};
use super::{not_found_secret, SqlStore};
use crate::error::StoreError;
use crate::model::{EventKind, SecretRecord};

const SECRET_COLUMNS: &str = "id, name, kind, policy, target, created_at";

/// A `secrets` row without labels, and its id.
fn secret_row(row: &AnyRow) -> Result<(i64, SecretRecord), StoreError> {
    let policy: String = row.try_get("policy")?;
    let target: String = row.try_get("target")?;
    let record = SecretRecord {
        name: decode::name(&row.try_get::<String, _>("name")?)?,
        kind: parse::<SecretKind>("kind", &row.try_get::<String, _>("kind")?)?,
        policy: serde_json::from_str(&policy)?,
        target: serde_json::from_str(&target)?,
        created_at: ts(row.try_get("created_at")?),
        labels: BTreeMap::new(),
    };
    Ok((row.try_get("id")?, record))
}

impl SqlStore {
    /// The id of secret `name`, without locking.
    pub(super) async fn secret_id(
        &self,
        conn: &mut AnyConnection,
        name: &SecretName,
    ) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT id FROM secrets WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(conn)
            .await?
            .ok_or_else(|| not_found_secret(name))
    }

    pub(super) async fn create_secret_impl(
        &self,
        name: &SecretName,
        kind: SecretKind,
        policy: &Policy,
        target: &serde_json::Value,
        now: Timestamp,
    ) -> Result<SecretRecord, StoreError> {
        let policy_json = serde_json::to_string(policy)?;
        let target_json = serde_json::to_string(target)?;
        let mut tx = self.begin().await?;
        // A re-created name continues its predecessor's event sequence.
        let last_seq: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events WHERE secret = $1")
                .bind(name.as_str())
                .fetch_one(&mut *tx)
                .await?;
        let inserted = sqlx::query_scalar(
            "INSERT INTO secrets (name, kind, policy, target, created_at, event_seq, scheduled) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(name.as_str())
        .bind(kind.as_str())
        .bind(policy_json)
        .bind(target_json)
        .bind(now.as_millis())
        .bind(last_seq)
        .bind(i64::from(kind.scheduled(policy)))
        .fetch_one(&mut *tx)
        .await;
        let id: i64 = match inserted {
            Ok(id) => id,
            Err(e) if crate::error::is_unique_violation(&e) => {
                return Err(StoreError::AlreadyExists {
                    what: "secret",
                    name: name.to_string(),
                })
            }
            Err(e) => return Err(e.into()),
        };
        let ev = insert_event(
            &mut tx,
            id,
            name,
            EventKind::SecretCreated,
            None,
            BTreeMap::new(),
            now,
        )
        .await?;
        self.commit_and_publish(tx, ev).await?;
        Ok(SecretRecord {
            name: name.clone(),
            kind,
            policy: policy.clone(),
            target: target.clone(),
            created_at: now,
            labels: BTreeMap::new(),
        })
    }

    pub(super) async fn get_secret_impl(
        &self,
        name: &SecretName,
    ) -> Result<SecretRecord, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let sql = format!("SELECT {SECRET_COLUMNS} FROM secrets WHERE name = $1");
        let row = sqlx::query(&sql)
            .bind(name.as_str())
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| not_found_secret(name))?;
        let (id, mut record) = secret_row(&row)?;
        record.labels = load_labels(&mut conn, id).await?;
        Ok(record)
    }

    /// Secrets whose names start with `prefix`, or only those the
    /// scheduler looks at.
    pub(super) async fn list_secrets_impl(
        &self,
        prefix: Option<&str>,
        scheduled_only: bool,
    ) -> Result<Vec<SecretRecord>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let only = if scheduled_only {
            " WHERE scheduled = 1"
        } else {
            ""
        };
        let sql = format!("SELECT {SECRET_COLUMNS} FROM secrets{only}");
        let rows = sqlx::query(&sql).fetch_all(&mut *conn).await?;
        let mut by_id = BTreeMap::new();
        for row in &rows {
            let (id, record) = secret_row(row)?;
            if prefix.is_none_or(|p| record.name.as_str().starts_with(p)) {
                by_id.insert(id, record);
            }
        }
        let labels = if scheduled_only {
            "SELECT secret_id, label, number FROM labels \
             WHERE secret_id IN (SELECT id FROM secrets WHERE scheduled = 1)"
        } else {
            "SELECT secret_id, label, number FROM labels"
        };
        let labels = sqlx::query(labels).fetch_all(&mut *conn).await?;
        for row in &labels {
            let id: i64 = row.try_get("secret_id")?;
            if let Some(record) = by_id.get_mut(&id) {
                let label = parse::<Label>("label", &row.try_get::<String, _>("label")?)?;
                record
                    .labels
                    .insert(label, decode::version(row.try_get("number")?)?);
            }
        }
        let mut out: Vec<SecretRecord> = by_id.into_values().collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub(super) async fn update_policy_impl(
        &self,
        name: &SecretName,
        policy: &Policy,
    ) -> Result<(), StoreError> {
        // A secret's kind never changes: reading it first races nothing.
        let kind: String = sqlx::query_scalar("SELECT kind FROM secrets WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found_secret(name))?;
        let kind = parse::<SecretKind>("kind", &kind)?;
        let done = sqlx::query("UPDATE secrets SET policy = $1, scheduled = $2 WHERE name = $3")
            .bind(serde_json::to_string(policy)?)
            .bind(i64::from(kind.scheduled(policy)))
            .bind(name.as_str())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(not_found_secret(name));
        }
        Ok(())
    }

    pub(super) async fn delete_secret_impl(
        &self,
        name: &SecretName,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let id = self.lock_secret(&mut tx, name).await?;
        if let Some(active) = self.active_rotation(&mut tx, name).await? {
            return Err(StoreError::RotationActive { id: active });
        }
        let ev = insert_event(
            &mut tx,
            id,
            name,
            EventKind::SecretDeleted,
            None,
            BTreeMap::new(),
            now,
        )
        .await?;
        for sql in [
            "DELETE FROM labels WHERE secret_id = $1",
            "DELETE FROM versions WHERE secret_id = $1",
            "DELETE FROM consumers WHERE secret_id = $1",
            "DELETE FROM usage_windows WHERE secret_id = $1",
            "DELETE FROM failure_reports WHERE secret_id = $1",
            "DELETE FROM secrets WHERE id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        self.commit_and_publish(tx, ev).await?;
        Ok(())
    }
}
