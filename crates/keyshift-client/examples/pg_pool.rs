//! A PostgreSQL pool that follows a rotating password: the secret's value
//! is the password alone; host, port, user and database come from the
//! usual `PG*` environment variables. Every second it runs a query on the
//! current pool and prints which version the pool was built from.
//!
//! ```text
//! KEYSHIFT_ADDR=http://127.0.0.1:8200 KEYSHIFT_TOKEN=ks.... \
//! PGHOST=127.0.0.1 PGUSER=app PGDATABASE=orders \
//!   cargo run -p keyshift-client --features sqlx-postgres --example pg_pool -- prod/orders/db
//! ```

use std::process::ExitCode;
use std::time::Duration;

use keyshift_client::{pg_pool, Client, Snapshot};
use keyshift_core::{SecretName, SecretValue};
use sqlx::postgres::PgConnectOptions;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "keyshift_client=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let name: SecretName = std::env::args()
        .nth(1)
        .ok_or("usage: pg_pool SECRET_NAME (with KEYSHIFT_ADDR, KEYSHIFT_TOKEN and PG* set)")?
        .parse()?;
    let addr = std::env::var("KEYSHIFT_ADDR").unwrap_or_else(|_| "http://127.0.0.1:8200".into());
    let token = std::env::var("KEYSHIFT_TOKEN").map_err(|_| "KEYSHIFT_TOKEN is not set")?;

    let client = Client::builder(&addr)
        .token(SecretValue::new(token)?)
        .build()?;
    let watched = client.watch(&name).await?;
    // Everything but the password (from PG* variables): `pg_pool` sets the
    // password from each snapshot.
    let base = PgConnectOptions::new();
    let pool = pg_pool(watched, move |_: &Snapshot| base.clone()).await?;

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        // Hold the pool for one piece of work: an old pool is closed once
        // nobody holds it.
        let db = pool.get();
        let who: Result<String, _> = sqlx::query_scalar("SELECT current_user::text")
            .fetch_one(&*db)
            .await;
        match who {
            Ok(who) => println!(
                "version {} (swaps {}): connected as {who}",
                pool.version(),
                pool.swaps()
            ),
            Err(e) => println!("version {}: query failed: {e}", pool.version()),
        }
        if let Some(e) = pool.last_error() {
            println!("  a newer version could not be used yet: {e}");
        }
    }
    pool.get().close().await;
    client.close();
    Ok(())
}
