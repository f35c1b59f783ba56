//! A PostgreSQL outage under a running server: the store's connections go
//! through a TCP relay that the test cuts for 10 s while a rotation is in
//! its overlap and a reader keeps reading the secret. Reads keep working
//! from memory, health and `/metrics` say the store is down while it is,
//! and the rotation ends once the store is back.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keyshift_client::{ApiClient, Selector};
use keyshift_core::api::{CreateSecret, StartRotation};
use keyshift_core::rotation::{Phase, Status};
use keyshift_core::{Policy, SecretKind, SecretName, SecretValue};
use keyshift_testkit::{service, unique_name, Service};
use support::{init_with_store, Database, Serve};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How long the database is away.
const OUTAGE: Duration = Duration::from_secs(10);

/// A TCP relay to PostgreSQL that can be cut: while cut, it closes every
/// connection it relays and every new one.
struct Relay {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
}

impl Relay {
    async fn start(to: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, _) = watch::channel(false);
        let cuts = cut.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let mut cut = cuts.subscribe();
                if *cut.borrow() {
                    continue; // dropped: refused
                }
                let to = to.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&to).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        Relay { addr, cut }
    }
}

/// `url` with its host and port replaced by `addr`.
fn through(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (authority, path) = rest.split_once('/').unwrap();
    let user = authority.rsplit_once('@').map(|(u, _)| format!("{u}@"));
    format!("{scheme}://{}{addr}/{path}", user.unwrap_or_default())
}

/// The host:port of a PostgreSQL URL (5432 by default).
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    let authority = rest.split('/').next().unwrap();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    }
}

async fn health(addr: &str) -> (u16, String) {
    let resp = reqwest::get(format!("http://{addr}/v1/health"))
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn store_up(addr: &str) -> Option<f64> {
    let page = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    page.lines()
        .find_map(|l| l.strip_prefix("keyshift_store_up "))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_on_and_the_rotation_ends_across_a_database_outage() {
    let Some(admin) = service(Service::Postgres) else {
        return;
    };
    let db = Database::create(&admin);
    let relay = Relay::start(host_port(&db.url)).await;
    let dir = tempfile::tempdir().unwrap();
    let token = init_with_store(dir.path(), &db.url);
    let via_relay = through(&db.url, relay.addr);
    let server = Serve::start(dir.path(), &[], &[("KEYSHIFT_STORE", &via_relay)]);
    let api = ApiClient::new(
        &format!("http://{}", server.addr),
        Some(SecretValue::new(token).unwrap()),
    )
    .unwrap();

    // A secret whose overlap outlasts the outage.
    let name: SecretName = format!("outage/{}", unique_name("api")).parse().unwrap();
    api.create_secret(&CreateSecret {
        name: name.clone(),
        kind: SecretKind::ApiKey,
        policy: Policy {
            min_overlap: Duration::from_secs(5),
            ..Policy::default()
        },
        target: serde_json::json!({}),
        value: None,
        generate: true,
    })
    .await
    .unwrap();

    // A reader, all along: every read must succeed.
    let (reads, failures) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (api, name) = (api.clone(), name.clone());
        let (reads, failures, stop) = (reads.clone(), failures.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match api.get_value(&name, Selector::default()).await {
                    Ok(_) => reads.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("read failed: {e}");
                        failures.fetch_add(1, Ordering::Relaxed)
                    }
                };
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let rotation = api.rotate(&name, &StartRotation::default()).await.unwrap();
    loop {
        let r = api.get_rotation(&rotation.id).await.unwrap();
        if r.phase == Phase::Overlap {
            break;
        }
        assert_eq!(r.status, Status::Running, "{:?}", r.reason);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A few reads since Promote's change put the new value in the read
    // cache (a value changed and not read since cannot be served from
    // memory).
    let seen = reads.load(Ordering::Relaxed);
    while reads.load(Ordering::Relaxed) < seen + 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The outage: health and metrics say so while it lasts.
    relay.cut.send_replace(true);
    let started = tokio::time::Instant::now();
    let (mut unhealthy, mut down) = (false, false);
    while started.elapsed() < OUTAGE {
        let (status, body) = health(&server.addr).await;
        if status == 503 {
            assert!(body.contains("degraded"), "{body}");
            unhealthy = true;
        }
        if store_up(&server.addr).await == Some(0.0) {
            down = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let during = reads.load(Ordering::Relaxed);
    relay.cut.send_replace(false);
    assert!(unhealthy, "health never said the store was down");
    assert!(down, "keyshift_store_up never went to 0");

    // Back: the rotation ends, health and the metric recover.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let record = loop {
        if let Ok(r) = api.get_rotation(&rotation.id).await {
            if r.status != Status::Running {
                break r;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rotation did not end after the outage"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(record.status, Status::Succeeded, "{:?}", record.reason);
    assert_eq!(health(&server.addr).await.0, 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store_up(&server.addr).await != Some(1.0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "keyshift_store_up stayed 0"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    reader.await.unwrap();
    let (reads, failures) = (
        reads.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed),
    );
    eprintln!("{reads} reads, {during} by the end of the outage, {failures} failed");
    assert_eq!(failures, 0);
    assert!(reads > 100, "{reads} reads");
    drop(server);
}
