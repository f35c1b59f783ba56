//! Replicas of `keyshift serve` on one PostgreSQL store: a consumer
//! watching replica B sees, by push, every rotation that replica A drives,
//! and reads the new value from B (whose read cache A's events clear); and
//! secrets due at once on three replicas rotate once each.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use keyshift_client::{ApiClient, Client, Selector};
use keyshift_core::api::{CreateSecret, StartRotation};
use keyshift_core::rotation::{Phase, Status};
use keyshift_core::{Policy, Schedule, SecretKind, SecretName, SecretValue, VersionNumber, When};
use keyshift_testkit::{service, unique_name, Service};
use support::{init_with_store, Database, Serve};

const ROTATIONS: u64 = 10;

/// Longer than any wait here: the SDK's polling fallback (at most half the
/// overlap, and 30 s by default) cannot be what moves the consumer.
const OVERLAP: Duration = Duration::from_secs(120);

/// How long a change may take to reach the consumer before the test fails
/// (under the 30 s polling TTL, so only a push can meet it).
const WAIT: Duration = Duration::from_secs(20);

/// A new `api-key` secret whose overlap outlasts every wait here.
async fn create_api_key(api: &ApiClient, prefix: &str) -> SecretName {
    let name: SecretName = format!("replicas/{}", unique_name(prefix)).parse().unwrap();
    api.create_secret(&CreateSecret {
        name: name.clone(),
        kind: SecretKind::ApiKey,
        policy: Policy {
            min_overlap: OVERLAP,
            ..Policy::default()
        },
        target: serde_json::json!({}),
        value: None,
        generate: true,
    })
    .await
    .unwrap();
    name
}

fn api(server: &Serve, token: &str) -> ApiClient {
    ApiClient::new(
        &format!("http://{}", server.addr),
        Some(SecretValue::new(token.to_owned()).unwrap()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_on_one_replica_sees_rotations_driven_by_another() {
    let Some(admin) = service(Service::Postgres) else {
        return;
    };
    let db = Database::create(&admin);
    let dir = tempfile::tempdir().unwrap();
    let token = init_with_store(dir.path(), &db.url);
    let store = [("KEYSHIFT_STORE", db.url.as_str())];
    let a = Serve::start(dir.path(), &[], &store);
    let b = Serve::start(dir.path(), &[], &store);
    let (on_a, on_b) = (api(&a, &token), api(&b, &token));

    let name = create_api_key(&on_a, "watch").await;
    let consumer = Client::builder(&format!("http://{}", b.addr))
        .token(SecretValue::new(token.clone()).unwrap())
        .build()
        .unwrap();
    let watched = consumer.watch(&name).await.unwrap();
    assert_eq!(watched.get().version, VersionNumber(1));

    let mut latencies = Vec::new();
    for n in 2..=ROTATIONS + 1 {
        let rotation = on_a.rotate(&name, &StartRotation::default()).await.unwrap();
        let mut changes = watched.changes();
        let arrived = tokio::time::timeout(WAIT, async {
            while watched.get().version < VersionNumber(n) {
                changes.changed().await.unwrap();
            }
            SystemTime::now()
        })
        .await
        .unwrap_or_else(|_| panic!("the consumer on B did not get v{n} within {WAIT:?}"));
        let held = watched.get();
        assert_eq!(held.version, VersionNumber(n));
        let on_server = on_b
            .get_value(&name, Selector::Version(VersionNumber(n)))
            .await
            .unwrap();
        assert!(held.value.ct_eq(&on_server.value), "v{n}'s value");
        // B's read cache was cleared by A's event: B answers v{n} too.
        let current = on_b.get_value(&name, Selector::default()).await.unwrap();
        assert_eq!(current.info.version, VersionNumber(n));

        // A drives the rotation: the overlap ends there.
        on_a.advance(&rotation.id, Some("test".to_owned()))
            .await
            .unwrap();
        let record = loop {
            let r = on_a.get_rotation(&rotation.id).await.unwrap();
            if r.status != Status::Running {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(record.status, Status::Succeeded, "{:?}", record.reason);
        let promote = record
            .phases
            .iter()
            .find(|p| p.phase == Phase::Promote)
            .unwrap()
            .started_at;
        latencies.push(
            arrived
                .duration_since(promote.to_system())
                .unwrap_or_default(),
        );
    }
    consumer.close();
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() as f64 * q).ceil() as usize).max(1) - 1];
    eprintln!(
        "promote on A → consumer on B holds the new version, {} rotations: p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        p(0.5),
        p(0.99),
        p(1.0)
    );
    drop((a, b, db));
}

/// 100 secrets due at the same minute on three replicas: each rotates
/// once, whichever replica's scheduler gets there first (a scheduled
/// rotation's id is derived from its secret and due time, and its lease
/// keeps it on one replica).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_due_at_once_on_three_replicas_rotate_once_each() {
    const SECRETS: usize = 100;
    let Some(admin) = service(Service::Postgres) else {
        return;
    };
    let db = Database::create(&admin);
    let dir = tempfile::tempdir().unwrap();
    let token = init_with_store(dir.path(), &db.url);
    let store = [("KEYSHIFT_STORE", db.url.as_str())];
    let replicas: Vec<Serve> = (0..3)
        .map(|_| Serve::start(dir.path(), &[], &store))
        .collect();
    let on_a = api(&replicas[0], &token);

    // Every minute, no jitter: all due at the next minute. Created well
    // before it, so that none is due a minute later than the others.
    let second = || {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            % 60
    };
    while second() > 40 {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let schedule = Schedule {
        when: When::Cron("* * * * *".parse().unwrap()),
        jitter: Duration::ZERO,
    };
    let prefix = format!("replicas/{}", unique_name("due"));
    let mut names = Vec::new();
    for i in 0..SECRETS {
        let name: SecretName = format!("{prefix}/s{i}").parse().unwrap();
        on_a.create_secret(&CreateSecret {
            name: name.clone(),
            kind: SecretKind::ApiKey,
            policy: Policy {
                schedule: Some(schedule.clone()),
                ..Policy::default()
            },
            target: serde_json::json!({}),
            value: None,
            generate: true,
        })
        .await
        .unwrap();
        names.push(name);
    }
    assert!(second() <= 55, "created too close to the minute");

    // Each secret's rotation, read from any replica: exactly one, and it
    // succeeds. The next minute is far enough that none is due again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(100);
    let mut done = [false; SECRETS];
    while done.iter().any(|d| !d) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {SECRETS} secrets rotated",
            done.iter().filter(|d| **d).count()
        );
        for (i, name) in names.iter().enumerate() {
            if done[i] {
                continue;
            }
            let on = api(&replicas[i % 3], &token);
            let list = on.list_rotations(Some(name), false).await.unwrap();
            match list.rotations.as_slice() {
                [] => {}
                [r] if r.status == Status::Running => {}
                [r] => {
                    assert_eq!(r.status, Status::Succeeded, "{name}: {:?}", r.reason);
                    done[i] = true;
                }
                more => panic!("{name} rotated {} times: {more:?}", more.len()),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Still one each: nobody started a second one meanwhile.
    for name in &names {
        let list = on_a.list_rotations(Some(name), false).await.unwrap();
        assert_eq!(list.rotations.len(), 1, "{name}");
    }
    drop((replicas, db));
}

/// A consumer given two replicas' addresses: when the one it uses is
/// killed, it moves to the other, resumes its stream after the last event
/// it had (so a rotation made meanwhile reaches it), and its heartbeats
/// reach the other replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_moves_to_another_replica_when_its_own_dies() {
    let Some(admin) = service(Service::Postgres) else {
        return;
    };
    let db = Database::create(&admin);
    let dir = tempfile::tempdir().unwrap();
    let token = init_with_store(dir.path(), &db.url);
    let store = [("KEYSHIFT_STORE", db.url.as_str())];
    let a = Serve::start(dir.path(), &[], &store);
    let b = Serve::start(dir.path(), &[], &store);
    let on_b = api(&b, &token);

    let name = create_api_key(&on_b, "failover").await;
    let consumer = Client::builder(&format!("http://{}", a.addr))
        .failover(&format!("http://{}", b.addr))
        .token(SecretValue::new(token.clone()).unwrap())
        .consumer_id("failover-test:1")
        .backoff(Duration::from_millis(50), Duration::from_millis(500))
        .heartbeat_interval(Duration::from_millis(200))
        .build()
        .unwrap();
    let watched = consumer.watch(&name).await.unwrap();
    assert_eq!(consumer.api().base_url(), format!("http://{}", a.addr));

    // A dies; B rotates at once, before the consumer has noticed.
    a.kill();
    let rotation = on_b.rotate(&name, &StartRotation::default()).await.unwrap();
    let mut changes = watched.changes();
    tokio::time::timeout(WAIT, async {
        while watched.get().version < VersionNumber(2) {
            changes.changed().await.unwrap();
        }
    })
    .await
    .expect("the consumer did not get v2 through B");
    assert_eq!(consumer.api().base_url(), format!("http://{}", b.addr));
    let on_server = on_b
        .get_value(&name, Selector::Version(VersionNumber(2)))
        .await
        .unwrap();
    assert!(watched.get().value.ct_eq(&on_server.value));

    // Its heartbeats reach B: the gate sees it on v2.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let list = on_b.consumers(&name).await.unwrap();
        if list
            .consumers
            .iter()
            .any(|c| c.consumer_id == "failover-test:1" && c.version == Some(VersionNumber(2)))
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{list:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    on_b.advance(&rotation.id, Some("test".to_owned()))
        .await
        .unwrap();
    consumer.close();
    drop((b, db));
}

/// `keyshift drill` with its consumers spread over three replicas (each
/// failing over to the others) and its rotations started on each in turn,
/// while the third replica is killed (SIGKILL) and restarted on its
/// address every few seconds: no request fails, and every rotation
/// succeeds (those the killed replica drove are taken over once their
/// lease expires).
#[test]
fn a_drill_over_three_replicas_survives_one_killed_and_restarted() {
    const ROTATIONS: u64 = 20;
    let Some(admin) = service(Service::Postgres) else {
        return;
    };
    let db = Database::create(&admin);
    let dir = tempfile::tempdir().unwrap();
    let token = init_with_store(dir.path(), &db.url);
    let store = [("KEYSHIFT_STORE", db.url.as_str())];
    let lease = ["--lease", "3s"];
    let a = Serve::start(dir.path(), &lease, &store);
    let b = Serve::start(dir.path(), &lease, &store);
    let c = Serve::start(dir.path(), &lease, &store);
    let c_addr = c.addr.clone();

    let stop = Arc::new(AtomicBool::new(false));
    let chaos = {
        let (stop, dir, url, c_addr) = (
            stop.clone(),
            dir.path().to_owned(),
            db.url.clone(),
            c_addr.clone(),
        );
        std::thread::spawn(move || {
            let store = [("KEYSHIFT_STORE", url.as_str())];
            let mut c = c;
            let mut kills = 0u32;
            loop {
                std::thread::sleep(Duration::from_secs(3));
                if stop.load(Ordering::Relaxed) {
                    return kills;
                }
                c.kill();
                kills += 1;
                std::thread::sleep(Duration::from_secs(1));
                c = Serve::start_at(&dir, &c_addr, &lease, &store);
            }
        })
    };
    let out = std::process::Command::new(support::BIN)
        .args(["drill", "--kind", "api-key", "--consumers", "6"])
        .args(["--rotations", &ROTATIONS.to_string(), "--overlap", "1s"])
        .args(["--server", &format!("http://{}", a.addr)])
        .args(["--server", &format!("http://{}", b.addr)])
        .args(["--server", &format!("http://{c_addr}")])
        .args(["--output", "json"])
        .env("KEYSHIFT_TOKEN", &token)
        .output()
        .expect("run keyshift drill");
    stop.store(true, Ordering::Relaxed);
    let kills = chaos.join().unwrap();
    let report = support::drill_report(&out);
    eprintln!(
        "{kills} kills; {} requests, {} failed, {} rotations",
        report["requests"], report["failed_requests"], report["rotations_completed"]
    );
    assert!(kills >= 2, "the replica was killed {kills} times");
    assert_eq!(report["failed_requests"], 0, "{report:#}");
    assert_eq!(report["rotations_completed"], ROTATIONS, "{report:#}");
    assert!(report["requests"].as_u64().unwrap() > 100, "{report:#}");
    assert!(out.status.success(), "{report:#}");
    drop((a, b, db));
}
