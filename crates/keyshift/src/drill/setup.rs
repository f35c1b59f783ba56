//! The drill's server (in-process or existing) and its throw-away secret.

use anyhow::{bail, Context as _};
use keyshift_client::{ApiClient, Client, ClientBuilder, ClientError};
use keyshift_core::api::CreateSecret;
use keyshift_core::{Policy, SecretKind, SecretName, SecretValue, Strategy};
use keyshift_server::DevServer;
use rand::Rng;

use super::{mariadb, postgres, tls};
use crate::cli::{DrillArgs, DrillKind};

/// The server the drill talks to: one, or several replicas of one.
pub struct DrillServer {
    pub token: SecretValue,
    /// The first server's API.
    pub api: ApiClient,
    /// Every replica's API, the first one first.
    replicas: Vec<ApiClient>,
    dev: Option<DevServer>,
}

impl DrillServer {
    /// Starts a throw-away server, or uses the replicas at `urls` with
    /// `token`.
    pub async fn start(urls: &[String], token: Option<SecretValue>) -> anyhow::Result<DrillServer> {
        if !urls.is_empty() {
            let Some(token) = token else {
                bail!("--server needs a token with admin scope (KEYSHIFT_TOKEN or --token-file)");
            };
            let mut replicas = Vec::with_capacity(urls.len());
            for url in urls {
                let api = ApiClient::new(url, Some(token.clone()))?;
                api.health()
                    .await
                    .with_context(|| format!("server at {url}"))?;
                replicas.push(api);
            }
            return Ok(DrillServer {
                token,
                api: replicas[0].clone(),
                replicas,
                dev: None,
            });
        }
        let dev = DevServer::start()
            .await
            .context("starting a throw-away server")?;
        let token = dev.root_token().clone();
        let api = ApiClient::new(&dev.url(), Some(token.clone()))?;
        Ok(DrillServer {
            token,
            replicas: vec![api.clone()],
            api,
            dev: Some(dev),
        })
    }

    /// An SDK client for consumer `i`: on replica `i` (of those given, in
    /// turn), failing over to the others.
    pub fn client_builder(&self, i: usize) -> ClientBuilder {
        let n = self.replicas.len();
        let first = i % n;
        let mut builder =
            Client::builder(self.replicas[first].base_url()).token(self.token.clone());
        for k in 1..n {
            builder = builder.failover(self.replicas[(first + k) % n].base_url());
        }
        builder
    }

    /// Calls `call` on replica `first` (of those given, in turn), then on
    /// each other one while they do not answer; when none does (a restart,
    /// a store outage), again every half second for up to a minute.
    pub async fn on_replicas<T, F, Fut>(&self, first: usize, call: F) -> Result<T, ClientError>
    where
        F: Fn(ApiClient) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let n = self.replicas.len();
        let deadline = tokio::time::Instant::now() + RIDE_OUT;
        let mut k = 0;
        loop {
            let result = call(self.replicas[(first + k) % n].clone()).await;
            match result {
                Err(e) if unanswered(&e) && tokio::time::Instant::now() < deadline => {
                    k += 1;
                    if k % n == 0 {
                        tokio::time::sleep(RETRY).await;
                    }
                }
                result => return result,
            }
        }
    }

    /// Stops the in-process server (and deletes its data dir).
    pub async fn stop(self) {
        if let Some(mut dev) = self.dev {
            dev.stop().await;
        }
    }
}

/// How long the drill's own calls wait for a server to answer again.
const RIDE_OUT: std::time::Duration = std::time::Duration::from_secs(60);
/// The pause before asking every server again.
const RETRY: std::time::Duration = std::time::Duration::from_millis(500);

/// Whether `e` says the server did not answer (down, or unavailable).
fn unanswered(e: &ClientError) -> bool {
    match e {
        ClientError::Transport(_) => true,
        ClientError::Api { status, .. } => *status >= 500,
        _ => false,
    }
}

/// The throw-away secret and what it is enforced by.
pub struct Target {
    pub name: SecretName,
    pub fixture: Fixture,
}

/// What the drill made besides the secret, per kind: it is removed again at
/// the end.
pub enum Fixture {
    /// Nothing: the accepted set in the server is the target.
    ApiKey,
    /// A Redis ACL user.
    Redis { url: String, user: String },
    /// A PostgreSQL group role and its two slot roles.
    Postgres(postgres::PgFixture),
    /// A MariaDB user.
    MariaDb(mariadb::MariaDbFixture),
    /// The CA secret that issues the certificates.
    Tls(tls::TlsFixture),
}

/// What a kind's setup hands back: the fixture, the secret's kind, target
/// config and first value (`None`: the server generates it).
pub struct Made {
    pub fixture: Fixture,
    pub kind: SecretKind,
    pub target: serde_json::Value,
    pub value: Option<SecretValue>,
}

/// A short random id for the names of throw-away things.
pub fn suffix() -> String {
    format!("{:08x}", rand::thread_rng().gen::<u32>())
}

impl Target {
    pub async fn create(args: &DrillArgs, server: &DrillServer) -> anyhow::Result<Target> {
        let id = suffix();
        let made = match args.kind {
            DrillKind::ApiKey => Made {
                fixture: Fixture::ApiKey,
                kind: SecretKind::ApiKey,
                target: serde_json::Value::Null,
                value: None,
            },
            DrillKind::Redis => redis_user(&args.redis, &id).await?,
            DrillKind::Postgres => postgres::PgFixture::create(&args.postgres, &id).await?,
            DrillKind::MariaDb => mariadb::MariaDbFixture::create(&args.mariadb, &id).await?,
            DrillKind::Tls => tls::TlsFixture::create(server, &id).await?,
        };
        let name: SecretName = format!("drill/{}-{id}", made.kind.as_str()).parse()?;
        let target = Target {
            name,
            fixture: made.fixture,
        };
        let req = CreateSecret {
            name: target.name.clone(),
            kind: made.kind,
            policy: policy(args),
            target: made.target,
            generate: made.value.is_none(),
            value: made.value,
        };
        if let Err(e) = server.api.create_secret(&req).await {
            target.fixture.cleanup(server).await;
            return Err(anyhow::Error::new(e).context("creating the drill's secret"));
        }
        Ok(target)
    }

    /// Deletes the secret (with its values), then what the kind made.
    pub async fn cleanup(&self, server: &DrillServer) {
        if let Err(e) = server.api.delete_secret_forced(&self.name).await {
            tracing::warn!(error = %e, "could not delete the drill's secret");
        }
        self.fixture.cleanup(server).await;
    }
}

/// The secret's policy: the overlap asked for, and the strategy the kind's
/// target is built for (blue-green for PostgreSQL, which keeps one password
/// per role; dual elsewhere). `--strategy` overrides it per rotation; with
/// `canary`, half the consumers get each new version first, for one
/// overlap window.
fn policy(args: &DrillArgs) -> Policy {
    Policy {
        min_overlap: args.overlap,
        // The gate is checked again each overlap window, not every 30 s.
        monitoring_cycle: args.overlap.max(std::time::Duration::from_millis(100)),
        canary_share: 50,
        canary_observation: args.overlap,
        max_overlap: args.overlap.max(std::time::Duration::from_secs(3600)),
        strategy: match args.kind {
            DrillKind::Postgres => Strategy::BlueGreen,
            _ => Strategy::Dual,
        },
        ..Policy::default()
    }
}

impl Fixture {
    async fn cleanup(&self, server: &DrillServer) {
        let result = match self {
            Fixture::ApiKey => Ok(()),
            Fixture::Redis { url, user } => redis_admin(url, &["ACL", "DELUSER", user]).await,
            Fixture::Postgres(pg) => pg.cleanup().await,
            Fixture::MariaDb(my) => my.cleanup().await,
            Fixture::Tls(tls) => tls.cleanup(server).await,
        };
        if let Err(e) = result {
            tracing::warn!(
                error = format!("{e:#}"),
                "could not remove what the drill made"
            );
        }
    }
}

/// A throw-away Redis ACL user with a random password.
async fn redis_user(url: &str, id: &str) -> anyhow::Result<Made> {
    let user = format!("keyshift_drill_{id}");
    let password = keyshift_targets::random_password();
    let pass = format!(">{}", password.expose());
    redis_admin(url, &["ACL", "SETUSER", &user, "on", &pass, "~*", "+@all"])
        .await
        .with_context(|| format!("creating the drill's Redis user on {url}"))?;
    let address = url.trim_start_matches("redis://").trim_end_matches('/');
    Ok(Made {
        fixture: Fixture::Redis {
            url: url.to_owned(),
            user: user.clone(),
        },
        kind: SecretKind::Redis,
        target: serde_json::json!({"address": address, "user": user}),
        value: Some(password),
    })
}

async fn redis_admin(url: &str, args: &[&str]) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async::<()>(&mut con).await?;
    Ok(())
}

/// Refuses a URL with a password in it: the drill's admin logins take
/// none, and a password on a command line is visible to every user of the
/// machine.
pub fn refuse_password(flag: &str, url: &str) -> anyhow::Result<()> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    if let Some((userinfo, _)) = authority.rsplit_once('@') {
        if userinfo.contains(':') {
            bail!("{flag}: no password in the URL (the drill logs in as admin without one)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::refuse_password;

    #[test]
    fn an_admin_url_with_a_password_is_refused() {
        let err = refuse_password("--postgres", "postgres://postgres:pw@127.0.0.1/postgres")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("pw@"), "{err}");
        refuse_password("--postgres", "postgres://postgres@127.0.0.1:5432/postgres").unwrap();
        refuse_password("--mariadb", "mysql://root@127.0.0.1:3306").unwrap();
        refuse_password("--mariadb", "mysql://127.0.0.1:3306/db?opt=a:b@c").unwrap();
    }
}
