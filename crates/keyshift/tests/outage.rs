//! A PostgreSQL outage under a running server: the store's connections go
//! through a TCP relay that the test cuts for 10 s during `keyshift drill`,
//! while one of its rotations is in its overlap. No request of the drill
//! fails, health and `/metrics` say the store is down while it is, and the
//! rotation caught by the outage ends once the store is back.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use keyshift_client::ApiClient;
use keyshift_core::rotation::{Phase, Status};
use keyshift_core::SecretValue;
use keyshift_testkit::{service, Service};
use support::{init_with_store, Database, Serve};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How long the database is away.
const OUTAGE: Duration = Duration::from_secs(10);

/// The drill's rotations.
const ROTATIONS: u64 = 6;

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
async fn a_drill_rides_out_a_database_outage() {
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
        Some(SecretValue::new(token.clone()).unwrap()),
    )
    .unwrap();

    // A drill whose rotations span the outage.
    let drill = std::process::Command::new(support::BIN)
        .args(["drill", "--kind", "api-key", "--consumers", "4"])
        .args([
            "--rotations",
            &ROTATIONS.to_string(),
            "--overlap",
            "2s",
            "--duration",
            "30s",
        ])
        .args(["--server", &format!("http://{}", server.addr)])
        .args(["--output", "json"])
        .env("KEYSHIFT_TOKEN", &token)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start keyshift drill");

    // Once a rotation is in its overlap, the database goes away.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let rotation = loop {
        let active = api.list_rotations(None, true).await.unwrap();
        if let Some(r) = active
            .rotations
            .into_iter()
            .find(|r| r.phase == Phase::Overlap)
        {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no rotation reached its overlap"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
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
    relay.cut.send_replace(false);
    assert!(unhealthy, "health never said the store was down");
    assert!(down, "keyshift_store_up never went to 0");

    // Back: the drill ends clean, the rotation caught by the outage too.
    let out = tokio::task::spawn_blocking(move || drill.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let report = support::drill_report(&out);
    eprintln!(
        "{} requests, {} failed, {} rotations",
        report["requests"], report["failed_requests"], report["rotations_completed"]
    );
    assert_eq!(report["failed_requests"], 0, "{report:#}");
    assert_eq!(report["rotations_completed"], ROTATIONS, "{report:#}");
    assert!(out.status.success(), "{report:#}");
    let record = api.get_rotation(&rotation.id).await.unwrap();
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
    drop(server);
}
