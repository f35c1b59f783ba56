//! The PostgreSQL blue-green target against the real PostgreSQL
//! (`KEYSHIFT_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`).
//!
//! Test servers trust local connections, so pg_hba.conf must have
//! `host all +keyshift_password_auth 127.0.0.1/32 scram-sha-256` first
//! ([`keyshift_testkit::postgres_checks_passwords`] adds it): each test makes its own group role a member of `keyshift_password_auth`,
//! so its slot roles (members of the group) log in with a password only.
//! Each test drops the roles and tables it made when it ends, passing or
//! failing.

use std::future::Future;
use std::str::FromStr;
use std::time::{Duration, Instant};

use keyshift_core::{Credential, SecretValue};
use keyshift_targets::{PgConfig, PgTarget, Target, TargetError, Verdict};
use keyshift_testkit::{service, unique_name, Service};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, Executor};

/// Members of this role log in with a password (see the module docs).
const PASSWORD_GROUP: &str = keyshift_testkit::PG_PASSWORD_GROUP;

/// The test server: its admin URL, address and database.
struct Env {
    url: String,
    address: String,
    database: String,
    /// Connection options of the admin URL, for logging in as other roles.
    base: PgConnectOptions,
}

fn env() -> Option<Env> {
    let url = service(Service::Postgres)?;
    let base = PgConnectOptions::from_str(&url).expect("test postgres URL parses");
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    if rest.rsplit_once('@').is_some_and(|(u, _)| u.contains(':')) {
        panic!("these tests log in as the URL's user without a password (trust)");
    }
    if let Err(e) = keyshift_testkit::postgres_checks_passwords(&url) {
        panic!("PostgreSQL must check the test roles' passwords: {e}");
    }
    Some(Env {
        address: format!("{}:{}", base.get_host(), base.get_port()),
        database: base.get_database().unwrap_or("postgres").to_owned(),
        url,
        base,
    })
}

async fn admin_sql(env: &Env) -> PgConnection {
    PgConnection::connect(&env.url)
        .await
        .expect("connect as admin")
}

/// Runs `sql` as the admin, panicking on failure.
async fn run(env: &Env, sql: &str) {
    let mut conn = admin_sql(env).await;
    conn.execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    conn.close().await.ok();
}

/// Roles and tables made for one test, dropped on drop, even when the test
/// panics.
struct Fixture<'a> {
    env: &'a Env,
    roles: Vec<String>,
    tables: Vec<String>,
}

impl<'a> Fixture<'a> {
    fn new(env: &'a Env) -> Self {
        Fixture {
            env,
            roles: Vec::new(),
            tables: Vec::new(),
        }
    }

    /// A fresh group name, with its default slots, all dropped at the end
    /// (nothing is created).
    fn names(&mut self) -> String {
        let group = unique_name("ksg");
        self.roles.push(group.clone());
        self.roles.push(format!("{group}_blue"));
        self.roles.push(format!("{group}_green"));
        group
    }

    /// Creates a group role; when `checked`, a member of
    /// [`PASSWORD_GROUP`], so pg_hba.conf checks its members' passwords.
    async fn group(&mut self, checked: bool) -> String {
        let group = self.names();
        run(self.env, &format!("CREATE ROLE {group} NOLOGIN")).await;
        if checked {
            // Concurrent tests may create it at once: a duplicate is fine.
            let mut conn = admin_sql(self.env).await;
            let _ = conn
                .execute(format!("CREATE ROLE {PASSWORD_GROUP} NOLOGIN").as_str())
                .await;
            conn.close().await.ok();
            run(self.env, &format!("GRANT {PASSWORD_GROUP} TO {group}")).await;
        }
        group
    }

    /// A table with one row that `group` may read.
    async fn table_for(&mut self, group: &str) -> String {
        let table = unique_name("ks_t");
        self.tables.push(table.clone());
        run(
            self.env,
            &format!("CREATE TABLE {table} AS SELECT 42 AS answer"),
        )
        .await;
        run(self.env, &format!("GRANT SELECT ON {table} TO {group}")).await;
        table
    }

    /// A login role with `password` and `attributes` (e.g. CREATEROLE)
    /// whose password is checked.
    async fn login_role(&mut self, attributes: &str, password: &SecretValue) -> String {
        let checked = self.group(true).await;
        let role = unique_name("ksa");
        self.roles.push(role.clone());
        run(
            self.env,
            &format!(
                "CREATE ROLE {role} LOGIN {attributes} PASSWORD '{}' IN ROLE {checked}",
                password.expose()
            ),
        )
        .await;
        role
    }

    fn target(&self, group: &str) -> PgTarget {
        self.target_as(group, None)
    }

    fn target_as(&self, group: &str, admin: Option<Credential>) -> PgTarget {
        PgTarget::new(config(&self.env.address, &self.env.database, group), admin).unwrap()
    }
}

impl Drop for Fixture<'_> {
    fn drop(&mut self) {
        let url = self.env.url.clone();
        let roles = std::mem::take(&mut self.roles);
        let tables = std::mem::take(&mut self.tables);
        // Drop may run inside the test's runtime: clean up on a thread of
        // its own with its own runtime.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let Ok(mut conn) = PgConnection::connect(&url).await else {
                    return;
                };
                for t in tables {
                    let _ = conn
                        .execute(format!("DROP TABLE IF EXISTS {t}").as_str())
                        .await;
                }
                for r in roles.iter().rev() {
                    let _ = sqlx::query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                    )
                    .bind(r)
                    .execute(&mut conn)
                    .await;
                    let _ = conn
                        .execute(format!("DROP ROLE IF EXISTS {r}").as_str())
                        .await;
                }
                let _ = conn.close().await;
            });
        })
        .join()
        .ok();
    }
}

fn config(address: &str, database: &str, group: &str) -> PgConfig {
    serde_json::from_value(serde_json::json!({
        "address": address,
        "database": database,
        "group": group,
    }))
    .unwrap()
}

fn cred(value: &SecretValue) -> Credential {
    Credential::parse(value).expect("a credential")
}

/// `value` with its password replaced by a fresh one.
fn with_other_password(value: &SecretValue) -> SecretValue {
    Credential::new(cred(value).username(), keyshift_targets::random_password())
        .unwrap()
        .to_value()
}

/// Logs in as `value` outside the target's code.
async fn login(env: &Env, value: &SecretValue) -> Result<PgConnection, sqlx::Error> {
    let c = cred(value);
    env.base
        .clone()
        .username(c.username())
        .password(c.password().expose())
        .connect()
        .await
}

async fn logs_in(env: &Env, value: &SecretValue) -> bool {
    match login(env, value).await {
        Ok(c) => {
            c.close().await.ok();
            true
        }
        Err(sqlx::Error::Database(e))
            if matches!(e.code().as_deref(), Some("28P01") | Some("28000")) =>
        {
            false
        }
        Err(e) => panic!("login failed unexpectedly: {e}"),
    }
}

/// What the server knows of a role: (exists, may log in, direct member of
/// `group`).
async fn role_state(env: &Env, role: &str, group: &str) -> (bool, bool, bool) {
    let mut conn = admin_sql(env).await;
    let row: Option<(bool, bool)> = sqlx::query_as(
        "SELECT r.rolcanlogin, EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles g \
         ON g.oid = m.roleid WHERE m.member = r.oid AND g.rolname = $2) \
         FROM pg_roles r WHERE r.rolname = $1",
    )
    .bind(role)
    .bind(group)
    .fetch_optional(&mut conn)
    .await
    .unwrap();
    conn.close().await.ok();
    match row {
        None => (false, false, false),
        Some((login, member)) => (true, login, member),
    }
}

async fn stored_password(env: &Env, role: &str) -> Option<String> {
    let mut conn = admin_sql(env).await;
    let pw: Option<String> =
        sqlx::query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = $1")
            .bind(role)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    conn.close().await.ok();
    pw
}

/// Polls `condition` until it holds, for at most 10 s.
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Panics if `e` shows any of `values`' passwords.
fn assert_no_password(e: &TargetError, values: &[&SecretValue]) {
    let shown = format!("{e} {e:?}");
    for v in values {
        assert!(!shown.contains(cred(v).password().expose()), "{shown}");
    }
}

#[tokio::test]
async fn blue_green_cycle_overlaps_and_rolls_back_instantly() {
    let Some(env) = env() else { return };
    let mut fx = Fixture::new(&env);
    let group = fx.group(true).await;
    let table = fx.table_for(&group).await;
    let t = fx.target(&group);
    let [blue_role, green_role] = t.slots().clone();
    assert!(!role_state(&env, &blue_role, &group).await.0);

    t.precheck(None).await.unwrap();
    let blue = t.generate(None).await.unwrap().expect("a credential");
    assert_eq!(cred(&blue).username(), blue_role);
    t.enable(&blue).await.unwrap();
    assert_eq!(t.verify(&blue).await.unwrap(), Verdict::Accepted);
    assert_eq!(
        role_state(&env, &blue_role, &group).await,
        (true, true, true)
    );
    t.precheck(Some(&blue)).await.unwrap();

    // The slot reads what the group may read, and nothing was granted to it.
    let mut conn = login(&env, &blue).await.unwrap();
    let answer: i32 = sqlx::query_scalar(&format!("SELECT answer FROM {table}"))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(answer, 42);
    conn.close().await.unwrap();

    let green = t
        .generate(Some(&blue))
        .await
        .unwrap()
        .expect("a credential");
    assert_eq!(cred(&green).username(), green_role);
    t.enable(&green).await.unwrap();
    // The overlap: both log in.
    assert_eq!(t.verify(&blue).await.unwrap(), Verdict::Accepted);
    assert_eq!(t.verify(&green).await.unwrap(), Verdict::Accepted);
    assert!(logs_in(&env, &blue).await && logs_in(&env, &green).await);
    t.precheck(Some(&green)).await.unwrap();

    t.revoke(&blue).await.unwrap();
    assert_eq!(t.verify(&blue).await.unwrap(), Verdict::Refused);
    assert!(!logs_in(&env, &blue).await);
    assert_eq!(t.verify(&green).await.unwrap(), Verdict::Accepted);
    // Blue stays, with its password and membership, only NOLOGIN...
    assert_eq!(
        role_state(&env, &blue_role, &group).await,
        (true, false, true)
    );
    let before = stored_password(&env, &blue_role).await;
    assert!(before.is_some());
    // ...so enabling it again is an instant rollback.
    t.enable(&blue).await.unwrap();
    assert_eq!(t.verify(&blue).await.unwrap(), Verdict::Accepted);
    assert_eq!(t.verify(&green).await.unwrap(), Verdict::Accepted);

    // The next rotation reuses blue with a new password.
    let next = t
        .generate(Some(&green))
        .await
        .unwrap()
        .expect("a credential");
    assert_eq!(cred(&next).username(), blue_role);
    t.enable(&next).await.unwrap();
    assert_eq!(t.verify(&next).await.unwrap(), Verdict::Accepted);
    assert_eq!(t.verify(&blue).await.unwrap(), Verdict::Refused);
}

#[tokio::test]
async fn every_operation_twice_has_the_effect_of_once() {
    let Some(env) = env() else { return };
    let mut fx = Fixture::new(&env);
    let group = fx.group(true).await;
    let t = fx.target(&group);
    let [blue_role, green_role] = t.slots().clone();

    // generate has no side effect, whatever it is given.
    let blue = t.generate(None).await.unwrap().unwrap();
    let again = t.generate(None).await.unwrap().unwrap();
    assert_eq!(cred(&again).username(), blue_role);
    let green = t.generate(Some(&blue)).await.unwrap().unwrap();
    assert!(!role_state(&env, &blue_role, &group).await.0);
    assert!(!role_state(&env, &green_role, &group).await.0);

    for _ in 0..2 {
        t.enable(&blue).await.unwrap();
        assert_eq!(t.verify(&blue).await.unwrap(), Verdict::Accepted);
        assert_eq!(
            role_state(&env, &blue_role, &group).await,
            (true, true, true)
        );
    }
    t.enable(&green).await.unwrap();
    for _ in 0..2 {
        t.revoke(&blue).await.unwrap();
        assert_eq!(t.verify(&blue).await.unwrap(), Verdict::Refused);
        assert_eq!(
            role_state(&env, &blue_role, &group).await,
            (true, false, true)
        );
        assert_eq!(t.verify(&green).await.unwrap(), Verdict::Accepted);
    }

    // A value whose slot has since got another password is already
    // refused: revoking it leaves the slot's current password alone.
    let green2 = with_other_password(&green);
    t.enable(&green2).await.unwrap();
    assert_eq!(t.verify(&green).await.unwrap(), Verdict::Refused);
    t.revoke(&green).await.unwrap();
    assert_eq!(t.verify(&green2).await.unwrap(), Verdict::Accepted);

    // Revoking a value never enabled creates nothing.
    let mut fx2 = Fixture::new(&env);
    let other = fx2.group(true).await;
    let t2 = fx2.target(&other);
    let never = t2.generate(None).await.unwrap().unwrap();
    t2.revoke(&never).await.unwrap();
    assert!(!role_state(&env, cred(&never).username(), &other).await.0);
}

#[tokio::test]
async fn enable_and_revoke_touch_only_the_slots() {
    let Some(env) = env() else { return };
    let mut fx = Fixture::new(&env);
    let group = fx.group(true).await;
    let t = fx.target(&group);
    let outsider = Credential::new(&group, keyshift_targets::random_password())
        .unwrap()
        .to_value();
    for e in [
        t.enable(&outsider).await.unwrap_err(),
        t.revoke(&outsider).await.unwrap_err(),
        t.precheck(Some(&outsider)).await.unwrap_err(),
        t.generate(Some(&outsider)).await.unwrap_err(),
    ] {
        assert!(matches!(e, TargetError::Precondition { .. }), "{e}");
        assert_no_password(&e, &[&outsider]);
    }
    assert_eq!(role_state(&env, &group, &group).await, (true, false, false));
    let not_json = SecretValue::new("just-a-password-0123".into()).unwrap();
    let e = t.enable(&not_json).await.unwrap_err();
    assert!(matches!(e, TargetError::Precondition { .. }), "{e}");
    assert!(!format!("{e} {e:?}").contains("just-a-password"), "{e}");
}

#[tokio::test]
async fn usage_counts_open_sessions_of_a_slot() {
    let Some(env) = env() else { return };
    let mut fx = Fixture::new(&env);
    let group = fx.group(true).await;
    let t = fx.target(&group);
    let blue = t.generate(None).await.unwrap().unwrap();
    t.enable(&blue).await.unwrap();
    let green = t.generate(Some(&blue)).await.unwrap().unwrap();

    assert_eq!(t.usage(&blue).await.unwrap(), Some(0));
    let conn = login(&env, &blue).await.unwrap();
    assert_eq!(t.usage(&blue).await.unwrap(), Some(1));
    assert_eq!(t.usage(&green).await.unwrap(), Some(0));

    // NOLOGIN keeps the session open: it still counts.
    t.enable(&green).await.unwrap();
    t.revoke(&blue).await.unwrap();
    assert_eq!(t.usage(&blue).await.unwrap(), Some(1));

    conn.close().await.unwrap();
    eventually("blue's session to end", || async {
        t.usage(&blue).await.unwrap() == Some(0)
    })
    .await;
}

#[tokio::test]
async fn precheck_passes_with_the_current_credential_and_refuses_a_wrong_one() {
    let Some(env) = env() else { return };
    let mut fx = Fixture::new(&env);
    let group = fx.group(true).await;
    let t = fx.target(&group);
    let blue = t.generate(None).await.unwrap().unwrap();

    // Before enable the slot does not exist: the current cannot log in.
    let e = t.precheck(Some(&blue)).await.unwrap_err();
    assert!(matches!(e, TargetError::Precondition { .. }), "{e}");

    t.enable(&blue).await.unwrap();
    t.precheck(None).await.unwrap();
    t.precheck(Some(&blue)).await.unwrap();

    let wrong = with_other_password(&blue);
    let e = t.precheck(Some(&wrong)).await.unwrap_err();
    assert!(matches!(e, TargetError::Precondition { .. }), "{e}");
    assert!(e.to_string().contains("no longer logs in"), "{e}");
    assert_no_password(&e, &[&wrong, &blue]);

    // A user that is neither slot.
    let stranger = Credential::new("postgres", keyshift_targets::random_password())
        .unwrap()
        .to_value();
    let e = t.precheck(Some(&stranger)).await.unwrap_err();
    assert!(matches!(e, TargetError::Precondition { .. }), "{e}");
    assert!(e.to_string().contains("neither blue-green slot"), "{e}");
}

#[tokio::test]
async fn precheck_refuses_a_missing_group() {
    let Some(env) = env() else { return };
    let mut fx = Fixture::new(&env);
    let missing = fx.names();
    let t = fx.target(&missing);
    let e = t.precheck(None).await.unwrap_err();
    assert!(matches!(e, TargetError::Precondition { .. }), "{e}");
    assert!(e.to_string().contains("does not exist"), "{e}");
    // enable does not create a slot without its group.
    let blue = t.generate(None).await.unwrap().unwrap();
    let e = t.enable(&blue).await.unwrap_err();
    assert!(matches!(e, TargetError::Precondition { .. }), "{e}");
    assert!(!role_state(&env, cred(&blue).username(), &missing).await.0);
}

#[tokio::test]
async fn precheck_refuses_roles_that_pg_hba_trusts() {
    let Some(env) = env() else { return };
    let mut fx = Fixture::new(&env);
    // Not a member of keyshift_password_auth: pg_hba.conf trusts its slots.
    let group = fx.group(false).await;
    let t = fx.target(&group);
    let blue = t.generate(None).await.unwrap().unwrap();
    t.enable(&blue).await.unwrap();
    assert_eq!(
        t.verify(&with_other_password(&blue)).await.unwrap(),
        Verdict::Accepted,
        "this test needs pg_hba.conf to trust roles outside {PASSWORD_GROUP}"
    );
    t.precheck(None).await.unwrap();
    let e = t.precheck(Some(&blue)).await.unwrap_err();
    assert!(matches!(e, TargetError::Precondition { .. }), "{e}");
    let shown = e.to_string();
    assert!(
        shown.contains("pg_hba.conf") && shown.contains("scram-sha-256"),
        "{shown}"
    );
    assert_no_password(&e, &[&blue]);
}

#[tokio::test]
async fn enable_stores_a_scram_verifier_never_the_plaintext() {
    let Some(env) = env() else { return };
    let mut fx = Fixture::new(&env);
    let group = fx.group(true).await;
    let t = fx.target(&group);
    let blue = t.generate(None).await.unwrap().unwrap();
    let role = cred(&blue).username().to_owned();
    t.enable(&blue).await.unwrap();
    let first = stored_password(&env, &role).await.expect("a password");
    assert!(first.starts_with("SCRAM-SHA-256$4096:"), "{first}");
    assert!(!first.contains(cred(&blue).password().expose()));
    // The server checks it: the right password logs in, another does not.
    assert!(logs_in(&env, &blue).await);
    assert!(!logs_in(&env, &with_other_password(&blue)).await);
    // Enabling again salts afresh; the same password still logs in.
    t.enable(&blue).await.unwrap();
    let second = stored_password(&env, &role).await.expect("a password");
    assert!(second.starts_with("SCRAM-SHA-256$4096:"), "{second}");
    assert_ne!(first, second);
    assert!(logs_in(&env, &blue).await);
}

#[tokio::test]
async fn unreachable_servers_are_transient_errors_within_the_timeout() {
    let Some(env) = env() else { return };
    let mut fx = Fixture::new(&env);
    let group = fx.names();
    let value = Credential::new(
        &format!("{group}_blue"),
        keyshift_targets::random_password(),
    )
    .unwrap()
    .to_value();

    // Nothing listens on port 1.
    let t = PgTarget::new(config("127.0.0.1:1", "postgres", &group), None).unwrap();
    for e in [
        t.verify(&value).await.unwrap_err(),
        t.precheck(None).await.unwrap_err(),
        t.enable(&value).await.unwrap_err(),
        t.revoke(&value).await.unwrap_err(),
        t.usage(&value).await.unwrap_err(),
    ] {
        assert!(matches!(e, TargetError::Unreachable { .. }), "{e}");
        assert!(e.is_transient(), "{e}");
        assert_no_password(&e, &[&value]);
    }

    // A server that accepts but never answers: bounded by the timeout.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let t = PgTarget::new(config(&addr.to_string(), "postgres", &group), None)
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    let start = Instant::now();
    for e in [
        t.verify(&value).await.unwrap_err(),
        t.precheck(None).await.unwrap_err(),
        t.enable(&value).await.unwrap_err(),
    ] {
        assert!(e.is_transient(), "{e}");
    }
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_wrong_admin_password_is_admin_refused() {
    let Some(env) = env() else { return };
    let mut fx = Fixture::new(&env);
    let group = fx.group(true).await;
    let password = keyshift_targets::random_password();
    let admin = fx.login_role("CREATEROLE", &password).await;

    let wrong = Credential::new(&admin, keyshift_targets::random_password()).unwrap();
    let wrong_value = wrong.to_value();
    let t = fx.target_as(&group, Some(wrong));
    let blue = t.generate(None).await.unwrap().unwrap();
    for e in [
        t.precheck(None).await.unwrap_err(),
        t.enable(&blue).await.unwrap_err(),
        t.usage(&blue).await.unwrap_err(),
    ] {
        assert!(matches!(e, TargetError::AdminRefused { .. }), "{e}");
        assert!(!e.is_transient());
        assert_no_password(&e, &[&wrong_value, &blue]);
    }
}

#[tokio::test]
async fn a_createrole_admin_rotates_and_a_plain_one_is_refused() {
    let Some(env) = env() else { return };
    let mut fx = Fixture::new(&env);
    let group = fx.group(true).await;
    let password = keyshift_targets::random_password();
    let admin = fx.login_role("CREATEROLE", &password).await;
    let plain = fx.login_role("", &password).await;

    let t = fx.target_as(
        &group,
        Some(Credential::new(&admin, password.clone()).unwrap()),
    );
    t.precheck(None).await.unwrap();
    let blue = t.generate(None).await.unwrap().unwrap();
    t.enable(&blue).await.unwrap();
    t.precheck(Some(&blue)).await.unwrap();
    let green = t.generate(Some(&blue)).await.unwrap().unwrap();
    t.enable(&green).await.unwrap();
    t.revoke(&blue).await.unwrap();
    assert_eq!(t.verify(&blue).await.unwrap(), Verdict::Refused);
    assert_eq!(t.verify(&green).await.unwrap(), Verdict::Accepted);
    assert_eq!(t.usage(&green).await.unwrap(), Some(0));

    let t = fx.target_as(
        &group,
        Some(Credential::new(&plain, password.clone()).unwrap()),
    );
    let e = t.precheck(None).await.unwrap_err();
    assert!(matches!(e, TargetError::AdminRefused { .. }), "{e}");
    assert!(e.to_string().contains("CREATEROLE"), "{e}");
    let e = t.enable(&blue).await.unwrap_err();
    assert!(matches!(e, TargetError::AdminRefused { .. }), "{e}");
    assert!(!format!("{e} {e:?}").contains(password.expose()), "{e}");
}
