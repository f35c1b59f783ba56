//! The MariaDB user target against the real MariaDB 10.4+
//! (`KEYSHIFT_TEST_MYSQL_URL`, default `mysql://root@127.0.0.1:3306/test`).
//! Each test makes its own users and drops them when it ends, passing or
//! failing.

use std::time::{Duration, Instant};

use keyshift_core::SecretValue;
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

/// Users created for one test, dropped on drop, even when the test panics.
struct Users<'a> {
    env: &'a Env,
    names: Vec<String>,
}

impl<'a> Users<'a> {
    fn new(env: &'a Env) -> Self {
        Users {
            env,
            names: Vec::new(),
        }
    }

    /// A fresh name that is dropped at the end (the user is not created).
    fn name(&mut self) -> String {
        let n = unique_name("ks");
        self.names.push(n.clone());
        n
    }

    /// Creates `'<unique>'@'%' IDENTIFIED BY '<password>'`.
    async fn create(&mut self, password: &SecretValue) -> String {
        let n = self.name();
        let mut conn = admin_sql(&self.env.url).await;
        sqlx::Executor::execute(
            &mut conn,
            format!(
                "CREATE USER '{n}'@'%' IDENTIFIED BY '{}'",
                password.expose()
            )
            .as_str(),
        )
        .await
        .expect("CREATE USER");
        conn.close().await.ok();
        n
    }

    fn target(&self, user: &str) -> MariaDbTarget {
        MariaDbTarget::new(config(&self.env.address, user), self.env.admin.clone()).unwrap()
    }
}

impl Drop for Users<'_> {
    fn drop(&mut self) {
        let url = self.env.url.clone();
        let names = std::mem::take(&mut self.names);
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
                for n in names {
                    let _ = sqlx::Executor::execute(
                        &mut conn,
                        format!("DROP USER IF EXISTS '{n}'@'%'").as_str(),
                    )
                    .await;
                }
                let _ = conn.close().await;
            });
        })
        .join()
        .ok();
    }
}

fn config(address: &str, user: &str) -> MariaDbConfig {
    serde_json::from_value(serde_json::json!({"address": address, "user": user})).unwrap()
}

fn secret() -> SecretValue {
    SecretValue::new(unique_name("pw-0123456789abcdef")).unwrap()
}

/// The server's own `PASSWORD(value)`: an independent check of our hash.
async fn server_hash(env: &Env, value: &SecretValue) -> String {
    let mut conn = admin_sql(&env.url).await;
    let h: String = sqlx::query_scalar("SELECT PASSWORD(?)")
        .bind(value.expose())
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.ok();
    h
}

/// Logs in as `user` with `value` outside the target's code.
async fn logs_in(env: &Env, user: &str, value: &SecretValue) -> bool {
    let options: MySqlConnectOptions = env.url.parse().unwrap();
    let options = MySqlConnectOptions::new()
        .host(options.get_host())
        .port(options.get_port())
        .username(user)
        .password(value.expose());
    match options.connect().await {
        Ok(c) => {
            c.close().await.ok();
            true
        }
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("28000") => false,
        Err(e) => panic!("login failed unexpectedly: {e}"),
    }
}

#[tokio::test]
async fn dual_acceptance_then_revoke() {
    let Some(env) = env() else { return };
    let mut users = Users::new(&env);
    let old = secret();
    let new = secret();
    let user = users.create(&old).await;
    let t = users.target(&user);

    t.precheck(Some(&old)).await.unwrap();
    assert_eq!(
        t.accepted_hashes().await.unwrap(),
        vec![server_hash(&env, &old).await]
    );

    t.enable(&new).await.unwrap();
    assert_eq!(t.verify(&old).await.unwrap(), Verdict::Accepted);
    assert_eq!(t.verify(&new).await.unwrap(), Verdict::Accepted);
    assert!(logs_in(&env, &user, &old).await);
    assert!(logs_in(&env, &user, &new).await);
    assert_eq!(
        t.accepted_hashes().await.unwrap(),
        vec![server_hash(&env, &old).await, server_hash(&env, &new).await]
    );
    t.precheck(Some(&new)).await.unwrap();

    t.revoke(&old).await.unwrap();
    assert_eq!(t.verify(&old).await.unwrap(), Verdict::Refused);
    assert_eq!(t.verify(&new).await.unwrap(), Verdict::Accepted);
    assert!(!logs_in(&env, &user, &old).await);
    assert!(logs_in(&env, &user, &new).await);
    assert_eq!(
        t.accepted_hashes().await.unwrap(),
        vec![server_hash(&env, &new).await]
    );
}

#[tokio::test]
async fn enable_and_revoke_are_idempotent() {
    let Some(env) = env() else { return };
    let mut users = Users::new(&env);
    let old = secret();
    let new = secret();
    let user = users.create(&old).await;
    let t = users.target(&user);

    t.enable(&new).await.unwrap();
    let after_first = t.accepted_hashes().await.unwrap();
    t.enable(&new).await.unwrap();
    t.enable(&old).await.unwrap();
    assert_eq!(t.accepted_hashes().await.unwrap(), after_first);
    assert_eq!(after_first.len(), 2);

    // A third password would break the two-at-a-time overlap.
    let third = secret();
    let e = t.enable(&third).await.unwrap_err();
    assert!(matches!(e, TargetError::Precondition { .. }), "{e}");
    assert_eq!(t.verify(&third).await.unwrap(), Verdict::Refused);
    assert_eq!(t.accepted_hashes().await.unwrap(), after_first);

    t.revoke(&old).await.unwrap();
    t.revoke(&old).await.unwrap();
    t.revoke(&third).await.unwrap(); // never enabled: nothing to do
    assert_eq!(
        t.accepted_hashes().await.unwrap(),
        vec![server_hash(&env, &new).await]
    );
    assert_eq!(t.verify(&new).await.unwrap(), Verdict::Accepted);
}

#[tokio::test]
async fn set_accepted_sets_exactly_the_values() {
    let Some(env) = env() else { return };
    let mut users = Users::new(&env);
    let (a, b, c) = (secret(), secret(), secret());
    let user = users.create(&a).await;
    let t = users.target(&user);

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
    }
    assert_eq!(t.verify(&c).await.unwrap(), Verdict::Accepted);
}

#[tokio::test]
async fn precheck_fails_for_a_missing_user_and_a_wrong_current() {
    let Some(env) = env() else { return };
    let mut users = Users::new(&env);
    let pw = secret();
    let user = users.create(&pw).await;

    let missing = users.name();
    let e = users.target(&missing).precheck(None).await.unwrap_err();
    assert!(matches!(e, TargetError::Precondition { .. }), "{e}");
    assert!(e.to_string().contains("does not exist"), "{e}");
    // Nothing to revoke on a missing user; set_accepted never creates it.
    users.target(&missing).revoke(&pw).await.unwrap();
    let e = users.target(&missing).enable(&pw).await.unwrap_err();
    assert!(matches!(e, TargetError::Precondition { .. }), "{e}");

    let t = users.target(&user);
    t.precheck(None).await.unwrap();
    t.precheck(Some(&pw)).await.unwrap();
    let wrong = secret();
    let e = t.precheck(Some(&wrong)).await.unwrap_err();
    assert!(matches!(e, TargetError::Precondition { .. }), "{e}");
    assert!(!format!("{e} {e:?}").contains(wrong.expose()));
}

#[tokio::test]
async fn revoke_refuses_to_remove_the_last_password() {
    let Some(env) = env() else { return };
    let mut users = Users::new(&env);
    let pw = secret();
    let user = users.create(&pw).await;
    let t = users.target(&user);

    let e = t.revoke(&pw).await.unwrap_err();
    assert!(matches!(e, TargetError::Precondition { .. }), "{e}");
    assert!(e.to_string().contains("without a password"), "{e}");
    assert_eq!(t.verify(&pw).await.unwrap(), Verdict::Accepted);
    assert_eq!(
        t.accepted_hashes().await.unwrap(),
        vec![server_hash(&env, &pw).await]
    );
}

#[tokio::test]
async fn unreachable_servers_are_transient_errors_within_the_timeout() {
    let Some(env) = env() else { return };
    let users = Users::new(&env);
    let pw = secret();

    // Nothing listens on port 1.
    let t = MariaDbTarget::new(config("127.0.0.1:1", "app"), None).unwrap();
    let e = t.verify(&pw).await.unwrap_err();
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
    let t = MariaDbTarget::new(config(&addr.to_string(), "app"), None)
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    let start = Instant::now();
    for e in [
        t.verify(&pw).await.unwrap_err(),
        t.precheck(None).await.unwrap_err(),
        t.enable(&pw).await.unwrap_err(),
    ] {
        assert!(matches!(e, TargetError::Unreachable { .. }), "{e}");
    }
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    drop(users);
}

#[tokio::test]
async fn a_wrong_admin_password_is_admin_refused() {
    let Some(env) = env() else { return };
    let mut users = Users::new(&env);
    let pw = secret();
    let user = users.create(&pw).await;
    let admin = AdminCredential {
        username: "root".into(),
        password: secret(),
    };
    let t = MariaDbTarget::new(config(&env.address, &user), Some(admin.clone())).unwrap();
    let e = t.precheck(None).await.unwrap_err();
    assert!(matches!(e, TargetError::AdminRefused { .. }), "{e}");
    assert!(!format!("{e} {e:?}").contains(admin.password.expose()));
}
