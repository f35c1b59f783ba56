//! `/metrics`: what the server does, in the Prometheus text format.
//!
//! Metrics go through the [`metrics`] facade to a Prometheus recorder this
//! module installs once per process; the `/metrics` route renders it. Every
//! label comes from a fixed set (a kind, a strategy, a phase, an outcome, a
//! route template, a status code): never a secret's name or value, never a
//! consumer id, so no series grows without bound.
//!
//! The series are listed in `docs/metrics.md`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keyshift_core::rotation::{Phase, Rotation};
use keyshift_core::SecretKind;
use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// How often the recorder's histograms are compacted.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Bucket bounds of the duration histograms, in seconds: HTTP requests
/// (sub-millisecond) up to rotations with long overlaps (a day).
const SECONDS: &[f64] = &[
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    4.0 * 3600.0,
    24.0 * 3600.0,
];

/// Overlap used / allocated: 1.0 is an overlap that ended at `min_overlap`.
const RATIO: &[f64] = &[0.5, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 100.0];

/// Consumers migrated per minute of overlap.
const PER_MINUTE: &[f64] = &[
    1.0, 10.0, 60.0, 100.0, 300.0, 600.0, 1200.0, 3000.0, 6000.0, 60000.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's Prometheus recorder, installed by the first call. None
/// when another global recorder was installed first (an application that
/// embeds the server and exports its own metrics): the series go there.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE.get_or_init(install).as_ref()
}

fn install() -> Option<PrometheusHandle> {
    let builder = PrometheusBuilder::new()
        .set_buckets(SECONDS)
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("keyshift_rotation_overlap_utilization".to_owned()),
                RATIO,
            )
        })
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("keyshift_rotation_migration_velocity_per_minute".to_owned()),
                PER_MINUTE,
            )
        });
    let handle = match builder.map(PrometheusBuilder::install_recorder) {
        Ok(Ok(handle)) => handle,
        Ok(Err(e)) | Err(e) => {
            tracing::warn!(error = %e, "metrics go to the process's own recorder; /metrics is empty");
            return None;
        }
    };
    describe();
    Some(handle)
}

/// Compacts the recorder's histograms every [`UPKEEP_EVERY`] until
/// `shutdown`.
pub(crate) async fn upkeep(shutdown: tokio_util::sync::CancellationToken) {
    let Some(handle) = handle() else { return };
    let mut every = tokio::time::interval(UPKEEP_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => handle.run_upkeep(),
        }
    }
}

fn describe() {
    describe_counter!(
        "keyshift_rotations_started_total",
        "Rotations started, by secret kind and strategy."
    );
    describe_counter!(
        "keyshift_rotations_total",
        "Rotations ended, by secret kind, strategy and outcome (succeeded, rolled_back, failed)."
    );
    describe_gauge!(
        "keyshift_rotations_running",
        "Rotations this process drives now."
    );
    describe_gauge!(
        "keyshift_rotation_success_ratio",
        "Rotations that succeeded / rotations that ended, since this process started."
    );
    describe_histogram!(
        "keyshift_rotation_duration_seconds",
        Unit::Seconds,
        "A whole rotation, from its creation to its end."
    );
    describe_histogram!(
        "keyshift_rotation_phase_duration_seconds",
        Unit::Seconds,
        "Each phase of a rotation, from entering it to leaving it."
    );
    describe_histogram!(
        "keyshift_rotation_time_to_revoke_seconds",
        Unit::Seconds,
        "From a rotation's start to the old credential's revocation; the mean is the mean time to rotate."
    );
    describe_histogram!(
        "keyshift_rotation_overlap_seconds",
        Unit::Seconds,
        "How long each overlap lasted."
    );
    describe_histogram!(
        "keyshift_rotation_overlap_utilization",
        "Each overlap's length / the window allocated to it (min_overlap)."
    );
    describe_histogram!(
        "keyshift_rotation_migration_velocity_per_minute",
        "Consumers that moved to the new version per minute of overlap."
    );
    describe_counter!(
        "keyshift_rotation_incidents_total",
        "Rotations that rolled back or failed, revoked at max_overlap with stragglers, or ran as an emergency."
    );
    describe_counter!(
        "keyshift_sdk_failed_requests_total",
        "Failed requests reported by SDK consumers (POST /v1/failures)."
    );
    describe_gauge!(
        "keyshift_store_up",
        "1 while the store answers this process's probe (every 2 s), 0 while it does not."
    );
    describe_gauge!(
        "keyshift_watchers",
        "Watch streams (SDK consumers) connected to this process."
    );
    describe_counter!(
        "keyshift_http_requests_total",
        "HTTP requests, by method, route template and status code."
    );
    describe_histogram!(
        "keyshift_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency until the response head, by method and route template."
    );
}

/// `GET /metrics`: the Prometheus text format. It names no secret, so it
/// needs no token, as Prometheus scrapers expect.
pub(crate) async fn render() -> Response {
    match handle() {
        Some(h) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            h.render(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "this process exports its metrics through its own recorder\n",
        )
            .into_response(),
    }
}

/// The secret kind as a label; `unknown` when the driver could not read it.
pub(crate) fn kind_label(kind: Option<SecretKind>) -> &'static str {
    kind.map_or("unknown", SecretKind::as_str)
}

/// A rotation started.
pub(crate) fn rotation_started(kind: SecretKind, rotation: &Rotation) {
    counter!("keyshift_rotations_started_total",
        "kind" => kind.as_str(), "strategy" => rotation.strategy.as_str())
    .increment(1);
}

/// Counts one more on a gauge while it lives.
pub(crate) struct Counted(&'static str);

impl Counted {
    fn new(gauge: &'static str) -> Self {
        gauge!(gauge).increment(1.0);
        Counted(gauge)
    }

    /// A rotation this process drives (`keyshift_rotations_running`).
    pub(crate) fn rotation() -> Self {
        Self::new("keyshift_rotations_running")
    }

    /// A connected watch stream (`keyshift_watchers`).
    pub(crate) fn watcher() -> Self {
        Self::new("keyshift_watchers")
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        gauge!(self.0).decrement(1.0);
    }
}

/// `rotation` left `phase`: records how long it stayed there.
pub(crate) fn phase_ended(kind: &'static str, rotation: &Rotation, phase: Phase) {
    let Some(record) = rotation.history.iter().rev().find(|p| p.phase == phase) else {
        return;
    };
    if let Some(ended) = record.ended_at {
        histogram!("keyshift_rotation_phase_duration_seconds",
            "kind" => kind, "phase" => phase.as_str())
        .record(ended.since(record.started_at).as_secs_f64());
    }
}

/// `rotation` ended: its outcome, its length and its [figures].
///
/// [figures]: keyshift_core::report::Figures
pub(crate) fn rotation_finished(kind: &'static str, rotation: &Rotation) {
    static ENDED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    static SUCCEEDED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    use std::sync::atomic::Ordering::Relaxed;

    let status = rotation.status();
    let strategy = rotation.strategy.as_str();
    let outcome = status.as_str();
    counter!("keyshift_rotations_total",
        "kind" => kind, "strategy" => strategy, "outcome" => outcome)
    .increment(1);
    let ok = u64::from(status == keyshift_core::rotation::Status::Succeeded);
    let ended = ENDED.fetch_add(1, Relaxed) + 1;
    let succeeded = SUCCEEDED.fetch_add(ok, Relaxed) + ok;
    gauge!("keyshift_rotation_success_ratio").set(succeeded as f64 / ended as f64);
    if let Some(last) = rotation.history.last() {
        histogram!("keyshift_rotation_duration_seconds",
            "kind" => kind, "strategy" => strategy, "outcome" => outcome)
        .record(last.started_at.since(rotation.created_at).as_secs_f64());
    }
    let figures = rotation.figures();
    if let Some(d) = figures.time_to_revoke {
        histogram!("keyshift_rotation_time_to_revoke_seconds",
            "kind" => kind, "strategy" => strategy)
        .record(d.as_secs_f64());
    }
    if let Some(d) = figures.overlap {
        histogram!("keyshift_rotation_overlap_seconds", "kind" => kind).record(d.as_secs_f64());
    }
    if let Some(u) = figures.overlap_utilization {
        histogram!("keyshift_rotation_overlap_utilization", "kind" => kind).record(u);
    }
    if let Some(v) = figures.migration_velocity_per_min {
        histogram!("keyshift_rotation_migration_velocity_per_minute", "kind" => kind).record(v);
    }
    if figures.incidents > 0 {
        counter!("keyshift_rotation_incidents_total", "kind" => kind)
            .increment(u64::from(figures.incidents));
    }
}

/// How often [`probe_store`] asks the store whether it answers.
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// Probes the store every [`PROBE_EVERY`] until `shutdown`: sets
/// `keyshift_store_up`, and says in the log when the store stops and
/// starts answering (what goes on meanwhile: reads from memory, rotations
/// waiting).
pub(crate) async fn probe_store(
    store: std::sync::Arc<dyn keyshift_store::Store>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut down_since: Option<Instant> = None;
    let mut every = tokio::time::interval(PROBE_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let answer = tokio::time::timeout(PROBE_EVERY, store.health()).await;
        let up = matches!(answer, Ok(Ok(())));
        gauge!("keyshift_store_up").set(if up { 1.0 } else { 0.0 });
        match (up, down_since) {
            (false, None) => {
                let why = match answer {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer in {PROBE_EVERY:?}"),
                };
                tracing::error!(error = %why, "the store does not answer: serving cached values, rotations wait");
                down_since = Some(Instant::now());
            }
            (true, Some(since)) => {
                tracing::warn!(down_for = ?since.elapsed(), "the store answers again");
                down_since = None;
            }
            _ => {}
        }
    }
}

/// SDK consumers reported `n` failed requests.
pub(crate) fn sdk_failures(n: u64) {
    counter!("keyshift_sdk_failed_requests_total").increment(n);
}

/// Middleware: counts every request by method, route template and status,
/// and records its latency until the response head.
pub(crate) async fn track_http(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    let route = route_label(
        req.extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str),
        req.uri().path(),
    );
    let response = next.run(req).await;
    let status = status_label(response.status());
    counter!("keyshift_http_requests_total",
        "method" => method, "route" => route, "status" => status)
    .increment(1);
    histogram!("keyshift_http_request_duration_seconds",
        "method" => method, "route" => route)
    .record(started.elapsed().as_secs_f64());
    response
}

fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        _ => "other",
    }
}

/// The route template, with the `:method` of a secret or rotation path
/// when it is one the API knows; `other` for paths no route matched.
fn route_label(matched: Option<&str>, path: &str) -> &'static str {
    let method = path.rsplit_once(':').map(|(_, m)| m);
    match (matched, method) {
        (Some("/v1/secrets/{*path}"), Some(m)) => match m {
            "value" => "/v1/secrets/{name}:value",
            "versions" => "/v1/secrets/{name}:versions",
            "accepted" => "/v1/secrets/{name}:accepted",
            "consumers" => "/v1/secrets/{name}:consumers",
            "usage" => "/v1/secrets/{name}:usage",
            "rotate" => "/v1/secrets/{name}:rotate",
            "policy" => "/v1/secrets/{name}:policy",
            _ => "/v1/secrets/{name}:other",
        },
        (Some("/v1/secrets/{*path}"), None) => "/v1/secrets/{name}",
        (Some("/v1/rotations/{id}"), Some(m)) => match m {
            "rollback" => "/v1/rotations/{id}:rollback",
            "abort" => "/v1/rotations/{id}:abort",
            "advance" => "/v1/rotations/{id}:advance",
            _ => "/v1/rotations/{id}:other",
        },
        (Some("/v1/rotations/{id}"), None) => "/v1/rotations/{id}",
        (Some(p), _) => ROUTES.iter().find(|r| **r == p).copied().unwrap_or("other"),
        (None, _) => "other",
    }
}

/// The routes without a path parameter.
const ROUTES: &[&str] = &[
    "/metrics",
    "/v1/health",
    "/v1/secrets",
    "/v1/rotations",
    "/v1/watch",
    "/v1/consumers/heartbeat",
    "/v1/usage",
    "/v1/failures",
    "/v1/audit",
    "/v1/status",
    "/v1/tokens",
    "/v1/report",
];

fn status_label(s: StatusCode) -> &'static str {
    const KNOWN: &[(u16, &str)] = &[
        (200, "200"),
        (201, "201"),
        (202, "202"),
        (204, "204"),
        (304, "304"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (408, "408"),
        (409, "409"),
        (413, "413"),
        (415, "415"),
        (422, "422"),
        (429, "429"),
        (500, "500"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
    ];
    KNOWN
        .iter()
        .find(|(code, _)| *code == s.as_u16())
        .map_or("other", |(_, label)| label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_labels_are_templates_never_names() {
        let secrets = Some("/v1/secrets/{*path}");
        assert_eq!(
            route_label(secrets, "/v1/secrets/prod/db:value"),
            "/v1/secrets/{name}:value"
        );
        assert_eq!(
            route_label(secrets, "/v1/secrets/prod/db"),
            "/v1/secrets/{name}"
        );
        assert_eq!(
            route_label(secrets, "/v1/secrets/prod/db:made-up"),
            "/v1/secrets/{name}:other"
        );
        assert_eq!(
            route_label(Some("/v1/rotations/{id}"), "/v1/rotations/r-1:advance"),
            "/v1/rotations/{id}:advance"
        );
        assert_eq!(route_label(Some("/v1/watch"), "/v1/watch"), "/v1/watch");
        assert_eq!(route_label(None, "/v1/prod/db"), "other");
    }

    #[test]
    fn status_labels_are_a_fixed_set() {
        assert_eq!(status_label(StatusCode::OK), "200");
        assert_eq!(status_label(StatusCode::IM_A_TEAPOT), "other");
    }
}
