//! Cases: secrets, versions by label and number.

use std::collections::BTreeMap;
use std::sync::Arc;

use keyshift_core::{Label, Policy, SecretKind, VersionNumber, VersionState};
use keyshift_store::{EventKind, Store, StoreError, VersionSelector};
use serde_json::json;

use crate::common::{name, t, value};

fn v(n: u64) -> VersionNumber {
    VersionNumber(n)
}

pub async fn secrets_crud(s: Arc<dyn Store>) {
    let n = name("prod/orders/db");
    let policy = Policy {
        max_attempts: 5,
        ..Policy::default()
    };
    let target = json!({"type": "redis", "user": "orders"});
    let rec = s
        .create_secret(&n, SecretKind::Redis, &policy, &target, t(1000))
        .await
        .unwrap();
    assert_eq!(rec.name, n);
    assert!(rec.labels.is_empty());

    let got = s.get_secret(&n).await.unwrap();
    assert_eq!(got, rec);
    assert_eq!(got.kind, SecretKind::Redis);
    assert_eq!(got.policy, policy);
    assert_eq!(got.target, target);
    assert_eq!(got.created_at, t(1000));

    let again = s
        .create_secret(&n, SecretKind::Static, &policy, &target, t(2000))
        .await
        .unwrap_err();
    assert!(
        matches!(again, StoreError::AlreadyExists { what: "secret", .. }),
        "{again}"
    );

    for other in ["prod/orders/api", "dev/x", "prod/a"] {
        s.create_secret(
            &name(other),
            SecretKind::Static,
            &Policy::default(),
            &json!({}),
            t(1),
        )
        .await
        .unwrap();
    }
    let all: Vec<String> = s
        .list_secrets(None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name.to_string())
        .collect();
    assert_eq!(
        all,
        ["dev/x", "prod/a", "prod/orders/api", "prod/orders/db"]
    );
    let prod: Vec<String> = s
        .list_secrets(Some("prod/orders/"))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name.to_string())
        .collect();
    assert_eq!(prod, ["prod/orders/api", "prod/orders/db"]);

    let p2 = Policy {
        max_attempts: 9,
        ..Policy::default()
    };
    s.update_policy(&n, &p2).await.unwrap();
    assert_eq!(s.get_secret(&n).await.unwrap().policy, p2);

    let missing = name("nope/x");
    let e = s.get_secret(&missing).await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound { what: "secret", .. }));
    assert_eq!(e.to_string(), "secret not found: nope/x");
    assert!(matches!(
        s.update_policy(&missing, &p2).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.delete_secret(&missing, t(3)).await,
        Err(StoreError::NotFound { .. })
    ));

    s.add_version(
        &n,
        &value("a-secret-value-1"),
        VersionState::Active,
        None,
        &[Label::Current],
        t(5),
    )
    .await
    .unwrap();
    s.delete_secret(&n, t(3000)).await.unwrap();
    assert!(matches!(
        s.get_secret(&n).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.list_versions(&n).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(s.list_secrets(None).await.unwrap().len(), 3);

    // The name can be used again; its versions start over, its events go on.
    s.create_secret(&n, SecretKind::Static, &policy, &target, t(4000))
        .await
        .unwrap();
    let added = s
        .add_version(
            &n,
            &value("another-value-22"),
            VersionState::Pending,
            None,
            &[],
            t(4001),
        )
        .await
        .unwrap();
    assert_eq!(added, v(1));
    let events = s.events_since(0, &[n.to_string()], 100).await.unwrap();
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::SecretCreated,
            EventKind::VersionAdded,
            EventKind::SecretDeleted,
            EventKind::SecretCreated,
            EventKind::VersionAdded
        ]
    );
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert!(events[2].labels.is_empty());
}

pub async fn versions_and_labels(s: Arc<dyn Store>) {
    let n = name("prod/api");
    s.create_secret(&n, SecretKind::ApiKey, &Policy::default(), &json!({}), t(0))
        .await
        .unwrap();
    let v1 = s
        .add_version(
            &n,
            &value("value-number-one"),
            VersionState::Active,
            None,
            &[Label::Current],
            t(10),
        )
        .await
        .unwrap();
    let v2 = s
        .add_version(
            &n,
            &value("value-number-two"),
            VersionState::Pending,
            None,
            &[Label::Pending, Label::Custom("blue".into())],
            t(20),
        )
        .await
        .unwrap();
    let v3 = s
        .add_version(
            &n,
            &value("value-number-three"),
            VersionState::Pending,
            None,
            &[],
            t(30),
        )
        .await
        .unwrap();
    assert_eq!((v1, v2, v3), (v(1), v(2), v(3)));

    let (rec, val) = s
        .get_value(&n, &VersionSelector::Label(Label::Current))
        .await
        .unwrap();
    assert_eq!(rec.number, v1);
    assert_eq!(rec.state, VersionState::Active);
    assert_eq!(rec.created_at, t(10));
    assert_eq!(rec.labels, [Label::Current]);
    assert_eq!(val.expose(), "value-number-one");

    let (rec, val) = s
        .get_value(&n, &VersionSelector::Label(Label::Custom("blue".into())))
        .await
        .unwrap();
    assert_eq!(rec.number, v2);
    assert_eq!(rec.labels, [Label::Pending, Label::Custom("blue".into())]);
    assert_eq!(val.expose(), "value-number-two");

    let (rec, val) = s.get_value(&n, &VersionSelector::Number(v3)).await.unwrap();
    assert_eq!(rec.number, v3);
    assert!(rec.labels.is_empty());
    assert_eq!(val.expose(), "value-number-three");

    let e = s
        .get_value(&n, &VersionSelector::Label(Label::Previous))
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::NotFound { what: "label", .. }),
        "{e}"
    );
    let e = s
        .get_value(&n, &VersionSelector::Number(v(9)))
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
    let e = s
        .get_value(&name("nope"), &VersionSelector::Number(v(1)))
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::NotFound { what: "secret", .. }),
        "{e}"
    );
    let e = s
        .add_version(
            &name("nope"),
            &value("x"),
            VersionState::Active,
            None,
            &[],
            t(0),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::NotFound { what: "secret", .. }),
        "{e}"
    );

    let listed = s.list_versions(&n).await.unwrap();
    let numbers: Vec<u64> = listed.iter().map(|r| r.number.0).collect();
    assert_eq!(numbers, [1, 2, 3]);
    assert_eq!(listed[0].labels, [Label::Current]);

    // A new version can take a label from an older one, atomically.
    let v4 = s
        .add_version(
            &n,
            &value("value-number-four"),
            VersionState::Active,
            None,
            &[Label::Current],
            t(40),
        )
        .await
        .unwrap();
    let secret = s.get_secret(&n).await.unwrap();
    let expected: BTreeMap<Label, VersionNumber> = [
        (Label::Current, v4),
        (Label::Pending, v2),
        (Label::Custom("blue".into()), v2),
    ]
    .into_iter()
    .collect();
    assert_eq!(secret.labels, expected);
    let last = s
        .events_since(0, &["*".into()], 100)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(last.kind, EventKind::VersionAdded);
    assert_eq!(last.version, Some(v4));
    assert_eq!(last.labels, expected);
}

pub async fn scheduled_secrets_only(s: Arc<dyn Store>) {
    let every: keyshift_core::Schedule = serde_json::from_value(json!({"every": "30d"})).unwrap();
    let scheduled = Policy {
        schedule: Some(every),
        ..Policy::default()
    };
    let plain = Policy::default();
    for (n, kind, policy) in [
        ("a/static", SecretKind::Static, &scheduled),
        ("a/key", SecretKind::ApiKey, &plain),
        ("a/key-every-30d", SecretKind::ApiKey, &scheduled),
        ("a/cert", SecretKind::X509, &plain),
    ] {
        s.create_secret(&name(n), kind, policy, &json!({}), t(1))
            .await
            .unwrap();
    }
    let names = |list: Vec<keyshift_store::SecretRecord>| -> Vec<String> {
        list.into_iter().map(|r| r.name.to_string()).collect()
    };
    assert_eq!(
        names(s.list_scheduled().await.unwrap()),
        ["a/cert", "a/key-every-30d"],
        "a static secret never rotates; a key without a schedule waits to be asked"
    );
    s.update_policy(&name("a/key"), &scheduled).await.unwrap();
    s.update_policy(&name("a/key-every-30d"), &plain)
        .await
        .unwrap();
    assert_eq!(
        names(s.list_scheduled().await.unwrap()),
        ["a/cert", "a/key"]
    );
    assert_eq!(s.list_secrets(None).await.unwrap().len(), 4);
}
