//! The append-only audit log and API tokens.
//!
//! No statement in this crate updates or deletes audit rows, and the schema
//! has triggers that refuse to.

use keyshift_core::rotation::RotationId;
use keyshift_core::SecretName;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::decode::{self, num, parse, ts};
use super::SqlStore;
use crate::error::{is_unique_violation, StoreError};
use crate::model::{AuditEntry, NewAudit, TokenRecord};

fn audit_entry(row: &AnyRow) -> Result<AuditEntry, StoreError> {
    let secret: Option<String> = row.try_get("secret")?;
    let version: Option<i64> = row.try_get("version")?;
    let rotation: Option<String> = row.try_get("rotation")?;
    Ok(AuditEntry {
        id: row.try_get("id")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        secret: secret.map(|s| decode::name(&s)).transpose()?,
        version: version.map(decode::version).transpose()?,
        rotation: rotation
            .map(|r| parse::<RotationId>("rotation", &r))
            .transpose()?,
        outcome: row.try_get("outcome")?,
        detail: row.try_get("detail")?,
        at: ts(row.try_get("at")?),
    })
}

fn token_record(row: &AnyRow) -> Result<TokenRecord, StoreError> {
    let hash: Vec<u8> = row.try_get("secret_hash")?;
    let grants: String = row.try_get("grants")?;
    Ok(TokenRecord {
        id: row.try_get("id")?,
        secret_hash: hash
            .try_into()
            .map_err(|_| StoreError::InvalidData("token hash is not 32 bytes".into()))?,
        description: row.try_get("description")?,
        grants: serde_json::from_str(&grants)?,
        created_at: ts(row.try_get("created_at")?),
    })
}

impl SqlStore {
    pub(super) async fn append_audit_impl(&self, entry: &NewAudit) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit (actor, action, secret, version, rotation, outcome, detail, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(entry.secret.as_ref().map(|s| s.as_str().to_owned()))
        .bind(entry.version.map(num).transpose()?)
        .bind(entry.rotation.as_ref().map(|r| r.as_str().to_owned()))
        .bind(&entry.outcome)
        .bind(&entry.detail)
        .bind(entry.at.as_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn list_audit_impl(
        &self,
        secret: Option<&SecretName>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let columns = "id, actor, action, secret, version, rotation, outcome, detail, at";
        let rows = match secret {
            Some(s) => {
                let sql = format!(
                    "SELECT {columns} FROM audit WHERE secret = $1 ORDER BY id DESC LIMIT {limit}"
                );
                sqlx::query(&sql)
                    .bind(s.as_str())
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                let sql = format!("SELECT {columns} FROM audit ORDER BY id DESC LIMIT {limit}");
                sqlx::query(&sql).fetch_all(&self.pool).await?
            }
        };
        rows.iter().map(audit_entry).collect()
    }

    pub(super) async fn create_token_impl(&self, token: &TokenRecord) -> Result<(), StoreError> {
        let done = sqlx::query(
            "INSERT INTO tokens (id, secret_hash, description, grants, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&token.id)
        .bind(token.secret_hash.to_vec())
        .bind(&token.description)
        .bind(serde_json::to_string(&token.grants)?)
        .bind(token.created_at.as_millis())
        .execute(&self.pool)
        .await;
        match done {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::AlreadyExists {
                what: "token",
                name: token.id.clone(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn get_token_impl(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, secret_hash, description, grants, created_at FROM tokens WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_record).transpose()
    }

    pub(super) async fn health_impl(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
