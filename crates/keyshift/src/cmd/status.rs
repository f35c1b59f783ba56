//! `keyshift status`: every secret's next rotation, last rotation and
//! circuit; `keyshift consumers NAME`: who holds which version.

use std::process::ExitCode;

use keyshift_client::ApiClient;
use keyshift_core::api::{ConsumerList, SecretStatus, StatusList};

use super::policy::describe;
use crate::cli::{ConsumersArgs, Output, StatusArgs};
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

/// `consumers NAME`: CONSUMER VERSION STATUS LAST SEEN HOST PROCESS.
pub async fn consumers(client: &ApiClient, args: &ConsumersArgs) -> anyhow::Result<ExitCode> {
    let list = client.consumers(&args.name).await?;
    if args.output.output == Output::Json {
        output::print_json(&list)?;
        return Ok(exit::code(exit::SUCCESS));
    }
    output::print_table(&consumers_table(&list), "no consumers")?;
    Ok(exit::code(exit::SUCCESS))
}

fn consumers_table(list: &ConsumerList) -> Table {
    let mut t = Table::new([
        "CONSUMER",
        "VERSION",
        "STATUS",
        "LAST SEEN",
        "HOST",
        "PROCESS",
    ]);
    for c in &list.consumers {
        t.row([
            c.consumer_id.clone(),
            or_dash(c.version),
            c.status.as_str().to_owned(),
            ts(c.last_seen),
            or_dash(c.host.as_ref()),
            or_dash(c.process.as_ref()),
        ]);
    }
    t
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
