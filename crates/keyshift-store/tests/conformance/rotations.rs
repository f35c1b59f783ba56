//! Cases: rotations, audit, tokens, health.

use std::sync::Arc;

use keyshift_core::rotation::{Phase, Rotation, RotationId};
use keyshift_core::{Policy, SecretKind, SecretName, Strategy, VersionNumber};
use keyshift_store::{CreateRotation, NewAudit, RotationFilter, Store, StoreError, TokenRecord};
use serde_json::json;

use crate::common::{name, t};

fn rotation(id: &str, secret: &SecretName, at: i64) -> Rotation {
    Rotation::new(
        id.into(),
        secret.clone(),
        Policy::default(),
        Strategy::Dual,
        Some(VersionNumber(1)),
        None,
        t(at),
    )
}

async fn secret(s: &dyn Store, n: &str) -> SecretName {
    let n = name(n);
    s.create_secret(&n, SecretKind::ApiKey, &Policy::default(), &json!({}), t(0))
        .await
        .unwrap();
    n
}

pub async fn create_rotation_outcomes(s: Arc<dyn Store>) {
    let n = secret(&*s, "prod/api").await;
    let r1 = rotation("r1", &n, 10);
    assert_eq!(
        s.create_rotation(&r1).await.unwrap(),
        CreateRotation::Created
    );

    // Same id: the stored rotation, even if the caller's copy differs.
    let mut retry = r1.clone();
    retry.reason = Some("a retry".into());
    assert_eq!(
        s.create_rotation(&retry).await.unwrap(),
        CreateRotation::Existing(r1.clone())
    );

    // Another id while r1 is active.
    let e = s
        .create_rotation(&rotation("r2", &n, 20))
        .await
        .unwrap_err();
    match e {
        StoreError::RotationActive { id } => assert_eq!(id, RotationId::from("r1")),
        other => panic!("expected RotationActive, got {other}"),
    }

    // Other secrets are independent.
    let other = secret(&*s, "prod/other").await;
    assert_eq!(
        s.create_rotation(&rotation("r3", &other, 30))
            .await
            .unwrap(),
        CreateRotation::Created
    );

    // Unknown secret.
    let e = s
        .create_rotation(&rotation("r4", &name("nope"), 0))
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::NotFound { what: "secret", .. }),
        "{e}"
    );

    // Once r1 has ended a new rotation may start.
    let mut done = r1.clone();
    done.phase = Phase::Done;
    s.save_rotation(&done).await.unwrap();
    assert_eq!(
        s.create_rotation(&rotation("r2", &n, 40)).await.unwrap(),
        CreateRotation::Created
    );
    // And r1 cannot come back to life while r2 is active.
    let e = s.save_rotation(&r1).await.unwrap_err();
    assert!(matches!(e, StoreError::RotationActive { .. }), "{e}");
    assert_eq!(s.get_rotation(&"r1".into()).await.unwrap(), done);
}

pub async fn concurrent_create_rotation(s: Arc<dyn Store>) {
    let n = secret(&*s, "prod/contended").await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        let r = rotation(&format!("c{i}"), &n, i);
        tasks.push(tokio::spawn(async move {
            (r.id.clone(), s.create_rotation(&r).await)
        }));
    }
    let mut created = Vec::new();
    let mut refused = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            (id, Ok(CreateRotation::Created)) => created.push(id),
            (_, Err(StoreError::RotationActive { id })) => refused.push(id),
            (id, other) => panic!("{id}: unexpected {other:?}"),
        }
    }
    assert_eq!(created.len(), 1, "exactly one rotation is created");
    assert_eq!(refused.len(), 7);
    assert!(refused.iter().all(|id| *id == created[0]));
    let active = s
        .list_rotations(&RotationFilter {
            secret: Some(n.clone()),
            active_only: true,
            since: None,
            limit: 100,
        })
        .await
        .unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].id, created[0]);
}

pub async fn save_get_list_rotations(s: Arc<dyn Store>) {
    let a = secret(&*s, "prod/a").await;
    let b = secret(&*s, "prod/b").await;
    let mut ra1 = rotation("ra1", &a, 100);
    s.create_rotation(&ra1).await.unwrap();
    ra1.phase = Phase::RolledBack;
    ra1.reason = Some("operator asked".into());
    s.save_rotation(&ra1).await.unwrap();
    let ra2 = rotation("ra2", &a, 300);
    s.create_rotation(&ra2).await.unwrap();
    let rb1 = rotation("rb1", &b, 200);
    s.create_rotation(&rb1).await.unwrap();

    assert_eq!(s.get_rotation(&"ra1".into()).await.unwrap(), ra1);
    let e = s.get_rotation(&"zz".into()).await.unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::NotFound {
                what: "rotation",
                ..
            }
        ),
        "{e}"
    );
    let e = s.save_rotation(&rotation("zz", &a, 0)).await.unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::NotFound {
                what: "rotation",
                ..
            }
        ),
        "{e}"
    );

    let ids =
        |rs: Vec<Rotation>| -> Vec<String> { rs.into_iter().map(|r| r.id.to_string()).collect() };
    let all = s
        .list_rotations(&RotationFilter {
            secret: None,
            active_only: false,
            since: None,
            limit: 100,
        })
        .await
        .unwrap();
    assert_eq!(ids(all), ["ra2", "rb1", "ra1"]);
    let of_a = s
        .list_rotations(&RotationFilter {
            secret: Some(a.clone()),
            active_only: false,
            since: None,
            limit: 100,
        })
        .await
        .unwrap();
    assert_eq!(ids(of_a), ["ra2", "ra1"]);
    let active = s
        .list_rotations(&RotationFilter {
            secret: None,
            active_only: true,
            since: None,
            limit: 100,
        })
        .await
        .unwrap();
    assert_eq!(ids(active), ["ra2", "rb1"]);
    let limited = s
        .list_rotations(&RotationFilter {
            secret: None,
            active_only: false,
            since: None,
            limit: 1,
        })
        .await
        .unwrap();
    assert_eq!(ids(limited), ["ra2"]);
    let recent = s
        .list_rotations(&RotationFilter {
            secret: Some(a.clone()),
            active_only: false,
            since: Some(t(300)),
            limit: 100,
        })
        .await
        .unwrap();
    assert_eq!(ids(recent), ["ra2"], "created at or after `since` only");
}

pub async fn delete_refused_while_rotation_active(s: Arc<dyn Store>) {
    let n = secret(&*s, "prod/busy").await;
    let mut r = rotation("busy-1", &n, 1);
    s.create_rotation(&r).await.unwrap();
    let e = s.delete_secret(&n, t(2)).await.unwrap_err();
    match e {
        StoreError::RotationActive { id } => assert_eq!(id, r.id),
        other => panic!("expected RotationActive, got {other}"),
    }
    assert!(s.get_secret(&n).await.is_ok());
    r.phase = Phase::Failed;
    s.save_rotation(&r).await.unwrap();
    s.delete_secret(&n, t(3)).await.unwrap();
    // The rotation's record outlives the secret.
    assert_eq!(s.get_rotation(&r.id).await.unwrap().phase, Phase::Failed);
}

pub async fn audit_append_and_list(s: Arc<dyn Store>) {
    let a = name("prod/a");
    for i in 0..5 {
        s.append_audit(&NewAudit {
            actor: format!("token-{i}"),
            action: "secret.read".into(),
            secret: if i % 2 == 0 { Some(a.clone()) } else { None },
            version: (i == 4).then_some(VersionNumber(2)),
            rotation: (i == 2).then(|| "r-1".into()),
            outcome: "ok".into(),
            detail: (i == 0).then(|| "first".into()),
            at: t(i),
        })
        .await
        .unwrap();
    }
    let all = s.list_audit(None, 100).await.unwrap();
    assert_eq!(all.len(), 5);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    assert_eq!(all[0].actor, "token-4");
    assert_eq!(all[0].version, Some(VersionNumber(2)));
    assert_eq!(all[4].detail.as_deref(), Some("first"));
    let of_a = s.list_audit(Some(&a), 2).await.unwrap();
    let actors: Vec<&str> = of_a.iter().map(|e| e.actor.as_str()).collect();
    assert_eq!(actors, ["token-4", "token-2"]);
    assert_eq!(of_a[1].rotation, Some("r-1".into()));
    assert_eq!(of_a[1].at, t(2));
}

pub async fn tokens(s: Arc<dyn Store>) {
    let tok = TokenRecord {
        id: "tok_abc".into(),
        secret_hash: [7u8; 32],
        description: "ci deploys".into(),
        grants: json!([{"pattern": "prod/*", "actions": ["read"]}]),
        created_at: t(5),
    };
    s.create_token(&tok).await.unwrap();
    assert_eq!(s.get_token("tok_abc").await.unwrap(), Some(tok.clone()));
    assert_eq!(s.get_token("tok_zzz").await.unwrap(), None);
    let e = s.create_token(&tok).await.unwrap_err();
    assert!(
        matches!(e, StoreError::AlreadyExists { what: "token", .. }),
        "{e}"
    );
}

pub async fn health(s: Arc<dyn Store>) {
    s.health().await.unwrap();
}

pub async fn rotation_leases(s: Arc<dyn Store>) {
    let n = secret(&*s, "prod/leased").await;
    let mut r = rotation("leased", &n, 10);
    s.create_rotation(&r).await.unwrap();
    let other = rotation("other", &secret(&*s, "prod/other").await, 20);
    s.create_rotation(&other).await.unwrap();
    let id = r.id.clone();
    let ids =
        |rs: Vec<Rotation>| -> Vec<String> { rs.into_iter().map(|r| r.id.to_string()).collect() };

    // Free: anyone may lease; then only its holder until it expires.
    assert_eq!(
        ids(s.leasable_rotations("a", t(100)).await.unwrap()),
        ["leased", "other"]
    );
    assert!(s.lease_rotation(&id, "a", t(100), t(200)).await.unwrap());
    assert!(!s.lease_rotation(&id, "b", t(150), t(250)).await.unwrap());
    assert!(
        s.lease_rotation(&id, "a", t(150), t(250)).await.unwrap(),
        "renewed"
    );
    assert_eq!(
        ids(s.leasable_rotations("b", t(200)).await.unwrap()),
        ["other"]
    );
    assert_eq!(
        ids(s.leasable_rotations("a", t(200)).await.unwrap()),
        ["leased", "other"],
        "its own lease, from an earlier life"
    );

    // Only the holder saves; after expiry another takes over, and the
    // first one's save is refused.
    r.phase = Phase::Generate;
    s.save_leased_rotation(&r, "a").await.unwrap();
    assert!(matches!(
        s.save_leased_rotation(&r, "b").await.unwrap_err(),
        StoreError::LeaseLost { .. }
    ));
    assert!(
        s.lease_rotation(&id, "b", t(250), t(350)).await.unwrap(),
        "expired at 250"
    );
    r.phase = Phase::DualAccept;
    let lost = s.save_leased_rotation(&r, "a").await.unwrap_err();
    assert!(
        matches!(&lost, StoreError::LeaseLost { id: lost_id } if *lost_id == id),
        "{lost}"
    );
    assert_eq!(
        s.get_rotation(&id).await.unwrap().phase,
        Phase::Generate,
        "nothing written"
    );
    s.save_leased_rotation(&r, "b").await.unwrap();

    // Releasing: only the holder's release counts.
    s.release_rotation(&id, "a").await.unwrap();
    assert!(!s.lease_rotation(&id, "a", t(300), t(400)).await.unwrap());
    s.release_rotation(&id, "b").await.unwrap();
    assert!(s.lease_rotation(&id, "a", t(300), t(400)).await.unwrap());

    // An ended rotation gives its lease up and cannot be leased.
    r.phase = Phase::RolledBack;
    s.save_leased_rotation(&r, "a").await.unwrap();
    assert!(!s.lease_rotation(&id, "a", t(500), t(600)).await.unwrap());
    assert_eq!(
        ids(s.leasable_rotations("a", t(500)).await.unwrap()),
        ["other"]
    );
    assert!(matches!(
        s.lease_rotation(&"missing".into(), "a", t(0), t(1))
            .await
            .unwrap_err(),
        StoreError::NotFound {
            what: "rotation",
            ..
        }
    ));
}
