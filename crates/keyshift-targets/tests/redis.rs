//! The Redis ACL target against the real Redis (`KEYSHIFT_TEST_REDIS_URL`,
//! default `redis://127.0.0.1:6379`). Each test makes its own ACL users and
//! deletes them when it ends, passing or failing.

use std::time::{Duration, Instant};

use keyshift_core::{SecretKind, SecretValue};
use keyshift_targets::{AdminCredential, RedisConfig, RedisTarget, Target, TargetError, Verdict};
use keyshift_testkit::{service, unique_name, Service};
use redis::IntoConnectionInfo;

/// The test Redis: a client for raw commands, the address without
/// credentials, and the admin credential the URL carried (if any).
struct Env {
    client: redis::Client,
    address: String,
    admin: Option<AdminCredential>,
}

fn env() -> Option<Env> {
    let url = service(Service::Redis)?;
    let info = url
        .as_str()
        .into_connection_info()
        .expect("test redis URL parses");
    let admin = info.redis.password.clone().map(|pw| AdminCredential {
        username: info
            .redis
            .username
            .clone()
            .unwrap_or_else(|| "default".into()),
        password: SecretValue::new(pw).unwrap(),
    });
    Some(Env {
        address: info.addr.to_string(),
        client: redis::Client::open(info).unwrap(),
        admin,
    })
}

/// ACL users that are deleted on drop, even when the test panics.
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

    /// A fresh name that is cleaned up at the end (the user is not created).
    fn name(&mut self, prefix: &str) -> String {
        let n = unique_name(prefix);
        self.names.push(n.clone());
        n
    }

    /// Creates a user with `rules` (e.g. `on >pw ~* +@all`).
    fn create(&mut self, prefix: &str, rules: &str) -> String {
        let n = self.name(prefix);
        self.raw(&format!("SETUSER {n} {rules}"));
        n
    }

    fn raw(&self, acl_args: &str) -> redis::Value {
        let mut con = self.env.client.get_connection().unwrap();
        let mut cmd = redis::cmd("ACL");
        for a in acl_args.split_whitespace() {
            cmd.arg(a);
        }
        cmd.query(&mut con).unwrap()
    }

    fn target(&self, user: &str) -> RedisTarget {
        RedisTarget::new(config(&self.env.address, user), self.env.admin.clone()).unwrap()
    }
}

impl Drop for Users<'_> {
    fn drop(&mut self) {
        if let Ok(mut con) = self.env.client.get_connection() {
            for n in &self.names {
                let r: redis::RedisResult<i64> =
                    redis::cmd("ACL").arg("DELUSER").arg(n).query(&mut con);
                if let Err(e) = r {
                    eprintln!("cleanup: ACL DELUSER {n} failed: {e}");
                }
            }
        }
    }
}

fn config(address: &str, user: &str) -> RedisConfig {
    RedisConfig {
        address: address.to_owned(),
        user: user.to_owned(),
        admin_secret: None,
    }
}

fn secret(s: &str) -> SecretValue {
    SecretValue::new(s.to_owned()).unwrap()
}

fn fresh() -> SecretValue {
    let mut bytes = [0u8; 32];
    let n = unique_name("x");
    bytes[..n.len()].copy_from_slice(n.as_bytes());
    SecretKind::Redis.generate(&bytes)
}

const INITIAL: &str = "initialpw-0123456789";

#[tokio::test]
async fn dual_acceptance_then_revoke() {
    let Some(env) = env() else { return };
    let mut users = Users::new(&env);
    let user = users.create("ks", &format!("on >{INITIAL} ~* +@all"));
    let target = users.target(&user);
    let old = secret(INITIAL);
    let new = fresh();

    target.precheck(Some(&old)).await.unwrap();
    assert_eq!(target.verify(&new).await.unwrap(), Verdict::Refused);

    target.enable(&new).await.unwrap();
    assert_eq!(target.verify(&old).await.unwrap(), Verdict::Accepted);
    assert_eq!(target.verify(&new).await.unwrap(), Verdict::Accepted);
    let mut digests = target.accepted_digests().await.unwrap();
    digests.sort();
    let mut want = vec![old.sha256(), new.sha256()];
    want.sort();
    assert_eq!(digests, want);

    target.revoke(&old).await.unwrap();
    assert_eq!(target.verify(&old).await.unwrap(), Verdict::Refused);
    assert_eq!(target.verify(&new).await.unwrap(), Verdict::Accepted);
    assert_eq!(target.accepted_digests().await.unwrap(), vec![new.sha256()]);
    target.precheck(Some(&new)).await.unwrap();

    // What Redis itself answers the old password: WRONGPASS.
    let mut info = format!("redis://{}", env.address)
        .into_connection_info()
        .unwrap();
    info.redis.username = Some(user.clone());
    info.redis.password = Some(INITIAL.to_owned());
    let e = redis::Client::open(info)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect_err("the old password is refused");
    assert!(
        e.kind() == redis::ErrorKind::AuthenticationFailed || e.code() == Some("WRONGPASS"),
        "{e}"
    );
}

#[tokio::test]
async fn enable_and_revoke_are_idempotent() {
    let Some(env) = env() else { return };
    let mut users = Users::new(&env);
    let user = users.create("ks", &format!("on >{INITIAL} ~* +@all"));
    let target = users.target(&user);
    let new = fresh();

    target.enable(&new).await.unwrap();
    let once = target.accepted_digests().await.unwrap();
    target.enable(&new).await.unwrap();
    assert_eq!(target.accepted_digests().await.unwrap(), once);
    assert_eq!(once.len(), 2);

    let never = fresh();
    target.revoke(&never).await.unwrap();
    assert_eq!(target.accepted_digests().await.unwrap(), once);

    target.revoke(&new).await.unwrap();
    let after = target.accepted_digests().await.unwrap();
    target.revoke(&new).await.unwrap();
    assert_eq!(target.accepted_digests().await.unwrap(), after);
    assert_eq!(after, vec![secret(INITIAL).sha256()]);
    assert_eq!(target.verify(&new).await.unwrap(), Verdict::Refused);
    assert_eq!(
        target.verify(&secret(INITIAL)).await.unwrap(),
        Verdict::Accepted
    );

    // The user's other rules were left alone.
    let rules = format!("{:?}", users.raw(&format!("GETUSER {user}")));
    assert!(rules.contains("\"on\""), "{rules}");
    assert!(rules.contains("+@all"), "{rules}");
}

#[tokio::test]
async fn redis_stores_only_hashes() {
    let Some(env) = env() else { return };
    let mut users = Users::new(&env);
    let user = users.create("ks", &format!("on >{INITIAL} ~* +@all"));
    let target = users.target(&user);
    let new = fresh();
    target.enable(&new).await.unwrap();

    let reply = users.raw(&format!("GETUSER {user}"));
    let redis::Value::Array(fields) = reply else {
        panic!("unexpected reply {reply:?}")
    };
    let at = fields
        .iter()
        .position(|f| *f == redis::Value::BulkString(b"passwords".to_vec()))
        .unwrap();
    let passwords: Vec<String> = redis::from_redis_value(&fields[at + 1]).unwrap();
    assert_eq!(passwords.len(), 2);
    for p in &passwords {
        assert_eq!(p.len(), 64);
        assert!(p.bytes().all(|b| b.is_ascii_hexdigit()), "{p}");
        assert!(!p.contains(new.expose()));
    }
    assert!(passwords.contains(&hex::encode(new.sha256())));
    let list = format!("{:?}", users.raw("LIST"));
    assert!(!list.contains(new.expose()));
}

#[tokio::test]
async fn precheck_refuses_a_missing_user_and_changes_nothing() {
    let Some(env) = env() else { return };
    let mut users = Users::new(&env);
    let user = users.name("ks");
    let target = users.target(&user);

    let e = target.precheck(None).await.unwrap_err();
    assert!(matches!(e, TargetError::Precondition { .. }), "{e}");
    assert!(e.to_string().contains("does not exist"), "{e}");
    assert!(!e.is_transient());

    let e = target.enable(&fresh()).await.unwrap_err();
    assert!(matches!(e, TargetError::Precondition { .. }), "{e}");
    assert!(matches!(
        target.accepted_digests().await,
        Err(TargetError::Precondition { .. })
    ));
    // Nothing accepts it, so revoke holds; and it must not create the user.
    target.revoke(&fresh()).await.unwrap();
    assert_eq!(users.raw(&format!("GETUSER {user}")), redis::Value::Nil);
}

#[tokio::test]
async fn precheck_checks_the_current_credential() {
    let Some(env) = env() else { return };
    let mut users = Users::new(&env);
    let user = users.create("ks", &format!("on >{INITIAL} ~* +@all"));
    let target = users.target(&user);

    target.precheck(None).await.unwrap();
    target.precheck(Some(&secret(INITIAL))).await.unwrap();
    let e = target
        .precheck(Some(&secret("not-the-password-0000")))
        .await
        .unwrap_err();
    assert!(matches!(e, TargetError::Precondition { .. }), "{e}");
    assert!(e.to_string().contains("no longer logs in"), "{e}");
    assert!(!format!("{e} {e:?}").contains("not-the-password"));
}

#[tokio::test]
async fn a_nopass_user_is_refused_untouched() {
    let Some(env) = env() else { return };
    let mut users = Users::new(&env);
    let user = users.create("ks", "on nopass ~* +@all");
    let target = users.target(&user);

    let e = target.precheck(None).await.unwrap_err();
    assert!(matches!(e, TargetError::Precondition { .. }), "{e}");
    let e = target.enable(&fresh()).await.unwrap_err();
    assert!(matches!(e, TargetError::Precondition { .. }), "{e}");
    let rules = format!("{:?}", users.raw(&format!("GETUSER {user}")));
    assert!(rules.contains("nopass"), "{rules}");
}

#[tokio::test]
async fn verify_works_over_resp3_too() {
    let Some(env) = env() else { return };
    let mut users = Users::new(&env);
    let user = users.create("ks", &format!("on >{INITIAL} ~* +@all"));
    let address = format!("redis://{}/?protocol=resp3", env.address);
    let target = RedisTarget::new(config(&address, &user), env.admin.clone()).unwrap();
    assert_eq!(
        target.verify(&secret(INITIAL)).await.unwrap(),
        Verdict::Accepted
    );
    assert_eq!(
        target
            .verify(&secret("wrong-password-00000"))
            .await
            .unwrap(),
        Verdict::Refused
    );
    let new = fresh();
    target.enable(&new).await.unwrap();
    assert_eq!(target.accepted_digests().await.unwrap().len(), 2);
    assert_eq!(target.verify(&new).await.unwrap(), Verdict::Accepted);
}

#[tokio::test]
async fn a_user_without_ping_permission_still_verifies() {
    let Some(env) = env() else { return };
    let mut users = Users::new(&env);
    let user = users.create("ks", &format!("on >{INITIAL} -@all +get ~app:*"));
    let target = users.target(&user);
    assert_eq!(
        target.verify(&secret(INITIAL)).await.unwrap(),
        Verdict::Accepted
    );
}

#[tokio::test]
async fn unreachable_targets_are_transient() {
    let target = RedisTarget::new(config("127.0.0.1:1", "app"), None).unwrap();
    let v = fresh();
    let results = [
        target.precheck(Some(&v)).await.unwrap_err(),
        target.enable(&v).await.unwrap_err(),
        target.revoke(&v).await.unwrap_err(),
        target.verify(&v).await.unwrap_err(),
        target.accepted_digests().await.unwrap_err(),
    ];
    for e in results {
        assert!(matches!(e, TargetError::Unreachable { .. }), "{e}");
        assert!(e.is_transient());
    }
}

#[tokio::test]
async fn timeouts_bound_every_operation() {
    // A server that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let target = RedisTarget::new(config(&address, "app"), None)
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    let v = fresh();
    let start = Instant::now();
    let results = [
        target.precheck(None).await.unwrap_err(),
        target.enable(&v).await.unwrap_err(),
        target.verify(&v).await.unwrap_err(),
    ];
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    for e in results {
        assert!(matches!(e, TargetError::Unreachable { .. }), "{e}");
        assert!(e.is_transient());
    }
    silent.abort();
}

#[tokio::test]
async fn admin_problems_are_admin_refused() {
    let Some(env) = env() else { return };
    let mut users = Users::new(&env);
    let user = users.create("ks", &format!("on >{INITIAL} ~* +@all"));
    let admin = users.create("ksadm", "on >admin-pw-0123456789 ~* +@all");
    let weak = users.create("ksweak", "on >weak-pw-0123456789 -@all +ping");

    let wrong = AdminCredential {
        username: admin.clone(),
        password: secret("wrong-admin-pw-00000"),
    };
    let target = RedisTarget::new(config(&env.address, &user), Some(wrong)).unwrap();
    for e in [
        target.precheck(None).await.unwrap_err(),
        target.enable(&fresh()).await.unwrap_err(),
        target.revoke(&fresh()).await.unwrap_err(),
    ] {
        assert!(matches!(e, TargetError::AdminRefused { .. }), "{e}");
        assert!(!e.is_transient());
        assert!(!format!("{e} {e:?}").contains("wrong-admin-pw"), "{e:?}");
    }
    // verify does not use the admin credential.
    assert_eq!(
        target.verify(&secret(INITIAL)).await.unwrap(),
        Verdict::Accepted
    );

    let no_acl = AdminCredential {
        username: weak,
        password: secret("weak-pw-0123456789"),
    };
    let target = RedisTarget::new(config(&env.address, &user), Some(no_acl)).unwrap();
    let e = target.precheck(None).await.unwrap_err();
    assert!(matches!(e, TargetError::AdminRefused { .. }), "{e}");

    // The JSON form, with the right password, administers the user.
    let json = secret(&format!(
        r#"{{"username": "{admin}", "password": "admin-pw-0123456789"}}"#
    ));
    let good = AdminCredential::parse(&json).unwrap();
    let target = RedisTarget::new(config(&env.address, &user), Some(good)).unwrap();
    let new = fresh();
    target.precheck(Some(&secret(INITIAL))).await.unwrap();
    target.enable(&new).await.unwrap();
    assert_eq!(target.verify(&new).await.unwrap(), Verdict::Accepted);
}

#[test]
fn admin_credentials_parse_in_both_forms_and_stay_redacted() {
    let bare = AdminCredential::parse(&secret("s3cret-bare-admin")).unwrap();
    assert_eq!(bare.username, "default");
    assert!(bare.password.ct_eq(&secret("s3cret-bare-admin")));
    let json =
        AdminCredential::parse(&secret(r#"{"username":"ops","password":"s3cret-json"}"#)).unwrap();
    assert_eq!(json.username, "ops");
    assert!(json.password.ct_eq(&secret("s3cret-json")));
    for dbg in [format!("{bare:?}"), format!("{json:?}")] {
        assert!(!dbg.contains("s3cret"), "{dbg}");
    }
}

#[test]
fn a_url_with_a_password_is_refused_without_echoing_it() {
    let c = config("redis://admin:pa55word-leak@127.0.0.1:6379", "app");
    for e in [
        c.validate().unwrap_err(),
        RedisTarget::new(c.clone(), None).unwrap_err(),
    ] {
        assert!(matches!(e, TargetError::Config { .. }), "{e}");
        assert!(!format!("{e} {e:?}").contains("pa55word-leak"), "{e:?}");
    }
}
