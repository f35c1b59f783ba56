//! Cases: consumers' heartbeats, usage windows, failure reports, pruning.

use std::sync::Arc;

use keyshift_core::{Policy, SecretKind, SecretName, Timestamp, VersionNumber};
use keyshift_store::{
    ConsumerRecord, FailureRecord, HeartbeatRecord, Store, StoreError, UsageWindowRecord,
};
use serde_json::json;

use crate::common::{name, t};

fn v(n: u64) -> VersionNumber {
    VersionNumber(n)
}

/// The start of minute `m` (a whole minute since the epoch).
fn minute(m: i64) -> i64 {
    m * 60_000
}

async fn create(s: &Arc<dyn Store>, n: &SecretName) {
    s.create_secret(n, SecretKind::Static, &Policy::default(), &json!({}), t(0))
        .await
        .unwrap();
}

fn consumer(
    secret: &SecretName,
    id: &str,
    version: Option<u64>,
    host: Option<&str>,
    process: Option<&str>,
    first_seen: i64,
    last_seen: i64,
) -> ConsumerRecord {
    ConsumerRecord {
        secret: secret.clone(),
        consumer_id: id.into(),
        version: version.map(v),
        host: host.map(Into::into),
        process: process.map(Into::into),
        first_seen: t(first_seen),
        last_seen: t(last_seen),
        heartbeat_interval: None,
    }
}

/// A heartbeat with no host, process or interval.
async fn beat(
    s: &Arc<dyn Store>,
    consumer_id: &str,
    holds: &[(SecretName, Option<VersionNumber>)],
    at: Timestamp,
) {
    s.record_heartbeat(consumer_id, None, None, None, holds, at)
        .await
        .unwrap();
}

fn window(version: u64, start: i64, count: u64, last_at: i64) -> UsageWindowRecord {
    UsageWindowRecord {
        version: v(version),
        window_start: t(start),
        count,
        last_at: t(last_at),
    }
}

fn assert_secret_not_found<T: std::fmt::Debug>(r: Result<T, StoreError>, missing: &str) {
    match r {
        Err(StoreError::NotFound {
            what: "secret",
            name,
        }) => assert_eq!(name, missing),
        other => panic!("expected secret {missing} not found, got {other:?}"),
    }
}

pub async fn heartbeat_upsert_keeps_first_seen(s: Arc<dyn Store>) {
    let n = name("prod/orders/db");
    create(&s, &n).await;
    assert!(s.list_consumers(&n).await.unwrap().is_empty());

    let holds = |version| [(n.clone(), version)];
    let every_5s = Some(std::time::Duration::from_secs(5));
    s.record_heartbeat(
        "orders-1",
        Some("web-3"),
        Some("orders"),
        every_5s,
        &holds(Some(v(1))),
        t(1000),
    )
    .await
    .unwrap();
    beat(&s, "orders-2", &holds(None), t(1500)).await;
    let mut first = consumer(
        &n,
        "orders-1",
        Some(1),
        Some("web-3"),
        Some("orders"),
        1000,
        1000,
    );
    first.heartbeat_interval = every_5s;
    assert_eq!(
        s.list_consumers(&n).await.unwrap(),
        [
            first,
            consumer(&n, "orders-2", None, None, None, 1500, 1500)
        ]
    );

    // The second heartbeat moves version, host, process, interval and
    // last_seen; first_seen stays.
    s.record_heartbeat(
        "orders-1",
        Some("web-4"),
        None,
        None,
        &holds(Some(v(2))),
        t(2000),
    )
    .await
    .unwrap();
    beat(&s, "orders-2", &holds(Some(v(2))), t(2500)).await;
    assert_eq!(
        s.list_consumers(&n).await.unwrap(),
        [
            consumer(&n, "orders-1", Some(2), Some("web-4"), None, 1000, 2000),
            consumer(&n, "orders-2", Some(2), None, None, 1500, 2500),
        ]
    );

    // Sorted by consumer id, byte-wise on both engines.
    for id in ["a.1", "B-1", "a-1"] {
        beat(&s, id, &holds(None), t(3000)).await;
    }
    let ids: Vec<String> = s
        .list_consumers(&n)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.consumer_id)
        .collect();
    assert_eq!(ids, ["B-1", "a-1", "a.1", "orders-1", "orders-2"]);

    assert_secret_not_found(s.list_consumers(&name("nope/x")).await, "nope/x");
}

pub async fn heartbeat_covers_several_secrets(s: Arc<dyn Store>) {
    let (a, b, c) = (name("prod/a"), name("prod/b"), name("prod/c"));
    for n in [&a, &b, &c] {
        create(&s, n).await;
    }
    s.record_heartbeat(
        "c1",
        Some("h1"),
        None,
        None,
        &[(a.clone(), Some(v(1))), (b.clone(), None)],
        t(100),
    )
    .await
    .unwrap();
    s.record_heartbeat(
        "c2",
        None,
        Some("p2"),
        None,
        &[(b.clone(), Some(v(3))), (c.clone(), Some(v(1)))],
        t(200),
    )
    .await
    .unwrap();
    assert_eq!(
        s.list_consumers(&a).await.unwrap(),
        [consumer(&a, "c1", Some(1), Some("h1"), None, 100, 100)]
    );
    assert_eq!(
        s.list_consumers(&b).await.unwrap(),
        [
            consumer(&b, "c1", None, Some("h1"), None, 100, 100),
            consumer(&b, "c2", Some(3), None, Some("p2"), 200, 200),
        ]
    );
    assert_eq!(
        s.list_consumers(&c).await.unwrap(),
        [consumer(&c, "c2", Some(1), None, Some("p2"), 200, 200)]
    );

    // A heartbeat that no longer names b leaves c1's row of b as it was;
    // a secret named twice keeps its last holding.
    s.record_heartbeat(
        "c1",
        Some("h1"),
        None,
        None,
        &[(a.clone(), Some(v(1))), (a.clone(), Some(v(2)))],
        t(300),
    )
    .await
    .unwrap();
    assert_eq!(
        s.list_consumers(&a).await.unwrap(),
        [consumer(&a, "c1", Some(2), Some("h1"), None, 100, 300)]
    );
    assert_eq!(
        s.list_consumers(&b).await.unwrap()[0],
        consumer(&b, "c1", None, Some("h1"), None, 100, 100)
    );

    // Holding nothing is a no-op.
    beat(&s, "c3", &[], t(400)).await;
    for n in [&a, &b, &c] {
        assert!(s
            .list_consumers(n)
            .await
            .unwrap()
            .iter()
            .all(|r| r.consumer_id != "c3"));
    }
}

pub async fn heartbeat_unknown_secret_writes_nothing(s: Arc<dyn Store>) {
    let (a, b) = (name("prod/a"), name("prod/b"));
    create(&s, &a).await;
    create(&s, &b).await;
    s.record_heartbeat(
        "c1",
        Some("h1"),
        None,
        None,
        &[(a.clone(), Some(v(1)))],
        t(10),
    )
    .await
    .unwrap();
    let before = s.list_consumers(&a).await.unwrap();

    // The unknown name comes after the known ones: they are not written.
    let r = s
        .record_heartbeat(
            "c1",
            Some("h2"),
            Some("p"),
            None,
            &[
                (a.clone(), Some(v(2))),
                (b.clone(), Some(v(1))),
                (name("zzz/missing"), Some(v(1))),
            ],
            t(20),
        )
        .await;
    assert_secret_not_found(r, "zzz/missing");
    assert_eq!(s.list_consumers(&a).await.unwrap(), before);
    assert!(s.list_consumers(&b).await.unwrap().is_empty());

    let r = s
        .record_heartbeat(
            "c2",
            None,
            None,
            None,
            &[(name("aaa/missing"), None)],
            t(30),
        )
        .await;
    assert_secret_not_found(r, "aaa/missing");
    assert_eq!(s.list_consumers(&a).await.unwrap(), before);
    assert_eq!(s.prune(t(i64::MAX)).await.unwrap(), 1, "only c1's row of a");
}

fn heartbeat(
    consumer_id: &str,
    host: &str,
    holds: &[(&SecretName, Option<u64>)],
) -> HeartbeatRecord {
    HeartbeatRecord {
        consumer_id: consumer_id.into(),
        host: Some(host.into()),
        process: None,
        interval: None,
        holds: holds
            .iter()
            .map(|(n, ver)| ((*n).clone(), ver.map(v)))
            .collect(),
    }
}

pub async fn heartbeats_in_one_batch(s: Arc<dyn Store>) {
    let (a, b, missing) = (name("prod/a"), name("prod/b"), name("prod/missing"));
    create(&s, &a).await;
    create(&s, &b).await;
    let outcome = s
        .record_heartbeats(
            &[
                heartbeat("c1", "h1", &[(&a, Some(1))]),
                heartbeat("c2", "h1", &[(&a, Some(1)), (&missing, Some(1))]),
                // The same consumer again: the later heartbeat wins.
                heartbeat("c1", "h2", &[(&a, Some(2)), (&b, Some(1))]),
                heartbeat("c3", "h3", &[(&b, None)]),
            ],
            t(100),
        )
        .await
        .unwrap();
    assert_eq!(outcome, [None, Some(missing.clone()), None, None]);
    let host = |c: ConsumerRecord, h: &str| ConsumerRecord {
        host: Some(h.into()),
        ..c
    };
    assert_eq!(
        s.list_consumers(&a).await.unwrap(),
        [host(
            consumer(&a, "c1", Some(2), None, None, 100, 100),
            "h2"
        )],
        "c2 named a missing secret: none of its holdings is written"
    );
    assert_eq!(
        s.list_consumers(&b).await.unwrap(),
        [
            host(consumer(&b, "c1", Some(1), None, None, 100, 100), "h2"),
            host(consumer(&b, "c3", None, None, None, 100, 100), "h3"),
        ]
    );

    // A later batch moves last_seen and the version; first_seen stays.
    let outcome = s
        .record_heartbeats(&[heartbeat("c1", "h2", &[(&a, Some(3))])], t(200))
        .await
        .unwrap();
    assert_eq!(outcome, [None]);
    assert_eq!(
        s.list_consumers(&a).await.unwrap(),
        [host(
            consumer(&a, "c1", Some(3), None, None, 100, 200),
            "h2"
        )]
    );
    // An empty batch, and one naming no secret, write nothing.
    assert!(s.record_heartbeats(&[], t(300)).await.unwrap().is_empty());
    assert_eq!(
        s.record_heartbeats(&[heartbeat("c9", "h9", &[])], t(300))
            .await
            .unwrap(),
        [None]
    );
    assert_eq!(s.prune(t(i64::MAX)).await.unwrap(), 3);
}

pub async fn usage_adds_within_window_and_rolls_over(s: Arc<dyn Store>) {
    let (a, b) = (name("prod/api"), name("prod/other"));
    create(&s, &a).await;
    create(&s, &b).await;
    assert!(s.usage_since(&a, t(0)).await.unwrap().is_empty());

    s.record_usage(
        &[(a.clone(), v(1), 5), (a.clone(), v(2), 3)],
        t(minute(10) + 1),
    )
    .await
    .unwrap();
    // Same minute: added; a version named twice is summed; zero is skipped.
    s.record_usage(
        &[
            (a.clone(), v(1), 7),
            (a.clone(), v(1), 1),
            (a.clone(), v(2), 0),
            (a.clone(), v(3), 0),
            (b.clone(), v(1), 4),
        ],
        t(minute(10) + 59_999),
    )
    .await
    .unwrap();
    // The next minute starts a new row.
    s.record_usage(&[(a.clone(), v(1), 2)], t(minute(11)))
        .await
        .unwrap();
    // Each window says when a report last added to it: v2 was not in the
    // second report (its count was zero).
    let expected = [
        window(1, minute(10), 13, minute(10) + 59_999),
        window(2, minute(10), 3, minute(10) + 1),
        window(1, minute(11), 2, minute(11)),
    ];
    assert_eq!(s.usage_since(&a, t(0)).await.unwrap(), expected);
    assert_eq!(
        s.usage_since(&b, t(0)).await.unwrap(),
        [window(1, minute(10), 4, minute(10) + 59_999)]
    );

    // Only zeros: nothing written.
    s.record_usage(&[(a.clone(), v(4), 0)], t(minute(12)))
        .await
        .unwrap();
    assert_eq!(s.usage_since(&a, t(0)).await.unwrap(), expected);

    // Unknown secret: refused whole, zero counts included.
    let r = s
        .record_usage(
            &[(a.clone(), v(1), 100), (name("nope/x"), v(1), 1)],
            t(minute(11)),
        )
        .await;
    assert_secret_not_found(r, "nope/x");
    let r = s
        .record_usage(&[(name("nope/y"), v(1), 0)], t(minute(11)))
        .await;
    assert_secret_not_found(r, "nope/y");
    assert_eq!(s.usage_since(&a, t(0)).await.unwrap(), expected);
    s.record_usage(&[], t(minute(11))).await.unwrap();

    // Counts saturate at i64::MAX, in one report and across reports.
    let max = i64::MAX as u64;
    s.record_usage(
        &[(b.clone(), v(7), u64::MAX), (b.clone(), v(7), 1)],
        t(minute(20)),
    )
    .await
    .unwrap();
    s.record_usage(&[(b.clone(), v(7), 5)], t(minute(20) + 5))
        .await
        .unwrap();
    s.record_usage(&[(b.clone(), v(8), max - 1)], t(minute(20)))
        .await
        .unwrap();
    s.record_usage(&[(b.clone(), v(8), 1)], t(minute(20)))
        .await
        .unwrap();
    assert_eq!(
        s.usage_since(&b, t(minute(20))).await.unwrap(),
        [
            window(7, minute(20), max, minute(20) + 5),
            window(8, minute(20), max, minute(20))
        ]
    );
    s.record_usage(&[(b.clone(), v(8), 1)], t(minute(20)))
        .await
        .unwrap();
    assert_eq!(
        s.usage_since(&b, t(minute(20))).await.unwrap()[1],
        window(8, minute(20), max, minute(20))
    );
}

pub async fn usage_since_filters_by_window(s: Arc<dyn Store>) {
    let (a, b) = (name("prod/api"), name("prod/other"));
    create(&s, &a).await;
    create(&s, &b).await;
    for m in 1..=3 {
        s.record_usage(&[(a.clone(), v(1), 10 * m as u64)], t(minute(m) + 30_000))
            .await
            .unwrap();
    }
    s.record_usage(&[(a.clone(), v(2), 1), (b.clone(), v(1), 9)], t(minute(2)))
        .await
        .unwrap();

    let since = |ms: i64| {
        let s = s.clone();
        let a = a.clone();
        async move { s.usage_since(&a, Timestamp::from_millis(ms)).await.unwrap() }
    };
    let from_2 = [
        window(1, minute(2), 20, minute(2) + 30_000),
        window(2, minute(2), 1, minute(2)),
        window(1, minute(3), 30, minute(3) + 30_000),
    ];
    assert_eq!(since(minute(2)).await, from_2);
    // `since` is floored to its minute.
    assert_eq!(since(minute(2) + 59_999).await, from_2);
    assert_eq!(since(minute(3) - 1).await, from_2);
    assert_eq!(
        since(minute(3) + 1).await,
        [window(1, minute(3), 30, minute(3) + 30_000)]
    );
    assert!(since(minute(4)).await.is_empty());
    assert_eq!(since(0).await.len(), 4);
    assert_eq!(since(i64::MIN).await.len(), 4);

    assert_secret_not_found(s.usage_since(&name("nope/x"), t(0)).await, "nope/x");
}

pub async fn prune_removes_old_rows_only(s: Arc<dyn Store>) {
    let (a, b) = (name("prod/a"), name("prod/b"));
    create(&s, &a).await;
    create(&s, &b).await;
    beat(&s, "old", &[(a.clone(), Some(v(1)))], t(minute(1))).await;
    beat(&s, "new", &[(a.clone(), Some(v(1)))], t(minute(1))).await;
    // Seen again exactly at the cut-off: kept (only last_seen < older_than goes).
    beat(&s, "new", &[(a.clone(), Some(v(2)))], t(minute(5))).await;
    beat(&s, "elsewhere", &[(b.clone(), None)], t(minute(5) - 1)).await;
    s.record_usage(&[(a.clone(), v(1), 1)], t(minute(1)))
        .await
        .unwrap();
    s.record_usage(&[(a.clone(), v(2), 2)], t(minute(5) + 59_999))
        .await
        .unwrap();
    s.record_usage(&[(b.clone(), v(1), 3)], t(minute(4) + 59_999))
        .await
        .unwrap();

    assert_eq!(s.prune(t(0)).await.unwrap(), 0);
    assert_eq!(s.prune(t(minute(5))).await.unwrap(), 4);
    assert_eq!(
        s.list_consumers(&a).await.unwrap(),
        [consumer(
            &a,
            "new",
            Some(2),
            None,
            None,
            minute(1),
            minute(5)
        )]
    );
    assert!(s.list_consumers(&b).await.unwrap().is_empty());
    assert_eq!(
        s.usage_since(&a, t(0)).await.unwrap(),
        [window(2, minute(5), 2, minute(5) + 59_999)]
    );
    assert!(s.usage_since(&b, t(0)).await.unwrap().is_empty());
    assert_eq!(s.prune(t(minute(5))).await.unwrap(), 0);
    // Secrets and versions are not touched.
    assert_eq!(s.list_secrets(None).await.unwrap().len(), 2);
}

pub async fn delete_secret_removes_consumers_and_usage(s: Arc<dyn Store>) {
    let (a, b) = (name("prod/a"), name("prod/b"));
    create(&s, &a).await;
    create(&s, &b).await;
    beat(
        &s,
        "c1",
        &[(a.clone(), Some(v(1))), (b.clone(), Some(v(1)))],
        t(minute(1)),
    )
    .await;
    beat(&s, "c2", &[(a.clone(), None)], t(minute(1))).await;
    s.record_usage(&[(a.clone(), v(1), 5), (b.clone(), v(1), 6)], t(minute(1)))
        .await
        .unwrap();

    s.delete_secret(&a, t(minute(2))).await.unwrap();
    assert_secret_not_found(s.list_consumers(&a).await, "prod/a");
    assert_secret_not_found(s.usage_since(&a, t(0)).await, "prod/a");
    assert_secret_not_found(
        s.record_heartbeat("c1", None, None, None, &[(a.clone(), None)], t(minute(3)))
            .await,
        "prod/a",
    );

    // Re-created, the name starts with no consumers and no usage.
    create(&s, &a).await;
    assert!(s.list_consumers(&a).await.unwrap().is_empty());
    assert!(s.usage_since(&a, t(0)).await.unwrap().is_empty());
    // b is untouched.
    assert_eq!(
        s.list_consumers(&b).await.unwrap(),
        [consumer(
            &b,
            "c1",
            Some(1),
            None,
            None,
            minute(1),
            minute(1)
        )]
    );
    assert_eq!(
        s.usage_since(&b, t(0)).await.unwrap(),
        [window(1, minute(1), 6, minute(1))]
    );
    // The rows are gone, not orphaned: only b's two remain to prune.
    assert_eq!(s.prune(t(i64::MAX)).await.unwrap(), 2);
}

pub async fn concurrent_heartbeats_and_usage(s: Arc<dyn Store>) {
    let (a, b) = (name("prod/a"), name("prod/b"));
    create(&s, &a).await;
    create(&s, &b).await;
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let (s, a, b) = (s.clone(), a.clone(), b.clone());
        tasks.push(tokio::spawn(async move {
            for j in 0..10u64 {
                let now = t(minute(7) + i64::try_from(10 * i + j).unwrap());
                // Opposite orders in alternate tasks.
                let mut holds = vec![(a.clone(), Some(v(j))), (b.clone(), Some(v(j)))];
                let mut counts = vec![(a.clone(), v(1), 1), (b.clone(), v(1), 2)];
                if i % 2 == 1 {
                    holds.reverse();
                    counts.reverse();
                }
                s.record_heartbeat(&format!("c{i}"), None, None, None, &holds, now)
                    .await
                    .unwrap();
                s.record_usage(&counts, now).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for n in [&a, &b] {
        let consumers = s.list_consumers(n).await.unwrap();
        assert_eq!(consumers.len(), 8);
        assert!(consumers.iter().all(|c| c.version == Some(v(9))));
    }
    assert_eq!(
        s.usage_since(&a, t(0)).await.unwrap(),
        // The latest report, whichever order they committed in.
        [window(1, minute(7), 80, minute(7) + 79)]
    );
    assert_eq!(
        s.usage_since(&b, t(0)).await.unwrap(),
        [window(1, minute(7), 160, minute(7) + 79)]
    );
}

fn failure(id: &str, version: u64, count: u64, first_at: i64, last_at: i64) -> FailureRecord {
    FailureRecord {
        consumer_id: id.into(),
        version: v(version),
        count,
        first_at: t(first_at),
        last_at: t(last_at),
    }
}

pub async fn failures_add_up_per_consumer_and_version(s: Arc<dyn Store>) {
    let (a, b) = (name("prod/a"), name("prod/b"));
    create(&s, &a).await;
    create(&s, &b).await;
    assert!(s.list_failures(&a, v(2)).await.unwrap().is_empty());

    s.record_failures("c2", &[(a.clone(), v(2), 1), (a.clone(), v(2), 2)], t(10))
        .await
        .unwrap();
    s.record_failures("c1", &[(a.clone(), v(2), 1), (b.clone(), v(2), 4)], t(20))
        .await
        .unwrap();
    s.record_failures("c2", &[(a.clone(), v(2), 1), (a.clone(), v(3), 7)], t(30))
        .await
        .unwrap();
    assert_eq!(
        s.list_failures(&a, v(2)).await.unwrap(),
        [failure("c1", 2, 1, 20, 20), failure("c2", 2, 4, 10, 30)],
        "summed per consumer, sorted by id, first_at kept"
    );
    assert_eq!(
        s.list_failures(&a, v(3)).await.unwrap(),
        [failure("c2", 3, 7, 30, 30)]
    );
    assert_eq!(
        s.list_failures(&b, v(2)).await.unwrap(),
        [failure("c1", 2, 4, 20, 20)]
    );

    // Zero counts and empty reports write nothing (not even last_at).
    s.record_failures("c1", &[(a.clone(), v(2), 0), (a.clone(), v(9), 0)], t(40))
        .await
        .unwrap();
    s.record_failures("c1", &[], t(40)).await.unwrap();
    assert_eq!(s.list_failures(&a, v(2)).await.unwrap()[0].last_at, t(20));
    assert!(s.list_failures(&a, v(9)).await.unwrap().is_empty());

    // An unknown secret: NotFound, and the known one in the same report is
    // not written either.
    assert_secret_not_found(
        s.record_failures(
            "c1",
            &[(a.clone(), v(2), 5), (name("nope/x"), v(1), 1)],
            t(50),
        )
        .await,
        "nope/x",
    );
    assert_eq!(s.list_failures(&a, v(2)).await.unwrap()[0].count, 1);
    assert_secret_not_found(s.list_failures(&name("nope/x"), v(1)).await, "nope/x");

    // Saturating.
    s.record_failures("c3", &[(b.clone(), v(2), u64::MAX)], t(60))
        .await
        .unwrap();
    s.record_failures("c3", &[(b.clone(), v(2), 1)], t(61))
        .await
        .unwrap();
    assert_eq!(
        s.list_failures(&b, v(2)).await.unwrap()[1].count,
        i64::MAX as u64
    );

    // Pruned by last_at; deleted with their secret.
    s.prune(t(25)).await.unwrap();
    assert_eq!(
        s.list_failures(&a, v(2)).await.unwrap(),
        [failure("c2", 2, 4, 10, 30)],
        "c1's (last at 20) pruned, c2's (last at 30) kept"
    );
    s.delete_secret(&a, t(70)).await.unwrap();
    create(&s, &a).await;
    assert!(s.list_failures(&a, v(3)).await.unwrap().is_empty());
    assert_eq!(
        s.list_failures(&b, v(2)).await.unwrap(),
        [failure("c3", 2, i64::MAX as u64, 60, 61)],
        "b's after the prune, untouched by a's delete"
    );
}
