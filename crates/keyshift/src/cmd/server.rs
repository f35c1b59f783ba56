//! `keyshift init` and `keyshift serve`.

use std::process::ExitCode;

use anyhow::Context as _;
use keyshift_server::notify::NotifyConfig;
use keyshift_server::{init as init_store, init_with_store, ServeConfig, Server};

use crate::cli::{InitArgs, Output, ServeArgs};
use crate::cmd::policy::webhooks;
use crate::exit;

/// `keyshift init`: creates the data directory and prints the root token.
pub async fn init(args: &InitArgs) -> anyhow::Result<ExitCode> {
    let report = init_with_store(&args.data_dir, args.store.url.as_deref())
        .await
        .with_context(|| format!("initializing {}", args.data_dir.display()))?;
    match args.output.output {
        Output::Json => {
            let body = serde_json::json!({
                "data_dir": args.data_dir,
                "master_key": report.key_path,
                "store": report.store_url,
                "root_token": report.root_token.expose(),
            });
            println!("{}", serde_json::to_string_pretty(&body)?);
        }
        Output::Text => {
            println!("Initialized keyshift in {}", args.data_dir.display());
            println!(
                "  master key: {} (mode 0600; back it up: the store cannot be read without it)",
                report.key_path.display()
            );
            println!("  root token: {}", report.root_token.expose());
            println!("  (shown once, stored only hashed; export it as KEYSHIFT_TOKEN)");
        }
    }
    Ok(exit::code(exit::SUCCESS))
}

/// `keyshift serve`: runs the server until Ctrl-C or SIGTERM.
pub async fn serve(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    // In dev mode the data dir lives as long as this guard.
    let mut _dev_dir = None;
    let mut dev_token = None;
    let data_dir = if args.dev {
        let dir = tempfile::Builder::new()
            .prefix("keyshift-dev-")
            .tempdir()
            .context("creating a throw-away data dir")?;
        let report = init_store(dir.path()).await?;
        let path = dir.path().to_owned();
        eprintln!(
            "keyshift dev mode: throw-away data dir {} (deleted on exit); never use in production",
            path.display()
        );
        dev_token = Some(report.root_token);
        _dev_dir = Some(dir);
        path
    } else {
        args.data_dir.clone()
    };
    let notify = NotifyConfig {
        webhooks: webhooks(&args.notify_webhook, args.notify_hmac_secret.as_ref()),
        nats: args.notify_nats.clone(),
        ..NotifyConfig::default()
    };
    let config = ServeConfig::new(data_dir)
        .listen(args.listen)
        .store_url(args.store.url.clone())
        .notify(notify)
        .lease_ttl(args.lease)
        .replica_id(args.replica_id.clone());
    let server = Server::start(config).await?;
    let addr = server.local_addr()?;
    // On stdout, so scripts and tests can read the bound port.
    println!("keyshift listening on {addr}");
    if let Some(token) = dev_token {
        eprintln!();
        eprintln!("    export KEYSHIFT_ADDR=http://{addr}");
        eprintln!("    export KEYSHIFT_TOKEN={}", token.expose());
        eprintln!();
    }
    server.run(shutdown_signal()).await?;
    eprintln!("keyshift stopped");
    Ok(exit::code(exit::SUCCESS))
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
