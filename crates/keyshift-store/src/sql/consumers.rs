//! Consumers (their heartbeats), usage windows and failure reports: the
//! overlap gate's and the canary's
//! signals.
//!
//! Both are hot paths (every consumer reports every few seconds), so each
//! write is one transaction of two statements (for heartbeats, one
//! transaction for a whole batch of them): one `SELECT` resolving every
//! secret named, then one multi-row upsert, rows sorted by key so that
//! concurrent writers lock rows in the same order. Both statements are
//! split into batches of [`BATCH_ROWS`]. Neither emits an event.

use std::collections::{BTreeMap, BTreeSet};

use std::time::Duration;

use keyshift_core::{SecretName, Timestamp, VersionNumber};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, AnyConnection, Arguments, Encode, Row, Type};

use super::decode::{self, num, ts};
use super::{not_found_secret, SqlStore};
use crate::error::StoreError;
use crate::model::{ConsumerRecord, FailureRecord, HeartbeatRecord, UsageWindowRecord};

/// Rows (or names) per statement: far below the bind-parameter limits
/// (SQLite 32766, PostgreSQL 65535).
const BATCH_ROWS: usize = 256;

/// The length of a usage window.
const WINDOW_MS: i64 = 60_000;

/// The start of the one-minute window (UTC) holding `t`, in milliseconds.
pub(super) fn window_start(t: Timestamp) -> i64 {
    let ms = t.as_millis();
    ms.saturating_sub(ms.rem_euclid(WINDOW_MS))
}

/// A count as stored: i64, saturating.
fn stored_count(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// A stored count.
fn count(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::InvalidData(format!("negative usage count {n}")))
}

/// Appends `value` to `args`.
fn bind<'q, T>(args: &mut AnyArguments<'q>, value: T) -> Result<(), StoreError>
where
    T: 'q + Encode<'q, Any> + Type<Any>,
{
    args.add(value)
        .map_err(|e| StoreError::InvalidData(format!("binding a parameter: {e}")))
}

/// The ids of the secrets `names`, in the caller's transaction.
///
/// [`StoreError::NotFound`] for the first name (in order) that does not
/// exist.
async fn resolve(
    conn: &mut AnyConnection,
    names: &BTreeSet<&SecretName>,
) -> Result<BTreeMap<String, i64>, StoreError> {
    let ids = lookup(conn, names).await?;
    match names.iter().find(|n| !ids.contains_key(n.as_str())) {
        Some(missing) => Err(not_found_secret(missing)),
        None => Ok(ids),
    }
}

/// The ids of those of the secrets `names` that exist, by name, in the
/// caller's transaction.
async fn lookup(
    conn: &mut AnyConnection,
    names: &BTreeSet<&SecretName>,
) -> Result<BTreeMap<String, i64>, StoreError> {
    let names: Vec<&SecretName> = names.iter().copied().collect();
    let mut ids = BTreeMap::new();
    for chunk in names.chunks(BATCH_ROWS) {
        let mut args = AnyArguments::default();
        let mut marks = Vec::with_capacity(chunk.len());
        for (i, name) in chunk.iter().enumerate() {
            bind(&mut args, name.as_str().to_owned())?;
            marks.push(format!("${}", i + 1));
        }
        let sql = format!(
            "SELECT id, name FROM secrets WHERE name IN ({})",
            marks.join(", ")
        );
        for row in sqlx::query_with(&sql, args).fetch_all(&mut *conn).await? {
            ids.insert(row.try_get::<String, _>("name")?, row.try_get("id")?);
        }
    }
    Ok(ids)
}

/// The id stored for `name` by [`resolve`].
fn id_of(ids: &BTreeMap<String, i64>, name: &SecretName) -> Result<i64, StoreError> {
    ids.get(name.as_str())
        .copied()
        .ok_or_else(|| not_found_secret(name))
}

/// `table.count + excluded.count` in an upsert, saturating at `i64::MAX`
/// (`excluded.count` is at least 1, so the subtraction cannot overflow).
fn saturating_sum(table: &str) -> String {
    let max = i64::MAX;
    format!(
        "CASE WHEN {table}.count > {max} - excluded.count THEN {max} \
         ELSE {table}.count + excluded.count END"
    )
}

/// `counts` resolved in the caller's transaction and summed per
/// `(secret id, version)`, zero counts left out, sorted by key: a multi-row
/// upsert may not touch a row twice, and sorted rows lock in one order.
///
/// [`StoreError::NotFound`] for an unknown secret (zero counts included).
async fn summed(
    conn: &mut AnyConnection,
    counts: &[(SecretName, VersionNumber, u64)],
) -> Result<Vec<((i64, i64), i64)>, StoreError> {
    let mut numbered = Vec::with_capacity(counts.len());
    for (name, version, n) in counts {
        numbered.push((name, num(*version)?, stored_count(*n)));
    }
    let names = numbered.iter().map(|(name, _, _)| *name).collect();
    let ids = resolve(conn, &names).await?;
    let mut sums: BTreeMap<(i64, i64), i64> = BTreeMap::new();
    for (name, version, n) in numbered {
        if n > 0 {
            let sum = sums.entry((id_of(&ids, name)?, version)).or_insert(0);
            *sum = sum.saturating_add(n);
        }
    }
    Ok(sums.into_iter().collect())
}

fn consumer_record(secret: &SecretName, row: &AnyRow) -> Result<ConsumerRecord, StoreError> {
    let version: Option<i64> = row.try_get("version")?;
    Ok(ConsumerRecord {
        secret: secret.clone(),
        consumer_id: row.try_get("consumer_id")?,
        version: version.map(decode::version).transpose()?,
        host: row.try_get("host")?,
        process: row.try_get("process")?,
        first_seen: ts(row.try_get("first_seen")?),
        last_seen: ts(row.try_get("last_seen")?),
        heartbeat_interval: row
            .try_get::<Option<i64>, _>("heartbeat_interval_ms")?
            .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
    })
}

fn usage_record(row: &AnyRow) -> Result<UsageWindowRecord, StoreError> {
    Ok(UsageWindowRecord {
        version: decode::version(row.try_get("version")?)?,
        window_start: ts(row.try_get("window_start")?),
        count: count(row.try_get("count")?)?,
        last_at: ts(row.try_get("last_at")?),
    })
}

impl SqlStore {
    pub(super) async fn record_heartbeats_impl(
        &self,
        beats: &[HeartbeatRecord],
        now: Timestamp,
    ) -> Result<Vec<Option<SecretName>>, StoreError> {
        let names: BTreeSet<&SecretName> = beats
            .iter()
            .flat_map(|b| b.holds.iter().map(|(name, _)| name))
            .collect();
        if names.is_empty() {
            return Ok(vec![None; beats.len()]);
        }
        let mut tx = self.begin().await?;
        let ids = lookup(&mut tx, &names).await?;
        // One row per (secret, consumer): a later heartbeat (or a later
        // holding in one heartbeat) replaces an earlier one, and the rows
        // come out sorted by key.
        let mut rows: BTreeMap<(i64, &str), (Option<i64>, &HeartbeatRecord)> = BTreeMap::new();
        let mut outcome = Vec::with_capacity(beats.len());
        for beat in beats {
            let missing = beat
                .holds
                .iter()
                .find(|(name, _)| !ids.contains_key(name.as_str()))
                .map(|(name, _)| name.clone());
            if missing.is_none() {
                for (name, version) in &beat.holds {
                    let id = id_of(&ids, name)?;
                    let version = version.map(num).transpose()?;
                    rows.insert((id, beat.consumer_id.as_str()), (version, beat));
                }
            }
            outcome.push(missing);
        }
        let rows: Vec<_> = rows.into_iter().collect();
        for chunk in rows.chunks(BATCH_ROWS) {
            // $1 (now) is shared by every row; each row adds its own seven.
            let mut args = AnyArguments::default();
            bind(&mut args, now.as_millis())?;
            let mut values = Vec::with_capacity(chunk.len());
            for (i, ((secret_id, consumer_id), (version, beat))) in chunk.iter().enumerate() {
                let p = 2 + 6 * i;
                values.push(format!(
                    "(${p}, ${}, ${}, ${}, ${}, $1, $1, ${})",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4,
                    p + 5
                ));
                bind(&mut args, *secret_id)?;
                bind(&mut args, (*consumer_id).to_owned())?;
                bind(&mut args, *version)?;
                bind(&mut args, beat.host.clone())?;
                bind(&mut args, beat.process.clone())?;
                bind(
                    &mut args,
                    beat.interval
                        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
                )?;
            }
            let sql = format!(
                "INSERT INTO consumers \
                 (secret_id, consumer_id, version, host, process, first_seen, last_seen, \
                 heartbeat_interval_ms) \
                 VALUES {} \
                 ON CONFLICT (secret_id, consumer_id) DO UPDATE SET \
                 version = excluded.version, host = excluded.host, \
                 process = excluded.process, last_seen = excluded.last_seen, \
                 heartbeat_interval_ms = excluded.heartbeat_interval_ms",
                values.join(", ")
            );
            sqlx::query_with(&sql, args).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    pub(super) async fn list_consumers_impl(
        &self,
        name: &SecretName,
    ) -> Result<Vec<ConsumerRecord>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let id = self.secret_id(&mut conn, name).await?;
        let rows = sqlx::query(
            "SELECT consumer_id, version, host, process, first_seen, last_seen, \
             heartbeat_interval_ms FROM consumers WHERE secret_id = $1",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
        let mut out = rows
            .iter()
            .map(|row| consumer_record(name, row))
            .collect::<Result<Vec<_>, _>>()?;
        // Sorted here: the engines' collations differ.
        out.sort_by(|a, b| a.consumer_id.cmp(&b.consumer_id));
        Ok(out)
    }

    pub(super) async fn record_usage_impl(
        &self,
        counts: &[(SecretName, VersionNumber, u64)],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if counts.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        let rows = summed(&mut tx, counts).await?;
        for chunk in rows.chunks(BATCH_ROWS) {
            let mut args = AnyArguments::default();
            // $1 and $2 are shared by every row; each row adds its own three.
            bind(&mut args, window_start(now))?;
            bind(&mut args, now.as_millis())?;
            let mut values = Vec::with_capacity(chunk.len());
            for (i, ((secret_id, version), n)) in chunk.iter().enumerate() {
                let p = 3 + 3 * i;
                values.push(format!("(${p}, ${}, $1, ${}, $2)", p + 1, p + 2));
                bind(&mut args, *secret_id)?;
                bind(&mut args, *version)?;
                bind(&mut args, *n)?;
            }
            let sql = format!(
                "INSERT INTO usage_windows (secret_id, version, window_start, count, last_at) \
                 VALUES {} \
                 ON CONFLICT (secret_id, version, window_start) DO UPDATE SET \
                 last_at = CASE WHEN excluded.last_at > usage_windows.last_at \
                 THEN excluded.last_at ELSE usage_windows.last_at END, count = {}",
                values.join(", "),
                saturating_sum("usage_windows"),
            );
            sqlx::query_with(&sql, args).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn record_failures_impl(
        &self,
        consumer_id: &str,
        failures: &[(SecretName, VersionNumber, u64)],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if failures.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        let rows = summed(&mut tx, failures).await?;
        for chunk in rows.chunks(BATCH_ROWS) {
            // $1 and $2 are shared by every row; each row adds its own three.
            let mut args = AnyArguments::default();
            bind(&mut args, consumer_id.to_owned())?;
            bind(&mut args, now.as_millis())?;
            let mut values = Vec::with_capacity(chunk.len());
            for (i, ((secret_id, version), n)) in chunk.iter().enumerate() {
                let p = 3 + 3 * i;
                values.push(format!("(${p}, ${}, $1, ${}, $2, $2)", p + 1, p + 2));
                bind(&mut args, *secret_id)?;
                bind(&mut args, *version)?;
                bind(&mut args, *n)?;
            }
            let sql = format!(
                "INSERT INTO failure_reports \
                 (secret_id, version, consumer_id, count, first_at, last_at) \
                 VALUES {} \
                 ON CONFLICT (secret_id, version, consumer_id) DO UPDATE SET \
                 last_at = excluded.last_at, count = {}",
                values.join(", "),
                saturating_sum("failure_reports"),
            );
            sqlx::query_with(&sql, args).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn list_failures_impl(
        &self,
        name: &SecretName,
        version: VersionNumber,
    ) -> Result<Vec<FailureRecord>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let id = self.secret_id(&mut conn, name).await?;
        let rows = sqlx::query(
            "SELECT consumer_id, count, first_at, last_at FROM failure_reports \
             WHERE secret_id = $1 AND version = $2",
        )
        .bind(id)
        .bind(num(version)?)
        .fetch_all(&mut *conn)
        .await?;
        let mut out = rows
            .iter()
            .map(|row| {
                Ok(FailureRecord {
                    consumer_id: row.try_get("consumer_id")?,
                    version,
                    count: count(row.try_get("count")?)?,
                    first_at: ts(row.try_get("first_at")?),
                    last_at: ts(row.try_get("last_at")?),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        // Sorted here: the engines' collations differ.
        out.sort_by(|a, b| a.consumer_id.cmp(&b.consumer_id));
        Ok(out)
    }

    pub(super) async fn usage_since_impl(
        &self,
        name: &SecretName,
        since: Timestamp,
    ) -> Result<Vec<UsageWindowRecord>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let id = self.secret_id(&mut conn, name).await?;
        let rows = sqlx::query(
            "SELECT version, window_start, count, last_at FROM usage_windows \
             WHERE secret_id = $1 AND window_start >= $2 \
             ORDER BY window_start, version",
        )
        .bind(id)
        .bind(window_start(since))
        .fetch_all(&mut *conn)
        .await?;
        rows.iter().map(usage_record).collect()
    }

    pub(super) async fn prune_impl(&self, older_than: Timestamp) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let mut removed = 0;
        for sql in [
            "DELETE FROM consumers WHERE last_seen < $1",
            "DELETE FROM usage_windows WHERE window_start < $1",
            "DELETE FROM failure_reports WHERE last_at < $1",
        ] {
            let done = sqlx::query(sql)
                .bind(older_than.as_millis())
                .execute(&mut *tx)
                .await?;
            removed += done.rows_affected();
        }
        tx.commit().await?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_whole_minutes() {
        let w = |ms| window_start(Timestamp::from_millis(ms));
        assert_eq!(w(0), 0);
        assert_eq!(w(59_999), 0);
        assert_eq!(w(60_000), 60_000);
        assert_eq!(w(1_700_000_123_456), 1_700_000_100_000);
        assert_eq!(w(-1), -60_000);
        assert_eq!(w(i64::MIN), i64::MIN);
        assert_eq!(w(i64::MAX) % WINDOW_MS, 0);
    }

    #[test]
    fn counts_saturate() {
        assert_eq!(stored_count(5), 5);
        assert_eq!(stored_count(u64::MAX), i64::MAX);
        assert_eq!(count(i64::MAX).unwrap(), i64::MAX as u64);
        assert!(count(-1).is_err());
    }
}
