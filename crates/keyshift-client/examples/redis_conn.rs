//! A Redis connection that follows a rotating ACL password: the secret's
//! value is the password alone; the address and user name come from the
//! command line. Every second it runs `INCR` on the current connection and
//! prints which version the connection was built from. On each rotation it
//! connects with the new password, checks it with `PING`, and swaps.
//!
//! ```text
//! KEYSHIFT_ADDR=http://127.0.0.1:8200 KEYSHIFT_TOKEN=ks.... \
//!   cargo run -p keyshift-client --features redis --example redis_conn -- prod/cache app redis://127.0.0.1:6379
//! ```

use std::process::ExitCode;
use std::time::Duration;

use keyshift_client::{redis_connection, Client, Snapshot};
use keyshift_core::{SecretName, SecretValue};
use redis::IntoConnectionInfo;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: redis_conn SECRET_NAME USER [REDIS_URL] (with KEYSHIFT_ADDR and KEYSHIFT_TOKEN set)";
    let name: SecretName = args.next().ok_or(usage)?.parse()?;
    let user = args.next().ok_or(usage)?;
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let addr = std::env::var("KEYSHIFT_ADDR").unwrap_or_else(|_| "http://127.0.0.1:8200".into());
    let token = std::env::var("KEYSHIFT_TOKEN").map_err(|_| "KEYSHIFT_TOKEN is not set")?;

    let client = Client::builder(&addr)
        .token(SecretValue::new(token)?)
        .build()?;
    let watched = client.watch(&name).await?;
    // Address and user from the command line; `redis_connection` sets the
    // password from each snapshot.
    let base = url.as_str().into_connection_info()?;
    let conn = redis_connection(watched, move |_: &Snapshot| {
        let mut info = base.clone();
        info.redis.username = Some(user.clone());
        info
    })
    .await?;

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        let mut con = (*conn.get()).clone();
        let n: i64 = redis::cmd("INCR")
            .arg("keyshift:example")
            .query_async(&mut con)
            .await?;
        println!("version {}: INCR -> {n}", conn.version());
    }
    Ok(())
}
