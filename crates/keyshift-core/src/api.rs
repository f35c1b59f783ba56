//! The HTTP API's JSON bodies, shared by the server and the client SDK so
//! the two cannot drift apart. Documented in `docs/api.md`.
//!
//! Types that carry a secret value hold a [`SecretValue`] and implement
//! `Debug` by hand, redacting it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::rotation::{Gate, Phase, PhaseRecord, Rotation, RotationId, Status};
use crate::{
    Label, Policy, Schedule, SecretKind, SecretName, SecretValue, Strategy, Timestamp,
    VersionNumber, VersionState,
};

/// `{"error": {...}}`: every non-2xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A machine-readable code and a human message (never a secret, never an
/// internal detail such as a SQL error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable code: `bad_request`, `unauthorized`, `forbidden`, `not_found`,
    /// `conflict`, `rotation_active`, `payload_too_large`, `unavailable`,
    /// `internal`.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// For `rotation_active`: the id of the rotation that runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationId>,
}

/// `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `ok` or `degraded`.
    pub status: String,
    /// The store engine: `sqlite` or `postgres`.
    pub store: String,
    /// The server's version.
    pub version: String,
}

/// `POST /v1/secrets`: create a secret, optionally with its first value.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSecret {
    /// The name.
    pub name: SecretName,
    /// The kind.
    pub kind: SecretKind,
    /// The policy; defaults apply to missing fields.
    #[serde(default)]
    pub policy: Policy,
    /// The target's configuration (for `redis`: address, user, admin_secret).
    #[serde(default)]
    pub target: serde_json::Value,
    /// The first value, labelled `current`.
    #[serde(default, with = "opt_secret", skip_serializing_if = "Option::is_none")]
    pub value: Option<SecretValue>,
    /// Generate the first value instead (256 random bits).
    #[serde(default)]
    pub generate: bool,
}

impl fmt::Debug for CreateSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateSecret")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("value", &self.value.as_ref().map(|_| "<redacted>"))
            .field("generate", &self.generate)
            .finish_non_exhaustive()
    }
}

/// A secret's metadata (`GET /v1/secrets/{name}`), never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    /// The name.
    pub name: SecretName,
    /// The kind.
    pub kind: SecretKind,
    /// The policy.
    pub policy: Policy,
    /// The target's configuration.
    pub target: serde_json::Value,
    /// Where each label points.
    pub labels: BTreeMap<Label, VersionNumber>,
    /// Creation time.
    pub created_at: Timestamp,
}

/// `GET /v1/secrets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretList {
    /// The secrets the caller may read, by name.
    pub secrets: Vec<SecretInfo>,
}

/// `POST /v1/secrets/{name}:versions`: add a version by hand.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddVersion {
    /// The value.
    #[serde(default, with = "opt_secret", skip_serializing_if = "Option::is_none")]
    pub value: Option<SecretValue>,
    /// Generate the value instead.
    #[serde(default)]
    pub generate: bool,
    /// Labels to point at it; default `["current"]` (then `previous` moves
    /// to the version that was current).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<Label>>,
}

impl fmt::Debug for AddVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AddVersion")
            .field("value", &self.value.as_ref().map(|_| "<redacted>"))
            .field("generate", &self.generate)
            .field("labels", &self.labels)
            .finish()
    }
}

/// `201` answer to adding a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionAdded {
    /// The new version's number.
    pub version: VersionNumber,
}

/// One version's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// Its number.
    pub version: VersionNumber,
    /// Its state.
    pub state: VersionState,
    /// Labels pointing at it.
    pub labels: Vec<Label>,
    /// Creation time.
    pub created_at: Timestamp,
    /// The rotation that created it, if any.
    pub rotation: Option<RotationId>,
}

/// `GET /v1/secrets/{name}:versions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionList {
    /// The secret.
    pub name: SecretName,
    /// Ascending by number.
    pub versions: Vec<VersionInfo>,
}

/// `GET /v1/secrets/{name}:value`: one version with its value.
#[derive(Clone, Serialize, Deserialize)]
pub struct SecretVersion {
    /// The secret.
    pub name: SecretName,
    /// The version's metadata.
    #[serde(flatten)]
    pub info: VersionInfo,
    /// The value.
    #[serde(with = "secret")]
    pub value: SecretValue,
}

impl fmt::Debug for SecretVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretVersion")
            .field("name", &self.name)
            .field("info", &self.info)
            .field("value", &self.value)
            .finish()
    }
}

/// `GET /v1/secrets/{name}:accepted`: the versions the target accepts now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AcceptedSet {
    /// The secret.
    pub name: SecretName,
    /// Ascending by number.
    pub versions: Vec<SecretVersion>,
    /// While a rotation is in its overlap: when the versions older than
    /// `current` were deprecated (Promote's end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecated_since: Option<Timestamp>,
    /// While a rotation is in its overlap: when they stop being accepted
    /// at the latest (Promote's end plus `max_overlap`). The overlap gate
    /// may revoke them sooner, once nobody uses them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sunset: Option<Timestamp>,
}

/// `POST /v1/secrets/{name}:rotate`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRotation {
    /// The strategy; default the policy's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// The rotation's id and idempotency key: the same id twice returns the
    /// same rotation. Default: a new random id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<RotationId>,
    /// Rotate in an emergency (a leaked credential), giving the reason:
    /// strategy `immediate`, the old credential revoked at once, downtime
    /// accepted; recorded in the audit log. Excludes `strategy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency: Option<String>,
    /// Start even though the secret's circuit is open.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// `POST /v1/rotations/{id}:rollback` and `:abort`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// Why, for the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A rotation as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationInfo {
    /// Its id.
    pub id: RotationId,
    /// The secret.
    pub secret: SecretName,
    /// The strategy.
    pub strategy: Strategy,
    /// The phase it is in.
    pub phase: Phase,
    /// Running, succeeded, rolled back or failed.
    pub status: Status,
    /// The version being replaced.
    pub old_version: Option<VersionNumber>,
    /// The version being introduced.
    pub new_version: Option<VersionNumber>,
    /// Why it rolled back or failed.
    pub reason: Option<String>,
    /// When it was created.
    pub created_at: Timestamp,
    /// Every phase with start, end, outcome, attempts and last error.
    pub phases: Vec<PhaseRecord>,
    /// The operator's reason when this is an emergency rotation: no
    /// overlap, consumers holding the old credential failed until they
    /// moved (downtime accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency: Option<String>,
    /// The overlap gate: last check, why it holds, the stragglers, how the
    /// overlap ended.
    #[serde(default)]
    pub gate: Gate,
}

impl From<&Rotation> for RotationInfo {
    fn from(r: &Rotation) -> Self {
        Self {
            id: r.id.clone(),
            secret: r.secret.clone(),
            strategy: r.strategy,
            phase: r.phase,
            status: r.status(),
            old_version: r.old_version,
            new_version: r.new_version,
            reason: r.reason.clone(),
            created_at: r.created_at,
            phases: r.history.clone(),
            emergency: r.emergency.clone(),
            gate: r.gate.clone(),
        }
    }
}

/// `GET /v1/rotations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationList {
    /// Newest first.
    pub rotations: Vec<RotationInfo>,
}

/// `GET /v1/status`: every secret's schedule and circuit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusList {
    /// By name.
    pub secrets: Vec<SecretStatus>,
    /// The scheduler's clock when it last looked for due rotations (None
    /// before its first look).
    pub scheduler_checked_at: Option<Timestamp>,
}

/// One secret in [`StatusList`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretStatus {
    /// The secret.
    pub name: SecretName,
    /// Its kind.
    pub kind: SecretKind,
    /// Its schedule, if it rotates on its own.
    pub schedule: Option<Schedule>,
    /// When it rotates next on its own (None: not scheduled, or a rotation
    /// is running).
    pub next_rotation: Option<Timestamp>,
    /// What decides `next_rotation`: `schedule`, or `certificate-age` for
    /// certificates renewed at two thirds of their lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation_by: Option<String>,
    /// The newest rotation, if any.
    pub last_rotation: Option<RotationSummary>,
    /// Until when its circuit is open (None: closed).
    pub circuit_open_until: Option<Timestamp>,
}

/// A rotation in one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationSummary {
    /// Its id.
    pub id: RotationId,
    /// Running, succeeded, rolled back or failed.
    pub status: Status,
    /// Its phase.
    pub phase: Phase,
    /// When it started.
    pub created_at: Timestamp,
}

impl From<&Rotation> for RotationSummary {
    fn from(r: &Rotation) -> Self {
        Self {
            id: r.id.clone(),
            status: r.status(),
            phase: r.phase,
            created_at: r.created_at,
        }
    }
}

/// What a watch event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchEventKind {
    /// A secret was created.
    SecretCreated,
    /// A version was added.
    VersionAdded,
    /// Labels moved (a Promote or a rollback).
    LabelsMoved,
    /// A version's state changed (e.g. it was revoked).
    VersionState,
    /// The secret was deleted.
    SecretDeleted,
}

impl WatchEventKind {
    /// The stable snake_case name, also the SSE `event:` field.
    pub fn as_str(self) -> &'static str {
        match self {
            WatchEventKind::SecretCreated => "secret_created",
            WatchEventKind::VersionAdded => "version_added",
            WatchEventKind::LabelsMoved => "labels_moved",
            WatchEventKind::VersionState => "version_state",
            WatchEventKind::SecretDeleted => "secret_deleted",
        }
    }
}

/// One event of `GET /v1/watch` (the SSE `data:` field). Never carries a
/// value: a watcher reads the value it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// Global, increasing: the SSE `id:` to resume from with `Last-Event-ID`.
    pub id: i64,
    /// The secret.
    pub secret: SecretName,
    /// Per secret, increasing: apply an event only if its seq is higher than
    /// the last one applied for that secret.
    pub seq: u64,
    /// What happened.
    pub kind: WatchEventKind,
    /// The version concerned, if any.
    pub version: Option<VersionNumber>,
    /// The secret's labels after the change.
    pub labels: BTreeMap<Label, VersionNumber>,
    /// When it happened.
    pub at: Timestamp,
}

/// `POST /v1/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// What the token is for.
    #[serde(default)]
    pub description: String,
    /// What it may do, on which names.
    pub grants: Vec<Grant>,
}

/// A scope on a name pattern (`*`, `prod/*`, or an exact name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// What it allows.
    pub scope: Scope,
    /// On which secret names.
    pub pattern: String,
}

/// What a token may do. Each scope includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read values, versions, rotations; watch.
    Read,
    /// Also start, roll back and abort rotations.
    Rotate,
    /// Also create and delete secrets, put values, manage tokens, read audit.
    Admin,
}

/// `201` answer to creating a token: the only time its secret is shown.
#[derive(Clone, Serialize, Deserialize)]
pub struct TokenCreated {
    /// The token's id (not secret).
    pub id: String,
    /// The bearer token.
    #[serde(with = "secret")]
    pub token: SecretValue,
}

impl fmt::Debug for TokenCreated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCreated")
            .field("id", &self.id)
            .field("token", &self.token)
            .finish()
    }
}

/// Serde for a [`SecretValue`] as a JSON string.
pub mod secret {
    use super::*;

    /// Writes the exposed value.
    pub fn serialize<S: Serializer>(v: &SecretValue, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.expose())
    }

    /// Reads a string and checks the generic limits.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SecretValue, D::Error> {
        SecretValue::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Serde for an optional [`SecretValue`].
pub mod opt_secret {
    use super::*;

    /// Writes the exposed value or null.
    pub fn serialize<S: Serializer>(v: &Option<SecretValue>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(v.expose()),
            None => s.serialize_none(),
        }
    }

    /// Reads a string or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretValue>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| SecretValue::new(s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// The longest heartbeat interval a consumer may announce
/// ([`Heartbeat::interval_ms`]): one hour.
pub const MAX_HEARTBEAT_INTERVAL_MS: u64 = 3_600_000;

/// `POST /v1/consumers/heartbeat`: a consumer says which versions it holds.
/// The server records it; the overlap gate reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// The consumer's id: stable across restarts of the same instance
    /// (1 to 128 characters of `[A-Za-z0-9._:-]`).
    pub consumer_id: String,
    /// The host it runs on, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The process (name, pid), for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    /// Each secret it watches and the version it holds (None: none yet).
    pub holds: Vec<Holding>,
    /// How often it sends heartbeats, in milliseconds: the server counts
    /// it stale after the policy's `stale_after_missed` missed ones
    /// (without it, after `consumer_stale_after`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
}

/// One secret a consumer holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holding {
    /// The secret.
    pub secret: SecretName,
    /// The version it uses now.
    pub version: Option<VersionNumber>,
}

/// `POST /v1/usage`: uses of each version counted by a verifier (a
/// `KeyRing`) since its last report: the usage signal of the overlap gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageReport {
    /// Who counted (a consumer id).
    pub reporter: String,
    /// The counts.
    pub counts: Vec<UsageCount>,
}

/// `POST /v1/failures`: uses of each version that failed since the last
/// report (a login refused, a handshake or request that failed with the
/// credential, a value that failed the consumer's validation). A `canary`
/// rotation rolls back when more than its policy tolerates are reported
/// against its new version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureReport {
    /// Who failed (a consumer id).
    pub reporter: String,
    /// The failures.
    pub failures: Vec<UsageCount>,
}

/// Uses (or failed uses) of one version of one secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageCount {
    /// The secret.
    pub secret: SecretName,
    /// The version used.
    pub version: VersionNumber,
    /// How many uses since the last report.
    pub count: u64,
}

/// A consumer of a secret as the server last heard of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerInfo {
    /// Its id.
    pub consumer_id: String,
    /// The version it reported holding.
    pub version: Option<VersionNumber>,
    /// Its host.
    pub host: Option<String>,
    /// Its process.
    pub process: Option<String>,
    /// First heartbeat.
    pub first_seen: Timestamp,
    /// Latest heartbeat.
    pub last_seen: Timestamp,
    /// Where it stands with respect to `current`, as the overlap gate sees
    /// it.
    pub status: ConsumerStatus,
}

/// Where a consumer stands, as the overlap gate sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsumerStatus {
    /// Live, and holds the version labelled `current`.
    Migrated,
    /// Live, and holds another version (or none yet): it holds the gate.
    Pending,
    /// Not heard from within the policy's `consumer_stale_after`: it no
    /// longer counts.
    Stale,
}

impl ConsumerStatus {
    /// The status of a consumer holding `held`, when `current` is the
    /// secret's current version and `live` says whether it is heard from
    /// often enough (see [`Policy::is_live`]).
    pub fn of(held: Option<VersionNumber>, current: Option<VersionNumber>, live: bool) -> Self {
        if !live {
            ConsumerStatus::Stale
        } else if held.is_some() && held == current {
            ConsumerStatus::Migrated
        } else {
            ConsumerStatus::Pending
        }
    }

    /// The stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsumerStatus::Migrated => "migrated",
            ConsumerStatus::Pending => "pending",
            ConsumerStatus::Stale => "stale",
        }
    }
}

/// `GET /v1/secrets/{name}:consumers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerList {
    /// The secret.
    pub name: SecretName,
    /// By consumer id.
    pub consumers: Vec<ConsumerInfo>,
}

/// One version's uses in one reporting window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageWindow {
    /// The version.
    pub version: VersionNumber,
    /// The window's start (windows are one minute, aligned).
    pub window_start: Timestamp,
    /// Uses counted in it, from every reporter.
    pub count: u64,
    /// When a report last added to it.
    pub last_at: Timestamp,
}

/// `GET /v1/secrets/{name}:usage?since=RFC3339`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageList {
    /// The secret.
    pub name: SecretName,
    /// Oldest first.
    pub windows: Vec<UsageWindow>,
}

/// Checks a consumer id: 1 to 128 characters of `[A-Za-z0-9._:-]`.
pub fn valid_consumer_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// A phase change of a rotation, as notification receivers get it: the
/// body of a webhook POST, and the payload of the NATS message on
/// `keyshift.rotation.<phase>`. Never a secret value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseNotice {
    /// `<rotation id>:<n>`, n the position of the phase in the rotation's
    /// history: unique per phase entered. Delivery is at least once (a
    /// server restarted mid-rotation may send a phase again): deduplicate
    /// on it.
    pub event_id: String,
    /// The rotation.
    pub rotation: RotationId,
    /// The secret rotated.
    pub secret: SecretName,
    /// Its strategy.
    pub strategy: Strategy,
    /// The phase entered.
    pub phase: Phase,
    /// The phase it left (None for the first).
    pub previous_phase: Option<Phase>,
    /// Where the rotation stands now.
    pub status: Status,
    /// When the phase was entered.
    pub at: Timestamp,
    /// The credential being replaced.
    pub old_version: Option<VersionNumber>,
    /// The new credential, once generated.
    pub new_version: Option<VersionNumber>,
    /// Why it rolled back or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How the overlap ended (`gate`, `max_overlap`, `operator`), from the
    /// phase after it on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap_ended_by: Option<String>,
    /// The live consumers that had not moved when the overlap ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stragglers: Vec<String>,
}

impl PhaseNotice {
    /// The notice of the phase `rotation` is in now.
    pub fn of(rotation: &Rotation) -> PhaseNotice {
        let n = rotation.history.len();
        let entered = rotation.history.last();
        PhaseNotice {
            event_id: format!("{}:{}", rotation.id, n),
            rotation: rotation.id.clone(),
            secret: rotation.secret.clone(),
            strategy: rotation.strategy,
            phase: rotation.phase,
            previous_phase: n
                .checked_sub(2)
                .and_then(|i| rotation.history.get(i))
                .map(|r| r.phase),
            status: rotation.status(),
            at: entered.map_or(rotation.created_at, |r| r.started_at),
            old_version: rotation.old_version,
            new_version: rotation.new_version,
            reason: rotation.reason.clone(),
            overlap_ended_by: rotation.gate.passed_by.clone(),
            stragglers: if rotation.gate.passed_by.is_some() {
                rotation.gate.stragglers.clone()
            } else {
                Vec::new()
            },
        }
    }

    /// The NATS subject it is published on: `keyshift.rotation.<phase>`.
    pub fn subject(&self) -> String {
        format!("keyshift.rotation.{}", self.phase)
    }
}
