//! Cases: label moves, version states, idempotent Generate.

use std::collections::BTreeMap;
use std::sync::Arc;

use keyshift_core::{Label, Policy, SecretKind, VersionNumber, VersionState};
use keyshift_store::{EventKind, Store, StoreError, VersionSelector};
use serde_json::json;

use crate::common::{name, t, value};

fn v(n: u64) -> VersionNumber {
    VersionNumber(n)
}

pub async fn move_labels_atomically(s: Arc<dyn Store>) {
    let n = name("prod/db");
    s.create_secret(&n, SecretKind::Static, &Policy::default(), &json!({}), t(0))
        .await
        .unwrap();
    for (i, l) in [(1, vec![Label::Current]), (2, vec![Label::Pending])] {
        let got = s
            .add_version(
                &n,
                &value(&format!("value-{i}-xxxxxxxx")),
                VersionState::Active,
                None,
                &l,
                t(i),
            )
            .await
            .unwrap();
        assert_eq!(got, v(i as u64));
    }
    let before = s.get_secret(&n).await.unwrap().labels;
    let last_id = s
        .events_since(0, &["*".into()], 100)
        .await
        .unwrap()
        .last()
        .unwrap()
        .id;

    // One bad move fails the whole batch.
    let e = s
        .move_labels(
            &n,
            &[(Label::Current, Some(v(2))), (Label::Previous, Some(v(7)))],
            t(10),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::NotFound {
                what: "version",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(s.get_secret(&n).await.unwrap().labels, before);
    assert!(s
        .events_since(last_id, &["*".into()], 100)
        .await
        .unwrap()
        .is_empty());

    // Promote: current -> 2, previous -> 1, pending removed; one event.
    s.move_labels(
        &n,
        &[
            (Label::Current, Some(v(2))),
            (Label::Previous, Some(v(1))),
            (Label::Pending, None),
        ],
        t(20),
    )
    .await
    .unwrap();
    let after: BTreeMap<Label, VersionNumber> = [(Label::Current, v(2)), (Label::Previous, v(1))]
        .into_iter()
        .collect();
    assert_eq!(s.get_secret(&n).await.unwrap().labels, after);
    let evs = s.events_since(last_id, &["*".into()], 100).await.unwrap();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].kind, EventKind::LabelsMoved);
    assert_eq!(evs[0].labels, after);
    assert_eq!(evs[0].at, t(20));

    // Moves that change nothing emit nothing.
    s.move_labels(
        &n,
        &[(Label::Current, Some(v(2))), (Label::Pending, None)],
        t(30),
    )
    .await
    .unwrap();
    assert_eq!(
        s.events_since(last_id, &["*".into()], 100)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(matches!(
        s.move_labels(&name("nope"), &[], t(0)).await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn version_state_and_accepted(s: Arc<dyn Store>) {
    let n = name("prod/redis");
    s.create_secret(&n, SecretKind::Redis, &Policy::default(), &json!({}), t(0))
        .await
        .unwrap();
    for i in 1..=3u64 {
        s.add_version(
            &n,
            &value(&format!("password-number-{i}")),
            VersionState::Pending,
            None,
            &[],
            t(0),
        )
        .await
        .unwrap();
    }
    assert!(s.accepted(&n).await.unwrap().is_empty());
    s.set_version_state(&n, v(3), VersionState::Active, t(5))
        .await
        .unwrap();
    s.set_version_state(&n, v(1), VersionState::Active, t(6))
        .await
        .unwrap();
    let acc = s.accepted(&n).await.unwrap();
    let got: Vec<(u64, String)> = acc
        .iter()
        .map(|(r, val)| (r.number.0, val.expose().to_owned()))
        .collect();
    assert_eq!(
        got,
        [
            (1, "password-number-1".to_owned()),
            (3, "password-number-3".to_owned())
        ]
    );
    assert!(acc.iter().all(|(r, _)| r.state == VersionState::Active));

    let evs = s.events_since(0, &[n.to_string()], 100).await.unwrap();
    let last = evs.last().unwrap();
    assert_eq!(last.kind, EventKind::VersionState);
    assert_eq!(last.version, Some(v(1)));
    let count = evs.len();

    // Same state again: no-op, no event.
    s.set_version_state(&n, v(1), VersionState::Active, t(7))
        .await
        .unwrap();
    assert_eq!(
        s.events_since(0, &[n.to_string()], 100)
            .await
            .unwrap()
            .len(),
        count
    );

    s.set_version_state(&n, v(1), VersionState::Revoked, t(8))
        .await
        .unwrap();
    let acc: Vec<u64> = s
        .accepted(&n)
        .await
        .unwrap()
        .iter()
        .map(|(r, _)| r.number.0)
        .collect();
    assert_eq!(acc, [3]);
    let listed = s.list_versions(&n).await.unwrap();
    assert_eq!(listed[0].state, VersionState::Revoked);
    assert_eq!(listed[1].state, VersionState::Pending);

    let e = s
        .set_version_state(&n, v(9), VersionState::Active, t(9))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::NotFound {
                what: "version",
                ..
            }
        ),
        "{e}"
    );
}

pub async fn add_version_idempotent_per_rotation(s: Arc<dyn Store>) {
    let n = name("prod/api");
    s.create_secret(&n, SecretKind::ApiKey, &Policy::default(), &json!({}), t(0))
        .await
        .unwrap();
    let r1 = "rot-1".into();
    let first = s
        .add_version(
            &n,
            &value("generated-value-aaaa"),
            VersionState::Pending,
            Some(&r1),
            &[Label::Pending],
            t(1),
        )
        .await
        .unwrap();
    let events = s.events_since(0, &["*".into()], 100).await.unwrap().len();
    let again = s
        .add_version(
            &n,
            &value("generated-value-bbbb"),
            VersionState::Active,
            Some(&r1),
            &[Label::Current],
            t(2),
        )
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(s.list_versions(&n).await.unwrap().len(), 1);
    let (rec, val) = s
        .get_value(&n, &VersionSelector::Number(first))
        .await
        .unwrap();
    assert_eq!(val.expose(), "generated-value-aaaa");
    assert_eq!(rec.state, VersionState::Pending);
    assert_eq!(rec.rotation, Some(r1.clone()));
    assert_eq!(rec.labels, [Label::Pending]);
    assert_eq!(
        s.events_since(0, &["*".into()], 100).await.unwrap().len(),
        events
    );

    let other = s
        .add_version(
            &n,
            &value("generated-value-cccc"),
            VersionState::Pending,
            Some(&"rot-2".into()),
            &[],
            t(3),
        )
        .await
        .unwrap();
    assert_eq!(other, v(2));
}
