//! [`Store`] for [`SqlStore`]: each method delegates to its module.

use keyshift_core::rotation::{Rotation, RotationId};
use keyshift_core::{
    Label, Policy, SecretKind, SecretName, SecretValue, Timestamp, VersionNumber, VersionState,
};

use super::SqlStore;
use crate::error::StoreError;
use crate::model::{
    AuditEntry, ConsumerRecord, CreateRotation, EventRecord, FailureRecord, HeartbeatRecord,
    NewAudit, RotationFilter, SecretRecord, TokenRecord, UsageWindowRecord, VersionRecord,
    VersionSelector,
};
use crate::store::Store;

#[async_trait::async_trait]
impl Store for SqlStore {
    async fn create_secret(
        &self,
        name: &SecretName,
        kind: SecretKind,
        policy: &Policy,
        target: &serde_json::Value,
        now: Timestamp,
    ) -> Result<SecretRecord, StoreError> {
        self.create_secret_impl(name, kind, policy, target, now)
            .await
    }

    async fn get_secret(&self, name: &SecretName) -> Result<SecretRecord, StoreError> {
        self.get_secret_impl(name).await
    }

    async fn list_secrets(&self, prefix: Option<&str>) -> Result<Vec<SecretRecord>, StoreError> {
        self.list_secrets_impl(prefix, false).await
    }

    async fn list_scheduled(&self) -> Result<Vec<SecretRecord>, StoreError> {
        self.list_secrets_impl(None, true).await
    }

    async fn update_policy(&self, name: &SecretName, policy: &Policy) -> Result<(), StoreError> {
        self.update_policy_impl(name, policy).await
    }

    async fn delete_secret(&self, name: &SecretName, now: Timestamp) -> Result<(), StoreError> {
        self.delete_secret_impl(name, now).await
    }

    async fn add_version(
        &self,
        name: &SecretName,
        value: &SecretValue,
        state: VersionState,
        rotation: Option<&RotationId>,
        labels: &[Label],
        now: Timestamp,
    ) -> Result<VersionNumber, StoreError> {
        self.add_version_impl(name, value, state, rotation, labels, now)
            .await
    }

    async fn get_value(
        &self,
        name: &SecretName,
        sel: &VersionSelector,
    ) -> Result<(VersionRecord, SecretValue), StoreError> {
        self.get_value_impl(name, sel).await
    }

    async fn list_versions(&self, name: &SecretName) -> Result<Vec<VersionRecord>, StoreError> {
        self.list_versions_impl(name).await
    }

    async fn set_version_state(
        &self,
        name: &SecretName,
        number: VersionNumber,
        state: VersionState,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.set_version_state_impl(name, number, state, now).await
    }

    async fn move_labels(
        &self,
        name: &SecretName,
        moves: &[(Label, Option<VersionNumber>)],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.move_labels_impl(name, moves, now).await
    }

    async fn accepted(
        &self,
        name: &SecretName,
    ) -> Result<Vec<(VersionRecord, SecretValue)>, StoreError> {
        self.accepted_impl(name).await
    }

    async fn create_rotation(&self, rotation: &Rotation) -> Result<CreateRotation, StoreError> {
        self.create_rotation_impl(rotation).await
    }

    async fn save_rotation(&self, rotation: &Rotation) -> Result<(), StoreError> {
        self.save_rotation_impl(rotation).await
    }

    async fn lease_rotation(
        &self,
        id: &RotationId,
        owner: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        self.lease_rotation_impl(id, owner, now, until).await
    }

    async fn release_rotation(&self, id: &RotationId, owner: &str) -> Result<(), StoreError> {
        self.release_rotation_impl(id, owner).await
    }

    async fn leasable_rotations(
        &self,
        owner: &str,
        now: Timestamp,
    ) -> Result<Vec<Rotation>, StoreError> {
        self.leasable_rotations_impl(owner, now).await
    }

    async fn save_leased_rotation(
        &self,
        rotation: &Rotation,
        owner: &str,
    ) -> Result<(), StoreError> {
        self.save_rotation_as(rotation, Some(owner)).await
    }

    async fn get_rotation(&self, id: &RotationId) -> Result<Rotation, StoreError> {
        self.get_rotation_impl(id).await
    }

    async fn list_rotations(&self, filter: &RotationFilter) -> Result<Vec<Rotation>, StoreError> {
        self.list_rotations_impl(filter).await
    }

    async fn events_since(
        &self,
        after: i64,
        patterns: &[String],
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.events_since_impl(after, patterns, limit).await
    }

    async fn latest_event_id(&self) -> Result<i64, StoreError> {
        self.latest_event_id_impl().await
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<EventRecord> {
        self.feed.events.subscribe()
    }

    async fn record_heartbeats(
        &self,
        beats: &[HeartbeatRecord],
        now: Timestamp,
    ) -> Result<Vec<Option<SecretName>>, StoreError> {
        self.record_heartbeats_impl(beats, now).await
    }

    async fn list_consumers(&self, name: &SecretName) -> Result<Vec<ConsumerRecord>, StoreError> {
        self.list_consumers_impl(name).await
    }

    async fn record_usage(
        &self,
        counts: &[(SecretName, VersionNumber, u64)],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.record_usage_impl(counts, now).await
    }

    async fn usage_since(
        &self,
        name: &SecretName,
        since: Timestamp,
    ) -> Result<Vec<UsageWindowRecord>, StoreError> {
        self.usage_since_impl(name, since).await
    }

    async fn record_failures(
        &self,
        consumer_id: &str,
        failures: &[(SecretName, VersionNumber, u64)],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.record_failures_impl(consumer_id, failures, now).await
    }

    async fn list_failures(
        &self,
        name: &SecretName,
        version: VersionNumber,
    ) -> Result<Vec<FailureRecord>, StoreError> {
        self.list_failures_impl(name, version).await
    }

    async fn prune(&self, older_than: Timestamp) -> Result<u64, StoreError> {
        self.prune_impl(older_than).await
    }

    async fn append_audit(&self, entry: &NewAudit) -> Result<(), StoreError> {
        self.append_audit_impl(entry).await
    }

    async fn list_audit(
        &self,
        secret: Option<&SecretName>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.list_audit_impl(secret, limit).await
    }

    async fn create_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        self.create_token_impl(token).await
    }

    async fn get_token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.get_token_impl(id).await
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.health_impl().await
    }
}
