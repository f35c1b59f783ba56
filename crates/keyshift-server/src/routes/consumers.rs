//! Consumers, usage and failures: `POST /v1/consumers/heartbeat`,
//! `POST /v1/usage`, `POST /v1/failures`,
//! and the `:consumers` and `:usage` reads of a secret.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use keyshift_core::api::{
    valid_consumer_id, ConsumerInfo, ConsumerList, ConsumerStatus, FailureReport, Heartbeat, Scope,
    UsageCount, UsageList, UsageReport, UsageWindow, MAX_HEARTBEAT_INTERVAL_MS,
};
use keyshift_core::{SecretName, Timestamp};
use keyshift_store::HeartbeatRecord;

use super::ApiJson;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::{now, AppState};

/// The most secrets one heartbeat or usage report may name.
const MAX_ITEMS: usize = 1000;
/// The longest host or process label.
const MAX_LABEL: usize = 256;

pub(super) fn check_consumer_id(id: &str) -> Result<(), ApiError> {
    if valid_consumer_id(id) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(
            "invalid consumer id: use 1 to 128 characters of [A-Za-z0-9._:-]".to_owned(),
        ))
    }
}

fn check_label(what: &str, label: Option<&str>) -> Result<(), ApiError> {
    match label {
        Some(l) if l.len() > MAX_LABEL || l.chars().any(char::is_control) => {
            Err(ApiError::BadRequest(format!(
                "invalid {what}: at most {MAX_LABEL} printable characters"
            )))
        }
        _ => Ok(()),
    }
}

fn check_version(v: Option<keyshift_core::VersionNumber>) -> Result<(), ApiError> {
    match v {
        Some(v) if i64::try_from(v.0).is_err() => {
            Err(ApiError::BadRequest(format!("no version {v}")))
        }
        _ => Ok(()),
    }
}

fn check_count(n: usize) -> Result<(), ApiError> {
    if n > MAX_ITEMS {
        return Err(ApiError::BadRequest(format!(
            "too many secrets in one report (limit={MAX_ITEMS}, actual={n})"
        )));
    }
    Ok(())
}

/// `POST /v1/consumers/heartbeat`.
pub async fn heartbeat(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(beat): ApiJson<Heartbeat>,
) -> Result<StatusCode, ApiError> {
    check_consumer_id(&beat.consumer_id)?;
    check_label("host", beat.host.as_deref())?;
    check_label("process", beat.process.as_deref())?;
    check_count(beat.holds.len())?;
    let interval = match beat.interval_ms {
        Some(ms) if ms == 0 || ms > MAX_HEARTBEAT_INTERVAL_MS => {
            return Err(ApiError::BadRequest(format!(
                "interval_ms must be between 1 and {MAX_HEARTBEAT_INTERVAL_MS} (actual={ms})"
            )))
        }
        ms => ms.map(std::time::Duration::from_millis),
    };
    for h in &beat.holds {
        caller.require(Scope::Read, &h.secret)?;
        check_version(h.version)?;
    }
    state
        .heartbeats
        .record(HeartbeatRecord {
            consumer_id: beat.consumer_id,
            host: beat.host,
            process: beat.process,
            interval,
            holds: beat
                .holds
                .into_iter()
                .map(|h| (h.secret, h.version))
                .collect(),
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/usage`.
pub async fn usage_report(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(report): ApiJson<UsageReport>,
) -> Result<StatusCode, ApiError> {
    check_consumer_id(&report.reporter)?;
    let counts = checked_counts(&caller, report.counts)?;
    state.store.record_usage(&counts, now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/failures`: recorded, then any `canary` rotation of a named
/// secret is checked against them (in the background: the reporter does
/// not wait for a rollback).
pub async fn failure_report(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(report): ApiJson<FailureReport>,
) -> Result<StatusCode, ApiError> {
    check_consumer_id(&report.reporter)?;
    let counts = checked_counts(&caller, report.failures)?;
    state
        .store
        .record_failures(&report.reporter, &counts, now())
        .await?;
    crate::metrics::sdk_failures(
        counts
            .iter()
            .fold(0, |sum, (_, _, n)| sum.saturating_add(*n)),
    );
    let mut names: Vec<SecretName> = counts
        .into_iter()
        .filter(|(_, _, n)| *n > 0)
        .map(|(name, _, _)| name)
        .collect();
    names.sort_unstable();
    names.dedup();
    if !names.is_empty() {
        let orchestrator = state.orchestrator.clone();
        tokio::spawn(async move {
            for name in &names {
                orchestrator.check_canary(name).await;
            }
        });
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The counts of a usage or failure report, each checked: at most
/// [`MAX_ITEMS`], readable by the caller, a storable version.
fn checked_counts(
    caller: &Caller,
    counts: Vec<UsageCount>,
) -> Result<Vec<(SecretName, keyshift_core::VersionNumber, u64)>, ApiError> {
    check_count(counts.len())?;
    for c in &counts {
        caller.require(Scope::Read, &c.secret)?;
        check_version(Some(c.version))?;
    }
    Ok(counts
        .into_iter()
        .map(|c| (c.secret, c.version, c.count))
        .collect())
}

/// `GET /v1/secrets/{name}:consumers` (scope checked by the caller).
pub async fn list(state: &AppState, name: SecretName) -> Result<Json<ConsumerList>, ApiError> {
    let secret = state.store.get_secret(&name).await?;
    let current = secret.labels.get(&keyshift_core::Label::Current).copied();
    let now = now();
    let consumers = state
        .store
        .list_consumers(&name)
        .await?
        .into_iter()
        .map(|c| ConsumerInfo {
            status: ConsumerStatus::of(
                c.version,
                current,
                secret
                    .policy
                    .is_live(c.last_seen, c.heartbeat_interval, now),
            ),
            consumer_id: c.consumer_id,
            version: c.version,
            host: c.host,
            process: c.process,
            first_seen: c.first_seen,
            last_seen: c.last_seen,
        })
        .collect();
    Ok(Json(ConsumerList { name, consumers }))
}

/// `GET /v1/secrets/{name}:usage?since=T` (scope checked by the caller):
/// default the last hour.
pub async fn usage(
    state: &AppState,
    name: SecretName,
    since: Option<&str>,
) -> Result<Json<UsageList>, ApiError> {
    let since = match since {
        Some(s) => parse_since(s)?,
        None => Timestamp::from_millis(now().as_millis() - 3_600_000),
    };
    let windows = state
        .store
        .usage_since(&name, since)
        .await?
        .into_iter()
        .map(|w| UsageWindow {
            version: w.version,
            window_start: w.window_start,
            count: w.count,
            last_at: w.last_at,
        })
        .collect();
    Ok(Json(UsageList { name, windows }))
}

/// A `since` query parameter: an RFC 3339 time.
pub(super) fn parse_since(s: &str) -> Result<Timestamp, ApiError> {
    humantime::parse_rfc3339(s)
        .map(Timestamp::from_system)
        .map_err(|_| ApiError::BadRequest("`since` must be an RFC 3339 time".to_owned()))
}
