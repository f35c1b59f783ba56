//! Test harness: a fresh SQLite file or PostgreSQL database per test.
#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use keyshift_core::{SecretName, SecretValue, Timestamp};
use keyshift_store::{sqlite_url, MasterKey, SqlStore, Store};
use keyshift_testkit::{service, unique_name, Service};
use sqlx::{Connection, Executor};

pub fn t(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

pub fn name(s: &str) -> SecretName {
    s.parse().unwrap()
}

pub fn value(s: &str) -> SecretValue {
    SecretValue::new(s.to_owned()).unwrap()
}

/// A SQLite database file in a temporary directory.
pub struct SqliteDb {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl SqliteDb {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyshift.db");
        SqliteDb { dir, path }
    }

    pub fn url(&self) -> String {
        sqlite_url(&self.path)
    }
}

/// A PostgreSQL database created for one test, dropped by [`PgDb::drop_db`].
pub struct PgDb {
    admin: String,
    pub db: String,
    pub url: String,
}

/// `url` with its database path replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let (scheme, rest) = base.split_once("://").unwrap();
    let authority = rest.split('/').next().unwrap();
    let mut out = format!("{scheme}://{authority}/{db}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

impl PgDb {
    /// None when PostgreSQL is not reachable (the testkit said so loudly).
    pub async fn create() -> Option<PgDb> {
        let admin = service(Service::Postgres)?;
        sqlx::any::install_default_drivers();
        let db = unique_name("ks_store");
        let mut conn = sqlx::AnyConnection::connect(&admin).await.unwrap();
        conn.execute(format!("CREATE DATABASE {db}").as_str())
            .await
            .unwrap();
        conn.close().await.unwrap();
        let url = with_database(&admin, &db);
        Some(PgDb { admin, db, url })
    }

    pub async fn drop_db(self) {
        let mut conn = sqlx::AnyConnection::connect(&self.admin).await.unwrap();
        conn.execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db).as_str())
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
}

/// Runs `case` against a store at `url`, closes it, and re-raises a panic
/// of the case only after the caller had a chance to clean up.
async fn run_case<F, Fut>(url: &str, case: F) -> Result<(), Box<dyn std::any::Any + Send>>
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let store = Arc::new(SqlStore::open(url, MasterKey::generate()).await.unwrap());
    let result = tokio::spawn(case(store.clone() as Arc<dyn Store>)).await;
    store.close().await;
    result.map_err(|e| e.into_panic())
}

pub async fn run_sqlite<F, Fut>(case: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let db = SqliteDb::new();
    if let Err(panic) = run_case(&db.url(), case).await {
        std::panic::resume_unwind(panic);
    }
}

pub async fn run_postgres<F, Fut>(case: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(db) = PgDb::create().await else {
        return;
    };
    let result = run_case(&db.url, case).await;
    db.drop_db().await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn database_urls_are_rewritten() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://h:1?sslmode=disable", "x"),
        "postgres://h:1/x?sslmode=disable"
    );
}
