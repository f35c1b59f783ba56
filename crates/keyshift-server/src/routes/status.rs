//! `GET /v1/status`: every readable secret's schedule, next rotation,
//! newest rotation and circuit.

use axum::extract::State;
use axum::Json;
use keyshift_core::api::{Scope, StatusList};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// `GET /v1/status`.
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<StatusList>, ApiError> {
    caller.require_scope(Scope::Read)?;
    let mut secrets = Vec::new();
    for secret in state.store.list_secrets(None).await? {
        if caller.can(Scope::Read, &secret.name) {
            secrets.push(state.scheduler.status(&secret).await?);
        }
    }
    Ok(Json(StatusList {
        secrets,
        scheduler_checked_at: state.scheduler.checked_at(),
    }))
}
