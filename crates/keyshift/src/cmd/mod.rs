//! Command handlers: resolve the parsed arguments, call the API, print.

mod policy;
mod report;
mod rotate;
mod secret;
pub mod server;
mod status;
mod token;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use keyshift_client::{ApiClient, ClientError};
use keyshift_core::SecretValue;

use crate::cli::{Cli, Command, GlobalArgs, RotationCommand, SecretCommand, TokenCommand};

/// The environment variable holding the API token.
pub const TOKEN_ENV: &str = "KEYSHIFT_TOKEN";

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Init(args) => return server::init(args).await,
        Command::Serve(args) => return server::serve(args).await,
        _ => {}
    }
    let token = resolve_token(&cli.global)?;
    if let Command::Drill(args) = &cli.command {
        return crate::drill::run(args, token).await;
    }
    let has_token = token.is_some();
    let client = ApiClient::new(&cli.global.addr, token)?;
    api_command(&client, &cli.command)
        .await
        .map_err(|e| with_hint(e, &cli.global, has_token))
}

async fn api_command(client: &ApiClient, command: &Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Init(_) | Command::Serve(_) | Command::Drill(_) => {
            unreachable!("handled before")
        }
        Command::Secret(SecretCommand::Put(a)) => secret::put(client, a).await,
        Command::Secret(SecretCommand::Get(a)) => secret::get(client, a).await,
        Command::Secret(SecretCommand::Versions(a)) => secret::versions(client, a).await,
        Command::Secret(SecretCommand::Ls(a)) => secret::ls(client, a).await,
        Command::Secret(SecretCommand::Rm(a)) => secret::rm(client, a).await,
        Command::Secret(SecretCommand::Policy(a)) => policy::policy(client, a).await,
        Command::Status(a) => status::status(client, a).await,
        Command::Consumers(a) => status::consumers(client, a).await,
        Command::Report(a) => report::report(client, a).await,
        Command::Rotate(a) => rotate::rotate(client, a).await,
        Command::Rotation(RotationCommand::Show(a)) => rotate::show(client, a).await,
        Command::Rotation(RotationCommand::Ls(a)) => rotate::ls(client, a).await,
        Command::Rotation(RotationCommand::Rollback(a)) => {
            rotate::cancel(client, a, rotate::Cancel::Rollback).await
        }
        Command::Rotation(RotationCommand::Abort(a)) => {
            rotate::cancel(client, a, rotate::Cancel::Abort).await
        }
        Command::Rotation(RotationCommand::Advance(a)) => {
            rotate::cancel(client, a, rotate::Cancel::Advance).await
        }
        Command::Token(TokenCommand::Create(a)) => token::create(client, a).await,
    }
}

/// The token from `--token-file`, else from `KEYSHIFT_TOKEN`, else none.
fn resolve_token(global: &GlobalArgs) -> anyhow::Result<Option<SecretValue>> {
    if let Some(path) = &global.token_file {
        return read_token_file(path).map(Some);
    }
    match std::env::var(TOKEN_ENV) {
        Ok(s) if !s.trim().is_empty() => Ok(Some(token_value(s.trim().to_owned())?)),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            anyhow::bail!("{TOKEN_ENV} is not valid UTF-8")
        }
    }
}

/// The first line of a token file, without surrounding whitespace.
fn read_token_file(path: &Path) -> anyhow::Result<SecretValue> {
    let text = SecretValue::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the token file {}", path.display()))?,
    )
    .with_context(|| format!("the token file {} is empty", path.display()))?;
    let line = text.expose().trim().lines().next().unwrap_or("").trim();
    token_value(line.to_owned())
        .with_context(|| format!("no token in the token file {}", path.display()))
}

fn token_value(s: String) -> anyhow::Result<SecretValue> {
    SecretValue::new(s).context("the token is empty")
}

/// Adds what the user can do about common errors.
fn with_hint(e: anyhow::Error, global: &GlobalArgs, has_token: bool) -> anyhow::Error {
    let hint = match e.downcast_ref::<ClientError>() {
        Some(ClientError::Api { status: 401, .. }) if !has_token => Some(format!(
            "no token given: set {TOKEN_ENV} or use --token-file"
        )),
        Some(ClientError::Api { status: 401, .. }) => {
            Some("the server refused the token".to_owned())
        }
        Some(ClientError::Transport(_)) => Some(format!(
            "is a keyshift server running at {}? (set --addr or KEYSHIFT_ADDR)",
            global.addr
        )),
        _ => None,
    };
    match hint {
        Some(h) => e.context(h),
        None => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_gives_its_first_line_trimmed() {
        let dir = std::env::temp_dir().join(format!("keyshift-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "  ks.id.secret  \nsecond line\n").unwrap();
        assert_eq!(read_token_file(&path).unwrap().expose(), "ks.id.secret");
        std::fs::write(&path, "\n").unwrap();
        assert!(read_token_file(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_get_hints_for_missing_token_and_unreachable_server() {
        let global = GlobalArgs {
            addr: "http://127.0.0.1:8200".into(),
            token_file: None,
            verbose: 0,
            log_format: crate::cli::LogFormat::Text,
        };
        let unauthorized = ClientError::Api {
            status: 401,
            code: "unauthorized".into(),
            message: "no token".into(),
            rotation: None,
        };
        let e = with_hint(unauthorized.into(), &global, false);
        assert!(format!("{e:#}").starts_with("no token given: set KEYSHIFT_TOKEN"));
        let e = with_hint(
            ClientError::Transport("refused".into()).into(),
            &global,
            true,
        );
        assert!(format!("{e:#}").contains("http://127.0.0.1:8200"));
    }
}
