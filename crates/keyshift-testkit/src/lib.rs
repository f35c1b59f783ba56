//! Test support shared by keyshift's crates.
//!
//! Tests of targets and stores run against the real services on this
//! machine. [`service`] finds one: in CI (`CI=true`) a missing service fails
//! the test; elsewhere the test is skipped with a loud message that names
//! the environment variable pointing at the service.
#![deny(missing_docs)]

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use rand::Rng;

/// A real service a test needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// PostgreSQL, trust auth.
    Postgres,
    /// Redis 6+ with ACLs.
    Redis,
    /// MariaDB or MySQL.
    MariaDb,
    /// A NATS server.
    Nats,
}

impl Service {
    /// The environment variable that points at the service.
    pub fn env_var(self) -> &'static str {
        match self {
            Service::Postgres => "KEYSHIFT_TEST_POSTGRES_URL",
            Service::Redis => "KEYSHIFT_TEST_REDIS_URL",
            Service::MariaDb => "KEYSHIFT_TEST_MYSQL_URL",
            Service::Nats => "KEYSHIFT_TEST_NATS_URL",
        }
    }

    /// The URL used when the variable is unset (this machine's services).
    pub fn default_url(self) -> &'static str {
        match self {
            Service::Postgres => "postgres://postgres@127.0.0.1:5432/postgres",
            Service::Redis => "redis://127.0.0.1:6379",
            Service::MariaDb => "mysql://root@127.0.0.1:3306/test",
            Service::Nats => "nats://127.0.0.1:4222",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Service::Postgres => 5432,
            Service::Redis => 6379,
            Service::MariaDb => 3306,
            Service::Nats => 4222,
        }
    }
}

/// The URL of `s` if it answers on TCP.
///
/// # Panics
///
/// In CI (`CI=true`) when the service does not answer: a test that needs a
/// service must fail there rather than pass by skipping.
pub fn service(s: Service) -> Option<String> {
    let url = std::env::var(s.env_var()).unwrap_or_else(|_| s.default_url().to_owned());
    let addr = host_port(&url, s.default_port());
    let reachable = addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut it| it.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    if reachable {
        return Some(url);
    }
    if in_ci() {
        panic!(
            "{s:?} is required in CI but does not answer at {addr} (set {} to its URL)",
            s.env_var()
        );
    }
    eprintln!(
        "\n!!! SKIPPED: {s:?} does not answer at {addr}. Start it or set {} to its URL to run this test. !!!\n",
        s.env_var()
    );
    None
}

/// Whether this run is CI's (`CI=true` or `CI=1`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `prefix` followed by `_` and 12 random hex digits: a name no other test
/// run uses (roles, users, databases, secrets).
pub fn unique_name(prefix: &str) -> String {
    let n: u64 = rand::thread_rng().gen();
    format!("{prefix}_{:012x}", n & 0xffff_ffff_ffff)
}

fn host_port(url: &str, default_port: u16) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let hostport = rest.split(['/', '?']).next().unwrap_or(rest);
    if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:{default_port}")
    }
}

/// A Redis ACL user made for one test, deleted on drop.
pub struct RedisUser {
    /// The Redis URL (admin: the default user).
    pub url: String,
    /// The user's name.
    pub name: String,
    /// The password it was created with.
    pub password: String,
}

impl RedisUser {
    /// Creates `ks_<random>` with one random password and all permissions.
    ///
    /// # Panics
    ///
    /// When Redis refuses (a test failure).
    pub fn create(url: &str) -> RedisUser {
        let name = unique_name("ks");
        let password = unique_name("initial-password");
        let mut con = redis::Client::open(url)
            .and_then(|c| c.get_connection())
            .expect("connect to redis as admin");
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&name)
            .arg("on")
            .arg(format!(">{password}"))
            .arg("~*")
            .arg("+@all")
            .query::<()>(&mut con)
            .expect("ACL SETUSER");
        RedisUser {
            url: url.to_owned(),
            name,
            password,
        }
    }

    /// Whether `password` logs in as this user now.
    ///
    /// # Panics
    ///
    /// When Redis does not answer (a test failure).
    pub fn logs_in(&self, password: &str) -> bool {
        let client = redis::Client::open(self.url.as_str()).expect("redis url");
        let mut con = client.get_connection().expect("connect to redis");
        let reply: redis::RedisResult<String> = redis::cmd("AUTH")
            .arg(&self.name)
            .arg(password)
            .query(&mut con);
        match reply {
            Ok(_) => true,
            Err(e) if e.to_string().contains("WRONGPASS") => false,
            Err(e) => panic!("AUTH failed unexpectedly: {e}"),
        }
    }

    /// How many passwords the user has.
    pub fn password_count(&self) -> usize {
        self.password_digests().len()
    }

    /// The SHA-256 hex digests of the user's passwords (ACL GETUSER).
    pub fn password_digests(&self) -> Vec<String> {
        let mut con = redis::Client::open(self.url.as_str())
            .and_then(|c| c.get_connection())
            .expect("connect to redis");
        let info: Vec<redis::Value> = redis::cmd("ACL")
            .arg("GETUSER")
            .arg(&self.name)
            .query(&mut con)
            .expect("ACL GETUSER");
        let mut it = info.into_iter();
        while let Some(key) = it.next() {
            let value = it.next();
            if matches!(&key, redis::Value::BulkString(k) if k == b"passwords") {
                if let Some(redis::Value::Array(items)) = value {
                    return items
                        .into_iter()
                        .filter_map(|i| match i {
                            redis::Value::BulkString(b) => String::from_utf8(b).ok(),
                            redis::Value::SimpleString(s) => Some(s),
                            _ => None,
                        })
                        .collect();
                }
            }
        }
        Vec::new()
    }
}

impl Drop for RedisUser {
    fn drop(&mut self) {
        if let Ok(mut con) = redis::Client::open(self.url.as_str()).and_then(|c| c.get_connection())
        {
            let _: redis::RedisResult<()> = redis::cmd("ACL")
                .arg("DELUSER")
                .arg(&self.name)
                .query(&mut con);
        }
    }
}

/// The group role whose members PostgreSQL asks for a password.
pub const PG_PASSWORD_GROUP: &str = "keyshift_password_auth";

/// The `pg_hba.conf` line that makes PostgreSQL check the passwords of
/// members of [`PG_PASSWORD_GROUP`] on 127.0.0.1 (every other role keeps its
/// rule, usually trust).
pub const PG_PASSWORD_HBA_LINE: &str =
    "host all +keyshift_password_auth 127.0.0.1/32 scram-sha-256";

/// Makes the PostgreSQL at `url` check passwords for members of
/// [`PG_PASSWORD_GROUP`]: creates the group role and, when the server's
/// `pg_hba.conf` is a file on this machine that lacks
/// [`PG_PASSWORD_HBA_LINE`], puts the line first and reloads. Test servers
/// trust every local login, which would make "the old password is refused"
/// impossible to see. Runs once per process; `psql` does the work.
///
/// Returns an error (for the test to report) when that is not possible.
pub fn postgres_checks_passwords(url: &str) -> Result<(), String> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| ensure_pg_password_auth(url)).clone()
}

fn ensure_pg_password_auth(url: &str) -> Result<(), String> {
    let psql = |sql: &str| -> Result<String, String> {
        let out = std::process::Command::new("psql")
            .args([url, "-v", "ON_ERROR_STOP=1", "-tAqc", sql])
            .output()
            .map_err(|e| format!("running psql: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "psql -c {sql:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    psql(&format!(
        "DO $$ BEGIN CREATE ROLE {PG_PASSWORD_GROUP} NOLOGIN; \
         EXCEPTION WHEN duplicate_object THEN NULL; END $$"
    ))?;
    let hba = psql("SHOW hba_file")?;
    let text = std::fs::read_to_string(&hba).map_err(|e| {
        format!("reading {hba} (add `{PG_PASSWORD_HBA_LINE}` first in it yourself): {e}")
    })?;
    if text.lines().any(|l| l.trim() == PG_PASSWORD_HBA_LINE) {
        return Ok(());
    }
    std::fs::write(&hba, format!("{PG_PASSWORD_HBA_LINE}\n{text}")).map_err(|e| {
        format!("writing {hba} (add `{PG_PASSWORD_HBA_LINE}` first in it yourself): {e}")
    })?;
    eprintln!("keyshift-testkit: added `{PG_PASSWORD_HBA_LINE}` to {hba} and reloaded PostgreSQL");
    psql("SELECT pg_reload_conf()").map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_reads_urls_with_and_without_ports() {
        assert_eq!(
            host_port("postgres://postgres@127.0.0.1:5432/postgres", 1),
            "127.0.0.1:5432"
        );
        assert_eq!(host_port("redis://localhost", 6379), "localhost:6379");
    }

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique_name("t"), unique_name("t"));
    }
}
