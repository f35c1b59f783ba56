//! `/v1/secrets`, `/v1/audit`, `/v1/tokens`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keyshift_core::api::{
    AcceptedSet, AddVersion, CreateSecret, CreateToken, Scope, SecretInfo, SecretList,
    SecretVersion, StartRotation, TokenCreated, VersionAdded, VersionInfo, VersionList,
};
use keyshift_core::rotation::{Phase, Rotation};
use keyshift_core::{
    in_canary, Label, Policy, SecretKind, SecretName, SecretValue, VersionNumber, VersionState,
};
use keyshift_store::{NewAudit, RotationFilter, SecretRecord, VersionRecord, VersionSelector};
use serde::Deserialize;

use super::body::{ApiPath, ApiQuery, RawBody};
use super::consumers;
use super::{body, split_method, unknown_method, ApiJson};
use crate::auth::{self, Caller};
use crate::error::ApiError;
use crate::orchestrator::{
    check_strategy, check_value_accepted, generate_value, has_external_target, validate_target,
};
use crate::state::{now, AppState};

fn parse_name(s: &str) -> Result<SecretName, ApiError> {
    SecretName::new(s).map_err(|e| ApiError::BadRequest(e.to_string()))
}

pub(crate) fn info(r: SecretRecord) -> SecretInfo {
    SecretInfo {
        name: r.name,
        kind: r.kind,
        policy: r.policy,
        target: r.target,
        labels: r.labels,
        created_at: r.created_at,
    }
}

fn version_info(v: VersionRecord) -> VersionInfo {
    VersionInfo {
        version: v.number,
        state: v.state,
        labels: v.labels,
        created_at: v.created_at,
        rotation: v.rotation,
    }
}

fn audit(
    caller: &Caller,
    action: &str,
    secret: &SecretName,
    version: Option<VersionNumber>,
) -> NewAudit {
    NewAudit {
        actor: caller.actor(),
        action: action.to_owned(),
        secret: Some(secret.clone()),
        version,
        rotation: None,
        outcome: "ok".to_owned(),
        detail: None,
        at: now(),
    }
}

/// The value of a put: given or generated, checked against the kind.
fn value_for(
    kind: SecretKind,
    value: Option<SecretValue>,
    generate: bool,
) -> Result<Option<SecretValue>, ApiError> {
    let value = match (value, generate) {
        (Some(_), true) => {
            return Err(ApiError::BadRequest(
                "give either `value` or `generate`, not both".to_owned(),
            ))
        }
        (Some(v), false) => v,
        (None, true) if has_external_target(kind) || kind.target_generates() => {
            return Err(ApiError::BadRequest(format!(
                "`generate` makes a value the {kind} target does not know: put the value it accepts now, or `rotate` to have the target make one"
            )))
        }
        (None, true) => generate_value(kind),
        (None, false) => return Ok(None),
    };
    kind.validate(&value)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(Some(value))
}

/// `POST /v1/secrets`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateSecret>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Admin, &req.name)?;
    check_policy(&caller, req.kind, &req.policy)?;
    let target = validate_target(req.kind, req.target)?;
    // The target config reads other secrets (an admin credential, a CA):
    // the caller must be allowed to administer them, or it could exfiltrate
    // them through a target it controls.
    for referenced in target.referenced_secrets() {
        caller.require(Scope::Admin, &referenced)?;
    }
    let record = SecretRecord {
        name: req.name.clone(),
        kind: req.kind,
        policy: req.policy.clone(),
        target: target.json().clone(),
        created_at: now(),
        labels: Default::default(),
    };
    let value = match (req.value, req.generate) {
        (Some(_), true) => {
            return Err(ApiError::BadRequest(
                "give either `value` or `generate`, not both".to_owned(),
            ))
        }
        (Some(value), false) => {
            req.kind
                .validate(&value)
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
            check_value_accepted(state.store.as_ref(), &record, &value).await?;
            Some(value)
        }
        // Made by keyshift or its target (a certificate, a CA), or left for
        // the first rotation to create.
        (None, generate) => {
            let value = target
                .first_value(state.store.as_ref(), &req.name, generate)
                .await?;
            if let Some(value) = &value {
                req.kind
                    .validate(value)
                    .map_err(|e| ApiError::internal("first value", &e))?;
            }
            value
        }
    };
    let t = record.created_at;
    state
        .store
        .create_secret(&req.name, req.kind, &req.policy, &record.target, t)
        .await?;
    let mut version = None;
    if let Some(value) = value {
        version = Some(
            state
                .store
                .add_version(
                    &req.name,
                    &value,
                    VersionState::Active,
                    None,
                    &[Label::Current],
                    t,
                )
                .await?,
        );
    }
    state
        .audit(audit(&caller, "secret.create", &req.name, version))
        .await;
    let record = state.store.get_secret(&req.name).await?;
    Ok((StatusCode::CREATED, Json(info(record))).into_response())
}

#[derive(Deserialize)]
pub struct ListQuery {
    prefix: Option<String>,
}

/// `GET /v1/secrets`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<SecretList>, ApiError> {
    caller.require_scope(Scope::Read)?;
    let secrets = state
        .store
        .list_secrets(q.prefix.as_deref())
        .await?
        .into_iter()
        .filter(|s| caller.can(Scope::Read, &s.name))
        .map(info)
        .collect();
    Ok(Json(SecretList { secrets }))
}

#[derive(Deserialize)]
pub struct ValueQuery {
    label: Option<String>,
    version: Option<u64>,
    since: Option<String>,
    /// Who reads `current`: a `canary` rotation answers its new version
    /// to the consumers in its share.
    consumer: Option<String>,
}

/// `GET /v1/secrets/{name}[:value|:versions|:accepted]`.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): ApiPath,
    ApiQuery(q): ApiQuery<ValueQuery>,
) -> Result<Response, ApiError> {
    let (name, method) = split_method(&path);
    let name = parse_name(name)?;
    caller.require(Scope::Read, &name)?;
    let store = &state.store;
    match method {
        None => Ok(Json(info(store.get_secret(&name).await?)).into_response()),
        Some("value") => {
            let selector = match (q.label, q.version) {
                (Some(_), Some(_)) => {
                    return Err(ApiError::BadRequest(
                        "give either `label` or `version`, not both".to_owned(),
                    ))
                }
                (_, Some(n)) if i64::try_from(n).is_err() => {
                    return Err(ApiError::BadRequest(format!(
                        "no version {n}: versions are at most {}",
                        i64::MAX
                    )))
                }
                (_, Some(n)) => VersionSelector::Number(VersionNumber(n)),
                (Some(l), None) => VersionSelector::Label(
                    l.parse::<Label>()
                        .map_err(|e| ApiError::BadRequest(e.to_string()))?,
                ),
                (None, None) => VersionSelector::Label(Label::Current),
            };
            let selector = match (&q.consumer, selector) {
                (Some(consumer), VersionSelector::Label(Label::Current)) => {
                    current_for(&state, &name, consumer).await?
                }
                (_, selector) => selector,
            };
            let (version, value) = state.cache.value(store.as_ref(), &name, &selector).await?;
            Ok(Json(SecretVersion {
                name,
                info: version_info(version),
                value,
            })
            .into_response())
        }
        Some("versions") => {
            let versions = store
                .list_versions(&name)
                .await?
                .into_iter()
                .map(version_info)
                .collect();
            Ok(Json(VersionList { name, versions }).into_response())
        }
        Some("accepted") => {
            let versions = store
                .accepted(&name)
                .await?
                .into_iter()
                .map(|(v, value)| SecretVersion {
                    name: name.clone(),
                    info: version_info(v),
                    value,
                })
                .collect();
            let overlap = overlap_of(&state, &name).await?;
            Ok(Json(AcceptedSet {
                name,
                versions,
                deprecated_since: overlap.as_ref().and_then(Rotation::promoted_at),
                sunset: overlap.as_ref().and_then(Rotation::overlap_timeout),
            })
            .into_response())
        }
        Some("consumers") => Ok(consumers::list(&state, name).await?.into_response()),
        Some("usage") => Ok(consumers::usage(&state, name, q.since.as_deref())
            .await?
            .into_response()),
        Some(m) => Err(unknown_method(m)),
    }
}

/// The rotation of `name` in its overlap, if any.
async fn overlap_of(state: &AppState, name: &SecretName) -> Result<Option<Rotation>, ApiError> {
    let filter = RotationFilter {
        secret: Some(name.clone()),
        active_only: true,
        since: None,
        limit: 1,
    };
    let mut active = state.store.list_rotations(&filter).await?;
    Ok(active.pop().filter(|r| r.phase == Phase::Overlap))
}

/// The version `consumer` is to use as `current`: the canary's when a
/// `canary` rotation labelled one and the consumer is in its share.
async fn current_for(
    state: &AppState,
    name: &SecretName,
    consumer: &str,
) -> Result<VersionSelector, ApiError> {
    consumers::check_consumer_id(consumer)?;
    let secret = state.store.get_secret(name).await?;
    Ok(match secret.labels.get(&Label::Canary) {
        Some(&v) if in_canary(name, consumer, secret.policy.canary_share) => {
            VersionSelector::Number(v)
        }
        _ => VersionSelector::Label(Label::Current),
    })
}

/// `POST /v1/secrets/{name}:versions` and `:rotate`.
pub async fn post(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): ApiPath,
    RawBody(raw): RawBody,
) -> Result<Response, ApiError> {
    let (name, method) = split_method(&path);
    let name = parse_name(name)?;
    match method {
        Some("versions") => {
            caller.require(Scope::Admin, &name)?;
            let req: AddVersion = body::parse(&raw)?;
            add_version(&state, &caller, name, req).await
        }
        Some("rotate") => {
            caller.require(Scope::Rotate, &name)?;
            let req: StartRotation = if raw.is_empty() {
                StartRotation::default()
            } else {
                body::parse(&raw)?
            };
            let (rotation, created) = state
                .orchestrator
                .start(&name, req, &caller.actor())
                .await?;
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((
                status,
                Json(keyshift_core::api::RotationInfo::from(&rotation)),
            )
                .into_response())
        }
        Some(m) => Err(unknown_method(m)),
        None => Err(ApiError::BadRequest(
            "POST needs a method: `:versions` or `:rotate`".to_owned(),
        )),
    }
}

async fn add_version(
    state: &AppState,
    caller: &Caller,
    name: SecretName,
    req: AddVersion,
) -> Result<Response, ApiError> {
    let secret = state.store.get_secret(&name).await?;
    let value = value_for(secret.kind, req.value, req.generate)?
        .ok_or_else(|| ApiError::BadRequest("give `value` or `generate: true`".to_owned()))?;
    // Labels move only between rotations: a rollback restores them.
    if let Some(running) = active_rotation(state, &name).await? {
        return Err(ApiError::RotationActive(running));
    }
    check_value_accepted(state.store.as_ref(), &secret, &value).await?;
    let labels = req.labels.unwrap_or_else(|| vec![Label::Current]);
    // Reads of `current` answer the canary's version to some consumers:
    // only a canary rotation, which rolls it back, may set it.
    if labels.contains(&Label::Canary) {
        return Err(ApiError::BadRequest(
            "the label `canary` is set by canary rotations only".to_owned(),
        ));
    }
    let t = now();
    let version = state
        .store
        .add_version(&name, &value, VersionState::Active, None, &labels, t)
        .await?;
    // A new `current` pushes the old one to `previous`.
    if let Some(old) = secret.labels.get(&Label::Current) {
        if labels.contains(&Label::Current) && !labels.contains(&Label::Previous) {
            state
                .store
                .move_labels(&name, &[(Label::Previous, Some(*old))], t)
                .await?;
        }
    }
    state
        .audit(audit(caller, "secret.put", &name, Some(version)))
        .await;
    Ok((StatusCode::CREATED, Json(VersionAdded { version })).into_response())
}

async fn active_rotation(
    state: &AppState,
    name: &SecretName,
) -> Result<Option<keyshift_core::rotation::RotationId>, ApiError> {
    let filter = keyshift_store::RotationFilter {
        secret: Some(name.clone()),
        active_only: true,
        since: None,
        limit: 1,
    };
    Ok(state
        .store
        .list_rotations(&filter)
        .await?
        .into_iter()
        .next()
        .map(|r| r.id))
}

/// `PUT /v1/secrets/{name}:policy`.
/// A policy for a secret of `kind`: valid, with a strategy its target can
/// do (checked again when a rotation starts with another strategy).
/// Checks a policy set by `caller`: its fields, its strategy against the
/// kind, and that the caller may read each webhook's HMAC secret (the
/// server signs with it on the caller's behalf).
fn check_policy(caller: &Caller, kind: SecretKind, policy: &Policy) -> Result<(), ApiError> {
    policy
        .validate()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    for hook in &policy.notify {
        caller.require(Scope::Read, &hook.hmac_secret)?;
    }
    check_strategy(kind, policy.strategy).map(drop)
}

pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): ApiPath,
    RawBody(raw): RawBody,
) -> Result<Json<SecretInfo>, ApiError> {
    let (name, method) = split_method(&path);
    let name = parse_name(name)?;
    match method {
        Some("policy") => {
            caller.require(Scope::Admin, &name)?;
            let policy: Policy = body::parse(&raw)?;
            let kind = state.store.get_secret(&name).await?.kind;
            check_policy(&caller, kind, &policy)?;
            state.store.update_policy(&name, &policy).await?;
            state
                .audit(audit(&caller, "secret.policy", &name, None))
                .await;
            Ok(Json(info(state.store.get_secret(&name).await?)))
        }
        Some(m) => Err(unknown_method(m)),
        None => Err(ApiError::BadRequest(
            "PUT needs a method: `:policy`".to_owned(),
        )),
    }
}

#[derive(Deserialize)]
pub struct DeleteQuery {
    force: Option<bool>,
}

/// `DELETE /v1/secrets/{name}[?force=true]`.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): ApiPath,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> Result<StatusCode, ApiError> {
    let (name, method) = split_method(&path);
    if let Some(m) = method {
        return Err(unknown_method(m));
    }
    let name = parse_name(name)?;
    caller.require(Scope::Admin, &name)?;
    // Deleting the values of credentials a target still accepts would lose
    // them (I2): only on purpose.
    let secret = state.store.get_secret(&name).await?;
    if has_external_target(secret.kind) && !q.force.unwrap_or(false) {
        let accepted = state.store.accepted(&name).await?;
        if !accepted.is_empty() {
            return Err(ApiError::Conflict(format!(
                "the {} target still accepts {} version(s) of {name}; delete with ?force=true to drop them anyway",
                secret.kind,
                accepted.len()
            )));
        }
    }
    state.store.delete_secret(&name, now()).await?;
    state
        .audit(audit(&caller, "secret.delete", &name, None))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct AuditQuery {
    secret: Option<String>,
    limit: Option<u32>,
}

/// `GET /v1/audit`.
pub async fn audit_log(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let secret = q.secret.as_deref().map(parse_name).transpose()?;
    match &secret {
        Some(name) => caller.require(Scope::Admin, name)?,
        None => {
            if !caller.can_pattern(Scope::Admin, "*") {
                return Err(ApiError::Forbidden(
                    "the whole audit log needs `admin` on `*`".to_owned(),
                ));
            }
        }
    }
    let limit = q.limit.unwrap_or(100).min(1000);
    let entries = state.store.list_audit(secret.as_ref(), limit).await?;
    Ok(Json(serde_json::json!({ "entries": entries })))
}

/// `POST /v1/tokens`: only for `admin` on `*` (a token can grant anything).
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateToken>,
) -> Result<Response, ApiError> {
    if !caller.can_pattern(Scope::Admin, "*") {
        return Err(ApiError::Forbidden(
            "creating tokens needs `admin` on `*`".to_owned(),
        ));
    }
    for g in &req.grants {
        let valid = g.pattern == "*"
            || match g.pattern.strip_suffix("/*") {
                Some(prefix) => SecretName::new(prefix).is_ok(),
                None => SecretName::new(&g.pattern).is_ok(),
            };
        if !valid {
            return Err(ApiError::BadRequest(format!(
                "invalid grant pattern `{}`: use `*`, `prefix/*` or a secret name",
                g.pattern
            )));
        }
    }
    let minted = auth::mint(&req.description, &req.grants, now());
    state.store.create_token(&minted.record).await?;
    state
        .audit(NewAudit {
            actor: caller.actor(),
            action: "token.create".to_owned(),
            secret: None,
            version: None,
            rotation: None,
            outcome: "ok".to_owned(),
            detail: Some(format!("token:{}", minted.record.id)),
            at: now(),
        })
        .await;
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            id: minted.record.id,
            token: minted.token,
        }),
    )
        .into_response())
}
