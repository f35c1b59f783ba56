//! `/v1/rotations`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use keyshift_core::api::{RollbackRequest, RotationInfo, RotationList, Scope};
use keyshift_core::rotation::RotationId;
use keyshift_core::SecretName;
use keyshift_store::RotationFilter;
use serde::Deserialize;

use super::body::{ApiPath, ApiQuery, RawBody};
use super::{body, split_method, unknown_method};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

fn parse_id(s: &str) -> Result<RotationId, ApiError> {
    s.parse()
        .map_err(|e: keyshift_core::rotation::RotationIdError| ApiError::BadRequest(e.to_string()))
}

#[derive(Deserialize)]
pub struct ListQuery {
    secret: Option<String>,
    active: Option<bool>,
    limit: Option<u32>,
}

/// `GET /v1/rotations`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<RotationList>, ApiError> {
    let secret = q
        .secret
        .as_deref()
        .map(|s| SecretName::new(s).map_err(|e| ApiError::BadRequest(e.to_string())))
        .transpose()?;
    match &secret {
        Some(name) => caller.require(Scope::Read, name)?,
        None => caller.require_scope(Scope::Read)?,
    }
    let filter = RotationFilter {
        secret,
        active_only: q.active.unwrap_or(false),
        since: None,
        limit: q.limit.unwrap_or(100).min(1000),
    };
    let rotations = state
        .store
        .list_rotations(&filter)
        .await?
        .iter()
        .filter(|r| caller.can(Scope::Read, &r.secret))
        .map(RotationInfo::from)
        .collect();
    Ok(Json(RotationList { rotations }))
}

/// `GET /v1/rotations/{id}`.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
) -> Result<Json<RotationInfo>, ApiError> {
    let (id, method) = split_method(&id);
    if let Some(m) = method {
        return Err(unknown_method(m));
    }
    let rotation = state.store.get_rotation(&parse_id(id)?).await?;
    caller.require(Scope::Read, &rotation.secret)?;
    Ok(Json(RotationInfo::from(&rotation)))
}

/// `POST /v1/rotations/{id}:rollback`, `:abort` and `:advance`.
pub async fn post(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
    RawBody(raw): RawBody,
) -> Result<(StatusCode, Json<RotationInfo>), ApiError> {
    let (id, method) = split_method(&id);
    let verb = match method {
        Some(m @ ("rollback" | "abort" | "advance")) => m,
        Some(m) => return Err(unknown_method(m)),
        None => {
            return Err(ApiError::BadRequest(
                "POST needs a method: `:rollback`, `:abort` or `:advance`".to_owned(),
            ))
        }
    };
    let id = parse_id(id)?;
    let req: RollbackRequest = if raw.is_empty() {
        RollbackRequest::default()
    } else {
        body::parse(&raw)?
    };
    let rotation = state.store.get_rotation(&id).await?;
    caller.require(Scope::Rotate, &rotation.secret)?;
    if verb == "advance" {
        let rotation = state
            .orchestrator
            .request_advance(&id, &caller.actor(), req.reason)
            .await?;
        return Ok((StatusCode::ACCEPTED, Json(RotationInfo::from(&rotation))));
    }
    let reason = match (verb, req.reason) {
        ("abort", Some(r)) => format!("aborted by {}: {r}", caller.actor()),
        ("abort", None) => format!("aborted by {}", caller.actor()),
        (_, Some(r)) => format!("rolled back by {}: {r}", caller.actor()),
        (_, None) => format!("rolled back by {}", caller.actor()),
    };
    let rotation = state
        .orchestrator
        .request_rollback(&id, reason, &caller.actor(), verb)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(RotationInfo::from(&rotation))))
}
