//! Engine-level properties: nothing in plaintext on disk, the master-key
//! check, ciphertexts bound to their rows, the append-only audit log.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use keyshift_core::{Label, Policy, SecretKind, VersionNumber, VersionState};
use keyshift_store::{MasterKey, NewAudit, SqlStore, Store, StoreError, VersionSelector};
use serde_json::json;

use common::{name, t, value, PgDb, SqliteDb};

const CANARY: &str = "KS-CANARY-plaintext-7f3a9c1e5b";

/// Every file in `dir` (the database, its WAL and shared memory) by name.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn sqlite_file_never_holds_plaintext_values() {
    let db = SqliteDb::new();
    let store = SqlStore::open(&db.url(), MasterKey::generate())
        .await
        .unwrap();
    let n = name("prod/canary");
    store
        .create_secret(
            &n,
            SecretKind::Static,
            &Policy::default(),
            &json!({"k": "v"}),
            t(0),
        )
        .await
        .unwrap();
    for i in 0..3 {
        store
            .add_version(
                &n,
                &value(&format!("{CANARY}-{i}")),
                VersionState::Active,
                None,
                &[Label::Current],
                t(i),
            )
            .await
            .unwrap();
    }
    let (_, got) = store
        .get_value(&n, &VersionSelector::Label(Label::Current))
        .await
        .unwrap();
    assert_eq!(got.expose(), format!("{CANARY}-2"));

    // While open (the WAL holds the recent pages) and after closing.
    for (file, bytes) in files(db.dir.path()) {
        assert!(
            !contains(&bytes, CANARY),
            "{file} holds a value in plaintext"
        );
    }
    store.close().await;
    let closed = files(db.dir.path());
    assert!(closed.contains_key("keyshift.db"));
    assert!(
        contains(&closed["keyshift.db"], "prod/canary"),
        "the test reads the right file"
    );
    for (file, bytes) in closed {
        assert!(
            !contains(&bytes, CANARY),
            "{file} holds a value in plaintext"
        );
    }
}

#[tokio::test]
async fn sqlite_wrong_master_key_is_refused_and_changes_nothing() {
    let db = SqliteDb::new();
    let k1 = MasterKey::generate();
    let store = SqlStore::open(&db.url(), k1.clone()).await.unwrap();
    let n = name("prod/x");
    store
        .create_secret(&n, SecretKind::Static, &Policy::default(), &json!({}), t(0))
        .await
        .unwrap();
    store
        .add_version(
            &n,
            &value("value-under-key-one"),
            VersionState::Active,
            None,
            &[Label::Current],
            t(1),
        )
        .await
        .unwrap();
    store.close().await;
    let before = files(db.dir.path());

    let k2 = MasterKey::generate();
    let e = SqlStore::open(&db.url(), k2.clone()).await.unwrap_err();
    match &e {
        StoreError::WrongMasterKey {
            store_key_id,
            given_key_id,
        } => {
            assert_eq!(store_key_id, &k1.id());
            assert_eq!(given_key_id, &k2.id());
        }
        other => panic!("expected WrongMasterKey, got {other}"),
    }
    assert!(e.to_string().contains(&k1.id()));
    assert_eq!(
        files(db.dir.path()),
        before,
        "a refused open changes no file"
    );

    let store = SqlStore::open(&db.url(), k1).await.unwrap();
    let (_, v) = store
        .get_value(&n, &VersionSelector::Number(VersionNumber(1)))
        .await
        .unwrap();
    assert_eq!(v.expose(), "value-under-key-one");
    store.close().await;
}

#[tokio::test]
async fn postgres_wrong_master_key_is_refused() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let k1 = MasterKey::generate();
    SqlStore::open(&db.url, k1.clone())
        .await
        .unwrap()
        .close()
        .await;
    let e = SqlStore::open(&db.url, MasterKey::generate())
        .await
        .unwrap_err();
    let ok =
        matches!(&e, StoreError::WrongMasterKey { store_key_id, .. } if *store_key_id == k1.id());
    let again = SqlStore::open(&db.url, k1).await;
    let again_ok = again.is_ok();
    if let Ok(s) = again {
        s.close().await;
    }
    db.drop_db().await;
    assert!(ok, "expected WrongMasterKey, got {e}");
    assert!(again_ok);
}

/// Copies version 1's ciphertext over version 2 of the same secret, and
/// over version 1 of another secret: both must fail to decrypt.
async fn moved_ciphertext_fails(url: &str) {
    let key = MasterKey::generate();
    let store = SqlStore::open(url, key.clone()).await.unwrap();
    let (a, b) = (name("prod/a"), name("prod/b"));
    for n in [&a, &b] {
        store
            .create_secret(n, SecretKind::Static, &Policy::default(), &json!({}), t(0))
            .await
            .unwrap();
        for i in 1..=2 {
            store
                .add_version(
                    n,
                    &value(&format!("{n}-value-{i}")),
                    VersionState::Active,
                    None,
                    &[],
                    t(i),
                )
                .await
                .unwrap();
        }
    }
    store.close().await;

    let raw = sqlx::AnyPool::connect(url).await.unwrap();
    let copy = "UPDATE versions SET \
        nonce = (SELECT nonce FROM versions WHERE secret_id = (SELECT id FROM secrets WHERE name = 'prod/a') AND number = 1), \
        ciphertext = (SELECT ciphertext FROM versions WHERE secret_id = (SELECT id FROM secrets WHERE name = 'prod/a') AND number = 1) \
        WHERE (secret_id = (SELECT id FROM secrets WHERE name = 'prod/a') AND number = 2) \
           OR (secret_id = (SELECT id FROM secrets WHERE name = 'prod/b') AND number = 1)";
    let done = sqlx::query(copy).execute(&raw).await.unwrap();
    assert_eq!(done.rows_affected(), 2);
    raw.close().await;

    let store = SqlStore::open(url, key).await.unwrap();
    let get = |n, v| {
        let store = &store;
        async move {
            store
                .get_value(n, &VersionSelector::Number(VersionNumber(v)))
                .await
        }
    };
    assert_eq!(get(&a, 1).await.unwrap().1.expose(), "prod/a-value-1");
    assert!(matches!(get(&a, 2).await, Err(StoreError::Decrypt)));
    assert!(matches!(get(&b, 1).await, Err(StoreError::Decrypt)));
    assert_eq!(get(&b, 2).await.unwrap().1.expose(), "prod/b-value-2");
    assert!(matches!(store.accepted(&a).await, Err(StoreError::Decrypt)));
    assert_eq!(
        StoreError::Decrypt.to_string(),
        "stored value failed to decrypt"
    );
    store.close().await;
}

/// The schema refuses UPDATE and DELETE on the audit log.
async fn audit_is_append_only(url: &str) {
    let store = SqlStore::open(url, MasterKey::generate()).await.unwrap();
    store
        .append_audit(&NewAudit {
            actor: "op".into(),
            action: "secret.create".into(),
            secret: None,
            version: None,
            rotation: None,
            outcome: "ok".into(),
            detail: None,
            at: t(1),
        })
        .await
        .unwrap();
    store.close().await;
    let raw = sqlx::AnyPool::connect(url).await.unwrap();
    let update = sqlx::query("UPDATE audit SET actor = 'someone else'")
        .execute(&raw)
        .await;
    let delete = sqlx::query("DELETE FROM audit").execute(&raw).await;
    raw.close().await;
    assert!(update.unwrap_err().to_string().contains("append-only"));
    assert!(delete.unwrap_err().to_string().contains("append-only"));
}

/// Invariant I3 is the database's: a second active rotation of a secret is
/// refused even when inserted behind the store's back.
async fn database_enforces_one_active_rotation(url: &str) {
    let store = SqlStore::open(url, MasterKey::generate()).await.unwrap();
    let n = name("prod/i3");
    store
        .create_secret(&n, SecretKind::Static, &Policy::default(), &json!({}), t(0))
        .await
        .unwrap();
    let r = keyshift_core::rotation::Rotation::new(
        "i3-a".into(),
        n.clone(),
        Policy::default(),
        keyshift_core::Strategy::Dual,
        None,
        None,
        t(1),
    );
    store.create_rotation(&r).await.unwrap();
    store.close().await;
    let raw = sqlx::AnyPool::connect(url).await.unwrap();
    let insert = |id: &'static str, active: i64| {
        sqlx::query(
            "INSERT INTO rotations (id, secret, active, state, created_at, updated_at) \
             VALUES ($1, 'prod/i3', $2, '{}', 0, 0)",
        )
        .bind(id)
        .bind(active)
    };
    let second_active = insert("i3-b", 1).execute(&raw).await;
    let ended = insert("i3-c", 0).execute(&raw).await;
    raw.close().await;
    let e = second_active.unwrap_err();
    assert!(
        matches!(&e, sqlx::Error::Database(db) if db.is_unique_violation()),
        "{e}"
    );
    ended.unwrap();
}

#[tokio::test]
async fn sqlite_enforces_one_active_rotation() {
    let db = SqliteDb::new();
    database_enforces_one_active_rotation(&db.url()).await;
}

#[tokio::test]
async fn postgres_enforces_one_active_rotation() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let result = tokio::spawn({
        let url = db.url.clone();
        async move { database_enforces_one_active_rotation(&url).await }
    })
    .await;
    db.drop_db().await;
    result.unwrap();
}

#[tokio::test]
async fn sqlite_moved_ciphertext_fails_to_decrypt() {
    let db = SqliteDb::new();
    moved_ciphertext_fails(&db.url()).await;
}

#[tokio::test]
async fn postgres_moved_ciphertext_fails_to_decrypt() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let result = tokio::spawn({
        let url = db.url.clone();
        async move { moved_ciphertext_fails(&url).await }
    })
    .await;
    db.drop_db().await;
    result.unwrap();
}

#[tokio::test]
async fn sqlite_audit_is_append_only() {
    let db = SqliteDb::new();
    audit_is_append_only(&db.url()).await;
}

#[tokio::test]
async fn postgres_audit_is_append_only() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let result = tokio::spawn({
        let url = db.url.clone();
        async move { audit_is_append_only(&url).await }
    })
    .await;
    db.drop_db().await;
    result.unwrap();
}

#[tokio::test]
async fn sqlite_reopen_keeps_everything() {
    let db = SqliteDb::new();
    let key = MasterKey::generate();
    let store = SqlStore::open(&db.url(), key.clone()).await.unwrap();
    assert_eq!(store.engine(), keyshift_store::Engine::Sqlite);
    let n = name("prod/kept");
    store
        .create_secret(&n, SecretKind::Static, &Policy::default(), &json!({}), t(0))
        .await
        .unwrap();
    store
        .add_version(
            &n,
            &value("kept-value-123456"),
            VersionState::Active,
            None,
            &[Label::Current],
            t(1),
        )
        .await
        .unwrap();
    let events = store.events_since(0, &["*".into()], 100).await.unwrap();
    store.close().await;

    let store = SqlStore::open(&db.url(), key).await.unwrap();
    assert_eq!(
        store.events_since(0, &["*".into()], 100).await.unwrap(),
        events
    );
    store.delete_secret(&n, t(2)).await.unwrap();
    let after = store
        .events_since(events[1].id, &["*".into()], 100)
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].id, events[1].id + 1);
    assert_eq!(after[0].seq, 3);
    store.close().await;
}

#[tokio::test]
async fn unsupported_urls_are_refused_without_echo() {
    let e = SqlStore::open("mysql://root:hunter2@localhost/db", MasterKey::generate())
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::UnsupportedUrl { .. }), "{e}");
    assert!(!e.to_string().contains("hunter2"));
}

/// A store at schema v1 (before consumers, usage and failure reports) is
/// upgraded in place when opened: its secrets stay and take heartbeats,
/// usage and failure reports, and those with a schedule (or certificates)
/// are the ones the scheduler reads.
async fn upgrades_a_v1_store(url: &str, raw_url: &str, v1: &str) {
    // The store installs them when it opens; this test connects first.
    sqlx::any::install_default_drivers();
    let raw = sqlx::AnyPool::connect(raw_url).await.unwrap();
    sqlx::Executor::execute(&raw, v1).await.unwrap();
    for sql in [
        "CREATE TABLE keyshift_schema (\
         version BIGINT PRIMARY KEY, description TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        "INSERT INTO keyshift_schema (version, description, applied_at) VALUES (1, 'initial schema', 0)",
        "INSERT INTO secrets (name, kind, policy, target, created_at, event_seq) \
         VALUES ('prod/old', 'static', '{}', '{}', 0, 0)",
        "INSERT INTO secrets (name, kind, policy, target, created_at, event_seq) \
         VALUES ('prod/key', 'api-key', '{}', '{}', 0, 0)",
        "INSERT INTO secrets (name, kind, policy, target, created_at, event_seq) \
         VALUES ('prod/key-every-30d', 'api-key', '{\"schedule\":{\"every\":\"30d\"}}', '{}', 0, 0)",
        "INSERT INTO secrets (name, kind, policy, target, created_at, event_seq) \
         VALUES ('prod/cert', 'x509', '{}', '{}', 0, 0)",
    ] {
        sqlx::query(sql).execute(&raw).await.unwrap();
    }
    raw.close().await;

    let store = SqlStore::open(url, MasterKey::generate()).await.unwrap();
    let n = name("prod/old");
    store
        .record_heartbeat(
            "c1",
            None,
            None,
            None,
            &[(n.clone(), Some(VersionNumber(1)))],
            t(1),
        )
        .await
        .unwrap();
    store
        .record_usage(&[(n.clone(), VersionNumber(1), 3)], t(2))
        .await
        .unwrap();
    assert_eq!(store.list_consumers(&n).await.unwrap().len(), 1);
    assert_eq!(store.usage_since(&n, t(0)).await.unwrap()[0].count, 3);
    store
        .record_failures("c1", &[(n.clone(), VersionNumber(1), 2)], t(3))
        .await
        .unwrap();
    let failures = store.list_failures(&n, VersionNumber(1)).await.unwrap();
    assert_eq!(failures[0].count, 2);
    // Migration 0006 marked the secrets the scheduler looks at.
    let scheduled: Vec<String> = store
        .list_scheduled()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name.to_string())
        .collect();
    assert_eq!(scheduled, ["prod/cert", "prod/key-every-30d"]);
    store.close().await;

    let raw = sqlx::AnyPool::connect(url).await.unwrap();
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM keyshift_schema ORDER BY version")
            .fetch_all(&raw)
            .await
            .unwrap();
    raw.close().await;
    assert_eq!(versions, [1, 2, 3, 4, 5, 6, 7]);
}

#[tokio::test]
async fn sqlite_upgrades_a_v1_store() {
    let db = SqliteDb::new();
    upgrades_a_v1_store(
        &db.url(),
        &format!("{}?mode=rwc", db.url()),
        include_str!("../migrations/sqlite/0001_init.sql"),
    )
    .await;
}

#[tokio::test]
async fn postgres_upgrades_a_v1_store() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let result = tokio::spawn({
        let url = db.url.clone();
        async move {
            upgrades_a_v1_store(
                &url,
                &url,
                include_str!("../migrations/postgres/0001_init.sql"),
            )
            .await
        }
    })
    .await;
    db.drop_db().await;
    result.unwrap();
}
