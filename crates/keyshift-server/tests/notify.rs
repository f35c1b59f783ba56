//! Notifications: a webhook receiver (a real HTTP server in the test) and a
//! subscriber on the real NATS server get every phase of a rotation, in
//! order; each webhook request carries a valid HMAC signature. A receiver
//! that fails is retried and never holds the rotation up.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::routing::post;
use axum::Router;
use futures::StreamExt;
use keyshift_core::api::PhaseNotice;
use keyshift_core::rotation::Phase;
use keyshift_core::{NotifyWebhook, SecretValue};
use keyshift_server::notify::{NotifyConfig, Retry, EVENT_HEADER, EVENT_ID_HEADER};
use keyshift_targets::{verify_signature, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use keyshift_testkit::{service, Service};
use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{start_rotation, unique_secret, TestServer};

const HMAC_KEY: &str = "a-webhook-signing-key-of-32-bytes";

/// What the receiver got: each notice whose signature checked out. It
/// answers 500 to its first `fail_first` requests.
#[derive(Default)]
struct Received {
    notices: Vec<PhaseNotice>,
    bad_signatures: usize,
    requests: usize,
    fail_first: usize,
}

async fn receive(
    State(received): State<Arc<Mutex<Received>>>,
    headers: HeaderMap,
    body: Bytes,
) -> AxumStatus {
    let mut r = received.lock().unwrap();
    r.requests += 1;
    if r.requests <= r.fail_first {
        return AxumStatus::INTERNAL_SERVER_ERROR;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let key = SecretValue::new(HMAC_KEY.to_owned()).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let signed = verify_signature(
        &key,
        &header(TIMESTAMP_HEADER),
        &header(SIGNATURE_HEADER),
        &body,
        now,
        Duration::from_secs(300),
    );
    if signed.is_err() {
        r.bad_signatures += 1;
        return AxumStatus::UNAUTHORIZED;
    }
    let notice: PhaseNotice = serde_json::from_slice(&body).unwrap();
    assert_eq!(header(EVENT_HEADER), notice.subject());
    assert_eq!(header(EVENT_ID_HEADER), notice.event_id);
    r.notices.push(notice);
    AxumStatus::NO_CONTENT
}

/// A webhook receiver on a free port; its URL.
async fn receiver(received: Arc<Mutex<Received>>) -> String {
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(received);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let url = format!(
        "http://{}/hook?token=not-logged",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// The phases `notices` name for rotation `id`, in the order received.
fn phases_of(notices: &[PhaseNotice], id: &str) -> Vec<Phase> {
    notices
        .iter()
        .filter(|n| n.rotation.as_str() == id)
        .map(|n| n.phase)
        .collect()
}

const ALL_PHASES: [Phase; 7] = [
    Phase::Precheck,
    Phase::Generate,
    Phase::DualAccept,
    Phase::Promote,
    Phase::Overlap,
    Phase::Revoke,
    Phase::Done,
];

#[tokio::test]
async fn webhook_and_nats_receive_every_phase_in_order() {
    let Some(nats_url) = service(Service::Nats) else {
        return;
    };
    let nats = async_nats::connect(nats_url.as_str()).await.unwrap();
    let mut subscription = nats.subscribe("keyshift.rotation.>").await.unwrap();
    nats.flush().await.unwrap();

    // The server's own webhook fails its first two requests: retried.
    let global = Arc::new(Mutex::new(Received {
        fail_first: 2,
        ..Received::default()
    }));
    let per_secret = Arc::new(Mutex::new(Received::default()));
    let global_url = receiver(global.clone()).await;
    let secret_url = receiver(per_secret.clone()).await;
    let key_name = unique_secret("hook-key");
    let config = NotifyConfig {
        webhooks: vec![NotifyWebhook {
            url: global_url,
            hmac_secret: key_name.parse().unwrap(),
        }],
        nats: Some(nats_url.clone()),
        retry: Retry {
            first: Duration::from_millis(50),
            ..Retry::default()
        },
    };
    let server = TestServer::start_with(move |c| c.notify(config.clone())).await;

    // The signing key is itself a secret; the rotated one names its own
    // webhook in its policy.
    let (status, answer) = server
        .call(
            Method::POST,
            "/v1/secrets",
            Some(json!({"name": key_name, "kind": "static", "value": HMAC_KEY})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let name = unique_secret("notified");
    let policy = json!({"min_overlap": "0s", "monitoring_cycle": "100ms",
                        "notify": [{"url": secret_url, "hmac_secret": key_name}]});
    let (status, answer) = server
        .call(
            Method::POST,
            "/v1/secrets",
            Some(json!({"name": name, "kind": "api-key", "generate": true, "policy": policy})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");

    let id = start_rotation(&server, &name).await;
    let done = server.wait_rotation(&id).await;
    assert_eq!(done["status"], "succeeded", "{done}");

    // NATS: every phase on its own subject, in order.
    let mut on_nats = Vec::new();
    while phases_of(&on_nats, &id).len() < ALL_PHASES.len() {
        let message = tokio::time::timeout(Duration::from_secs(10), subscription.next())
            .await
            .expect("a NATS notice within 10 s")
            .unwrap();
        let notice: PhaseNotice = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(message.subject.as_str(), notice.subject());
        on_nats.push(notice);
    }
    assert_eq!(phases_of(&on_nats, &id), ALL_PHASES);
    let last = on_nats
        .iter()
        .rev()
        .find(|n| n.rotation.as_str() == id)
        .unwrap();
    assert_eq!(last.new_version.map(|v| v.0), Some(2));
    assert_eq!(last.overlap_ended_by.as_deref(), Some("gate"));

    // Webhooks: both receivers, every phase in order, all signed.
    for (label, received) in [("global", &global), ("per-secret", &per_secret)] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got = phases_of(&received.lock().unwrap().notices, &id);
            if got.len() >= ALL_PHASES.len() {
                assert_eq!(got, ALL_PHASES, "{label}");
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{label}: only {got:?} after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let r = received.lock().unwrap();
        assert_eq!(r.bad_signatures, 0, "{label}");
        let ids: std::collections::BTreeSet<_> = r.notices.iter().map(|n| &n.event_id).collect();
        assert_eq!(ids.len(), r.notices.len(), "{label}: one notice per phase");
    }
    assert_eq!(
        global.lock().unwrap().requests,
        ALL_PHASES.len() + 2,
        "the two failed deliveries were retried"
    );
}

#[tokio::test]
async fn a_dead_receiver_never_holds_a_rotation_up() {
    let key_name = unique_secret("hook-key");
    let config = NotifyConfig {
        // Nothing listens on port 9 of 127.0.0.1 (discard).
        webhooks: vec![NotifyWebhook {
            url: "http://127.0.0.1:9/hook".to_owned(),
            hmac_secret: key_name.parse().unwrap(),
        }],
        nats: None,
        retry: Retry::default(),
    };
    let server = TestServer::start_with(move |c| c.notify(config.clone())).await;
    let name = unique_secret("unheard");
    let (status, answer) = server
        .call(
            Method::POST,
            "/v1/secrets",
            Some(json!({"name": name, "kind": "api-key", "generate": true,
                        "policy": {"min_overlap": "0s", "monitoring_cycle": "100ms"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let id = start_rotation(&server, &name).await;
    let done = server.wait_rotation(&id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
}

#[tokio::test]
async fn a_policy_webhook_needs_a_valid_url_and_a_readable_hmac_secret() {
    let server = TestServer::start().await;
    for (hook, expected) in [
        (
            json!({"url": "ftp://h/x", "hmac_secret": "a/b"}),
            "http:// or https://",
        ),
        (json!({"url": "https://h/x"}), "hmac_secret"),
    ] {
        let (status, answer) = server
            .call(
                Method::POST,
                "/v1/secrets",
                Some(json!({"name": unique_secret("bad-hook"), "kind": "api-key",
                            "generate": true, "policy": {"notify": [hook]}})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(answer.to_string().contains(expected), "{answer}");
    }
}
