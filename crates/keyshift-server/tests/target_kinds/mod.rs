//! The target suite: the same checks, through the server's API, for every
//! kind whose target is a real system (Redis, PostgreSQL, MariaDB, x509
//! leaves, an exec plugin driving Redis).
//!
//! Each kind is a [`Kind`]: it makes what its target needs under unique
//! names (dropped again when the fixture is dropped, passing or failing),
//! says how to create its secret, and how to tell whether a value logs in
//! (or, for a certificate, whether a client trusting the CA accepts it).
//! The checks ([`overlap_then_revoke`], [`refused_verify_rolls_back`]) are
//! written once against that trait.
#![allow(dead_code)]

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime};

use keyshift_core::SecretValue;
use keyshift_targets::random_password;
use keyshift_testkit::{service, unique_name, RedisUser, Service};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, Executor};

use crate::support::{start_rotation, unique_secret, TestServer};

/// One kind of secret with a real target, set up for one test.
#[async_trait::async_trait]
pub trait Kind: Send + Sync {
    /// Names the kind in assertion messages.
    fn label(&self) -> &'static str;

    /// The body of `POST /v1/secrets` without `name` and `policy`: `kind`,
    /// `target`, and a `value` the target accepts now (or none, when the
    /// server makes the first value).
    async fn secret(&self, server: &TestServer) -> Value;

    /// Whether `value`, as the API serves it, logs in now.
    async fn logs_in(&self, value: &str) -> bool;

    /// Whether the target refuses a revoked value. Not for certificates: a
    /// leaf stays valid for whoever trusts its CA until it expires; it is
    /// revoked by no longer being served.
    fn revoke_refuses(&self) -> bool {
        true
    }
}

/// Creates the secret of `kind` with `policy`; returns its name.
pub async fn create(server: &TestServer, kind: &dyn Kind, policy: Value) -> String {
    let name = unique_secret(kind.label());
    let mut body = kind.secret(server).await;
    body["name"] = json!(name);
    body["policy"] = policy;
    let (status, answer) = server.call(Method::POST, "/v1/secrets", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{}: {answer}", kind.label());
    name
}

/// The value of `name` at `selector` (`label=current`, `version=2`).
pub async fn value(server: &TestServer, name: &str, selector: &str) -> String {
    let (status, body) = server
        .call(
            Method::GET,
            &format!("/v1/secrets/{name}:value?{selector}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["value"].as_str().unwrap().to_owned()
}

/// The state (`active`, `revoked`, `failed`, ...) of version `v` of `name`.
pub async fn version_state(server: &TestServer, name: &str, v: u64) -> String {
    let (status, body) = server
        .call(Method::GET, &format!("/v1/secrets/{name}:versions"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["version"] == v)
        .unwrap_or_else(|| panic!("no version {v}: {body}"))["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Polls the rotation until it is in `phase` (bounded), failing if it ends
/// first.
pub async fn wait_phase(server: &TestServer, id: &str, phase: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, r) = server
            .call(Method::GET, &format!("/v1/rotations/{id}"), None)
            .await;
        if r["phase"] == phase {
            return r;
        }
        assert_eq!(r["status"], "running", "never reached {phase}: {r}");
        assert!(Instant::now() < deadline, "not in {phase} after 30 s: {r}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A dual rotation: old and new both log in during the overlap; after
/// revoke the old is refused and the new one, `current`, works.
pub async fn overlap_then_revoke(kind: &dyn Kind) {
    let label = kind.label();
    let server = TestServer::start().await;
    let name = create(&server, kind, json!({"min_overlap": "3s"})).await;
    let old = value(&server, &name, "label=current").await;
    assert!(kind.logs_in(&old).await, "{label}: the first value logs in");

    let id = start_rotation(&server, &name).await;
    let r = wait_phase(&server, &id, "overlap").await;
    let new_version = r["new_version"].as_u64().unwrap();
    let new = value(&server, &name, &format!("version={new_version}")).await;
    assert_ne!(new, old, "{label}: a new value");
    assert_eq!(value(&server, &name, "label=current").await, new);
    assert!(
        kind.logs_in(&old).await,
        "{label}: old works in the overlap"
    );
    assert!(
        kind.logs_in(&new).await,
        "{label}: new works in the overlap"
    );

    let done = server.wait_rotation(&id).await;
    assert_eq!(done["status"], "succeeded", "{label}: {done}");
    assert_eq!(version_state(&server, &name, 1).await, "revoked");
    if kind.revoke_refuses() {
        assert!(
            !kind.logs_in(&old).await,
            "{label}: old refused after revoke"
        );
    }
    assert!(kind.logs_in(&new).await, "{label}: new works after revoke");
    assert_eq!(value(&server, &name, "label=current").await, new);
    let (_, accepted) = server
        .call(Method::GET, &format!("/v1/secrets/{name}:accepted"), None)
        .await;
    assert_eq!(
        accepted["versions"].as_array().unwrap().len(),
        1,
        "{label}: only the new version is accepted: {accepted}"
    );
}

/// An emergency rotation (a leaked credential): replaced and revoked at
/// once, with no overlap.
pub async fn emergency_replaces_at_once(kind: &dyn Kind) {
    let label = kind.label();
    let server = TestServer::start().await;
    let name = create(&server, kind, json!({"min_overlap": "1h"})).await;
    let old = value(&server, &name, "label=current").await;
    let (status, r) = server
        .call(
            Method::POST,
            &format!("/v1/secrets/{name}:rotate"),
            Some(json!({"emergency": "leaked in a test"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{label}: {r}");
    let done = server.wait_rotation(r["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{label}: {done}");
    assert_eq!(
        crate::support::phases(&done),
        ["precheck", "generate", "replace", "promote", "done"],
        "{label}: no overlap"
    );
    let new = value(&server, &name, "label=current").await;
    assert_ne!(new, old, "{label}");
    if kind.revoke_refuses() {
        assert!(
            !kind.logs_in(&old).await,
            "{label}: the leaked value is refused"
        );
    }
    assert!(kind.logs_in(&new).await, "{label}: the new value works");
    assert_eq!(version_state(&server, &name, 1).await, "revoked");
}

/// A rotation whose DualAccept verification is refused (the server runs
/// with `KEYSHIFT_TEST_REFUSE_VERIFY=dual_accept`) rolls back: `current`
/// is the old value again and still logs in, the new one is failed and
/// refused.
pub async fn refused_verify_rolls_back(kind: &dyn Kind) {
    let label = kind.label();
    let server = TestServer::start().await;
    let name = create(&server, kind, json!({"min_overlap": "0s"})).await;
    let old = value(&server, &name, "label=current").await;

    let id = start_rotation(&server, &name).await;
    let done = server.wait_rotation(&id).await;
    assert_eq!(done["status"], "rolled_back", "{label}: {done}");
    let error = done["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == "dual_accept")
        .and_then(|p| p["error"].as_str())
        .unwrap_or_else(|| panic!("{label}: dual_accept failed with an error: {done}"))
        .to_owned();
    assert!(error.contains("refused"), "{label}: {error}");

    assert_eq!(value(&server, &name, "label=current").await, old);
    assert!(
        kind.logs_in(&old).await,
        "{label}: old works after rollback"
    );
    assert_eq!(version_state(&server, &name, 2).await, "failed");
    let new = value(&server, &name, "version=2").await;
    if kind.revoke_refuses() {
        assert!(
            !kind.logs_in(&new).await,
            "{label}: new refused after rollback"
        );
    }
}

// ---------------------------------------------------------------------------
// Redis

/// A Redis ACL user, its password the secret's first value.
pub struct Redis {
    user: RedisUser,
}

impl Redis {
    pub fn new() -> Option<Redis> {
        let url = service(Service::Redis)?;
        Some(Redis {
            user: RedisUser::create(&url),
        })
    }

    fn address(&self) -> String {
        self.user.url.trim_start_matches("redis://").to_owned()
    }
}

#[async_trait::async_trait]
impl Kind for Redis {
    fn label(&self) -> &'static str {
        "redis"
    }

    async fn secret(&self, _: &TestServer) -> Value {
        json!({
            "kind": "redis",
            "value": self.user.password,
            "target": {"address": self.address(), "user": self.user.name},
        })
    }

    async fn logs_in(&self, value: &str) -> bool {
        self.user.logs_in(value)
    }
}

// ---------------------------------------------------------------------------
// An exec plugin: examples/plugins/redis-acl.py driving a Redis ACL user.

/// The example plugin, or a test script wrapping it.
pub fn example_plugin() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/plugins/redis-acl.py")
        .canonicalize()
        .expect("examples/plugins/redis-acl.py exists")
        .to_string_lossy()
        .into_owned()
}

/// A Redis ACL user rotated by an exec plugin.
pub struct Plugin {
    redis: Redis,
    /// The program and its arguments (the example plugin, or a wrapper).
    pub exec: Value,
}

impl Plugin {
    pub fn new() -> Option<Plugin> {
        let redis = Redis::new()?;
        let exec = json!({
            "program": example_plugin(),
            "timeout": "20s",
            "env": {"REDIS_ADDR": redis.address(), "REDIS_USER": redis.user.name},
        });
        Some(Plugin { redis, exec })
    }

    /// Runs `python3 <script>` instead, with `env` added; the script gets
    /// the example plugin's path in `EXAMPLE_PLUGIN`.
    pub fn wrapped(mut self, script: &Path, timeout: &str, env: &[(&str, &str)]) -> Plugin {
        let mut vars = self.exec["env"].clone();
        vars["EXAMPLE_PLUGIN"] = json!(example_plugin());
        for (k, v) in env {
            vars[*k] = json!(v);
        }
        self.exec = json!({
            "program": python3(),
            "args": [script.to_string_lossy()],
            "timeout": timeout,
            "env": vars,
        });
        self
    }
}

/// The absolute path of `python3` on `PATH`.
pub fn python3() -> String {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("python3"))
        .find(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
        .expect("python3 on PATH")
}

#[async_trait::async_trait]
impl Kind for Plugin {
    fn label(&self) -> &'static str {
        "plugin"
    }

    async fn secret(&self, _: &TestServer) -> Value {
        json!({
            "kind": "plugin",
            "value": self.redis.user.password,
            "target": {"exec": self.exec},
        })
    }

    async fn logs_in(&self, value: &str) -> bool {
        self.redis.user.logs_in(value)
    }
}

// ---------------------------------------------------------------------------
// PostgreSQL

/// The test PostgreSQL: its admin URL (trust) and address.
pub struct PgEnv {
    pub url: String,
    pub address: String,
    pub database: String,
}

impl PgEnv {
    pub fn new() -> Option<PgEnv> {
        let url = service(Service::Postgres)?;
        if let Err(e) = keyshift_testkit::postgres_checks_passwords(&url) {
            panic!("PostgreSQL must check the test roles' passwords: {e}");
        }
        let base = PgConnectOptions::from_str(&url).expect("test postgres URL parses");
        Some(PgEnv {
            address: format!("{}:{}", base.get_host(), base.get_port()),
            database: base.get_database().unwrap_or("postgres").to_owned(),
            url,
        })
    }

    /// Runs admin statements (test setup only).
    pub async fn run(&self, statements: &[String]) {
        let mut conn = PgConnection::connect(&self.url)
            .await
            .expect("connect to postgres as admin");
        for sql in statements {
            conn.execute(sql.as_str())
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        conn.close().await.ok();
    }
}

/// A PostgreSQL group role (a member of
/// [`keyshift_testkit::PG_PASSWORD_GROUP`], so its slots' passwords are
/// checked) and its blue-green slots; all dropped on drop.
pub struct Postgres {
    pub env: PgEnv,
    pub group: String,
    /// The first value: the blue slot, made by hand with a password. None
    /// when the secret starts without a value.
    first: Option<SecretValue>,
    /// Other roles made for the test (admins), dropped too.
    extra: Vec<String>,
}

impl Postgres {
    /// The group, and its blue slot made by hand with a password (the
    /// secret's first value) when `with_value`.
    pub async fn new(with_value: bool) -> Option<Postgres> {
        let env = PgEnv::new()?;
        let group = unique_name("ksg");
        let mut fixture = Postgres {
            env,
            group: group.clone(),
            first: None,
            extra: Vec::new(),
        };
        let checked = keyshift_testkit::PG_PASSWORD_GROUP;
        fixture
            .env
            .run(&[
                format!("CREATE ROLE {group} NOLOGIN"),
                format!("GRANT {checked} TO {group}"),
            ])
            .await;
        if with_value {
            let password = random_password();
            fixture
                .env
                .run(&[format!(
                    "CREATE ROLE {group}_blue LOGIN PASSWORD '{}' IN ROLE {group}",
                    password.expose()
                )])
                .await;
            fixture.first = Some(credential(&format!("{group}_blue"), &password));
        }
        Some(fixture)
    }

    pub fn target(&self) -> Value {
        json!({"address": self.env.address, "database": self.env.database, "group": self.group})
    }

    /// A role that may manage roles (CREATEROLE, not a superuser) and logs
    /// in with a checked password: an admin credential for the target.
    pub async fn admin_role(&mut self) -> SecretValue {
        let admin = format!("{}_admin", self.group);
        let password = random_password();
        self.extra.push(admin.clone());
        self.env
            .run(&[format!(
                "CREATE ROLE {admin} LOGIN CREATEROLE PASSWORD '{}' IN ROLE {}",
                password.expose(),
                keyshift_testkit::PG_PASSWORD_GROUP
            )])
            .await;
        credential(&admin, &password)
    }
}

/// The value `{"username", "password"}`.
pub fn credential(user: &str, password: &SecretValue) -> SecretValue {
    keyshift_core::Credential::new(user, password.clone())
        .unwrap()
        .to_value()
}

#[async_trait::async_trait]
impl Kind for Postgres {
    fn label(&self) -> &'static str {
        "postgres"
    }

    async fn secret(&self, _: &TestServer) -> Value {
        let mut body = json!({"kind": "postgres", "target": self.target()});
        if let Some(v) = &self.first {
            body["value"] = json!(v.expose());
        }
        body
    }

    async fn logs_in(&self, value: &str) -> bool {
        logged_in(self.login(value).connect().await.map(drop))
    }
}

impl Postgres {
    /// How to log in with the credential `value`.
    fn login(&self, value: &str) -> PgConnectOptions {
        let (user, password) = parse_credential(value);
        let base = PgConnectOptions::from_str(&self.env.url).unwrap();
        PgConnectOptions::new_without_pgpass()
            .host(base.get_host())
            .port(base.get_port())
            .database(&self.env.database)
            .username(&user)
            .password(&password)
    }

    /// A session logged in with the credential `value`, kept open.
    pub async fn session(&self, value: &str) -> PgConnection {
        self.login(value)
            .connect()
            .await
            .expect("log in with the credential")
    }
}

/// Whether a login attempt succeeded: a server's refusal is `false`; not
/// reaching the server fails the test.
fn logged_in(result: Result<(), sqlx::Error>) -> bool {
    match result {
        Ok(()) => true,
        Err(sqlx::Error::Database(_)) => false,
        Err(e) => panic!("could not ask the server: {e}"),
    }
}

/// The user name and password of a credential value.
pub fn parse_credential(value: &str) -> (String, String) {
    let v: Value = serde_json::from_str(value).expect("a credential is JSON");
    (
        v["username"].as_str().unwrap().to_owned(),
        v["password"].as_str().unwrap().to_owned(),
    )
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let url = self.env.url.clone();
        let g = self.group.clone();
        let mut roles = vec![format!("{g}_blue"), format!("{g}_green"), g];
        roles.append(&mut self.extra);
        // Drop may run inside the test's runtime: clean up on a thread of
        // its own with its own runtime.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let Ok(mut conn) = PgConnection::connect(&url).await else {
                    return;
                };
                for r in &roles {
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
                conn.close().await.ok();
            });
        });
        let _ = cleanup.join();
    }
}

// ---------------------------------------------------------------------------
// MariaDB

/// The test MariaDB: its admin URL (root without a password) and address.
pub struct MariaEnv {
    pub url: String,
    pub address: String,
    host: String,
    port: u16,
}

impl MariaEnv {
    pub fn new() -> Option<MariaEnv> {
        let url = service(Service::MariaDb)?;
        let options: MySqlConnectOptions = url.parse().expect("test mysql URL parses");
        assert_eq!(
            options.get_username(),
            "root",
            "the target suite administers MariaDB as root without a password"
        );
        Some(MariaEnv {
            address: format!("{}:{}", options.get_host(), options.get_port()),
            host: options.get_host().to_owned(),
            port: options.get_port(),
            url,
        })
    }

    /// Runs admin statements (test setup only).
    pub async fn run(&self, statements: &[String]) {
        let mut conn = MySqlConnection::connect(&self.url)
            .await
            .expect("connect to mariadb as admin");
        for sql in statements {
            conn.execute(sql.as_str())
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        conn.close().await.ok();
    }
}

/// A MariaDB account: in dual mode one user with a password (the first
/// value); in blue-green mode a role whose slot users the first rotation
/// creates. All dropped on drop.
pub struct MariaDb {
    pub env: MariaEnv,
    /// The dual user, or the blue-green role.
    pub user: String,
    pub blue_green: bool,
    first: Option<SecretValue>,
}

impl MariaDb {
    /// Dual mode: a user made with a password, the first value.
    pub async fn dual() -> Option<MariaDb> {
        let env = MariaEnv::new()?;
        let user = unique_name("ksm");
        let password = random_password();
        env.run(&[format!(
            "CREATE USER '{user}'@'%' IDENTIFIED BY '{}'",
            password.expose()
        )])
        .await;
        Some(MariaDb {
            first: Some(credential(&user, &password)),
            env,
            user,
            blue_green: false,
        })
    }

    /// Blue-green mode: a role, no slot users yet, no first value.
    pub async fn blue_green() -> Option<MariaDb> {
        let env = MariaEnv::new()?;
        let role = unique_name("ksr");
        env.run(&[format!("CREATE ROLE {role}")]).await;
        Some(MariaDb {
            env,
            user: role,
            blue_green: true,
            first: None,
        })
    }

    pub fn target(&self) -> Value {
        let mode = if self.blue_green {
            "blue-green"
        } else {
            "dual"
        };
        json!({"address": self.env.address, "user": self.user, "mode": mode})
    }
}

#[async_trait::async_trait]
impl Kind for MariaDb {
    fn label(&self) -> &'static str {
        "mariadb"
    }

    async fn secret(&self, _: &TestServer) -> Value {
        let mut body = json!({"kind": "mariadb", "target": self.target()});
        if let Some(v) = &self.first {
            body["value"] = json!(v.expose());
        }
        body
    }

    async fn logs_in(&self, value: &str) -> bool {
        let (user, password) = parse_credential(value);
        let options = MySqlConnectOptions::new()
            .host(&self.env.host)
            .port(self.env.port)
            .username(&user)
            .password(&password);
        logged_in(options.connect().await.map(drop))
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let url = self.env.url.clone();
        let u = self.user.clone();
        let statements = if self.blue_green {
            vec![
                format!("DROP USER IF EXISTS '{u}_blue'@'%'"),
                format!("DROP USER IF EXISTS '{u}_green'@'%'"),
                format!("DROP ROLE IF EXISTS {u}"),
            ]
        } else {
            vec![format!("DROP USER IF EXISTS '{u}'@'%'")]
        };
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let Ok(mut conn) = MySqlConnection::connect(&url).await else {
                    return;
                };
                for sql in statements {
                    let _ = conn.execute(sql.as_str()).await;
                }
                conn.close().await.ok();
            });
        });
        let _ = cleanup.join();
    }
}

// ---------------------------------------------------------------------------
// x509 leaves issued by a CA secret

/// An `x509-ca` secret made by the server and an `x509` leaf issued from
/// it when the leaf secret is created. A value "logs in" when a TLS client
/// that trusts the CA completes a handshake with a server presenting it
/// for `service.test` (rustls on both ends, in memory).
pub struct X509 {
    pub ca_name: String,
    /// The CA certificate (PEM), once the CA exists.
    ca: std::sync::OnceLock<String>,
}

impl X509 {
    pub fn new() -> X509 {
        X509 {
            ca_name: unique_secret("ca"),
            ca: std::sync::OnceLock::new(),
        }
    }

    /// Creates the CA secret on `server`.
    pub async fn create_ca(&self, server: &TestServer) {
        let (status, body) = server
            .call(
                Method::POST,
                "/v1/secrets",
                Some(json!({
                    "name": self.ca_name, "kind": "x509-ca",
                    "target": {"common_name": "keyshift test CA"},
                })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let ca = value(server, &self.ca_name, "label=current").await;
        assert!(self.ca.set(ca).is_ok(), "one CA per fixture");
    }
}

impl Default for X509 {
    fn default() -> Self {
        X509::new()
    }
}

#[async_trait::async_trait]
impl Kind for X509 {
    fn label(&self) -> &'static str {
        "x509"
    }

    async fn secret(&self, server: &TestServer) -> Value {
        self.create_ca(server).await;
        json!({"kind": "x509", "target": {"ca_secret": self.ca_name, "names": ["service.test"]}})
    }

    async fn logs_in(&self, value: &str) -> bool {
        let ca = self.ca.get().expect("the CA exists");
        tls_handshake(ca, value, "service.test")
    }

    fn revoke_refuses(&self) -> bool {
        false
    }
}

/// Whether a client trusting the certificates in `ca_pem` completes a TLS
/// handshake with a server presenting `bundle` (certificates, then the
/// PKCS#8 key, in PEM) for `name`.
pub fn tls_handshake(ca_pem: &str, bundle: &str, name: &str) -> bool {
    use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use std::sync::Arc;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let Ok(chain) =
        CertificateDer::pem_slice_iter(bundle.as_bytes()).collect::<Result<Vec<_>, _>>()
    else {
        return false;
    };
    let Ok(key) = PrivateKeyDer::from_pem_slice(bundle.as_bytes()) else {
        return false;
    };
    let Ok(server) = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
    else {
        return false;
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.expect("the CA parses"))
            .expect("the CA is a trust anchor");
    }
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let mut client = ClientConnection::new(Arc::new(client), name).unwrap();
    let mut server = ServerConnection::new(Arc::new(server)).unwrap();
    for _ in 0..10 {
        if !pump(&mut *client, &mut *server) || !pump(&mut *server, &mut *client) {
            return false;
        }
        if !client.is_handshaking() && !server.is_handshaking() {
            return true;
        }
    }
    false
}

/// Moves the TLS bytes `from` wants to send into `to`; false when `to`
/// rejects them.
fn pump<A, B>(
    from: &mut rustls::ConnectionCommon<A>,
    to: &mut rustls::ConnectionCommon<B>,
) -> bool {
    let mut bytes = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut bytes).unwrap();
    }
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        if to.read_tls(&mut rest).is_err() || to.process_new_packets().is_err() {
            return false;
        }
    }
    true
}

// ---------------------------------------------------------------------------
// A webhook plugin: an in-process receiver that checks every signature
// with the HMAC key and keeps an accepted set.

/// What the receiver shares with the test.
#[derive(Default)]
pub struct Receiver {
    key: String,
    accepted: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Requests refused for a bad signature.
    pub rejected: std::sync::atomic::AtomicUsize,
}

/// A webhook receiver on 127.0.0.1:0 whose accepted set starts with one
/// value, and the secret holding its HMAC key (created on the server by
/// [`Kind::secret`]).
pub struct Webhook {
    pub url: String,
    pub receiver: std::sync::Arc<Receiver>,
    pub hmac_secret: String,
    first: String,
    /// The HMAC key the server's secret holds (the receiver's, unless a
    /// test wants them to differ).
    pub server_key: String,
}

impl Webhook {
    pub async fn start() -> Webhook {
        use axum::routing::post;
        let key = format!("hmac-{}", unique_name("key"));
        let first = format!("first-{}", unique_name("value"));
        let receiver = std::sync::Arc::new(Receiver {
            key: key.clone(),
            ..Receiver::default()
        });
        receiver.accepted.lock().unwrap().insert(first.clone());
        let app = axum::Router::new()
            .route("/hook", post(hook))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Webhook {
            url,
            receiver,
            hmac_secret: unique_secret("hmac"),
            first,
            server_key: key,
        }
    }
}

async fn hook(
    axum::extract::State(rx): axum::extract::State<std::sync::Arc<Receiver>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, axum::Json<Value>) {
    let header = |h: &str| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let checked = keyshift_targets::verify_signature(
        &SecretValue::new(rx.key.clone()).unwrap(),
        &header(keyshift_targets::TIMESTAMP_HEADER),
        &header(keyshift_targets::SIGNATURE_HEADER),
        &body,
        now,
        Duration::from_secs(300),
    );
    if let Err(e) = checked {
        rx.rejected
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": e.to_string()})),
        );
    }
    let req: Value = serde_json::from_slice(&body).unwrap();
    let value = req["value"].as_str().map(str::to_owned);
    let mut accepted = rx.accepted.lock().unwrap();
    let reply = match req["step"].as_str().unwrap() {
        "precheck" => match req["current"].as_str() {
            Some(c) if !accepted.contains(c) => {
                json!({"ok": false, "error": "the current key is not accepted"})
            }
            _ => json!({"ok": true}),
        },
        // keyshift makes the value.
        "generate" => json!({"ok": true}),
        "enable" => {
            accepted.insert(value.unwrap());
            json!({"ok": true})
        }
        "revoke" => {
            accepted.remove(&value.unwrap());
            json!({"ok": true})
        }
        "verify" => {
            let ok = accepted.contains(&value.unwrap());
            json!({"ok": true, "verdict": if ok { "accepted" } else { "refused" }})
        }
        "usage" => json!({"ok": true, "uses": null}),
        other => json!({"ok": false, "error": format!("unknown step {other}")}),
    };
    (axum::http::StatusCode::OK, axum::Json(reply))
}

#[async_trait::async_trait]
impl Kind for Webhook {
    fn label(&self) -> &'static str {
        "webhook"
    }

    async fn secret(&self, server: &TestServer) -> Value {
        let body = json!({"name": self.hmac_secret, "kind": "static", "value": self.server_key});
        let (status, answer) = server.call(Method::POST, "/v1/secrets", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        json!({
            "kind": "plugin", "value": self.first,
            "target": {"webhook": {"url": self.url, "hmac_secret": self.hmac_secret, "timeout": "5s"}},
        })
    }

    async fn logs_in(&self, value: &str) -> bool {
        self.receiver.accepted.lock().unwrap().contains(value)
    }
}
