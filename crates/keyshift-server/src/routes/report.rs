//! `GET /v1/report`: rotation health over a period.

use axum::extract::State;
use axum::Json;
use keyshift_core::api::Scope;
use keyshift_core::report::HealthReport;
use keyshift_store::RotationFilter;
use serde::Deserialize;

use super::body::ApiQuery;
use super::consumers::parse_since;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::{now, AppState};

/// The most rotations one report reads: the newest of the period.
const MAX_ROTATIONS: u32 = 100_000;

#[derive(Deserialize)]
pub struct ReportQuery {
    since: Option<String>,
}

/// `GET /v1/report?since=T`: the health of the rotations created since `T`
/// (RFC 3339; default all) that the caller may read.
pub async fn report(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> Result<Json<HealthReport>, ApiError> {
    caller.require_scope(Scope::Read)?;
    let since = q.since.as_deref().map(parse_since).transpose()?;
    let filter = RotationFilter {
        secret: None,
        active_only: false,
        since,
        limit: MAX_ROTATIONS,
    };
    let mut rotations = state.store.list_rotations(&filter).await?;
    rotations.retain(|r| caller.can(Scope::Read, &r.secret));
    Ok(Json(HealthReport::of(&rotations, since, now())))
}
