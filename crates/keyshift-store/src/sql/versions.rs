//! Versions (encrypted values) and labels.

use keyshift_core::rotation::RotationId;
use keyshift_core::{Label, SecretName, SecretValue, Timestamp, VersionNumber, VersionState};
use sqlx::any::AnyRow;
use sqlx::AnyConnection;
use sqlx::Row;

use super::decode::{self, attach_labels, num, parse, version_record};
use super::events::{insert_event, load_labels};
use super::SqlStore;
use crate::crypto::{into_string, value_aad};
use crate::error::StoreError;
use crate::model::{EventKind, VersionRecord, VersionSelector};

const VERSION_COLUMNS: &str = "number, state, created_at, rotation";

fn not_found_version(name: &SecretName, number: VersionNumber) -> StoreError {
    StoreError::NotFound {
        what: "version",
        name: format!("{name} version {number}"),
    }
}

impl SqlStore {
    /// Decrypts a version's value; any failure is [`StoreError::Decrypt`].
    fn decrypt(
        &self,
        name: &SecretName,
        number: VersionNumber,
        row: &AnyRow,
    ) -> Result<SecretValue, StoreError> {
        let nonce: Vec<u8> = row.try_get("nonce")?;
        let ciphertext: Vec<u8> = row.try_get("ciphertext")?;
        let plain = self
            .key
            .open(&value_aad(name, number), &nonce, &ciphertext)
            .map_err(|_| StoreError::Decrypt)?;
        let mut s = into_string(plain).ok_or(StoreError::Decrypt)?;
        SecretValue::new(std::mem::take(&mut *s)).map_err(|_| StoreError::Decrypt)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn add_version_impl(
        &self,
        name: &SecretName,
        value: &SecretValue,
        state: VersionState,
        rotation: Option<&RotationId>,
        labels: &[Label],
        now: Timestamp,
    ) -> Result<VersionNumber, StoreError> {
        let mut tx = self.begin().await?;
        let id = self.lock_secret(&mut tx, name).await?;
        if let Some(rotation) = rotation {
            let existing: Option<i64> = sqlx::query_scalar(
                "SELECT number FROM versions WHERE secret_id = $1 AND rotation = $2",
            )
            .bind(id)
            .bind(rotation.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(n) = existing {
                return decode::version(n);
            }
        }
        let max: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(number), 0) FROM versions WHERE secret_id = $1",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let number = decode::version(max + 1)?;
        let sealed = self
            .key
            .seal(&value_aad(name, number), value.expose().as_bytes());
        sqlx::query(
            "INSERT INTO versions (secret_id, number, state, created_at, rotation, key_id, nonce, ciphertext) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(id)
        .bind(num(number)?)
        .bind(state.as_str())
        .bind(now.as_millis())
        .bind(rotation.map(|r| r.as_str().to_owned()))
        .bind(self.key.id())
        .bind(sealed.nonce)
        .bind(sealed.ciphertext)
        .execute(&mut *tx)
        .await?;
        for label in labels {
            set_label(&mut tx, id, label, number).await?;
        }
        let after = load_labels(&mut tx, id).await?;
        let ev = insert_event(
            &mut tx,
            id,
            name,
            EventKind::VersionAdded,
            Some(number),
            after,
            now,
        )
        .await?;
        self.commit_and_publish(tx, ev).await?;
        Ok(number)
    }

    pub(super) async fn get_value_impl(
        &self,
        name: &SecretName,
        sel: &VersionSelector,
    ) -> Result<(VersionRecord, SecretValue), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let id = self.secret_id(&mut conn, name).await?;
        let labels = load_labels(&mut conn, id).await?;
        let number = match sel {
            VersionSelector::Number(n) => *n,
            VersionSelector::Label(l) => *labels.get(l).ok_or_else(|| StoreError::NotFound {
                what: "label",
                name: format!("{name} label {l}"),
            })?,
        };
        let sql = format!(
            "SELECT {VERSION_COLUMNS}, nonce, ciphertext FROM versions WHERE secret_id = $1 AND number = $2"
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .bind(num(number)?)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| not_found_version(name, number))?;
        let mut record = version_record(&row)?;
        attach_labels(&mut record, &labels);
        let value = self.decrypt(name, number, &row)?;
        Ok((record, value))
    }

    pub(super) async fn list_versions_impl(
        &self,
        name: &SecretName,
    ) -> Result<Vec<VersionRecord>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let id = self.secret_id(&mut conn, name).await?;
        let labels = load_labels(&mut conn, id).await?;
        let sql =
            format!("SELECT {VERSION_COLUMNS} FROM versions WHERE secret_id = $1 ORDER BY number");
        let rows = sqlx::query(&sql).bind(id).fetch_all(&mut *conn).await?;
        rows.iter()
            .map(|row| {
                let mut record = version_record(row)?;
                attach_labels(&mut record, &labels);
                Ok(record)
            })
            .collect()
    }

    pub(super) async fn set_version_state_impl(
        &self,
        name: &SecretName,
        number: VersionNumber,
        state: VersionState,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let id = self.lock_secret(&mut tx, name).await?;
        let stored: String =
            sqlx::query_scalar("SELECT state FROM versions WHERE secret_id = $1 AND number = $2")
                .bind(id)
                .bind(num(number)?)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| not_found_version(name, number))?;
        if parse::<VersionState>("state", &stored)? == state {
            return Ok(());
        }
        sqlx::query("UPDATE versions SET state = $1 WHERE secret_id = $2 AND number = $3")
            .bind(state.as_str())
            .bind(id)
            .bind(num(number)?)
            .execute(&mut *tx)
            .await?;
        let labels = load_labels(&mut tx, id).await?;
        let ev = insert_event(
            &mut tx,
            id,
            name,
            EventKind::VersionState,
            Some(number),
            labels,
            now,
        )
        .await?;
        self.commit_and_publish(tx, ev).await?;
        Ok(())
    }

    pub(super) async fn move_labels_impl(
        &self,
        name: &SecretName,
        moves: &[(Label, Option<VersionNumber>)],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let id = self.lock_secret(&mut tx, name).await?;
        let before = load_labels(&mut tx, id).await?;
        for (label, target) in moves {
            match target {
                Some(number) => {
                    let exists: Option<i64> = sqlx::query_scalar(
                        "SELECT number FROM versions WHERE secret_id = $1 AND number = $2",
                    )
                    .bind(id)
                    .bind(num(*number)?)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if exists.is_none() {
                        return Err(not_found_version(name, *number));
                    }
                    set_label(&mut tx, id, label, *number).await?;
                }
                None => {
                    sqlx::query("DELETE FROM labels WHERE secret_id = $1 AND label = $2")
                        .bind(id)
                        .bind(label.as_str())
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        let after = load_labels(&mut tx, id).await?;
        if after == before {
            return Ok(());
        }
        let ev = insert_event(&mut tx, id, name, EventKind::LabelsMoved, None, after, now).await?;
        self.commit_and_publish(tx, ev).await?;
        Ok(())
    }

    pub(super) async fn accepted_impl(
        &self,
        name: &SecretName,
    ) -> Result<Vec<(VersionRecord, SecretValue)>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let id = self.secret_id(&mut conn, name).await?;
        let labels = load_labels(&mut conn, id).await?;
        let sql = format!(
            "SELECT {VERSION_COLUMNS}, nonce, ciphertext FROM versions \
             WHERE secret_id = $1 AND state = $2 ORDER BY number"
        );
        let rows = sqlx::query(&sql)
            .bind(id)
            .bind(VersionState::Active.as_str())
            .fetch_all(&mut *conn)
            .await?;
        rows.iter()
            .map(|row| {
                let mut record = version_record(row)?;
                attach_labels(&mut record, &labels);
                let value = self.decrypt(name, record.number, row)?;
                Ok((record, value))
            })
            .collect()
    }
}

/// Points `label` of secret `secret_id` at `number` (insert or move).
async fn set_label(
    conn: &mut AnyConnection,
    secret_id: i64,
    label: &Label,
    number: VersionNumber,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO labels (secret_id, label, number) VALUES ($1, $2, $3) \
         ON CONFLICT (secret_id, label) DO UPDATE SET number = excluded.number",
    )
    .bind(secret_id)
    .bind(label.as_str())
    .bind(num(number)?)
    .execute(conn)
    .await?;
    Ok(())
}
