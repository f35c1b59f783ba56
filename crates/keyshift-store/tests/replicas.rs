//! Two stores on one PostgreSQL database, as two server replicas hold
//! them: each one's subscribers receive every committed event, its own and
//! the other's, in id order and without gaps, also across a lost listener
//! connection (NOTIFY is not replayed; the catch-up read is what delivers).

mod common;

use std::sync::Arc;
use std::time::Duration;

use keyshift_core::{Policy, SecretKind};
use keyshift_store::{EventRecord, MasterKey, SqlStore, Store};
use serde_json::json;
use tokio::sync::broadcast;

use common::{name, t, PgDb};
use keyshift_testkit::{service, Service};

/// How long an event may take to arrive before the test fails.
const WAIT: Duration = Duration::from_secs(20);

async fn create(store: &SqlStore, n: &str) -> i64 {
    store
        .create_secret(
            &name(n),
            SecretKind::Static,
            &Policy::default(),
            &json!({}),
            t(0),
        )
        .await
        .unwrap();
    store.latest_event_id().await.unwrap()
}

/// Receives events until the one with id `last`; returns their ids.
async fn ids_until(rx: &mut broadcast::Receiver<EventRecord>, last: i64) -> Vec<i64> {
    let mut ids = Vec::new();
    while ids.last() != Some(&last) {
        let e = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("event {last} not received; got {ids:?}"))
            .unwrap();
        ids.push(e.id);
    }
    ids
}

/// Terminates the database sessions that listen for events.
async fn cut_listeners(db: &str) -> u64 {
    let admin = service(Service::Postgres).unwrap();
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap();
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND query ILIKE 'LISTEN%'",
    )
    .bind(db)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    cut.len() as u64
}

#[tokio::test]
async fn each_replica_sees_every_event_in_order_across_a_lost_listener() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let key = MasterKey::generate();
    let a = Arc::new(SqlStore::open(&db.url, key.clone()).await.unwrap());
    let b = Arc::new(SqlStore::open(&db.url, key).await.unwrap());
    let mut on_a = a.subscribe();
    let mut on_b = b.subscribe();

    // Writes on A only, then interleaved: both see 1..=6 in order.
    let first = create(&a, "r/one").await;
    create(&a, "r/two").await;
    create(&b, "r/three").await;
    create(&a, "r/four").await;
    create(&b, "r/five").await;
    let last = create(&a, "r/six").await;
    let all: Vec<i64> = (first..=last).collect();
    assert_eq!(all.len(), 6);
    assert_eq!(ids_until(&mut on_b, last).await, all, "B");
    assert_eq!(ids_until(&mut on_a, last).await, all, "A");

    // B's listener loses its connection (A's too: same database); what A
    // writes meanwhile still reaches B, in order, once it catches up.
    assert!(
        cut_listeners(&db.db).await >= 1,
        "no listener session found"
    );
    let first = create(&a, "r/seven").await;
    create(&a, "r/eight").await;
    let last = create(&a, "r/nine").await;
    let all: Vec<i64> = (first..=last).collect();
    assert_eq!(ids_until(&mut on_b, last).await, all, "B after the cut");

    a.close().await;
    b.close().await;
    db.drop_db().await;
}

#[tokio::test]
async fn replicas_starting_together_migrate_once() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let key = MasterKey::generate();
    let (one, two, three) = tokio::join!(
        SqlStore::open(&db.url, key.clone()),
        SqlStore::open(&db.url, key.clone()),
        SqlStore::open(&db.url, key.clone()),
    );
    let stores = [one.unwrap(), two.unwrap(), three.unwrap()];
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT version) FROM keyshift_schema")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(rows, distinct, "each migration recorded once");
    assert!(rows >= 6);
    drop(conn);
    for s in stores {
        s.close().await;
    }
    db.drop_db().await;
}
