//! The records the store reads and writes. None of them holds a secret value
//! except the pairs returned by value-reading methods.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use keyshift_core::rotation::{Rotation, RotationId};
use keyshift_core::{
    Label, Policy, SecretKind, SecretName, Timestamp, VersionNumber, VersionState,
};
use serde::{Deserialize, Serialize};

/// A secret's metadata and labels (no values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretRecord {
    /// The name.
    pub name: SecretName,
    /// What kind of secret it is.
    pub kind: SecretKind,
    /// Its rotation policy.
    pub policy: Policy,
    /// The target's configuration (opaque to the store).
    pub target: serde_json::Value,
    /// When it was created.
    pub created_at: Timestamp,
    /// Where each label points.
    pub labels: BTreeMap<Label, VersionNumber>,
}

/// One version's metadata (no value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// The version's number.
    pub number: VersionNumber,
    /// Where it stands with respect to the target.
    pub state: VersionState,
    /// When it was created.
    pub created_at: Timestamp,
    /// The rotation that created it, if any.
    pub rotation: Option<RotationId>,
    /// The labels pointing at it, sorted.
    pub labels: Vec<Label>,
}

/// Which version to read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VersionSelector {
    /// The version a label points at.
    Label(Label),
    /// A version by number.
    Number(VersionNumber),
}

/// What kind of change an [`EventRecord`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The secret was created.
    SecretCreated,
    /// A version was added (labels may have moved with it).
    VersionAdded,
    /// Labels moved.
    LabelsMoved,
    /// A version's state changed.
    VersionState,
    /// The secret was deleted.
    SecretDeleted,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 5] = [
        EventKind::SecretCreated,
        EventKind::VersionAdded,
        EventKind::LabelsMoved,
        EventKind::VersionState,
        EventKind::SecretDeleted,
    ];

    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::SecretCreated => "secret_created",
            EventKind::VersionAdded => "version_added",
            EventKind::LabelsMoved => "labels_moved",
            EventKind::VersionState => "version_state",
            EventKind::SecretDeleted => "secret_deleted",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown event kind `{s}`"))
    }
}

/// A change, for watchers. Never carries a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Global id: strictly increasing across all secrets, in commit order.
    pub id: i64,
    /// The secret changed.
    pub secret: SecretName,
    /// Per secret name: starts at 1 and strictly increases, also across a
    /// delete and re-create of the same name.
    pub seq: u64,
    /// What changed.
    pub kind: EventKind,
    /// The version concerned, if any (added, or whose state changed).
    pub version: Option<VersionNumber>,
    /// The secret's labels after the change (empty after a delete).
    pub labels: BTreeMap<Label, VersionNumber>,
    /// When.
    pub at: Timestamp,
}

/// One consumer's heartbeat, as [`Store::record_heartbeats`](crate::Store::record_heartbeats)
/// writes it: the version it holds of each secret, and about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatRecord {
    /// The consumer's id.
    pub consumer_id: String,
    /// The host it runs on, as it says.
    pub host: Option<String>,
    /// Its process, as it says.
    pub process: Option<String>,
    /// How often it says it sends heartbeats.
    pub interval: Option<std::time::Duration>,
    /// The version it holds of each secret (None: none yet). A secret
    /// named twice keeps its last holding.
    pub holds: Vec<(SecretName, Option<VersionNumber>)>,
}

/// A consumer of a secret as last heard of (its latest heartbeat).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerRecord {
    /// The secret it holds.
    pub secret: SecretName,
    /// The consumer's id.
    pub consumer_id: String,
    /// The version it reported holding (None: none yet).
    pub version: Option<VersionNumber>,
    /// The host it runs on, as reported.
    pub host: Option<String>,
    /// Its process, as reported.
    pub process: Option<String>,
    /// Its first heartbeat naming this secret.
    pub first_seen: Timestamp,
    /// Its latest heartbeat naming this secret.
    pub last_seen: Timestamp,
    /// How often it said it sends heartbeats (None: it did not say).
    pub heartbeat_interval: Option<std::time::Duration>,
}

/// Uses of one version in one one-minute window (`window_start` aligned to
/// the minute, UTC), summed over every reporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageWindowRecord {
    /// The version used.
    pub version: VersionNumber,
    /// The window's start: a whole minute.
    pub window_start: Timestamp,
    /// Uses counted in the window (saturating at `i64::MAX`).
    pub count: u64,
    /// When a report last added to the window (within it).
    pub last_at: Timestamp,
}

/// What one consumer reported against one version: its failed uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    /// The consumer that reported them.
    pub consumer_id: String,
    /// The version that failed.
    pub version: VersionNumber,
    /// Failed uses reported, summed over its reports (saturating at `i64::MAX`).
    pub count: u64,
    /// Its first report against this version.
    pub first_at: Timestamp,
    /// Its latest report against this version.
    pub last_at: Timestamp,
}

/// An audit entry to append. Never a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAudit {
    /// Who: a token id, `operator`, `scheduler`, ...
    pub actor: String,
    /// What: `secret.create`, `rotation.start`, ...
    pub action: String,
    /// The secret concerned, if any.
    pub secret: Option<SecretName>,
    /// The version concerned, if any.
    pub version: Option<VersionNumber>,
    /// The rotation concerned, if any.
    pub rotation: Option<RotationId>,
    /// How it ended: `ok`, `denied`, `failed`, ...
    pub outcome: String,
    /// More detail (never a value).
    pub detail: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// A stored audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Strictly increasing id.
    pub id: i64,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// The secret concerned, if any.
    pub secret: Option<SecretName>,
    /// The version concerned, if any.
    pub version: Option<VersionNumber>,
    /// The rotation concerned, if any.
    pub rotation: Option<RotationId>,
    /// How it ended.
    pub outcome: String,
    /// More detail.
    pub detail: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// An API token as stored: only the SHA-256 of its secret part.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// The token's public id.
    pub id: String,
    /// SHA-256 of the token's secret part.
    pub secret_hash: [u8; 32],
    /// What it is for.
    pub description: String,
    /// What it may do (opaque to the store).
    pub grants: serde_json::Value,
    /// When it was created.
    pub created_at: Timestamp,
}

impl fmt::Debug for TokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRecord")
            .field("id", &self.id)
            .field("secret_hash", &"<redacted>")
            .field("description", &self.description)
            .field("grants", &self.grants)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// The result of [`Store::create_rotation`](crate::Store::create_rotation).
#[derive(Debug, Clone, PartialEq, Eq)]
// Returned once per rotation start; boxing would only complicate matching.
#[allow(clippy::large_enum_variant)]
pub enum CreateRotation {
    /// The rotation was inserted.
    Created,
    /// A rotation with this id was already stored (idempotent retry); here
    /// it is, as stored.
    Existing(Rotation),
}

/// Which rotations [`Store::list_rotations`](crate::Store::list_rotations) returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationFilter {
    /// Only this secret's rotations.
    pub secret: Option<SecretName>,
    /// Only rotations that have not ended.
    pub active_only: bool,
    /// Only rotations created at or after this time.
    pub since: Option<Timestamp>,
    /// At most this many (0 returns none).
    pub limit: u32,
}

/// The database behind a [`SqlStore`](crate::SqlStore).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    /// Embedded SQLite: one file.
    Sqlite,
    /// PostgreSQL: shared by several replicas.
    Postgres,
}

impl Engine {
    /// `sqlite` or `postgres`.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_kinds_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(k.as_str().parse::<EventKind>(), Ok(k));
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.as_str())
            );
        }
    }

    #[test]
    fn token_debug_hides_hash() {
        let t = TokenRecord {
            id: "t1".into(),
            secret_hash: [0xab; 32],
            description: String::new(),
            grants: serde_json::Value::Null,
            created_at: Timestamp::from_millis(0),
        };
        assert!(!format!("{t:?}").contains("abab"));
    }
}
