//! The drill's server (in-process or existing) and its throw-away secret.

use anyhow::{bail, Context as _};
use keyshift_client::ApiClient;
use keyshift_core::api::CreateSecret;
use keyshift_core::{Policy, SecretKind, SecretName, SecretValue};
use keyshift_server::DevServer;
use rand::Rng;

use crate::cli::{DrillArgs, DrillKind};

/// The server the drill talks to.
pub struct DrillServer {
    pub addr: String,
    pub token: SecretValue,
    pub api: ApiClient,
    dev: Option<DevServer>,
}

impl DrillServer {
    /// Starts a throw-away server, or uses `url` with `token`.
    pub async fn start(
        url: Option<&str>,
        token: Option<SecretValue>,
    ) -> anyhow::Result<DrillServer> {
        if let Some(url) = url {
            let Some(token) = token else {
                bail!("--server needs a token with admin scope (KEYSHIFT_TOKEN or --token-file)");
            };
            let api = ApiClient::new(url, Some(token.clone()))?;
            api.health()
                .await
                .with_context(|| format!("server at {url}"))?;
            return Ok(DrillServer {
                addr: url.trim_end_matches('/').to_owned(),
                token,
                api,
                dev: None,
            });
        }
        let dev = DevServer::start()
            .await
            .context("starting a throw-away server")?;
        let token = dev.root_token().clone();
        let api = ApiClient::new(&dev.url(), Some(token.clone()))?;
        Ok(DrillServer {
            addr: dev.url(),
            token,
            api,
            dev: Some(dev),
        })
    }

    /// Stops the in-process server (and deletes its data dir).
    pub async fn stop(self) {
        if let Some(mut dev) = self.dev {
            dev.stop().await;
        }
    }
}

/// The throw-away secret and, for Redis, its ACL user.
pub struct Target {
    pub name: SecretName,
    /// For Redis: the URL and the ACL user.
    pub redis: Option<(String, String)>,
}

fn suffix() -> String {
    format!("{:08x}", rand::thread_rng().gen::<u32>())
}

impl Target {
    pub async fn create(args: &DrillArgs, server: &DrillServer) -> anyhow::Result<Target> {
        let policy = Policy {
            min_overlap: args.overlap,
            max_overlap: args.overlap.max(std::time::Duration::from_secs(3600)),
            ..Policy::default()
        };
        let id = suffix();
        let (kind, target, value, redis) = match args.kind {
            DrillKind::ApiKey => (SecretKind::ApiKey, serde_json::Value::Null, None, None),
            DrillKind::Redis => {
                let user = format!("keyshift_drill_{id}");
                let password = format!("drill-initial-{}-{}", suffix(), suffix());
                create_redis_user(&args.redis, &user, &password).await?;
                let address = args
                    .redis
                    .trim_start_matches("redis://")
                    .trim_end_matches('/');
                let target = serde_json::json!({"address": address, "user": user});
                (
                    SecretKind::Redis,
                    target,
                    Some(SecretValue::new(password)?),
                    Some((args.redis.clone(), user)),
                )
            }
        };
        let name: SecretName = format!("drill/{}-{id}", kind.as_str()).parse()?;
        let req = CreateSecret {
            name: name.clone(),
            kind,
            policy,
            target,
            generate: value.is_none(),
            value,
        };
        server
            .api
            .create_secret(&req)
            .await
            .context("creating the drill's secret")?;
        Ok(Target { name, redis })
    }

    /// Deletes the secret (with its values: the Redis user goes too) and
    /// the Redis user.
    pub async fn cleanup(&self, server: &DrillServer) {
        if let Err(e) = server.api.delete_secret_forced(&self.name).await {
            tracing::warn!(error = %e, "could not delete the drill's secret");
        }
        if let Some((url, user)) = &self.redis {
            if let Err(e) = redis_admin(url, &["ACL", "DELUSER", user]).await {
                tracing::warn!(error = %e, "could not delete the drill's Redis user");
            }
        }
    }
}

async fn create_redis_user(url: &str, user: &str, password: &str) -> anyhow::Result<()> {
    let pass = format!(">{password}");
    redis_admin(url, &["ACL", "SETUSER", user, "on", &pass, "~*", "+@all"])
        .await
        .with_context(|| format!("creating the drill's Redis user on {url}"))
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
