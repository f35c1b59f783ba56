//! Cases: the change feed and subscribers.

use std::sync::Arc;

use keyshift_core::{Label, Policy, SecretKind, VersionNumber, VersionState};
use keyshift_store::{EventKind, Store};
use serde_json::json;

use crate::common::{name, t, value};

fn v(n: u64) -> VersionNumber {
    VersionNumber(n)
}

pub async fn events_since_patterns_and_order(s: Arc<dyn Store>) {
    assert_eq!(s.latest_event_id().await.unwrap(), 0);
    let names = ["prod/a", "prod/b", "dev/a", "prod_x"];
    for (i, n) in names.iter().enumerate() {
        s.create_secret(
            &name(n),
            SecretKind::Static,
            &Policy::default(),
            &json!({}),
            t(i as i64),
        )
        .await
        .unwrap();
    }
    for n in names {
        s.add_version(
            &name(n),
            &value("some-value-here-1"),
            VersionState::Active,
            None,
            &[Label::Current],
            t(100),
        )
        .await
        .unwrap();
    }
    let all = s.events_since(0, &["*".into()], 1000).await.unwrap();
    assert_eq!(all.len(), 8);
    assert_eq!(s.latest_event_id().await.unwrap(), all[7].id);
    assert!(s
        .events_since(all[7].id, &["*".into()], 10)
        .await
        .unwrap()
        .is_empty());
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    for n in names {
        let seqs: Vec<u64> = all
            .iter()
            .filter(|e| e.secret.as_str() == n)
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [1, 2], "{n}");
    }

    let secrets = |evs: &[keyshift_store::EventRecord]| -> Vec<String> {
        evs.iter().map(|e| e.secret.to_string()).collect()
    };
    // `prod/*` must not match `prod_x` (no LIKE wildcards).
    let prod = s.events_since(0, &["prod/*".into()], 1000).await.unwrap();
    assert_eq!(secrets(&prod), ["prod/a", "prod/b", "prod/a", "prod/b"]);
    let some = s
        .events_since(0, &["dev/a".into(), "prod/b".into()], 1000)
        .await
        .unwrap();
    assert_eq!(secrets(&some), ["prod/b", "dev/a", "prod/b", "dev/a"]);
    let prefix = s.events_since(0, &["prod*".into()], 1000).await.unwrap();
    assert_eq!(prefix.len(), 6);
    assert!(s.events_since(0, &[], 1000).await.unwrap().is_empty());
    assert!(s
        .events_since(0, &["PROD/*".into()], 1000)
        .await
        .unwrap()
        .is_empty());

    // Cursor and limit.
    let first3 = s.events_since(0, &["*".into()], 3).await.unwrap();
    assert_eq!(first3.len(), 3);
    let rest = s
        .events_since(first3[2].id, &["*".into()], 1000)
        .await
        .unwrap();
    assert_eq!(rest.len(), 5);
    assert_eq!(rest[0].id, all[3].id);
    let version_added = &all[4];
    assert_eq!(version_added.kind, EventKind::VersionAdded);
    assert_eq!(version_added.version, Some(v(1)));
    assert_eq!(version_added.labels.get(&Label::Current), Some(&v(1)));
}

pub async fn subscribe_receives_committed_events(s: Arc<dyn Store>) {
    let mut rx = s.subscribe();
    let n = name("prod/watched");
    s.create_secret(&n, SecretKind::Static, &Policy::default(), &json!({}), t(1))
        .await
        .unwrap();
    s.add_version(
        &n,
        &value("watched-value-1"),
        VersionState::Active,
        None,
        &[Label::Current],
        t(2),
    )
    .await
    .unwrap();
    // A failed change sends nothing.
    let _ = s
        .move_labels(&n, &[(Label::Current, Some(v(5)))], t(3))
        .await
        .unwrap_err();
    s.move_labels(&n, &[(Label::Previous, Some(v(1)))], t(4))
        .await
        .unwrap();

    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(rx.recv().await.unwrap());
    }
    assert!(rx.try_recv().is_err());
    let kinds: Vec<EventKind> = got.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::SecretCreated,
            EventKind::VersionAdded,
            EventKind::LabelsMoved
        ]
    );
    let stored = s.events_since(0, &["*".into()], 100).await.unwrap();
    assert_eq!(got, stored);
}

pub async fn subscribers_see_concurrent_events_in_id_order(s: Arc<dyn Store>) {
    let mut rx = s.subscribe();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let n = name(&format!("prod/concurrent-{i}"));
            s.create_secret(&n, SecretKind::Static, &Policy::default(), &json!({}), t(i))
                .await
                .unwrap();
            for j in 0..3 {
                s.add_version(
                    &n,
                    &value(&format!("value-{i}-{j}-xxxxxx")),
                    VersionState::Active,
                    None,
                    &[Label::Current],
                    t(j),
                )
                .await
                .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut got = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        got.push(ev);
    }
    assert_eq!(got.len(), 32);
    assert!(got.windows(2).all(|w| w[0].id < w[1].id), "ids in order");
    let stored = s.events_since(0, &["*".into()], 100).await.unwrap();
    assert_eq!(got, stored, "no gaps: every id committed and sent");
    for i in 0..8 {
        let seqs: Vec<u64> = stored
            .iter()
            .filter(|e| e.secret.as_str() == format!("prod/concurrent-{i}"))
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [1, 2, 3, 4]);
    }
}
