//! `keyshift`: the command line of keyshift, zero-downtime credential
//! rotation. Parses arguments (`cli`), runs a command (`cmd`), prints
//! (`output`, `progress`); errors end up here, printed as `error: ...`.

mod cli;
mod cmd;
mod drill;
mod exit;
mod output;
mod progress;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser as _;

use crate::cli::{Cli, Command, LogFormat};

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => exit::code(exit::SUCCESS),
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::code(exit::ERROR)
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with 0; usage errors to stderr with 2.
            let code = u8::try_from(e.exit_code()).unwrap_or(exit::USAGE);
            e.print()?;
            return Ok(exit::code(code));
        }
    };
    init_tracing(&cli);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(cmd::run(cli))
}

/// Logs to stderr. Quiet by default (warnings only) except for `serve`,
/// which logs at info; each -v adds detail; RUST_LOG overrides.
fn init_tracing(cli: &Cli) {
    let serving = matches!(cli.command, Command::Serve(_));
    let filter = match (cli.global.verbose, serving) {
        (0, false) => "warn",
        (0, true) | (1, _) => "info",
        (2, _) => "info,keyshift=debug,keyshift_client=debug,keyshift_server=debug,keyshift_store=debug,keyshift_targets=debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.global.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        // Each line carries its spans' fields: a rotation's driver runs in a
        // span with the rotation's id and secret.
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}

/// `keyshift secret ls | head` closes stdout early: not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
