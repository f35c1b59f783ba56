//! The [`Store`] trait.

use keyshift_core::rotation::{Rotation, RotationId};
use keyshift_core::{
    Label, Policy, SecretKind, SecretName, SecretValue, Timestamp, VersionNumber, VersionState,
};

use crate::error::StoreError;
use crate::model::{
    AuditEntry, ConsumerRecord, CreateRotation, EventRecord, FailureRecord, HeartbeatRecord,
    NewAudit, RotationFilter, SecretRecord, TokenRecord, UsageWindowRecord, VersionRecord,
    VersionSelector,
};

/// Durable state: secrets, their encrypted versions and labels, rotations,
/// the change feed, consumers and usage, the audit log and API tokens.
///
/// Every method that changes a secret does so in one transaction together
/// with the [`EventRecord`] it emits, and sends that event to
/// [`subscribe`](Store::subscribe)rs after the commit.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates a secret with no versions; emits `SecretCreated`.
    ///
    /// [`StoreError::AlreadyExists`] if the name is taken.
    async fn create_secret(
        &self,
        name: &SecretName,
        kind: SecretKind,
        policy: &Policy,
        target: &serde_json::Value,
        now: Timestamp,
    ) -> Result<SecretRecord, StoreError>;

    /// A secret's metadata and labels. [`StoreError::NotFound`] if missing.
    async fn get_secret(&self, name: &SecretName) -> Result<SecretRecord, StoreError>;

    /// Secrets whose names start with `prefix` (all if `None`), sorted by name.
    async fn list_secrets(&self, prefix: Option<&str>) -> Result<Vec<SecretRecord>, StoreError>;

    /// The secrets the scheduler looks at ([`SecretKind::scheduled`]),
    /// sorted by name: read through an index, so a store of many secrets
    /// that never rotate on their own costs the scheduler nothing.
    ///
    /// [`SecretKind::scheduled`]: keyshift_core::SecretKind::scheduled
    async fn list_scheduled(&self) -> Result<Vec<SecretRecord>, StoreError>;

    /// Replaces a secret's policy. [`StoreError::NotFound`] if missing.
    async fn update_policy(&self, name: &SecretName, policy: &Policy) -> Result<(), StoreError>;

    /// Deletes a secret with its versions, labels, consumers and usage
    /// windows; emits `SecretDeleted`.
    ///
    /// [`StoreError::RotationActive`] if a rotation of it has not ended.
    async fn delete_secret(&self, name: &SecretName, now: Timestamp) -> Result<(), StoreError>;

    /// Adds a version. If `rotation` is Some and that rotation already
    /// created a version of this secret, returns that version's number and
    /// changes nothing (idempotent Generate). Otherwise allocates max+1,
    /// encrypts, stores, points `labels` at it (atomically, same
    /// transaction), emits `VersionAdded`.
    async fn add_version(
        &self,
        name: &SecretName,
        value: &SecretValue,
        state: VersionState,
        rotation: Option<&RotationId>,
        labels: &[Label],
        now: Timestamp,
    ) -> Result<VersionNumber, StoreError>;

    /// A version and its decrypted value.
    ///
    /// [`StoreError::NotFound`] if the secret, label or number is missing;
    /// [`StoreError::Decrypt`] if the ciphertext does not open.
    async fn get_value(
        &self,
        name: &SecretName,
        sel: &VersionSelector,
    ) -> Result<(VersionRecord, SecretValue), StoreError>;

    /// A secret's versions, ascending by number.
    async fn list_versions(&self, name: &SecretName) -> Result<Vec<VersionRecord>, StoreError>;

    /// Sets a version's state; emits `VersionState`. A no-op (no event) if
    /// it is already in that state.
    async fn set_version_state(
        &self,
        name: &SecretName,
        number: VersionNumber,
        state: VersionState,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Atomically applies label moves: `Some(v)` points the label at `v`
    /// (which must exist), `None` removes the label. Emits one
    /// `LabelsMoved` event, only if something changed.
    async fn move_labels(
        &self,
        name: &SecretName,
        moves: &[(Label, Option<VersionNumber>)],
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Versions in state Active, with values, ascending.
    async fn accepted(
        &self,
        name: &SecretName,
    ) -> Result<Vec<(VersionRecord, SecretValue)>, StoreError>;

    /// Inserts a rotation.
    ///
    /// The same id already stored gives `Ok(Existing(stored))`. Another
    /// rotation of the same secret that has not ended gives
    /// [`StoreError::RotationActive`] with that rotation's id, enforced by a
    /// unique partial index so concurrent callers and several replicas are
    /// safe (invariant I3). [`StoreError::NotFound`] if the secret is missing.
    async fn create_rotation(&self, rotation: &Rotation) -> Result<CreateRotation, StoreError>;

    /// Overwrites the stored state of `rotation.id`, its active flag
    /// (= not terminal) and its update time. [`StoreError::NotFound`] if missing.
    async fn save_rotation(&self, rotation: &Rotation) -> Result<(), StoreError>;

    /// Takes or renews the lease on rotation `id` for replica `owner`,
    /// until `until`: it succeeds when the rotation is active and its lease
    /// is free, expired at `now`, or `owner`'s already. Returns whether
    /// `owner` holds it now. [`StoreError::NotFound`] if missing.
    async fn lease_rotation(
        &self,
        id: &RotationId,
        owner: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Gives up `owner`'s lease on `id` (nothing when it holds none), so
    /// another replica need not wait for it to expire.
    async fn release_rotation(&self, id: &RotationId, owner: &str) -> Result<(), StoreError>;

    /// The active rotations `owner` may lease at `now`: their lease is
    /// free, expired, or `owner`'s (from an earlier life of the same
    /// replica), oldest first.
    async fn leasable_rotations(
        &self,
        owner: &str,
        now: Timestamp,
    ) -> Result<Vec<Rotation>, StoreError>;

    /// [`save_rotation`](Self::save_rotation), only while replica `owner`
    /// holds the rotation's lease; a rotation that ends gives its lease
    /// up. [`StoreError::LeaseLost`] (nothing written) when another holds
    /// it, or none does.
    async fn save_leased_rotation(
        &self,
        rotation: &Rotation,
        owner: &str,
    ) -> Result<(), StoreError>;

    /// A rotation by id. [`StoreError::NotFound`] if missing.
    async fn get_rotation(&self, id: &RotationId) -> Result<Rotation, StoreError>;

    /// Rotations matching `filter`, newest first.
    async fn list_rotations(&self, filter: &RotationFilter) -> Result<Vec<Rotation>, StoreError>;

    /// Events with id > `after`, oldest first, at most `limit`, only for
    /// secrets matching one of `patterns` ([`SecretName::matches`]
    /// semantics: `*` all, `prefix*` prefix, else exact).
    async fn events_since(
        &self,
        after: i64,
        patterns: &[String],
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError>;

    /// The id of the newest committed event (of any secret), 0 if none: a
    /// watcher that starts now reads [`events_since`](Store::events_since)
    /// this id.
    async fn latest_event_id(&self) -> Result<i64, StoreError>;

    /// Every event committed by this store instance is sent here after its
    /// transaction commits.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<EventRecord>;

    /// Records a consumer's heartbeat: for each `(secret, version)` it
    /// holds, upserts the row of (secret, `consumer_id`) with that version,
    /// `host`, `process`, `interval` (how often it says it sends
    /// heartbeats) and `last_seen = now`; `first_seen` is set on insert
    /// only. A secret named twice keeps its last holding. One
    /// transaction, no event.
    ///
    /// [`StoreError::NotFound`] if any named secret does not exist; then
    /// nothing is written.
    async fn record_heartbeat(
        &self,
        consumer_id: &str,
        host: Option<&str>,
        process: Option<&str>,
        interval: Option<std::time::Duration>,
        holds: &[(SecretName, Option<VersionNumber>)],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let beat = HeartbeatRecord {
            consumer_id: consumer_id.to_owned(),
            host: host.map(str::to_owned),
            process: process.map(str::to_owned),
            interval,
            holds: holds.to_vec(),
        };
        match self
            .record_heartbeats(std::slice::from_ref(&beat), now)
            .await?
            .pop()
        {
            Some(Some(missing)) => Err(StoreError::NotFound {
                what: "secret",
                name: missing.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// Records several consumers' heartbeats in one transaction, each as
    /// [`record_heartbeat`](Self::record_heartbeat) would, all at `now`;
    /// where two name the same consumer and secret, the later one wins. A
    /// heartbeat naming a secret that does not exist is not written at
    /// all; the others are. Returns, for each heartbeat in order, `None`
    /// when it was written, or the first missing secret it names.
    async fn record_heartbeats(
        &self,
        beats: &[HeartbeatRecord],
        now: Timestamp,
    ) -> Result<Vec<Option<SecretName>>, StoreError>;

    /// The consumers of `name`, sorted by consumer id.
    /// [`StoreError::NotFound`] if the secret is missing.
    async fn list_consumers(&self, name: &SecretName) -> Result<Vec<ConsumerRecord>, StoreError>;

    /// Adds each `(secret, version, count)` into the secret's window of
    /// `now` for that version (the minute `now` falls in, UTC), creating
    /// it if needed, and moves the window's `last_at` up to `now`. Counts are stored as i64 and saturate at `i64::MAX`;
    /// zero counts write nothing. One transaction, no event.
    ///
    /// [`StoreError::NotFound`] if any named secret does not exist (zero
    /// counts included); then nothing is written.
    async fn record_usage(
        &self,
        counts: &[(SecretName, VersionNumber, u64)],
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// The usage windows of `name` that start at or after the minute
    /// `since` falls in, oldest first, then by version.
    /// [`StoreError::NotFound`] if the secret is missing.
    async fn usage_since(
        &self,
        name: &SecretName,
        since: Timestamp,
    ) -> Result<Vec<UsageWindowRecord>, StoreError>;

    /// Adds each `(secret, version, count)` to what `consumer_id` has
    /// reported against that version, creating the row if needed (its
    /// `first_at` is then `now`), and sets its `last_at` to `now`. Counts
    /// saturate at `i64::MAX`; zero counts write nothing. One transaction,
    /// no event.
    ///
    /// [`StoreError::NotFound`] if any named secret does not exist; then
    /// nothing is written.
    async fn record_failures(
        &self,
        consumer_id: &str,
        failures: &[(SecretName, VersionNumber, u64)],
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// The failure reports against `version` of `name`, one per consumer,
    /// sorted by consumer id. [`StoreError::NotFound`] if the secret is
    /// missing.
    async fn list_failures(
        &self,
        name: &SecretName,
        version: VersionNumber,
    ) -> Result<Vec<FailureRecord>, StoreError>;

    /// Housekeeping: deletes consumer rows with `last_seen < older_than`,
    /// usage windows with `window_start < older_than` and failure reports
    /// with `last_at < older_than`, of every secret, in one transaction.
    /// Returns how many rows went.
    async fn prune(&self, older_than: Timestamp) -> Result<u64, StoreError>;

    /// Appends to the audit log (which is never updated nor deleted from).
    async fn append_audit(&self, entry: &NewAudit) -> Result<(), StoreError>;

    /// Audit entries, of one secret or all, newest first, at most `limit`.
    async fn list_audit(
        &self,
        secret: Option<&SecretName>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError>;

    /// Stores a token. [`StoreError::AlreadyExists`] if the id is taken.
    async fn create_token(&self, token: &TokenRecord) -> Result<(), StoreError>;

    /// A token by id, if stored.
    async fn get_token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError>;

    /// Whether the database answers a trivial query.
    async fn health(&self) -> Result<(), StoreError>;
}
