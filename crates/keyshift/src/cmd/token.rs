//! `keyshift token create`.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;

use keyshift_client::ApiClient;
use keyshift_core::api::{CreateToken, Grant};

use crate::cli::{Output, TokenCreateArgs};
use crate::exit;
use crate::output;

/// Creates a token and prints it once: alone on stdout (text) or with its id
/// (json). Notes for people go to stderr so `> file` captures the token only.
pub async fn create(client: &ApiClient, args: &TokenCreateArgs) -> anyhow::Result<ExitCode> {
    let req = CreateToken {
        description: args.description.clone(),
        grants: vec![Grant {
            scope: args.scope.into(),
            pattern: args.pattern.clone(),
        }],
    };
    let created = client.create_token(&req).await?;
    match args.output.output {
        Output::Json => output::print_json(&created)?,
        Output::Text => {
            let mut out = std::io::stdout().lock();
            out.write_all(created.token.expose().as_bytes())?;
            out.write_all(b"\n")?;
            out.flush()?;
        }
    }
    if std::io::stderr().is_terminal() {
        eprintln!(
            "token {} created; this is the only time it is shown: store it now",
            created.id
        );
    }
    Ok(exit::code(exit::SUCCESS))
}
