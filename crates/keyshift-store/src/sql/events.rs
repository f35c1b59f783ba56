//! The change feed: events written with each change, read by watchers.

use std::collections::BTreeMap;

use keyshift_core::{Label, SecretName, Timestamp, VersionNumber};
use sqlx::any::AnyArguments;
use sqlx::AnyConnection;
use sqlx::{Arguments, Row};

use super::decode::{self, labels_json, num, parse, ts};
use super::SqlStore;
use crate::error::StoreError;
use crate::model::{EventKind, EventRecord};

/// Where each label of secret `secret_id` points.
pub(super) async fn load_labels(
    conn: &mut AnyConnection,
    secret_id: i64,
) -> Result<BTreeMap<Label, VersionNumber>, StoreError> {
    let rows = sqlx::query("SELECT label, number FROM labels WHERE secret_id = $1")
        .bind(secret_id)
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|row| {
            let label = parse::<Label>("label", &row.try_get::<String, _>("label")?)?;
            Ok((label, decode::version(row.try_get("number")?)?))
        })
        .collect()
}

/// Writes one event in the caller's transaction and returns it.
///
/// The per-secret seq comes from the secret row (locked by the caller),
/// the global id from the `counters` row, whose lock is held until commit,
/// so ids are assigned in commit order.
pub(super) async fn insert_event(
    conn: &mut AnyConnection,
    secret_id: i64,
    secret: &SecretName,
    kind: EventKind,
    version: Option<VersionNumber>,
    labels: BTreeMap<Label, VersionNumber>,
    now: Timestamp,
) -> Result<EventRecord, StoreError> {
    let seq: i64 = sqlx::query_scalar(
        "UPDATE secrets SET event_seq = event_seq + 1 WHERE id = $1 RETURNING event_seq",
    )
    .bind(secret_id)
    .fetch_one(&mut *conn)
    .await?;
    let id: i64 = sqlx::query_scalar(
        "UPDATE counters SET value = value + 1 WHERE name = 'event' RETURNING value",
    )
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO events (id, secret, seq, kind, version, labels, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(secret.as_str())
    .bind(seq)
    .bind(kind.as_str())
    .bind(version.map(num).transpose()?)
    .bind(labels_json(&labels)?)
    .bind(now.as_millis())
    .execute(&mut *conn)
    .await?;
    Ok(EventRecord {
        id,
        secret: secret.clone(),
        seq: decode::seq(seq)?,
        kind,
        version,
        labels,
        at: now,
    })
}

/// The SQL condition selecting events of secrets matching `patterns`, its
/// arguments appended to `args` from placeholder `$first` on. `None`: every
/// secret matches.
fn pattern_filter(
    patterns: &[String],
    args: &mut AnyArguments<'_>,
    first: usize,
) -> Result<Option<String>, StoreError> {
    if patterns.iter().any(|p| p == "*") {
        return Ok(None);
    }
    let mut terms = Vec::with_capacity(patterns.len());
    for (i, p) in patterns.iter().enumerate() {
        let n = first + i;
        match p.strip_suffix('*') {
            // substr counts characters on both engines; names are ASCII.
            Some(prefix) => terms.push(format!(
                "substr(secret, 1, {}) = ${n}",
                prefix.chars().count()
            )),
            None => terms.push(format!("secret = ${n}")),
        }
        let value = p.strip_suffix('*').unwrap_or(p).to_owned();
        args.add(value)
            .map_err(|e| StoreError::InvalidData(format!("binding a pattern: {e}")))?;
    }
    Ok(Some(format!("({})", terms.join(" OR "))))
}

impl SqlStore {
    pub(super) async fn latest_event_id_impl(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM events")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    pub(super) async fn events_since_impl(
        &self,
        after: i64,
        patterns: &[String],
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        events_since(&mut conn, after, patterns, limit).await
    }
}

/// Up to `limit` events after id `after` of secrets matching `patterns`,
/// in id order.
pub(super) async fn events_since(
    conn: &mut AnyConnection,
    after: i64,
    patterns: &[String],
    limit: u32,
) -> Result<Vec<EventRecord>, StoreError> {
    if patterns.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    let mut args = AnyArguments::default();
    args.add(after)
        .map_err(|e| StoreError::InvalidData(format!("binding a cursor: {e}")))?;
    let mut sql =
        String::from("SELECT id, secret, seq, kind, version, labels, at FROM events WHERE id > $1");
    if let Some(filter) = pattern_filter(patterns, &mut args, 2)? {
        sql.push_str(" AND ");
        sql.push_str(&filter);
    }
    sql.push_str(&format!(" ORDER BY id LIMIT {limit}"));
    let rows = sqlx::query_with(&sql, args).fetch_all(conn).await?;
    rows.iter().map(event_record).collect()
}

fn event_record(row: &sqlx::any::AnyRow) -> Result<EventRecord, StoreError> {
    let version: Option<i64> = row.try_get("version")?;
    let labels: String = row.try_get("labels")?;
    Ok(EventRecord {
        id: row.try_get("id")?,
        secret: decode::name(&row.try_get::<String, _>("secret")?)?,
        seq: decode::seq(row.try_get("seq")?)?,
        kind: parse("kind", &row.try_get::<String, _>("kind")?)?,
        version: version.map(decode::version).transpose()?,
        labels: serde_json::from_str(&labels)?,
        at: ts(row.try_get("at")?),
    })
}
