//! The MariaDB/MySQL target against the real server
//! (`KEYSHIFT_TEST_MYSQL_URL`, default `mysql://root@127.0.0.1:3306/test`,
//! MariaDB 10.11 here): dual mode, and blue-green forced with
//! `mode: "blue-green"`. Each test makes its own users, roles and tables
//! under unique names and drops them when it ends, passing or failing.

use std::time::{Duration, Instant};

use keyshift_core::{Credential, SecretValue};
use keyshift_targets::{
    AdminCredential, MariaDbConfig, MariaDbTarget, Target, TargetError, Verdict,
};
use keyshift_testkit::{service, unique_name, Service};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{ConnectOptions, Connection};

/// The test server: its URL (admin), address and admin credential.
struct Env {
    url: String,
    address: String,
    admin: Option<AdminCredential>,
}

fn env() -> Option<Env> {
    let url = service(Service::MariaDb)?;
    let options: MySqlConnectOptions = url.parse().expect("test mysql URL parses");
    let address = format!("{}:{}", options.get_host(), options.get_port());
    // The URL's password (if any) is not readable back from the options:
    // take it from the URL itself.
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let password = rest
        .rsplit_once('@')
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, pw)| pw.to_owned())
        .filter(|pw| !pw.is_empty());
    let user = options.get_username().to_owned();
    let admin = match password {
        Some(pw) => Some(AdminCredential {
            username: user,
            password: SecretValue::new(pw).unwrap(),
        }),
        None if user != "root" => panic!("test admin {user} needs a password in the URL"),
        None => None,
    };
    Some(Env {
        url,
        address,
        admin,
    })
}

async fn admin_sql(url: &str) -> MySqlConnection {
    MySqlConnection::connect(url)
        .await
        .expect("connect as admin")
}

/// Runs admin statements (test setup; never a target's own statements).
async fn run(env: &Env, statements: &[String]) {
    let mut conn = admin_sql(&env.url).await;
    for sql in statements {
        sqlx::Executor::execute(&mut conn, sql.as_str())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    conn.close().await.ok();
}

/// What one test made, dropped on drop, even when the test panics.
struct Cleanup<'a> {
    env: &'a Env,
    users: Vec<String>,
    roles: Vec<String>,
    tables: Vec<String>,
}

impl<'a> Cleanup<'a> {
    fn new(env: &'a Env) -> Self {
        Cleanup {
            env,
            users: Vec::new(),
            roles: Vec::new(),
            tables: Vec::new(),
        }
    }

    /// A fresh user name, dropped at the end (the user is not created).
    fn name(&mut self) -> String {
        let n = unique_name("ks");
        self.users.push(n.clone());
        n
    }

    /// Creates `'<unique>'@'%' IDENTIFIED BY '<password>'`.
    async fn create_user(&mut self, password: &SecretValue) -> String {
        let n = self.name();
        run(
            self.env,
            &[format!(
                "CREATE USER '{n}'@'%' IDENTIFIED BY '{}'",
                password.expose()
            )],
        )
        .await;
        n
    }

    /// Creates a role allowed to read a fresh table `test.<unique>` (one
    /// row), and registers its default slot users for dropping. Returns
    /// (role, table).
    async fn create_role_with_table(&mut self) -> (String, String) {
        let role = unique_name("ksr");
        let table = format!("test.{}", unique_name("kst"));
        self.roles.push(role.clone());
        self.tables.push(table.clone());
        self.users.push(format!("{role}_blue"));
        self.users.push(format!("{role}_green"));
        run(
            self.env,
            &[
                format!("CREATE ROLE {role}"),
                format!("CREATE TABLE {table} (id INT PRIMARY KEY)"),
                format!("INSERT INTO {table} VALUES (1)"),
                format!("GRANT SELECT ON {table} TO {role}"),
            ],
        )
        .await;
        (role, table)
    }

    fn target(&self, config: serde_json::Value) -> MariaDbTarget {
        let mut config = config;
        config["address"] = self.env.address.clone().into();
        let config: MariaDbConfig = serde_json::from_value(config).unwrap();
        MariaDbTarget::new(config, self.env.admin.clone()).unwrap()
    }

    /// A target for the dual account `user`, in `mode`.
    fn dual(&self, user: &str, mode: &str) -> MariaDbTarget {
        self.target(serde_json::json!({"user": user, "mode": mode}))
    }

    /// A blue-green target for `role`, slots `<role>_blue`/`<role>_green`.
    fn blue_green(&self, role: &str) -> MariaDbTarget {
        self.target(serde_json::json!({"user": role, "mode": "blue-green"}))
    }
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let url = self.env.url.clone();
        let mut statements: Vec<String> = std::mem::take(&mut self.users)
            .into_iter()
            .map(|n| format!("DROP USER IF EXISTS '{n}'@'%'"))
            .collect();
        statements.extend(
            self.roles
                .drain(..)
                .map(|r| format!("DROP ROLE IF EXISTS {r}")),
        );
        statements.extend(
            self.tables
                .drain(..)
                .map(|t| format!("DROP TABLE IF EXISTS {t}")),
        );
        // Drop may run inside the test's runtime: clean up on a thread of
        // its own with its own runtime.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let Ok(mut conn) = MySqlConnection::connect(&url).await else {
                    return;
                };
                for sql in statements {
                    let _ = sqlx::Executor::execute(&mut conn, sql.as_str()).await;
                }
                let _ = conn.close().await;
            });
        })
        .join()
        .ok();
    }
}

/// A fresh password.
fn secret() -> SecretValue {
    SecretValue::new(unique_name("pw-0123456789abcdef")).unwrap()
}

/// A credential value for `user` with a fresh password.
fn cred(user: &str) -> SecretValue {
    cred_with(user, &secret())
}

fn cred_with(user: &str, password: &SecretValue) -> SecretValue {
    Credential::new(user, password.clone()).unwrap().to_value()
}

fn parse(value: &SecretValue) -> Credential {
    Credential::parse(value).unwrap()
}

/// The password of a credential value.
fn password(value: &SecretValue) -> SecretValue {
    parse(value).password().clone()
}

/// The server's own `PASSWORD(...)` of a credential's password: an
/// independent check of our hash.
async fn server_hash(env: &Env, value: &SecretValue) -> String {
    let mut conn = admin_sql(&env.url).await;
    let h: String = sqlx::query_scalar("SELECT PASSWORD(?)")
        .bind(password(value).expose())
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.ok();
    h
}

/// Connects with a credential value outside the target's code; `None`
/// when refused (wrong password or locked account).
async fn connect_as(env: &Env, value: &SecretValue) -> Option<MySqlConnection> {
    let c = parse(value);
    let options: MySqlConnectOptions = env.url.parse().unwrap();
    let options = MySqlConnectOptions::new()
        .host(options.get_host())
        .port(options.get_port())
        .username(c.username())
        .password(c.password().expose());
    match options.connect().await {
        Ok(conn) => Some(conn),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("28000") => None,
        // ER_ACCOUNT_HAS_BEEN_LOCKED
        Err(sqlx::Error::Database(e)) if e.message().contains("account is locked") => None,
        Err(e) => panic!("login failed unexpectedly: {e}"),
    }
}

async fn logs_in(env: &Env, value: &SecretValue) -> bool {
    match connect_as(env, value).await {
        Some(conn) => {
            conn.close().await.ok();
            true
        }
        None => false,
    }
}

/// Logs in with `value` and reads `table` through the default role.
async fn reads_table(env: &Env, value: &SecretValue, role: &str, table: &str) -> bool {
    let mut conn = connect_as(env, value).await.expect("logs in");
    let current: Option<String> = sqlx::query_scalar("SELECT CURRENT_ROLE()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(current.as_deref(), Some(role));
    let n = sqlx::query_scalar::<_, i64>(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(&mut conn)
        .await;
    conn.close().await.ok();
    n.is_ok_and(|n| n == 1)
}

/// An account's `Priv` JSON without its timestamps, and the roles granted
/// to it: what a repeated operation must leave unchanged.
async fn snapshot(env: &Env, user: &str) -> Option<(serde_json::Value, Vec<String>)> {
    let mut conn = admin_sql(&env.url).await;
    let json: Option<String> = sqlx::query_scalar(
        "SELECT CAST(Priv AS CHAR) FROM mysql.global_priv WHERE User = ? AND Host = '%'",
    )
    .bind(user)
    .fetch_optional(&mut conn)
    .await
    .unwrap();
    let roles: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(Role AS CHAR) FROM mysql.roles_mapping WHERE User = ? AND Host = '%' ORDER BY Role",
    )
    .bind(user)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.ok();
    let mut priv_json: serde_json::Value = serde_json::from_str(&json?).unwrap();
    if let Some(o) = priv_json.as_object_mut() {
        o.remove("password_last_changed");
    }
    Some((priv_json, roles))
}

/// Polls `usage` until it reads `want`, for at most 10 s.
async fn wait_for_usage(t: &MariaDbTarget, value: &SecretValue, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = t.usage(value).await.unwrap();
        if got == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "usage stayed {got:?}, never {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_precondition(e: &TargetError, says: &str, secrets: &[&SecretValue]) {
    assert!(matches!(e, TargetError::Precondition { .. }), "{e}");
    assert!(e.to_string().contains(says), "{e}");
    assert_no_secret(e, secrets);
}

fn assert_no_secret(e: &TargetError, secrets: &[&SecretValue]) {
    let shown = format!("{e} {e:?}");
    for s in secrets {
        assert!(!shown.contains(s.expose()), "{shown}");
        if let Ok(c) = Credential::parse(s) {
            assert!(!shown.contains(c.password().expose()), "{shown}");
        }
    }
}

#[tokio::test]
async fn dual_acceptance_then_revoke() {
    let Some(env) = env() else { return };
    let mut made = Cleanup::new(&env);
    let first = secret();
    let user = made.create_user(&first).await;
    let old = cred_with(&user, &first);
    let new = cred(&user);
    // Auto mode means dual on MariaDB 10.4+.
    let t = made.dual(&user, "auto");

    t.precheck(Some(&old)).await.unwrap();
    assert_eq!(
        t.accepted_hashes().await.unwrap(),
        vec![server_hash(&env, &old).await]
    );

    t.enable(&new).await.unwrap();
    assert_eq!(t.verify(&old).await.unwrap(), Verdict::Accepted);
    assert_eq!(t.verify(&new).await.unwrap(), Verdict::Accepted);
    assert!(logs_in(&env, &old).await);
    assert!(logs_in(&env, &new).await);
    assert_eq!(
        t.accepted_hashes().await.unwrap(),
        vec![server_hash(&env, &old).await, server_hash(&env, &new).await]
    );
    t.precheck(Some(&new)).await.unwrap();
    // Both passwords are the same user: usage per version is not observable.
    assert_eq!(t.usage(&old).await.unwrap(), None);

    t.revoke(&old).await.unwrap();
    assert_eq!(t.verify(&old).await.unwrap(), Verdict::Refused);
    assert_eq!(t.verify(&new).await.unwrap(), Verdict::Accepted);
    assert!(!logs_in(&env, &old).await);
    assert!(logs_in(&env, &new).await);
    assert_eq!(
        t.accepted_hashes().await.unwrap(),
        vec![server_hash(&env, &new).await]
    );
}

#[tokio::test]
async fn every_dual_operation_twice_equals_once() {
    let Some(env) = env() else { return };
    let mut made = Cleanup::new(&env);
    let first = secret();
    let user = made.create_user(&first).await;
    let old = cred_with(&user, &first);
    let new = cred(&user);
    let t = made.dual(&user, "dual");

    t.precheck(Some(&old)).await.unwrap();
    t.precheck(Some(&old)).await.unwrap();
    t.enable(&new).await.unwrap();
    let after_first = snapshot(&env, &user).await;
    t.enable(&new).await.unwrap();
    t.enable(&old).await.unwrap();
    assert_eq!(snapshot(&env, &user).await, after_first);
    assert_eq!(t.accepted_hashes().await.unwrap().len(), 2);

    // A third password would break the two-at-a-time overlap.
    let third = cred(&user);
    let e = t.enable(&third).await.unwrap_err();
    assert_precondition(&e, "already accepts 2", &[&third, &old, &new]);
    assert_eq!(t.verify(&third).await.unwrap(), Verdict::Refused);
    assert_eq!(snapshot(&env, &user).await, after_first);

    t.revoke(&old).await.unwrap();
    let after_revoke = snapshot(&env, &user).await;
    t.revoke(&old).await.unwrap();
    t.revoke(&third).await.unwrap(); // never enabled: nothing to do
    assert_eq!(snapshot(&env, &user).await, after_revoke);
    assert_eq!(
        t.accepted_hashes().await.unwrap(),
        vec![server_hash(&env, &new).await]
    );
    assert_eq!(t.verify(&new).await.unwrap(), Verdict::Accepted);
    assert_eq!(t.verify(&new).await.unwrap(), Verdict::Accepted);
}

#[tokio::test]
async fn set_accepted_sets_exactly_the_values() {
    let Some(env) = env() else { return };
    let mut made = Cleanup::new(&env);
    let first = secret();
    let user = made.create_user(&first).await;
    let (a, b, c) = (cred_with(&user, &first), cred(&user), cred(&user));
    let t = made.dual(&user, "auto");

    t.set_accepted(&[&b, &c]).await.unwrap();
    t.set_accepted(&[&b, &c]).await.unwrap();
    assert_eq!(
        t.accepted_hashes().await.unwrap(),
        vec![server_hash(&env, &b).await, server_hash(&env, &c).await]
    );
    assert_eq!(t.verify(&a).await.unwrap(), Verdict::Refused);
    assert_eq!(t.verify(&b).await.unwrap(), Verdict::Accepted);
    assert_eq!(t.verify(&c).await.unwrap(), Verdict::Accepted);

    t.set_accepted(&[&c, &c]).await.unwrap();
    assert_eq!(
        t.accepted_hashes().await.unwrap(),
        vec![server_hash(&env, &c).await]
    );
    assert_eq!(t.verify(&b).await.unwrap(), Verdict::Refused);

    for bad in [&[][..], &[&a, &b, &c][..]] {
        let e = t.set_accepted(bad).await.unwrap_err();
        assert!(matches!(e, TargetError::Precondition { .. }), "{e}");
        assert_no_secret(&e, &[&a, &b, &c]);
    }
    let other = cred("someone_else");
    let e = t.set_accepted(&[&other]).await.unwrap_err();
    assert_precondition(&e, &format!("manages user {user}"), &[&other]);
    assert_eq!(t.verify(&c).await.unwrap(), Verdict::Accepted);
}

#[tokio::test]
async fn precheck_fails_for_a_missing_user_and_a_wrong_current() {
    let Some(env) = env() else { return };
    let mut made = Cleanup::new(&env);
    let first = secret();
    let user = made.create_user(&first).await;

    let missing = made.name();
    let gone = made.dual(&missing, "auto");
    let e = gone.precheck(None).await.unwrap_err();
    assert_precondition(&e, "does not exist", &[]);
    // Nothing to revoke on a missing user; enable never creates it.
    let value = cred(&missing);
    gone.revoke(&value).await.unwrap();
    let e = gone.enable(&value).await.unwrap_err();
    assert_precondition(&e, "does not exist", &[&value]);

    let t = made.dual(&user, "auto");
    t.precheck(None).await.unwrap();
    t.precheck(Some(&cred_with(&user, &first))).await.unwrap();
    let wrong = cred(&user);
    let e = t.precheck(Some(&wrong)).await.unwrap_err();
    assert_precondition(&e, "no longer logs in", &[&wrong]);
}

#[tokio::test]
async fn revoke_refuses_to_remove_the_last_password() {
    let Some(env) = env() else { return };
    let mut made = Cleanup::new(&env);
    let first = secret();
    let user = made.create_user(&first).await;
    let only = cred_with(&user, &first);
    let t = made.dual(&user, "dual");

    let e = t.revoke(&only).await.unwrap_err();
    assert_precondition(&e, "without a password", &[&only]);
    assert_eq!(t.verify(&only).await.unwrap(), Verdict::Accepted);
    assert_eq!(
        t.accepted_hashes().await.unwrap(),
        vec![server_hash(&env, &only).await]
    );
}

#[tokio::test]
async fn generate_gives_the_config_user_in_dual_mode() {
    let Some(env) = env() else { return };
    let mut made = Cleanup::new(&env);
    let first = secret();
    let user = made.create_user(&first).await;
    let current = cred_with(&user, &first);
    for mode in ["auto", "dual"] {
        let t = made.dual(&user, mode);
        let a = t.generate(None).await.unwrap().expect("a value");
        let b = t.generate(Some(&current)).await.unwrap().expect("a value");
        for v in [&a, &b] {
            let c = parse(v);
            assert_eq!(c.username(), user, "{mode}");
            assert_eq!(c.password().expose().len(), 43, "{mode}");
        }
        assert_ne!(password(&a).expose(), password(&b).expose());
    }
}

#[tokio::test]
async fn generate_alternates_slots_in_blue_green_mode() {
    let Some(env) = env() else { return };
    let mut made = Cleanup::new(&env);
    let (role, _) = made.create_role_with_table().await;
    let t = made.blue_green(&role);
    let blue = t.generate(None).await.unwrap().expect("a value");
    assert_eq!(parse(&blue).username(), format!("{role}_blue"));
    let green = t.generate(Some(&blue)).await.unwrap().expect("a value");
    assert_eq!(parse(&green).username(), format!("{role}_green"));
    let blue_again = t.generate(Some(&green)).await.unwrap().expect("a value");
    assert_eq!(parse(&blue_again).username(), format!("{role}_blue"));
    assert_ne!(password(&blue).expose(), password(&blue_again).expose());
    // Generating touches nothing.
    assert!(snapshot(&env, &format!("{role}_blue")).await.is_none());

    let stranger = cred(&role);
    let e = t.generate(Some(&stranger)).await.unwrap_err();
    assert_precondition(&e, "_blue or ", &[&stranger]);
}

#[tokio::test]
async fn a_value_for_another_user_is_a_precondition_in_dual_mode() {
    let Some(env) = env() else { return };
    let mut made = Cleanup::new(&env);
    let first = secret();
    let user = made.create_user(&first).await;
    let other_pw = secret();
    let other_user = made.create_user(&other_pw).await;
    let other = cred_with(&other_user, &other_pw);
    let expected = format!("manages user {user}");
    for mode in ["dual", "auto"] {
        let t = made.dual(&user, mode);
        let errors = [
            t.precheck(Some(&other)).await.unwrap_err(),
            t.generate(Some(&other)).await.unwrap_err(),
            t.enable(&other).await.unwrap_err(),
            t.revoke(&other).await.unwrap_err(),
            t.usage(&other).await.unwrap_err(),
        ];
        for e in &errors {
            assert_precondition(e, &user, &[&other]);
            assert!(e.to_string().contains(&other_user), "{e}");
        }
        if mode == "dual" {
            let e = t.verify(&other).await.unwrap_err();
            assert_precondition(&e, &expected, &[&other]);
        }
        // A bare password (the old value format) is no credential.
        let e = t.enable(&first).await.unwrap_err();
        assert_precondition(&e, "expected {", &[&first]);
    }
    // Nothing changed for either user.
    let t = made.dual(&user, "dual");
    assert_eq!(
        t.accepted_hashes().await.unwrap(),
        vec![server_hash(&env, &cred_with(&user, &first)).await]
    );
    assert!(logs_in(&env, &other).await);
}

#[tokio::test]
async fn blue_green_full_cycle_with_instant_rollback() {
    let Some(env) = env() else { return };
    let mut made = Cleanup::new(&env);
    let (role, table) = made.create_role_with_table().await;
    let t = made.blue_green(&role);
    let (blue_user, green_user) = (format!("{role}_blue"), format!("{role}_green"));
    t.precheck(None).await.unwrap();
    assert!(snapshot(&env, &blue_user).await.is_none());
    assert!(snapshot(&env, &green_user).await.is_none());

    let blue = t.generate(None).await.unwrap().expect("a value");
    t.enable(&blue).await.unwrap();
    assert_eq!(t.verify(&blue).await.unwrap(), Verdict::Accepted);
    assert!(reads_table(&env, &blue, &role, &table).await);
    t.precheck(Some(&blue)).await.unwrap();

    let green = t.generate(Some(&blue)).await.unwrap().expect("a value");
    assert_eq!(parse(&green).username(), green_user);
    t.enable(&green).await.unwrap();
    assert_eq!(t.verify(&blue).await.unwrap(), Verdict::Accepted);
    assert_eq!(t.verify(&green).await.unwrap(), Verdict::Accepted);
    assert!(reads_table(&env, &blue, &role, &table).await);
    assert!(reads_table(&env, &green, &role, &table).await);

    t.revoke(&blue).await.unwrap();
    assert_eq!(t.verify(&blue).await.unwrap(), Verdict::Refused);
    assert!(!logs_in(&env, &blue).await);
    assert!(reads_table(&env, &green, &role, &table).await);
    // Locked, not dropped: the account and its password stay.
    let (priv_json, roles) = snapshot(&env, &blue_user).await.expect("blue stays");
    assert_eq!(priv_json["account_locked"], true);
    assert_eq!(
        priv_json["authentication_string"],
        server_hash(&env, &blue).await
    );
    assert_eq!(roles, vec![role.clone()]);

    // Instant rollback: enabling blue again unlocks it.
    t.enable(&blue).await.unwrap();
    assert_eq!(t.verify(&blue).await.unwrap(), Verdict::Accepted);
    assert!(reads_table(&env, &blue, &role, &table).await);
    assert_eq!(t.verify(&green).await.unwrap(), Verdict::Accepted);

    // The next rotation reuses the locked slot with a new password.
    t.revoke(&blue).await.unwrap();
    let next = t.generate(Some(&green)).await.unwrap().expect("a value");
    assert_eq!(parse(&next).username(), blue_user);
    t.enable(&next).await.unwrap();
    assert_eq!(t.verify(&next).await.unwrap(), Verdict::Accepted);
    assert_eq!(t.verify(&blue).await.unwrap(), Verdict::Refused);
    assert!(reads_table(&env, &next, &role, &table).await);
}

#[tokio::test]
async fn every_blue_green_operation_twice_equals_once() {
    let Some(env) = env() else { return };
    let mut made = Cleanup::new(&env);
    let (role, _) = made.create_role_with_table().await;
    let t = made.blue_green(&role);
    let blue_user = format!("{role}_blue");

    let blue = t.generate(None).await.unwrap().expect("a value");
    t.precheck(None).await.unwrap();
    t.precheck(None).await.unwrap();
    t.enable(&blue).await.unwrap();
    let once = snapshot(&env, &blue_user).await.expect("blue exists");
    t.enable(&blue).await.unwrap();
    assert_eq!(snapshot(&env, &blue_user).await.as_ref(), Some(&once));
    assert_eq!(t.verify(&blue).await.unwrap(), Verdict::Accepted);

    let green = t.generate(Some(&blue)).await.unwrap().expect("a value");
    // Revoking what was never enabled changes nothing.
    t.revoke(&green).await.unwrap();
    assert!(snapshot(&env, &format!("{role}_green")).await.is_none());

    t.revoke(&blue).await.unwrap();
    let revoked = snapshot(&env, &blue_user).await.expect("blue stays");
    t.revoke(&blue).await.unwrap();
    assert_eq!(snapshot(&env, &blue_user).await.as_ref(), Some(&revoked));
    assert_eq!(t.verify(&blue).await.unwrap(), Verdict::Refused);

    t.enable(&blue).await.unwrap();
    t.enable(&blue).await.unwrap();
    assert_eq!(snapshot(&env, &blue_user).await.as_ref(), Some(&once));
}

#[tokio::test]
async fn blue_green_never_changes_a_live_slot_and_ignores_stale_values() {
    let Some(env) = env() else { return };
    let mut made = Cleanup::new(&env);
    let (role, _) = made.create_role_with_table().await;
    let t = made.blue_green(&role);
    let blue_user = format!("{role}_blue");
    let blue = cred(&blue_user);
    t.enable(&blue).await.unwrap();

    // Another password for the live slot would lock out its users.
    let other = cred(&blue_user);
    let e = t.enable(&other).await.unwrap_err();
    assert_precondition(&e, "may be in use", &[&blue, &other]);
    assert_eq!(t.verify(&blue).await.unwrap(), Verdict::Accepted);
    assert_eq!(t.verify(&other).await.unwrap(), Verdict::Refused);

    // A stale value for the slot does not lock it.
    t.revoke(&other).await.unwrap();
    assert_eq!(t.verify(&blue).await.unwrap(), Verdict::Accepted);

    // Once locked, the slot takes the new password.
    t.revoke(&blue).await.unwrap();
    t.enable(&other).await.unwrap();
    assert_eq!(t.verify(&other).await.unwrap(), Verdict::Accepted);
    assert_eq!(t.verify(&blue).await.unwrap(), Verdict::Refused);
}

#[tokio::test]
async fn blue_green_precheck_needs_the_role_and_a_working_current() {
    let Some(env) = env() else { return };
    let mut made = Cleanup::new(&env);
    let missing_role = unique_name("ksr");
    let t = made.blue_green(&missing_role);
    let e = t.precheck(None).await.unwrap_err();
    assert_precondition(&e, &format!("role {missing_role} does not exist"), &[]);
    let value = cred(&format!("{missing_role}_blue"));
    let e = t.enable(&value).await.unwrap_err();
    assert_precondition(&e, "does not exist", &[&value]);

    let (role, _) = made.create_role_with_table().await;
    let t = made.blue_green(&role);
    let blue = t.generate(None).await.unwrap().expect("a value");
    // A missing slot user is refused, whichever access-denied error
    // (1045, or now and then 1698) MariaDB answers.
    for _ in 0..40 {
        assert_eq!(t.verify(&blue).await.unwrap(), Verdict::Refused);
    }
    let e = t.precheck(Some(&blue)).await.unwrap_err();
    assert_precondition(&e, "no longer logs in", &[&blue]);
    t.enable(&blue).await.unwrap();
    t.precheck(Some(&blue)).await.unwrap();
    let stranger = cred(&role);
    let e = t.precheck(Some(&stranger)).await.unwrap_err();
    assert_precondition(&e, &format!("{role}_blue or {role}_green"), &[&stranger]);
}

#[tokio::test]
async fn usage_counts_a_blue_green_slots_sessions() {
    let Some(env) = env() else { return };
    let mut made = Cleanup::new(&env);
    let (role, _) = made.create_role_with_table().await;
    let t = made.blue_green(&role);
    let blue = t.generate(None).await.unwrap().expect("a value");
    let green = t.generate(Some(&blue)).await.unwrap().expect("a value");
    t.enable(&blue).await.unwrap();
    assert_eq!(t.usage(&blue).await.unwrap(), Some(0));
    assert_eq!(t.usage(&green).await.unwrap(), Some(0));

    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(connect_as(&env, &blue).await.expect("blue logs in"));
    }
    wait_for_usage(&t, &blue, 3).await;
    assert_eq!(t.usage(&green).await.unwrap(), Some(0));

    // Locking ends no session: usage still sees them until they close.
    t.revoke(&blue).await.unwrap();
    assert_eq!(t.usage(&blue).await.unwrap(), Some(3));
    for s in sessions {
        s.close().await.unwrap();
    }
    wait_for_usage(&t, &blue, 0).await;
}

#[tokio::test]
async fn errors_never_contain_the_password() {
    let Some(env) = env() else { return };
    let mut made = Cleanup::new(&env);
    let first = secret();
    let user = made.create_user(&first).await;
    let current = cred_with(&user, &first);
    let t = made.dual(&user, "dual");
    let wrong = cred(&user);
    let stranger = cred("someone_else");
    let mut errors = vec![
        t.precheck(Some(&wrong)).await.unwrap_err(),
        t.enable(&stranger).await.unwrap_err(),
        t.verify(&stranger).await.unwrap_err(),
        t.revoke(&current).await.unwrap_err(),
        t.enable(&first).await.unwrap_err(),
    ];
    let (role, _) = made.create_role_with_table().await;
    let bg = made.blue_green(&role);
    let blue = cred(&format!("{role}_blue"));
    let blue_other = cred(&format!("{role}_blue"));
    bg.enable(&blue).await.unwrap();
    errors.push(bg.enable(&blue_other).await.unwrap_err());
    errors.push(bg.precheck(Some(&blue_other)).await.unwrap_err());
    errors.push(bg.usage(&current).await.unwrap_err());
    let admin = AdminCredential {
        username: "root".into(),
        password: secret(),
    };
    let config = t.config().clone();
    let bad_admin = MariaDbTarget::new(config, Some(admin.clone())).unwrap();
    let e = bad_admin.precheck(Some(&current)).await.unwrap_err();
    assert!(matches!(e, TargetError::AdminRefused { .. }), "{e}");
    errors.push(e);
    errors.push(bad_admin.enable(&wrong).await.unwrap_err());

    let all = [
        &first,
        &current,
        &wrong,
        &stranger,
        &blue,
        &blue_other,
        &admin.password,
    ];
    for e in &errors {
        assert_no_secret(e, &all);
    }
}

#[tokio::test]
async fn unreachable_servers_are_transient_errors_within_the_timeout() {
    let Some(env) = env() else { return };
    let made = Cleanup::new(&env);
    let value = cred("app");
    let config = |address: &str| -> MariaDbConfig {
        serde_json::from_value(serde_json::json!({"address": address, "user": "app"})).unwrap()
    };

    // Nothing listens on port 1.
    let t = MariaDbTarget::new(config("127.0.0.1:1"), None).unwrap();
    let e = t.verify(&value).await.unwrap_err();
    assert!(e.is_transient(), "{e}");

    // A server that accepts but never answers: bounded by the timeout.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let t = MariaDbTarget::new(config(&addr.to_string()), None)
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    let start = Instant::now();
    for e in [
        t.verify(&value).await.unwrap_err(),
        t.precheck(None).await.unwrap_err(),
        t.enable(&value).await.unwrap_err(),
        t.generate(None).await.unwrap_err(),
        t.usage(&value).await.unwrap_err(),
    ] {
        assert!(matches!(e, TargetError::Unreachable { .. }), "{e}");
    }
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    drop(made);
}

#[tokio::test]
async fn a_wrong_admin_password_is_admin_refused() {
    let Some(env) = env() else { return };
    let mut made = Cleanup::new(&env);
    let first = secret();
    let user = made.create_user(&first).await;
    let admin = AdminCredential {
        username: "root".into(),
        password: secret(),
    };
    let config = made.dual(&user, "auto").config().clone();
    let t = MariaDbTarget::new(config, Some(admin.clone())).unwrap();
    let e = t.precheck(None).await.unwrap_err();
    assert!(matches!(e, TargetError::AdminRefused { .. }), "{e}");
    assert_no_secret(&e, &[&admin.password]);
}
