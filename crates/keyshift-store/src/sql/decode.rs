//! Conversions between stored columns and keyshift's types.

use std::collections::BTreeMap;
use std::str::FromStr;

use keyshift_core::rotation::RotationId;
use keyshift_core::{Label, SecretName, Timestamp, VersionNumber, VersionState};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::error::StoreError;
use crate::model::VersionRecord;

/// Parses a stored string, naming the column on failure (never a value:
/// no column holds one in plaintext).
pub(super) fn parse<T: FromStr>(column: &str, s: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    s.parse()
        .map_err(|e| StoreError::InvalidData(format!("column {column}: {e}")))
}

/// A stored secret name.
pub(super) fn name(s: &str) -> Result<SecretName, StoreError> {
    parse("name", s)
}

/// A version number as stored (i64).
pub(super) fn num(n: VersionNumber) -> Result<i64, StoreError> {
    i64::try_from(n.0).map_err(|_| StoreError::InvalidData(format!("version number {n} too large")))
}

/// A stored version number.
pub(super) fn version(n: i64) -> Result<VersionNumber, StoreError> {
    u64::try_from(n)
        .map(VersionNumber)
        .map_err(|_| StoreError::InvalidData(format!("negative version number {n}")))
}

/// A stored sequence number.
pub(super) fn seq(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::InvalidData(format!("negative sequence number {n}")))
}

/// A stored timestamp (milliseconds).
pub(super) fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

/// The current time, for bookkeeping columns the API gives no time for.
pub(super) fn now_millis() -> i64 {
    Timestamp::from_system(std::time::SystemTime::now()).as_millis()
}

/// Labels as stored in event rows: a JSON object of label -> number.
pub(super) fn labels_json(labels: &BTreeMap<Label, VersionNumber>) -> Result<String, StoreError> {
    Ok(serde_json::to_string(labels)?)
}

/// A row of `number, state, created_at, rotation` (no labels yet).
pub(super) fn version_record(row: &AnyRow) -> Result<VersionRecord, StoreError> {
    let rotation: Option<String> = row.try_get("rotation")?;
    Ok(VersionRecord {
        number: version(row.try_get("number")?)?,
        state: parse::<VersionState>("state", &row.try_get::<String, _>("state")?)?,
        created_at: ts(row.try_get("created_at")?),
        rotation: rotation
            .map(|r| parse::<RotationId>("rotation", &r))
            .transpose()?,
        labels: Vec::new(),
    })
}

/// Fills `record.labels` from the secret's label map (sorted).
pub(super) fn attach_labels(record: &mut VersionRecord, labels: &BTreeMap<Label, VersionNumber>) {
    record.labels = labels
        .iter()
        .filter(|(_, n)| **n == record.number)
        .map(|(l, _)| l.clone())
        .collect();
}
