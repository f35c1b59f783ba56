//! Watches one secret and prints each version change (never the value).
//!
//! ```text
//! KEYSHIFT_ADDR=http://127.0.0.1:8200 KEYSHIFT_TOKEN=ks.... \
//!   cargo run -p keyshift-client --example watch -- prod/orders/db
//! ```

use std::process::ExitCode;

use keyshift_client::Client;
use keyshift_core::{SecretName, SecretValue};

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
        .ok_or("usage: watch SECRET_NAME (with KEYSHIFT_ADDR and KEYSHIFT_TOKEN set)")?
        .parse()?;
    let addr = std::env::var("KEYSHIFT_ADDR").unwrap_or_else(|_| "http://127.0.0.1:8200".into());
    let token = SecretValue::new(
        std::env::var("KEYSHIFT_TOKEN").map_err(|_| "KEYSHIFT_TOKEN is not set")?,
    )?;

    let client = Client::builder(&addr).token(token).build()?;
    let watched = client.watch(&name).await?;
    let mut changes = watched.changes();
    let first = watched.get();
    println!(
        "{name}: version {} (ttl {:?}, consumer {})",
        first.version,
        watched.ttl(),
        client.consumer_id()
    );
    loop {
        tokio::select! {
            changed = changes.changed() => {
                changed?;
                let snap = watched.get();
                println!("{name}: version {} (seq {})", snap.version, snap.seq);
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    client.close();
    Ok(())
}
