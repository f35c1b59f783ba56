//! The consumer SDK against a real in-process keyshift server: pushed
//! updates, the TTL clamp, single flight, the disk cache, reconnects, typed
//! validation and heartbeats. Nothing here needs an outside service, so
//! nothing is skipped (in CI or elsewhere).

mod support;

use std::time::{Duration, Instant};

use futures::future::join_all;
use keyshift_client::{Client, SdkError, SecretSource, Selector};
use keyshift_core::VersionNumber;
use serde::Deserialize;
use support::{
    create_api_key, create_static, put_value, rotate, wait_rotation, wait_version, TestServer,
};

#[tokio::test]
async fn a_pushed_rotation_is_swapped_in_without_waiting_for_the_poll() {
    let server = TestServer::start().await;
    let admin = server.admin();
    // A long overlap keeps the polling TTL at 30 s: anything faster is push.
    let name = create_api_key(&admin, "push", "10m").await;
    let client = server.sdk().build().unwrap();
    let watched = client.watch(&name).await.unwrap();
    assert_eq!(watched.get().version, VersionNumber(1));
    assert_eq!(watched.ttl(), Duration::from_secs(30));
    let fetches = watched.fetch_count();

    let started = Instant::now();
    rotate(&admin, &name).await;
    let snap = wait_version(&watched, 2).await;
    let elapsed = started.elapsed();
    eprintln!("rotate request → consumer holds v2: {elapsed:?}");
    assert!(elapsed < watched.ttl(), "{elapsed:?}: not pushed");

    let on_server = admin
        .get_value(&name, Selector::Version(VersionNumber(2)))
        .await
        .unwrap();
    assert!(
        snap.value.ct_eq(&on_server.value),
        "the swapped-in value is v2's"
    );
    assert!(snap.seq > 0, "applied from an event: {}", snap.seq);
    assert_eq!(
        watched.fetch_count(),
        fetches + 1,
        "one fetch for one change"
    );
    // The same handle, seen through the trait the helpers use.
    let source: &dyn SecretSource = &watched;
    assert_eq!(source.current().version, VersionNumber(2));
    client.close();
}

#[tokio::test]
async fn the_ttl_is_clamped_below_the_overlap_window() {
    let server = TestServer::start().await;
    let admin = server.admin();
    let client = server.sdk().ttl(Duration::from_secs(60)).build().unwrap();

    let ten = create_api_key(&admin, "ttl10", "10s").await;
    assert_eq!(
        client.watch(&ten).await.unwrap().ttl(),
        Duration::from_secs(5)
    );

    let zero = create_api_key(&admin, "ttl0", "0s").await;
    assert_eq!(
        client.watch(&zero).await.unwrap().ttl(),
        Duration::from_secs(1),
        "floor"
    );

    let long = create_api_key(&admin, "ttl10m", "10m").await;
    assert_eq!(
        client.watch(&long).await.unwrap().ttl(),
        Duration::from_secs(60),
        "unclamped"
    );
}

#[tokio::test]
async fn fifty_concurrent_refreshes_share_one_fetch() {
    let server = TestServer::start().await;
    let admin = server.admin();
    let name = create_api_key(&admin, "flight", "10m").await;
    let client = server.sdk().build().unwrap();
    let watched = client.watch(&name).await.unwrap();
    let before = watched.fetch_count();

    let results = join_all((0..50).map(|_| watched.refresh())).await;

    assert_eq!(watched.fetch_count() - before, 1);
    for r in results {
        assert_eq!(r.unwrap().version, VersionNumber(1));
    }
    // Sequential refreshes each fetch.
    watched.refresh().await.unwrap();
    assert_eq!(watched.fetch_count() - before, 2);
}

#[tokio::test]
async fn a_consumer_started_while_the_server_is_down_serves_the_persisted_value() {
    let mut server = TestServer::start().await;
    let admin = server.admin();
    let name = create_api_key(&admin, "cache", "0s").await;
    let cache = tempfile::tempdir().unwrap();
    let key = [0x5a; 32];

    // Rotate to v2 and let the rotation finish.
    let observer = server.sdk().build().unwrap();
    let seen = observer.watch(&name).await.unwrap();
    let rotation = rotate(&admin, &name).await;
    wait_version(&seen, 2).await;
    wait_rotation(&admin, &rotation).await;

    // A consumer with a disk cache watches: v2 is persisted by `watch`.
    let first = server
        .sdk()
        .cache_dir(cache.path().to_owned(), key)
        .build()
        .unwrap();
    let served = first.watch(&name).await.unwrap().get();
    assert_eq!(served.version, VersionNumber(2));
    first.close();
    observer.close();

    server.stop().await;

    // Server down: a new consumer with the same cache and key serves v2.
    let second = server
        .sdk()
        .cache_dir(cache.path().to_owned(), key)
        .build()
        .unwrap();
    let watched = second.watch(&name).await.unwrap();
    let snap = watched.get();
    assert_eq!(snap.version, VersionNumber(2));
    assert!(snap.value.ct_eq(&served.value));
    assert_eq!(snap.seq, 0, "from the cache, not from an event");
    assert_eq!(
        watched.ttl(),
        Duration::from_secs(1),
        "clamped by the cached overlap"
    );

    // The wrong key is an error, never a value; no cache at all is Unavailable.
    let wrong = server
        .sdk()
        .cache_dir(cache.path().to_owned(), [0x5b; 32])
        .build()
        .unwrap();
    let e = wrong.watch(&name).await.unwrap_err();
    assert!(matches!(e, SdkError::Cache(_)), "{e:?}");
    let bare = server.sdk().build().unwrap();
    let e = bare.watch(&name).await.unwrap_err();
    assert!(matches!(e, SdkError::Unavailable { .. }), "{e:?}");

    // The cache-started consumer keeps trying and catches up once the
    // server is back.
    server.start_again().await;
    let v3 = put_value(&server.admin(), &name, None).await;
    assert_eq!(v3, VersionNumber(3));
    wait_version(&watched, 3).await;
}

#[tokio::test]
async fn a_consumer_keeps_serving_through_a_server_restart_and_catches_up() {
    let mut server = TestServer::start().await;
    let admin = server.admin();
    // TTL 30 s: catching up within the test's wait means the stream resumed.
    let name = create_api_key(&admin, "restart", "10m").await;
    let other = create_api_key(&admin, "restart-other", "10m").await;
    // A first reconnect delay of 1 s leaves time to rotate while the
    // stream is down, so the change comes back as a replay after
    // `Last-Event-ID`.
    let client = server
        .sdk()
        .backoff(Duration::from_secs(1), Duration::from_secs(2))
        .build()
        .unwrap();
    let watched = client.watch(&name).await.unwrap();
    let v1 = watched.get();
    // An event on the stream gives the client an id to resume from.
    let neighbour = client.watch(&other).await.unwrap();
    put_value(&admin, &other, None).await;
    wait_version(&neighbour, 2).await;

    server.stop().await;
    assert_eq!(
        watched.get().version,
        VersionNumber(1),
        "still served while down"
    );
    assert!(watched.refresh().await.is_err(), "the server is down");
    assert!(
        watched.get().value.ct_eq(&v1.value),
        "a failed refresh keeps the value"
    );
    assert!(watched.last_error().is_some());

    server.start_again().await;
    let started = Instant::now();
    rotate(&server.admin(), &name).await;
    let snap = wait_version(&watched, 2).await;
    assert!(
        started.elapsed() < watched.ttl(),
        "caught up by the stream, not the poll"
    );
    assert!(snap.seq > 0, "applied from a replayed event, not a read");
    assert_eq!(watched.last_error(), None);
}

#[derive(Debug, Deserialize)]
struct DbConfig {
    host: String,
    port: u16,
}

fn valid_db(c: &DbConfig) -> Result<(), String> {
    if c.port == 0 || c.host.is_empty() {
        return Err("host and a non-zero port are required".to_owned());
    }
    Ok(())
}

#[tokio::test]
async fn a_typed_secret_that_fails_validation_keeps_the_last_good_value() {
    let server = TestServer::start().await;
    let admin = server.admin();
    let name = create_static(&admin, "typed", r#"{"host":"db1","port":5432}"#).await;
    let client = server.sdk().build().unwrap();
    let db = client.watch_typed(&name, valid_db).await.unwrap();
    assert_eq!(db.get().value.port, 5432);

    // v2 parses but fails validation: rejected, v1 stays.
    put_value(&admin, &name, Some(r#"{"host":"db2","port":0}"#)).await;
    db.refresh().await.unwrap();
    assert_eq!(db.get().version, VersionNumber(1));
    assert_eq!(db.get().value.host, "db1");
    let err = db.last_error().expect("the rejection is reported");
    assert!(err.contains("failed validation"), "{err}");

    // v3 is not JSON: rejected, and the message does not quote it.
    put_value(&admin, &name, Some("hunter2-not-json")).await;
    db.refresh().await.unwrap();
    assert_eq!(db.get().version, VersionNumber(1));
    let err = db.last_error().unwrap();
    assert!(err.contains("not a JSON document"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");

    // v4 is good: accepted by push.
    put_value(&admin, &name, Some(r#"{"host":"db4","port":6432}"#)).await;
    let mut changes = db.changes();
    tokio::time::timeout(
        support::WAIT,
        changes.wait_for(|_| db.get().version == VersionNumber(4)),
    )
    .await
    .expect("v4 arrives")
    .unwrap();
    assert_eq!(db.get().value.host, "db4");
    assert!(db.get().seq > 0, "pushed: applied at an event's seq");
    assert_eq!(db.last_error(), None);

    // A first value that fails validation is an error: nothing good to serve.
    let bad = create_static(&admin, "typedbad", r#"{"host":"","port":1}"#).await;
    let e = client.watch_typed(&bad, valid_db).await.unwrap_err();
    assert!(matches!(e, SdkError::Invalid(_)), "{e:?}");
}

#[tokio::test]
async fn watching_an_unknown_secret_is_not_found_and_debug_hides_the_token() {
    let server = TestServer::start().await;
    let client = server.sdk().build().unwrap();
    let e = client
        .watch(&support::unique_name("missing"))
        .await
        .unwrap_err();
    assert!(matches!(&e, SdkError::Api(c) if c.is_not_found()), "{e:?}");
    let shown = format!("{client:?}");
    assert!(!shown.contains(server.token.expose()), "{shown}");
    assert!(shown.contains(client.consumer_id()), "{shown}");
}

#[tokio::test]
async fn heartbeats_report_the_version_each_consumer_holds() {
    let server = TestServer::start().await;
    let admin = server.admin();
    let name = create_api_key(&admin, "beat", "10m").await;
    let client = server
        .sdk()
        .consumer_id("orders-test:1")
        .heartbeat_interval(Duration::from_millis(200))
        .build()
        .unwrap();
    let watched = client.watch(&name).await.unwrap();
    rotate(&admin, &name).await;
    wait_version(&watched, 2).await;

    // The server's view, polled (bounded): a heartbeat goes out right
    // after the change.
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        let list = admin.consumers(&name).await.unwrap();
        let me = list
            .consumers
            .iter()
            .find(|c| c.consumer_id == "orders-test:1");
        if me.and_then(|c| c.version) == Some(VersionNumber(2)) {
            let me = me.unwrap();
            assert!(
                me.process.as_deref().is_some_and(|p| p.contains("pid")),
                "{me:?}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "server sees {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = Client::builder; // the builder is the entry point
}
