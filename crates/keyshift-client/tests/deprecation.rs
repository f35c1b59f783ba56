//! A caller of an `api-key` service that is not an SDK consumer: plain HTTP
//! with the old key, through the SDK's `require_api_key` middleware. It
//! holds the overlap gate through the uses its requests count, its
//! responses carry `Deprecation` and `Sunset` while it is on the old key,
//! and the rotation revokes one full monitoring cycle after it stops.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use axum::routing::get;
use axum::{middleware, Router};
use keyshift_client::middleware::require_api_key;
use keyshift_client::{KeyRing, KeyRingConfig, Selector};
use keyshift_core::rotation::{Phase, Status};
use keyshift_core::{Label, Policy};
use support::TestServer;
use tokio_util::sync::CancellationToken;

const CYCLE: Duration = Duration::from_millis(500);
const MAX_OVERLAP: Duration = Duration::from_secs(3600);

/// The service: one route behind the key ring; its base URL.
async fn serve(ring: KeyRing, stop: CancellationToken) -> String {
    let app = Router::new()
        .route("/orders", get(|| async { "ok" }))
        .layer(middleware::from_fn_with_state(ring, require_api_key));
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let url = format!("http://{}/orders", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
            .unwrap();
    });
    url
}

#[tokio::test]
async fn a_plain_http_caller_on_the_old_key_holds_the_gate_and_is_told_to_move() {
    let server = TestServer::start().await;
    let api = server.admin();
    let policy = Policy {
        min_overlap: Duration::ZERO,
        monitoring_cycle: CYCLE,
        max_overlap: MAX_OVERLAP,
        ..Policy::default()
    };
    let name = support::create_api_key_with(&api, "deprecation", policy).await;
    let old_key = api
        .get_value(&name, Selector::Label(Label::Current))
        .await
        .unwrap()
        .value;

    // The service learns of changes from the SDK's watch, and reports uses
    // well within a cycle.
    let sdk = server.sdk().consumer_id("orders-service").build().unwrap();
    let events = sdk.watch(&name).await.unwrap().events();
    let ring = KeyRing::start_with(
        api.clone(),
        name.clone(),
        "orders-service".to_owned(),
        Some(events),
        KeyRingConfig::default().report_every(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    let stop = CancellationToken::new();
    let url = serve(ring.clone(), stop.clone()).await;
    let http = reqwest::Client::new();
    let call = |key: String| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            http.get(&url)
                .header("x-api-key", key)
                .send()
                .await
                .unwrap()
        }
    };

    let before = call(old_key.expose().to_owned()).await;
    assert_eq!(before.status(), 200);
    assert!(before.headers().get("deprecation").is_none());
    assert_eq!(call("not-a-key".to_owned()).await.status(), 401);

    let rotation = support::rotate(&api, &name).await;
    // Keep calling with the old key until the gate holds on its uses alone
    // (the service's own SDK consumer moves to the new version at once).
    let (held, deprecated) = loop {
        let response = call(old_key.expose().to_owned()).await;
        assert_eq!(response.status(), 200, "the old key works in the overlap");
        let r = api.get_rotation(&rotation.id).await.unwrap();
        assert_eq!(r.status, Status::Running, "ended while in use: {r:?}");
        let on_uses_alone = r.gate.held.is_some() && r.gate.stragglers.is_empty();
        if on_uses_alone && response.headers().get("deprecation").is_some() {
            break (r, response);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(held.phase, Phase::Overlap);
    let why = held.gate.held.as_deref().unwrap();
    assert!(why.contains("version 1 was used"), "{why}");
    assert!(
        held.gate.stragglers.is_empty(),
        "no SDK consumer lags: {why}"
    );

    // The headers: deprecated since Promote, sunset at max_overlap.
    let promoted = held
        .phases
        .iter()
        .find(|p| p.phase == Phase::Promote)
        .and_then(|p| p.ended_at)
        .unwrap();
    let header = |name: &str| deprecated.headers()[name].to_str().unwrap().to_owned();
    let since_secs = promoted.as_millis().div_euclid(1000);
    assert_eq!(header("deprecation"), format!("@{since_secs}"));
    let sunset = httpdate::parse_http_date(&header("sunset")).unwrap();
    let expected = promoted.to_system() + MAX_OVERLAP;
    let off = sunset
        .duration_since(expected)
        .unwrap_or_else(|e| e.duration());
    assert!(
        off < Duration::from_secs(1),
        "sunset {sunset:?} vs {expected:?}"
    );
    // The new key is not deprecated.
    let new_key = api
        .get_value(&name, Selector::Label(Label::Current))
        .await
        .unwrap()
        .value;
    let fresh = call(new_key.expose().to_owned()).await;
    assert_eq!(fresh.status(), 200);
    assert!(fresh.headers().get("deprecation").is_none());

    // The caller stops; the rotation revokes a full cycle after its last
    // use, not before.
    assert_eq!(call(old_key.expose().to_owned()).await.status(), 200);
    let last_use = SystemTime::now();
    let done = support::wait_rotation(&api, &rotation).await;
    assert_eq!(done.status, Status::Succeeded, "{done:?}");
    assert_eq!(done.gate.passed_by.as_deref(), Some("gate"));
    let revoke = done
        .phases
        .iter()
        .find(|p| p.phase == Phase::Revoke)
        .unwrap();
    assert!(
        revoke.started_at.to_system() >= last_use + CYCLE,
        "revoked {:?} after the last use",
        revoke.started_at.to_system().duration_since(last_use)
    );
    // Revoked: the old key no longer works (the ring hears of it from the
    // watch and refreshes on the miss).
    assert_eq!(call(old_key.expose().to_owned()).await.status(), 401);

    stop.cancel();
    ring.stop();
    sdk.close();
}
