//! Which target enforces a secret, built from its kind and stored config.
//!
//! ```text
//!  kind + target JSON ──validate_target──► ValidTarget ──stored──► SecretRecord
//!                                                                      │ target_for
//!  referenced secrets (admin credential, CA, HMAC key) ──current──►    ▼
//!                                                              Box<dyn Target>
//! ```
//!
//! Some configs name other secrets: a database's or Redis's admin
//! credential (`admin_secret`), an x509 leaf's CA (`ca_secret`), a
//! webhook's HMAC key (`hmac_secret`). [`references`] lists them per kind
//! and [`referenced_value`] reads their `current` value: one place each.

use std::time::SystemTime;

use keyshift_core::{Credential, Label, SecretKind, SecretName, SecretValue};
use keyshift_store::{SecretRecord, Store, StoreError, VersionSelector};
use keyshift_targets::{
    check_ca, new_ca, AdminCredential, MariaDbConfig, MariaDbTarget, PgConfig, PgTarget,
    PluginConfig, PluginTarget, RedisConfig, RedisTarget, Target, TargetError, Verdict,
    X509CaConfig, X509Config, X509Target,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::generate_value;
use super::steps::StepFailure;
use crate::error::ApiError;

/// A secret's target config, parsed and checked for its kind: what
/// `POST /v1/secrets` stores.
#[derive(Debug, Clone)]
pub struct ValidTarget {
    kind: SecretKind,
    json: serde_json::Value,
}

/// Checks a secret's target config for its kind.
///
/// # Errors
///
/// 400 naming the field that is wrong.
pub fn validate_target(
    kind: SecretKind,
    target: serde_json::Value,
) -> Result<ValidTarget, ApiError> {
    let json = match kind {
        SecretKind::Redis => checked::<RedisConfig>(
            kind,
            target,
            r#"{"address","user","admin_secret"?}"#,
            RedisConfig::validate,
        )?,
        SecretKind::Postgres => checked::<PgConfig>(
            kind,
            target,
            r#"{"address","group","database"?,"roles"?,"admin_secret"?}"#,
            PgConfig::validate,
        )?,
        SecretKind::MariaDb => checked::<MariaDbConfig>(
            kind,
            target,
            r#"{"address","user","host"?,"mode"?,"users"?,"admin_secret"?}"#,
            MariaDbConfig::validate,
        )?,
        SecretKind::X509 => checked::<X509Config>(
            kind,
            target,
            r#"{"ca_secret","names","lifetime"?,"renew_at"?}"#,
            X509Config::validate,
        )?,
        // A CA that is imported needs no config; one keyshift makes does.
        SecretKind::X509Ca if is_empty(&target) => serde_json::Value::Null,
        SecretKind::X509Ca => checked::<X509CaConfig>(
            kind,
            target,
            r#"{"common_name","lifetime"?}"#,
            X509CaConfig::validate,
        )?,
        SecretKind::Plugin => checked::<PluginConfig>(
            kind,
            target,
            r#"{"exec": {"program","args"?,"env"?,"timeout"?}} or {"webhook": {"url","hmac_secret","timeout"?}}"#,
            PluginConfig::validate,
        )?,
        SecretKind::ApiKey | SecretKind::Static if is_empty(&target) => serde_json::Value::Null,
        SecretKind::ApiKey | SecretKind::Static => {
            return Err(ApiError::BadRequest(format!(
                "secrets of kind {kind} take no target config"
            )))
        }
    };
    for (field, name) in references(kind, &json) {
        SecretName::new(&name).map_err(|e| {
            ApiError::BadRequest(format!("invalid {kind} target: {field} `{name}`: {e}"))
        })?;
    }
    Ok(ValidTarget { kind, json })
}

fn is_empty(target: &serde_json::Value) -> bool {
    match target {
        serde_json::Value::Null => true,
        serde_json::Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Parses `target` as `T`, validates it, and returns its normalized JSON
/// (defaults filled in).
fn checked<T: DeserializeOwned + Serialize>(
    kind: SecretKind,
    target: serde_json::Value,
    shape: &str,
    validate: impl Fn(&T) -> Result<(), TargetError>,
) -> Result<serde_json::Value, ApiError> {
    let config: T = serde_json::from_value(target).map_err(|e| {
        ApiError::BadRequest(format!("invalid {kind} target (expected {shape}): {e}"))
    })?;
    validate(&config).map_err(|e| {
        ApiError::BadRequest(format!("invalid {kind} target: {}", config_detail(&e)))
    })?;
    serde_json::to_value(config).map_err(|e| ApiError::internal("target config", &e))
}

/// A config error's own words, without the generic prefix.
fn config_detail(e: &TargetError) -> String {
    match e {
        TargetError::Config { detail } => detail.clone(),
        other => other.to_string(),
    }
}

impl ValidTarget {
    /// The kind the config was checked for.
    pub fn kind(&self) -> SecretKind {
        self.kind
    }

    /// The config as it is stored.
    pub fn json(&self) -> &serde_json::Value {
        &self.json
    }

    /// The secrets this config reads values from: the caller creating it
    /// must be allowed to administer them.
    pub fn referenced_secrets(&self) -> Vec<SecretName> {
        referenced_secrets(self.kind, &self.json)
    }

    /// The first value of the secret `name` when it is created without
    /// one: `Ok(None)` leaves it without versions (the first rotation makes
    /// one).
    ///
    /// - `x509`: a leaf issued now by the CA in `ca_secret`.
    /// - `x509-ca`: a new CA made from the config.
    /// - `api-key`, `static`: random, when `generate`.
    /// - Kinds enforced by another system (Redis, PostgreSQL, MariaDB,
    ///   plugins): none. A made-up value would be a `current` the target
    ///   refuses (I1); the first rotation creates the credential there
    ///   (for blue-green, the first slot role).
    ///
    /// # Errors
    ///
    /// 400 when the kind cannot be generated here or its target cannot make
    /// the value (saying why, never a value).
    pub async fn first_value(
        &self,
        store: &dyn Store,
        name: &SecretName,
        generate: bool,
    ) -> Result<Option<SecretValue>, ApiError> {
        let kind = self.kind;
        match kind {
            SecretKind::X509 => {
                let cannot = |e: &dyn std::fmt::Display| {
                    ApiError::BadRequest(format!("cannot issue the certificate: {e}"))
                };
                let target = build_target(store, kind, name, &self.json)
                    .await
                    .map_err(|f| cannot(&f.error))?;
                let leaf = target.generate(None).await.map_err(|e| cannot(&e))?;
                leaf.map(Some)
                    .ok_or_else(|| ApiError::internal("x509 target", &"issued no certificate"))
            }
            SecretKind::X509Ca if self.json.is_null() => Err(ApiError::BadRequest(
                "an x509-ca secret needs a PEM `value` to import, or a `target` with the \
                 `common_name` of a new CA"
                    .to_owned(),
            )),
            SecretKind::X509Ca => {
                let config: X509CaConfig = serde_json::from_value(self.json.clone())
                    .map_err(|e| ApiError::internal("x509-ca config", &e))?;
                new_ca(&config, SystemTime::now()).map(Some).map_err(|e| {
                    ApiError::BadRequest(format!("cannot make the CA: {}", config_detail(&e)))
                })
            }
            _ if !generate => Ok(None),
            _ if has_external_target(kind) => Err(ApiError::BadRequest(format!(
                "`generate` makes a value the {kind} target does not know: put the credential it accepts now, or give no value and `rotate` to create one"
            ))),
            _ => Ok(Some(generate_value(kind))),
        }
    }
}

/// The other secrets a target config of `kind` names, with the field that
/// names each: the one list of them.
fn references(kind: SecretKind, target: &serde_json::Value) -> Vec<(&'static str, String)> {
    fn config<T: DeserializeOwned>(target: &serde_json::Value) -> Option<T> {
        serde_json::from_value(target.clone()).ok()
    }
    let admin = |name: Option<String>| name.map(|n| ("admin_secret", n));
    let found = match kind {
        SecretKind::Redis => admin(config::<RedisConfig>(target).and_then(|c| c.admin_secret)),
        SecretKind::Postgres => admin(config::<PgConfig>(target).and_then(|c| c.admin_secret)),
        SecretKind::MariaDb => admin(config::<MariaDbConfig>(target).and_then(|c| c.admin_secret)),
        SecretKind::X509 => config::<X509Config>(target).map(|c| ("ca_secret", c.ca_secret)),
        SecretKind::Plugin => match config::<PluginConfig>(target) {
            Some(PluginConfig::Webhook(c)) => Some(("hmac_secret", c.hmac_secret)),
            _ => None,
        },
        SecretKind::ApiKey | SecretKind::Static | SecretKind::X509Ca => None,
    };
    found.into_iter().collect()
}

/// The secret names a target config reads values from (an admin
/// credential, a CA, an HMAC key): the caller creating the config must be
/// allowed to administer them.
pub fn referenced_secrets(kind: SecretKind, target: &serde_json::Value) -> Vec<SecretName> {
    references(kind, target)
        .into_iter()
        .filter_map(|(_, n)| SecretName::new(&n).ok())
        .collect()
}

fn config_failure(detail: impl Into<String>) -> StepFailure {
    StepFailure::from(TargetError::Config {
        detail: detail.into(),
    })
}

/// The `current` value of the secret `name`, which a target config names
/// in `field`.
async fn referenced_value(
    store: &dyn Store,
    field: &str,
    name: &str,
) -> Result<SecretValue, StepFailure> {
    let parsed = SecretName::new(name).map_err(|e| config_failure(format!("{field}: {e}")))?;
    match store
        .get_value(&parsed, &VersionSelector::Label(Label::Current))
        .await
    {
        Ok((_, value)) => Ok(value),
        Err(StoreError::NotFound { .. }) => Err(StepFailure::from(TargetError::Precondition {
            detail: format!("{field} names secret {name}, which has no current value"),
        })),
        Err(e) => Err(e.into()),
    }
}

/// [`referenced_value`] of an optional reference.
async fn optional_value(
    store: &dyn Store,
    field: &str,
    name: Option<&str>,
) -> Result<Option<SecretValue>, StepFailure> {
    match name {
        Some(name) => referenced_value(store, field, name).await.map(Some),
        None => Ok(None),
    }
}

/// A database admin credential: the JSON `{"username", "password"}`.
fn database_admin(value: &SecretValue) -> Result<Credential, StepFailure> {
    Credential::parse(value).map_err(|e| config_failure(format!("admin_secret: {e}")))
}

/// Deserializes a stored config (checked when it was stored).
fn stored<T: DeserializeOwned>(
    kind: SecretKind,
    target: &serde_json::Value,
) -> Result<T, StepFailure> {
    serde_json::from_value(target.clone())
        .map_err(|e| config_failure(format!("stored {kind} target config: {e}")))
}

/// The target of `secret`, with the secrets its config names read from the
/// store.
pub(super) async fn target_for<'a>(
    store: &'a dyn Store,
    secret: &SecretRecord,
) -> Result<Box<dyn Target + 'a>, StepFailure> {
    build_target(store, secret.kind, &secret.name, &secret.target).await
}

async fn build_target<'a>(
    store: &'a dyn Store,
    kind: SecretKind,
    name: &SecretName,
    target: &serde_json::Value,
) -> Result<Box<dyn Target + 'a>, StepFailure> {
    Ok(match kind {
        SecretKind::ApiKey | SecretKind::Static => Box::new(Keyring {
            store,
            name: name.clone(),
        }),
        SecretKind::Redis => {
            let config: RedisConfig = stored(kind, target)?;
            let admin = optional_value(store, "admin_secret", config.admin_secret.as_deref())
                .await?
                .map(|v| AdminCredential::parse(&v))
                .transpose()?;
            Box::new(RedisTarget::new(config, admin)?)
        }
        SecretKind::Postgres => {
            let config: PgConfig = stored(kind, target)?;
            let admin = optional_value(store, "admin_secret", config.admin_secret.as_deref())
                .await?
                .map(|v| database_admin(&v))
                .transpose()?;
            Box::new(PgTarget::new(config, admin)?)
        }
        SecretKind::MariaDb => {
            let config: MariaDbConfig = stored(kind, target)?;
            let admin = optional_value(store, "admin_secret", config.admin_secret.as_deref())
                .await?
                .map(|v| database_admin(&v))
                .transpose()?
                .map(|c| AdminCredential {
                    username: c.username().to_owned(),
                    password: c.password().clone(),
                });
            Box::new(MariaDbTarget::new(config, admin)?)
        }
        SecretKind::X509 => {
            let config: X509Config = stored(kind, target)?;
            let ca = referenced_value(store, "ca_secret", &config.ca_secret).await?;
            Box::new(X509Target::new(config, ca)?)
        }
        SecretKind::Plugin => {
            let config: PluginConfig = stored(kind, target)?;
            let key = match &config {
                PluginConfig::Webhook(c) => {
                    Some(referenced_value(store, "hmac_secret", &c.hmac_secret).await?)
                }
                PluginConfig::Exec(_) => None,
            };
            Box::new(PluginTarget::new(config, key)?.with_secret(name.clone()))
        }
        SecretKind::X509Ca => {
            return Err(config_failure(
                "x509-ca secrets have no target: a CA is not rotated",
            ))
        }
    })
}

/// Whether revoking a value makes the target refuse it, so that the steps
/// can check it. Not for `x509`: a leaf stays valid for whoever trusts its
/// CA until it expires; it is revoked by no longer being served.
pub(super) fn refusal_observable(kind: SecretKind) -> bool {
    !matches!(kind, SecretKind::X509)
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

/// Checks a value put by hand before it is labelled `current` (I1): the
/// target of `secret` accepts it now, and a rotation can start from it
/// (the target's precheck: e.g. the value's user is a blue-green slot). An
/// `x509-ca` value must be a usable CA. Kinds whose target is the keyring
/// accept any value put in the store.
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
    if secret.kind == SecretKind::X509Ca {
        return check_ca(value)
            .map_err(|e| ApiError::BadRequest(format!("not a usable CA: {}", config_detail(&e))));
    }
    if !has_external_target(secret.kind) {
        return Ok(());
    }
    let cannot = |e: &dyn std::fmt::Display| {
        ApiError::BadRequest(format!("cannot check the value against the target: {e}"))
    };
    let target = target_for(store, secret)
        .await
        .map_err(|f| cannot(&f.error))?;
    match target.verify(value).await {
        Ok(Verdict::Accepted) => {}
        Ok(Verdict::Refused) => {
            return Err(ApiError::BadRequest(format!(
                "the {} target refuses this value: put the credential it accepts now, or use `rotate` to change it",
                secret.kind
            )))
        }
        Err(e) => return Err(cannot(&e)),
    }
    target.precheck(Some(value)).await.map_err(|e| {
        ApiError::BadRequest(format!(
            "the {} target accepts this value but cannot rotate from it: {e}",
            secret.kind
        ))
    })
}

/// Whether a system outside keyshift decides which values are valid (so a
/// value cannot be made up without changing that system, and a value put
/// by hand is checked against it): Redis, PostgreSQL, MariaDB, plugins, and
/// x509 leaves (which must chain to their CA).
pub fn has_external_target(kind: SecretKind) -> bool {
    matches!(
        kind,
        SecretKind::Redis
            | SecretKind::Postgres
            | SecretKind::MariaDb
            | SecretKind::Plugin
            | SecretKind::X509
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn configs_are_normalized_and_their_references_listed() {
        let pg = validate_target(
            SecretKind::Postgres,
            json!({"address": "db", "group": "app", "admin_secret": "ops/pg"}),
        )
        .unwrap();
        assert_eq!(pg.json()["database"], "postgres", "defaults filled in");
        assert_eq!(
            pg.referenced_secrets(),
            [SecretName::new("ops/pg").unwrap()]
        );
        let leaf = validate_target(
            SecretKind::X509,
            json!({"ca_secret": "tls/ca", "names": ["a.test"]}),
        )
        .unwrap();
        assert_eq!(
            references(SecretKind::X509, leaf.json()),
            [("ca_secret", "tls/ca".to_owned())]
        );
        let hook = json!({"webhook": {"url": "https://h.test/k", "hmac_secret": "k/h"}});
        let hook = validate_target(SecretKind::Plugin, hook).unwrap();
        assert_eq!(
            references(SecretKind::Plugin, hook.json())[0].0,
            "hmac_secret"
        );
        let exec = json!({"exec": {"program": "/bin/true"}});
        assert!(validate_target(SecretKind::Plugin, exec)
            .unwrap()
            .referenced_secrets()
            .is_empty());
    }

    #[test]
    fn an_imported_ca_needs_no_config_and_keyring_kinds_take_none() {
        for empty in [serde_json::Value::Null, json!({})] {
            let ca = validate_target(SecretKind::X509Ca, empty.clone()).unwrap();
            assert!(ca.json().is_null());
            assert!(validate_target(SecretKind::ApiKey, empty)
                .unwrap()
                .json()
                .is_null());
        }
        assert!(validate_target(SecretKind::Static, json!({"a": 1})).is_err());
        let e = validate_target(SecretKind::MariaDb, json!({"address": "db", "user": "a-b"}));
        assert!(matches!(e, Err(ApiError::BadRequest(m)) if m.contains("user")));
    }

    #[test]
    fn only_x509_leaves_stay_valid_after_revoke() {
        for kind in SecretKind::ALL {
            assert_eq!(refusal_observable(kind), kind != SecretKind::X509, "{kind}");
        }
    }
}
