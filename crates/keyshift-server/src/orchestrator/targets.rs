//! Which target enforces a secret, built from its kind and stored config.

use keyshift_core::{SecretKind, SecretName, SecretValue};
use keyshift_store::{SecretRecord, Store, StoreError, VersionSelector};
use keyshift_targets::{AdminCredential, RedisConfig, RedisTarget, Target, TargetError, Verdict};

use super::steps::StepFailure;
use crate::error::ApiError;

/// Checks a secret's target config for its kind, returning what to store.
///
/// # Errors
///
/// 400 naming what is wrong.
pub fn validate_target(
    kind: SecretKind,
    target: serde_json::Value,
) -> Result<serde_json::Value, ApiError> {
    match kind {
        SecretKind::Redis => {
            let config: RedisConfig = serde_json::from_value(target).map_err(|e| {
                ApiError::BadRequest(format!(
                    "invalid redis target (expected {{\"address\",\"user\",\"admin_secret\"?}}): {e}"
                ))
            })?;
            config
                .validate()
                .map_err(|e| ApiError::BadRequest(format!("invalid redis target: {e}")))?;
            if let Some(admin) = &config.admin_secret {
                SecretName::new(admin).map_err(|e| {
                    ApiError::BadRequest(format!("invalid redis target admin_secret: {e}"))
                })?;
            }
            serde_json::to_value(config).map_err(|e| ApiError::internal("target config", &e))
        }
        SecretKind::ApiKey | SecretKind::Static => match target {
            serde_json::Value::Null => Ok(serde_json::Value::Null),
            serde_json::Value::Object(o) if o.is_empty() => Ok(serde_json::Value::Null),
            _ => Err(ApiError::BadRequest(format!(
                "secrets of kind {kind} take no target config"
            ))),
        },
        _ => Err(ApiError::BadRequest(format!(
            "secrets of kind {kind} are not supported yet"
        ))),
    }
}

/// The target of `secret`, with its admin credential read from the store.
pub(super) async fn target_for<'a>(
    store: &'a dyn Store,
    secret: &SecretRecord,
) -> Result<Box<dyn Target + 'a>, StepFailure> {
    match secret.kind {
        SecretKind::ApiKey | SecretKind::Static => Ok(Box::new(Keyring {
            store,
            name: secret.name.clone(),
        })),
        SecretKind::Redis => {
            let config: RedisConfig =
                serde_json::from_value(secret.target.clone()).map_err(|e| {
                    StepFailure::from(TargetError::Config {
                        detail: e.to_string(),
                    })
                })?;
            let admin = match &config.admin_secret {
                Some(name) => {
                    let name = SecretName::new(name).map_err(|e| {
                        StepFailure::from(TargetError::Config {
                            detail: format!("admin_secret: {e}"),
                        })
                    })?;
                    let (_, value) = store
                        .get_value(
                            &name,
                            &VersionSelector::Label(keyshift_core::Label::Current),
                        )
                        .await?;
                    Some(AdminCredential::parse(&value)?)
                }
                None => None,
            };
            Ok(Box::new(RedisTarget::new(config, admin)?))
        }
        kind => Err(StepFailure::from(TargetError::Config {
            detail: format!("secrets of kind {kind} are not supported yet"),
        })),
    }
}

/// The `api-key` target: keyshift's own keyring. The accepted set in the
/// store *is* what verifiers enforce, so enabling and revoking happen
/// through the versions' states (set by the steps) and verifying checks the
/// accepted set, comparing in constant time.
struct Keyring<'a> {
    store: &'a dyn Store,
    name: SecretName,
}

fn store_err(e: StoreError) -> TargetError {
    if e.is_transient() {
        TargetError::Unreachable {
            target: "keyring".to_owned(),
            detail: e.to_string(),
        }
    } else {
        TargetError::Protocol {
            detail: e.to_string(),
        }
    }
}

#[async_trait::async_trait]
impl Target for Keyring<'_> {
    async fn precheck(&self, current: Option<&SecretValue>) -> Result<(), TargetError> {
        if let Some(current) = current {
            if self.verify(current).await? == Verdict::Refused {
                return Err(TargetError::Precondition {
                    detail: "the current key is not in the accepted set".to_owned(),
                });
            }
        }
        Ok(())
    }

    async fn enable(&self, _value: &SecretValue) -> Result<(), TargetError> {
        Ok(())
    }

    async fn revoke(&self, _value: &SecretValue) -> Result<(), TargetError> {
        Ok(())
    }

    async fn verify(&self, value: &SecretValue) -> Result<Verdict, TargetError> {
        let accepted = self.store.accepted(&self.name).await.map_err(store_err)?;
        // Check every entry, without stopping early, in constant time each.
        let found = accepted
            .iter()
            .fold(false, |found, (_, v)| found | v.ct_eq(value));
        Ok(if found {
            Verdict::Accepted
        } else {
            Verdict::Refused
        })
    }
}

/// Checks that the target of `secret` accepts `value` now, before a value
/// put by hand is labelled `current` (I1). Kinds whose target is the
/// keyring accept any value put in the store.
///
/// # Errors
///
/// 400 when the target refuses the value or cannot be asked (the message
/// says which, never the value).
pub async fn check_value_accepted(
    store: &dyn Store,
    secret: &SecretRecord,
    value: &SecretValue,
) -> Result<(), ApiError> {
    if !has_external_target(secret.kind) {
        return Ok(());
    }
    let target = target_for(store, secret).await.map_err(|f| {
        ApiError::BadRequest(format!(
            "cannot check the value against the target: {}",
            f.error
        ))
    })?;
    match target.verify(value).await {
        Ok(Verdict::Accepted) => Ok(()),
        Ok(Verdict::Refused) => Err(ApiError::BadRequest(format!(
            "the {} target refuses this value: put the credential it accepts now, or use `rotate` to change it",
            secret.kind
        ))),
        Err(e) => Err(ApiError::BadRequest(format!(
            "cannot check the value against the target: {e}"
        ))),
    }
}

/// Whether a system outside keyshift enforces secrets of `kind` (so a value
/// cannot be made up by keyshift without changing that system).
pub fn has_external_target(kind: SecretKind) -> bool {
    matches!(kind, SecretKind::Redis)
}

/// The secret names a target config reads values from (an admin
/// credential): the caller creating the config must be allowed to read them.
pub fn referenced_secrets(kind: SecretKind, target: &serde_json::Value) -> Vec<SecretName> {
    match kind {
        SecretKind::Redis => serde_json::from_value::<RedisConfig>(target.clone())
            .ok()
            .and_then(|c| c.admin_secret)
            .and_then(|n| SecretName::new(&n).ok())
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}
