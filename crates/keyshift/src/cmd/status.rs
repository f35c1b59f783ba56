//! `keyshift status`: every secret's next rotation, last rotation and
//! circuit.

use std::process::ExitCode;

use keyshift_client::ApiClient;
use keyshift_core::api::{SecretStatus, StatusList};

use super::policy::describe;
use crate::cli::{Output, StatusArgs};
use crate::exit;
use crate::output::{self, or_dash, ts, Table};

/// `status`: NAME KIND SCHEDULE NEXT LAST CIRCUIT.
pub async fn status(client: &ApiClient, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let list = client.status().await?;
    if args.output.output == Output::Json {
        output::print_json(&list)?;
        return Ok(exit::code(exit::SUCCESS));
    }
    output::print_table(&table(&list), "no secrets")?;
    Ok(exit::code(exit::SUCCESS))
}

fn next(s: &SecretStatus) -> String {
    match (s.next_rotation, s.next_rotation_by.as_deref()) {
        (Some(at), Some("certificate-age")) => format!("{} (certificate age)", ts(at)),
        (Some(at), _) => ts(at),
        (None, _)
            if s.last_rotation
                .as_ref()
                .is_some_and(|r| r.status.as_str() == "running") =>
        {
            "rotating now".to_owned()
        }
        (None, _) => "-".to_owned(),
    }
}

fn table(list: &StatusList) -> Table {
    let mut t = Table::new([
        "NAME",
        "KIND",
        "SCHEDULE",
        "NEXT ROTATION",
        "LAST ROTATION",
        "CIRCUIT",
    ]);
    for s in &list.secrets {
        t.row([
            s.name.to_string(),
            s.kind.to_string(),
            describe(s.schedule.as_ref()),
            next(s),
            or_dash(
                s.last_rotation
                    .as_ref()
                    .map(|r| format!("{} {} {}", r.id, r.status.as_str(), ts(r.created_at))),
            ),
            s.circuit_open_until.map_or_else(
                || "closed".to_owned(),
                |until| format!("open until {}", ts(until)),
            ),
        ]);
    }
    t
}
