//! Crash safety of every target: a rotation of a Redis (dual), PostgreSQL
//! (blue-green), MariaDB (dual), exec-plugin (the example plugin driving a
//! Redis user) and x509 secret is killed with SIGKILL at every phase
//! boundary, the server restarts, and the rotation completes (or, killed
//! while rolling back, rolls back); a canary rotation is killed around its
//! Canary step. At the kill and after the restart, `current` logs in (I1:
//! for x509, the leaf chains to the CA and matches its key) and every
//! password the target accepts is a version the store still has (I2).
//!
//! Database logins go through the `psql` and `mariadb` clients, with the
//! password in their environment (`PGPASSWORD`, `MYSQL_PWD`), never on a
//! command line.
//!
//! The same kills on one of three replicas sharing a PostgreSQL store: another
//! replica takes the rotation over when its lease expires.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use keyshift_targets::{new_ca, X509CaConfig};
use keyshift_testkit::{service, unique_name, RedisUser, Service};
use rustls::client::danger::ServerCertVerifier as _;
use rustls::client::WebPkiServerVerifier;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

mod support;

use support::{init, init_with_store, Database, Serve};

struct Api {
    http: reqwest::blocking::Client,
    base: String,
    token: String,
}

impl Api {
    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().unwrap_or(Value::Null))
    }

    fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, path, None);
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// The state of every version of `name`, oldest first.
    fn states(&self, name: &str) -> Vec<String> {
        let versions = self.get(&format!("/v1/secrets/{name}:versions"));
        versions["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["state"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Every stored value of `name`, oldest first.
    fn stored(&self, name: &str) -> Vec<String> {
        let versions = self.get(&format!("/v1/secrets/{name}:versions"));
        versions["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                let n = v["version"].as_u64().unwrap();
                let value = self.get(&format!("/v1/secrets/{name}:value?version={n}"));
                value["value"].as_str().unwrap().to_owned()
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------
// The targets

/// What a target rotates, seen through the target's own client.
trait Db {
    /// The body of `POST /v1/secrets` without `name` and `policy`; may
    /// create what the secret refers to (a CA) through `api`.
    fn secret(&self, api: &Api) -> Value;
    /// Whether the credential value logs in now.
    fn logs_in(&self, value: &str) -> bool;
    /// I2: every password the target accepts is among `stored`.
    fn accepts_only(&self, stored: &[String]) -> Result<(), String>;
    /// Whether the target refuses a revoked credential (an x509 leaf
    /// stays valid until it expires: its state in the store is what
    /// consumers go by).
    fn refuses_revoked(&self) -> bool {
        true
    }
}

/// `(username, password)` of a credential value.
fn parse(value: &str) -> (String, String) {
    let v: Value = serde_json::from_str(value).expect("a credential is JSON");
    (
        v["username"].as_str().unwrap().to_owned(),
        v["password"].as_str().unwrap().to_owned(),
    )
}

fn credential(user: &str, password: &str) -> String {
    json!({"username": user, "password": password}).to_string()
}

/// A fresh test password (96 random bits).
fn password() -> String {
    format!("{}{}", unique_name("pw"), unique_name("x"))
}

/// Runs a client; its stdout, or None when it failed.
fn client(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().expect("run the database client");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A PostgreSQL group with its blue slot made by hand (the first value);
/// the rotation makes the green one. Dropped on drop.
struct Pg {
    url: String,
    group: String,
    first: String,
}

impl Pg {
    fn new(url: &str) -> Pg {
        if let Err(e) = keyshift_testkit::postgres_checks_passwords(url) {
            panic!("PostgreSQL must check the test roles' passwords: {e}");
        }
        let group = unique_name("ksc");
        let pw = password();
        let pg = Pg {
            url: url.to_owned(),
            first: credential(&format!("{group}_blue"), &pw),
            group,
        };
        let g = &pg.group;
        pg.admin(&format!(
            "CREATE ROLE {g} NOLOGIN; GRANT {} TO {g}; \
             CREATE ROLE {g}_blue LOGIN PASSWORD '{pw}' IN ROLE {g}",
            keyshift_testkit::PG_PASSWORD_GROUP
        ))
        .expect("create the test roles");
        pg
    }

    fn admin(&self, sql: &str) -> Option<String> {
        client(
            Command::new("psql")
                .args([&self.url, "-v", "ON_ERROR_STOP=1", "-tAqc", sql])
                .stderr(Stdio::null()),
        )
    }
}

impl Db for Pg {
    fn secret(&self, _: &Api) -> Value {
        json!({
            "kind": "postgres", "value": self.first,
            "target": {"address": "127.0.0.1:5432", "group": self.group},
        })
    }

    fn logs_in(&self, value: &str) -> bool {
        let (user, password) = parse(value);
        client(
            Command::new("psql")
                .arg(format!(
                    "host=127.0.0.1 port=5432 dbname=postgres user={user}"
                ))
                .args(["-tAqc", "SELECT 1"])
                .env("PGPASSWORD", password)
                .env("PGPASSFILE", "/dev/null")
                .stderr(Stdio::null()),
        )
        .is_some()
    }

    /// A slot that may log in has one password: some stored version must
    /// log in as it.
    fn accepts_only(&self, stored: &[String]) -> Result<(), String> {
        let g = &self.group;
        let login = self
            .admin(&format!(
                "SELECT rolname FROM pg_roles WHERE rolcanlogin AND rolname IN ('{g}_blue', '{g}_green')"
            ))
            .expect("read pg_roles");
        for role in login.lines().filter(|l| !l.is_empty()) {
            let kept = stored.iter().any(|v| parse(v).0 == role && self.logs_in(v));
            if !kept {
                return Err(format!("{role} logs in with a password the store lost"));
            }
        }
        Ok(())
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let g = &self.group;
        let _ = self.admin(&format!(
            "DROP ROLE IF EXISTS {g}_blue; DROP ROLE IF EXISTS {g}_green; DROP ROLE IF EXISTS {g}"
        ));
    }
}

/// A MariaDB user with one password (the first value), rotated in dual
/// mode. Dropped on drop.
struct Maria {
    user: String,
    first: String,
}

fn mariadb_admin(sql: &str) -> Option<String> {
    client(
        Command::new("mariadb")
            .args(["-h127.0.0.1", "-P3306", "-uroot", "-N", "-e", sql])
            .stderr(Stdio::null()),
    )
}

impl Maria {
    fn new() -> Maria {
        let user = unique_name("ksc");
        let pw = password();
        mariadb_admin(&format!("CREATE USER '{user}'@'%' IDENTIFIED BY '{pw}'"))
            .expect("create the test user");
        Maria {
            first: credential(&user, &pw),
            user,
        }
    }
}

impl Db for Maria {
    fn secret(&self, _: &Api) -> Value {
        json!({
            "kind": "mariadb", "value": self.first,
            "target": {"address": "127.0.0.1:3306", "user": self.user, "mode": "dual"},
        })
    }

    fn logs_in(&self, value: &str) -> bool {
        let (user, password) = parse(value);
        client(
            Command::new("mariadb")
                .args(["-h127.0.0.1", "-P3306", "-u", &user, "-N", "-e", "SELECT 1"])
                .env("MYSQL_PWD", password)
                .stderr(Stdio::null()),
        )
        .is_some()
    }

    /// The account accepts as many passwords as its `auth_or` list holds
    /// (one without it): as many stored versions must log in.
    fn accepts_only(&self, stored: &[String]) -> Result<(), String> {
        let count = mariadb_admin(&format!(
            "SELECT COALESCE(JSON_LENGTH(Priv, '$.auth_or'), 1) FROM mysql.global_priv \
             WHERE User = '{}' AND Host = '%'",
            self.user
        ))
        .expect("read mysql.global_priv");
        let accepted: usize = count.parse().unwrap_or(0);
        let kept = stored.iter().filter(|v| self.logs_in(v)).count();
        if kept < accepted {
            return Err(format!(
                "the account accepts {accepted} passwords, the store has {kept} of them"
            ));
        }
        Ok(())
    }
}

impl Drop for Maria {
    fn drop(&mut self) {
        let _ = mariadb_admin(&format!("DROP USER IF EXISTS '{}'@'%'", self.user));
    }
}

/// A Redis ACL user with one password (the first value); deleted on drop.
struct Redis {
    address: String,
    user: RedisUser,
}

impl Redis {
    fn new(url: &str) -> Redis {
        Redis {
            address: url.trim_start_matches("redis://").to_owned(),
            user: RedisUser::create(url),
        }
    }
}

impl Db for Redis {
    fn secret(&self, _: &Api) -> Value {
        json!({
            "kind": "redis", "value": self.user.password,
            "target": {"address": self.address, "user": self.user.name},
        })
    }

    fn logs_in(&self, value: &str) -> bool {
        self.user.logs_in(value)
    }

    /// Redis keeps SHA-256 digests of the user's passwords: each must be a
    /// stored version's.
    fn accepts_only(&self, stored: &[String]) -> Result<(), String> {
        let kept: Vec<String> = stored
            .iter()
            .map(|v| hex::encode(Sha256::digest(v.as_bytes())))
            .collect();
        match self
            .user
            .password_digests()
            .iter()
            .find(|d| !kept.contains(d))
        {
            Some(_) => Err("Redis accepts a password the store lost".to_owned()),
            None => Ok(()),
        }
    }
}

/// The same Redis user, rotated by the example exec plugin
/// (`examples/plugins/redis-acl.py`).
struct Plugin(Redis);

impl Db for Plugin {
    fn secret(&self, _: &Api) -> Value {
        let program = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/plugins/redis-acl.py")
            .canonicalize()
            .expect("examples/plugins/redis-acl.py exists");
        json!({
            "kind": "plugin", "value": self.0.user.password,
            "target": {"exec": {
                "program": program, "timeout": "20s",
                "env": {"REDIS_ADDR": self.0.address, "REDIS_USER": self.0.user.name},
            }},
        })
    }

    fn logs_in(&self, value: &str) -> bool {
        self.0.logs_in(value)
    }

    fn accepts_only(&self, stored: &[String]) -> Result<(), String> {
        self.0.accepts_only(stored)
    }
}

/// An x509 leaf for `localhost` issued by a CA made here and imported.
struct X509 {
    ca_name: String,
    ca: String,
    roots: Arc<RootCertStore>,
}

impl X509 {
    fn new() -> X509 {
        let config = X509CaConfig::new(format!("crash test CA {}", unique_name("ca")));
        let ca = new_ca(&config, SystemTime::now()).expect("make a CA");
        let ca = ca.expose().to_owned();
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
            roots.add(cert.expect("CA PEM")).expect("CA certificate");
        }
        X509 {
            ca_name: format!("crash/{}", unique_name("ca")),
            ca,
            roots: Arc::new(roots),
        }
    }
}

impl Db for X509 {
    fn secret(&self, api: &Api) -> Value {
        let ca = json!({"name": self.ca_name, "kind": "x509-ca", "value": self.ca});
        let (status, answer) = api.call(reqwest::Method::POST, "/v1/secrets", Some(ca));
        assert_eq!(status, 201, "{answer}");
        json!({
            "kind": "x509",
            "target": {"ca_secret": self.ca_name, "names": ["localhost"], "lifetime": "1day"},
        })
    }

    /// The leaf chains to the CA for `localhost`, and the key is its key.
    fn logs_in(&self, value: &str) -> bool {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let Ok(certs) =
            CertificateDer::pem_slice_iter(value.as_bytes()).collect::<Result<Vec<_>, _>>()
        else {
            return false;
        };
        let Ok(key) = PrivateKeyDer::from_pem_slice(value.as_bytes()) else {
            return false;
        };
        let Some((leaf, chain)) = certs.split_first() else {
            return false;
        };
        let verifier =
            WebPkiServerVerifier::builder_with_provider(self.roots.clone(), provider.clone())
                .build()
                .expect("a verifier");
        let name = ServerName::try_from("localhost").expect("a name");
        let chains = verifier
            .verify_server_cert(leaf, chain, &name, &[], UnixTime::now())
            .is_ok();
        chains && CertifiedKey::from_der(certs.clone(), key, &provider).is_ok()
    }

    /// Nothing refuses a leaf before it expires: no accepted set to check.
    fn accepts_only(&self, _: &[String]) -> Result<(), String> {
        Ok(())
    }

    fn refuses_revoked(&self) -> bool {
        false
    }
}

// ---------------------------------------------------------------------------
// The crash

/// I1 and I2 against the real database, read through the API.
fn check_invariants(api: &Api, name: &str, db: &dyn Db, when: &str) {
    let current = api.get(&format!("/v1/secrets/{name}:value"));
    let current = current["value"].as_str().unwrap();
    assert!(
        db.logs_in(current),
        "I1 broken {when}: current does not log in"
    );
    if let Err(e) = db.accepts_only(&api.stored(name)) {
        panic!("I2 broken {when}: {e}");
    }
}

/// What carries on after the server driving the rotation is killed.
enum After<'a> {
    /// The same server, restarted on its SQLite store.
    Restart,
    /// Two more replicas, running all along on the PostgreSQL store at
    /// this URL: one takes the rotation over when the lease expires.
    Replicas(&'a str),
}

/// The lease of the replicas in [`After::Replicas`]: short, so a takeover
/// comes soon after the kill.
const LEASE: &str = "3s";

/// Runs one rotation of `db`'s secret with `strategy` (a canary is
/// observed for no time), kills the server at `at`, restarts it, and
/// returns how the rotation ended; I1 and I2 hold throughout.
fn crash_at(db: &dyn Db, at: &str, refuse_verify: Option<&str>, strategy: &str) -> String {
    crash_at_then(db, at, refuse_verify, strategy, &After::Restart)
}

/// [`crash_at`], with `after` carrying on.
fn crash_at_then(
    db: &dyn Db,
    at: &str,
    refuse_verify: Option<&str>,
    strategy: &str,
    after: &After,
) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (token, store) = match after {
        After::Restart => (init(dir.path()), vec![]),
        After::Replicas(url) => (
            init_with_store(dir.path(), url),
            vec![("KEYSHIFT_STORE", *url)],
        ),
    };
    let lease = ["--lease", LEASE];
    let mut hooks = vec![("KEYSHIFT_TEST_HALT_AT", at)];
    if let Some(phase) = refuse_verify {
        hooks.push(("KEYSHIFT_TEST_REFUSE_VERIFY", phase));
    }
    hooks.extend(store.iter().copied());
    let server = Serve::start(dir.path(), &lease, &hooks);
    let others: Vec<Serve> = match after {
        After::Restart => Vec::new(),
        After::Replicas(_) => (0..2)
            .map(|_| Serve::start(dir.path(), &lease, &store))
            .collect(),
    };
    let mut api = Api {
        http: reqwest::blocking::Client::new(),
        base: format!("http://{}", server.addr),
        token,
    };
    let name = format!("crash/{}", unique_name("db"));
    let mut body = db.secret(&api);
    body["name"] = json!(name);
    body["policy"] = json!({"min_overlap": "0s", "strategy": strategy, "canary_observation": "0s"});
    let (status, answer) = api.call(reqwest::Method::POST, "/v1/secrets", Some(body));
    assert_eq!(status, 201, "{answer}");
    let (status, rotation) = api.call(
        reqwest::Method::POST,
        &format!("/v1/secrets/{name}:rotate"),
        Some(json!({})),
    );
    assert_eq!(status, 201, "{rotation}");
    let id = rotation["id"].as_str().unwrap().to_owned();

    server.wait_for_halt(at);
    check_invariants(&api, &name, db, &format!("at {at}"));
    server.kill();

    // Restarted without hooks, or another replica once the lease expired:
    // the rotation resumes from its persisted phase.
    let restarted = match after {
        After::Restart => Some(Serve::start(dir.path(), &[], &[])),
        After::Replicas(_) => None,
    };
    let carrying_on = restarted.as_ref().or(others.first()).unwrap();
    api.base = format!("http://{}", carrying_on.addr);
    let deadline = Instant::now() + Duration::from_secs(60);
    let r = loop {
        let r = api.get(&format!("/v1/rotations/{id}"));
        if r["status"] != "running" {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "killed at {at}: never finished: {r}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    check_invariants(&api, &name, db, &format!("after restart from {at}"));
    let stored = api.stored(&name);
    let states = api.states(&name);
    let refuses = db.refuses_revoked();
    let status = r["status"].as_str().unwrap().to_owned();
    match status.as_str() {
        "succeeded" => {
            assert_eq!(states, ["revoked", "active"], "killed at {at}");
            assert!(
                !refuses || !db.logs_in(&stored[0]),
                "killed at {at}: old refused"
            );
        }
        "rolled_back" => {
            assert!(db.logs_in(&stored[0]), "killed at {at}: old works");
            assert_eq!(states[0], "active", "killed at {at}");
            if let Some(new) = stored.get(1) {
                assert_eq!(states[1], "failed", "killed at {at}");
                assert!(!refuses || !db.logs_in(new), "killed at {at}: new refused");
            }
        }
        other => panic!("killed at {at}: rotation {other}: {r}"),
    }
    eprintln!("killed at {at}: {status}");
    status
}

/// Every phase boundary of a rotation, then both of a rollback's.
fn crash_everywhere(new_db: impl Fn() -> Box<dyn Db>) {
    for_every_boundary(&|at, refuse| crash_at(new_db().as_ref(), at, refuse, "dual"));
}

/// [`crash_everywhere`], on three replicas sharing a store made by
/// `new_store` each time.
fn crash_everywhere_then(new_db: impl Fn() -> Box<dyn Db>, new_store: &dyn Fn() -> Database) {
    for_every_boundary(&|at, refuse| {
        let store = new_store();
        let db = new_db();
        crash_at_then(
            db.as_ref(),
            at,
            refuse,
            "dual",
            &After::Replicas(&store.url),
        )
    });
}

/// Runs `crash(at, refuse_verify)` at every phase boundary of a rotation
/// (which must succeed), then at both of a rollback's (which must roll
/// back).
fn for_every_boundary(crash: &dyn Fn(&str, Option<&str>) -> String) {
    for phase in ["precheck", "generate", "dual_accept", "promote", "revoke"] {
        for when in ["before", "after"] {
            let at = format!("{phase}:{when}");
            assert_eq!(crash(&at, None), "succeeded", "killed at {at}");
        }
    }
    for when in ["before", "after"] {
        let at = format!("roll_back:{when}");
        assert_eq!(
            crash(&at, Some("dual_accept")),
            "rolled_back",
            "killed at {at}"
        );
    }
}

#[test]
fn redis_killed_at_every_phase_boundary_completes_or_rolls_back() {
    let Some(url) = service(Service::Redis) else {
        return;
    };
    crash_everywhere(|| Box::new(Redis::new(&url)));
}

#[test]
fn plugin_killed_at_every_phase_boundary_completes_or_rolls_back() {
    let Some(url) = service(Service::Redis) else {
        return;
    };
    crash_everywhere(|| Box::new(Plugin(Redis::new(&url))));
}

#[test]
fn x509_killed_at_every_phase_boundary_completes_or_rolls_back() {
    crash_everywhere(|| Box::new(X509::new()));
}

#[test]
fn a_canary_killed_around_its_canary_step_completes() {
    let Some(url) = service(Service::Redis) else {
        return;
    };
    for when in ["before", "after"] {
        let at = format!("canary:{when}");
        let status = crash_at(&Redis::new(&url), &at, None, "canary");
        assert_eq!(status, "succeeded", "killed at {at}");
    }
}

#[test]
fn postgres_killed_at_every_phase_boundary_completes_or_rolls_back() {
    let Some(url) = service(Service::Postgres) else {
        return;
    };
    crash_everywhere(|| Box::new(Pg::new(&url)));
}

#[test]
fn a_replica_killed_at_every_phase_boundary_is_taken_over_by_another() {
    let (Some(store), Some(redis)) = (service(Service::Postgres), service(Service::Redis)) else {
        return;
    };
    crash_everywhere_then(|| Box::new(Redis::new(&redis)), &|| {
        Database::create(&store)
    });
}

#[test]
fn mariadb_killed_at_every_phase_boundary_completes_or_rolls_back() {
    if service(Service::MariaDb).is_none() {
        return;
    }
    crash_everywhere(|| Box::new(Maria::new()));
}
