//! `keyshift rotate` and `keyshift rotation show|ls|rollback|abort`.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context as _;
use keyshift_client::{ApiClient, ClientError};
use keyshift_core::api::{RotationInfo, StartRotation};
use keyshift_core::rotation::{PhaseRecord, Status};
use keyshift_core::{SecretName, Timestamp};

use crate::cli::{CancelArgs, Output, RotateArgs, RotationLsArgs, ShowArgs};
use crate::exit;
use crate::output::{self, duration, or_dash, ts, Table};
use crate::progress::{self, WaitEnd};

/// `rotate`: starts a rotation; with `--wait`, follows it to the end.
pub async fn rotate(client: &ApiClient, args: &RotateArgs) -> anyhow::Result<ExitCode> {
    let req = StartRotation {
        strategy: args.strategy,
        id: args.id.clone(),
        emergency: args.emergency.clone(),
        force: args.force,
    };
    let rot = client
        .rotate(&args.name, &req)
        .await
        .map_err(|e| explain_active(e, &args.name))?;
    let json = args.output.output == Output::Json;
    if !json {
        println!("{}", rot.id);
        if rot.emergency.is_some() {
            eprintln!(
                "emergency rotation: the old credential of {} is revoked at once, with no overlap; \
                 consumers still holding it fail until they pick up the new one (downtime accepted)",
                args.name
            );
        }
    }
    if !args.wait {
        if json {
            output::print_json(&rot)?;
        }
        return Ok(exit::code(exit::SUCCESS));
    }
    match progress::wait(client, rot).await? {
        WaitEnd::Finished(rot) => {
            if json {
                output::print_json(&rot)?;
            }
            Ok(exit::code(exit::for_status(rot.status)))
        }
        WaitEnd::Interrupted(rot) => {
            eprintln!(
                "stopped waiting; rotation {} continues on the server \
                 (follow it with `keyshift rotation show {}`)",
                rot.id, rot.id
            );
            Ok(exit::code(exit::INTERRUPTED))
        }
    }
}

/// Names the running rotation when another one blocks this one.
fn explain_active(e: ClientError, name: &SecretName) -> anyhow::Error {
    let running = match &e {
        ClientError::Api {
            rotation: Some(id),
            code,
            ..
        } if code == "rotation_active" => Some(id.clone()),
        _ => None,
    };
    match running {
        Some(id) => anyhow::Error::from(e).context(format!(
            "rotation {id} of {name} is still running; follow it with \
             `keyshift rotation show {id}` or stop it with `keyshift rotation abort {id}`"
        )),
        None => e.into(),
    }
}

/// `rotation show`: the rotation, then its phases as a table.
pub async fn show(client: &ApiClient, args: &ShowArgs) -> anyhow::Result<ExitCode> {
    let rot = client.get_rotation(&args.id).await?;
    if args.output.output == Output::Json {
        output::print_json(&rot)?;
        return Ok(exit::code(exit::SUCCESS));
    }
    let now = Timestamp::from_system(SystemTime::now());
    let text = format!("{}\n{}", describe(&rot), phases_table(&rot, now).render());
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(exit::code(exit::SUCCESS))
}

/// The rotation's header lines.
fn describe(rot: &RotationInfo) -> String {
    let mut t = Table::new(["id:", &rot.id.to_string()]);
    t.row(["secret:".to_owned(), rot.secret.to_string()]);
    t.row(["strategy:".to_owned(), rot.strategy.to_string()]);
    t.row([
        "status:".to_owned(),
        format!("{} (phase {})", rot.status.as_str(), rot.phase),
    ]);
    t.row([
        "versions:".to_owned(),
        format!(
            "{} -> {}",
            or_dash(rot.old_version),
            or_dash(rot.new_version)
        ),
    ]);
    t.row(["reason:".to_owned(), or_dash(rot.reason.as_ref())]);
    t.row(["created:".to_owned(), ts(rot.created_at)]);
    let gate = &rot.gate;
    if let Some(by) = &gate.passed_by {
        t.row(["overlap:".to_owned(), format!("ended by {by}")]);
    } else if let Some(why) = &gate.held {
        let next = gate
            .next_check
            .map_or_else(String::new, |n| format!("; next check {}", ts(n)));
        t.row(["gate:".to_owned(), format!("held: {why}{next}")]);
    }
    if !gate.stragglers.is_empty() {
        t.row(["stragglers:".to_owned(), gate.stragglers.join(", ")]);
    }
    if let Some(m) = &gate.migration {
        let sessions = m
            .old_sessions
            .map_or_else(String::new, |n| format!(", {n} open sessions"));
        t.row([
            "migration:".to_owned(),
            format!(
                "{}/{} live consumers on the new version; old version: {} uses in the last cycle{sessions} (at the last gate check)",
                m.migrated, m.live, m.old_uses
            ),
        ]);
    }
    t.render()
}

/// PHASE STARTED ENDED DURATION OUTCOME ATTEMPTS ERROR. A phase still
/// running shows its duration so far (by this machine's clock).
fn phases_table(rot: &RotationInfo, now: Timestamp) -> Table {
    let mut t = Table::new([
        "PHASE", "STARTED", "ENDED", "DURATION", "OUTCOME", "ATTEMPTS", "ERROR",
    ]);
    let last = rot.phases.len().saturating_sub(1);
    for (i, p) in rot.phases.iter().enumerate() {
        let running = i == last && rot.status == Status::Running && p.ended_at.is_none();
        t.row([
            p.phase.to_string(),
            ts(p.started_at),
            or_dash(p.ended_at.map(ts)),
            phase_duration(p, running.then_some(now)),
            outcome(p, running),
            p.attempts.to_string(),
            or_dash(p.error.as_ref()),
        ]);
    }
    t
}

fn phase_duration(p: &PhaseRecord, now: Option<Timestamp>) -> String {
    match (p.ended_at, now) {
        (Some(end), _) => duration(end.since(p.started_at)),
        (None, Some(now)) => duration(now.since(p.started_at)),
        (None, None) => "-".to_owned(),
    }
}

fn outcome(p: &PhaseRecord, running: bool) -> String {
    match p.outcome {
        Some(o) => output::outcome(o).to_owned(),
        None if running => "running".to_owned(),
        None => "-".to_owned(),
    }
}

/// `rotation ls`: ID SECRET STRATEGY PHASE STATUS CREATED.
pub async fn ls(client: &ApiClient, args: &RotationLsArgs) -> anyhow::Result<ExitCode> {
    let list = client
        .list_rotations(args.secret.as_ref(), args.active)
        .await?;
    if args.output.output == Output::Json {
        output::print_json(&list)?;
        return Ok(exit::code(exit::SUCCESS));
    }
    let mut t = Table::new(["ID", "SECRET", "STRATEGY", "PHASE", "STATUS", "CREATED"]);
    for r in &list.rotations {
        t.row([
            r.id.to_string(),
            r.secret.to_string(),
            r.strategy.to_string(),
            r.phase.to_string(),
            r.status.as_str().to_owned(),
            ts(r.created_at),
        ]);
    }
    output::print_table(&t, "no rotations")?;
    Ok(exit::code(exit::SUCCESS))
}

/// Which way to stop a rotation.
#[derive(Debug, Clone, Copy)]
pub enum Cancel {
    /// `rotation rollback`.
    Rollback,
    /// `rotation abort`.
    Abort,
    /// `rotation advance`: not a cancel, but the same shape of order.
    Advance,
}

/// `rotation rollback`, `rotation abort` and `rotation advance`.
pub async fn cancel(
    client: &ApiClient,
    args: &CancelArgs,
    how: Cancel,
) -> anyhow::Result<ExitCode> {
    let (result, verb) = match how {
        Cancel::Rollback => (
            client.rollback(&args.id, args.reason.clone()).await,
            "rollback",
        ),
        Cancel::Abort => (client.abort(&args.id, args.reason.clone()).await, "abort"),
        Cancel::Advance => (
            client.advance(&args.id, args.reason.clone()).await,
            "advance",
        ),
    };
    let rot = result.with_context(|| format!("cannot {verb} rotation {}", args.id))?;
    match args.output.output {
        Output::Json => output::print_json(&rot)?,
        Output::Text => println!(
            "{verb} of rotation {} requested (phase now {}); follow it with `keyshift rotation show {}`",
            rot.id, rot.phase, rot.id
        ),
    }
    Ok(exit::code(exit::SUCCESS))
}

#[cfg(test)]
mod tests {
    use keyshift_core::rotation::{Phase, PhaseOutcome};
    use keyshift_core::{Strategy, VersionNumber};

    use super::*;

    fn rec(
        phase: Phase,
        start: i64,
        end: Option<i64>,
        outcome: Option<PhaseOutcome>,
    ) -> PhaseRecord {
        PhaseRecord {
            phase,
            started_at: Timestamp::from_millis(start),
            ended_at: end.map(Timestamp::from_millis),
            outcome,
            attempts: 1,
            error: None,
        }
    }

    fn rotation(phases: Vec<PhaseRecord>, status: Status) -> RotationInfo {
        RotationInfo {
            id: "r-1".into(),
            secret: "prod/cache".parse().unwrap(),
            strategy: Strategy::Dual,
            phase: phases.last().map_or(Phase::Precheck, |p| p.phase),
            status,
            old_version: Some(VersionNumber(1)),
            new_version: Some(VersionNumber(2)),
            reason: None,
            created_at: Timestamp::from_millis(0),
            phases,
            emergency: None,
            gate: Default::default(),
        }
    }

    #[test]
    fn phases_table_shows_outcomes_and_running_duration() {
        let mut failed = rec(Phase::Generate, 400, None, None);
        failed.attempts = 2;
        failed.error = Some("store\nunavailable".into());
        let rot = rotation(
            vec![
                rec(Phase::Precheck, 0, Some(400), Some(PhaseOutcome::Ok)),
                failed,
            ],
            Status::Running,
        );
        let out = phases_table(&rot, Timestamp::from_millis(5_400)).render();
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("PHASE      STARTED"), "{out}");
        assert!(
            lines[1].contains("400ms") && lines[1].contains(" ok "),
            "{out}"
        );
        assert!(
            lines[2].contains("5.0s") && lines[2].contains("running"),
            "{out}"
        );
        assert!(lines[2].ends_with("store unavailable"), "{out}");
    }

    #[test]
    fn description_names_versions_and_status() {
        let rot = rotation(vec![], Status::RolledBack);
        let out = describe(&rot);
        assert!(out.contains("versions:   1 -> 2"), "{out}");
        assert!(
            out.contains("status:     rolled_back (phase precheck)"),
            "{out}"
        );
    }

    #[test]
    fn rotation_active_error_names_the_running_rotation() {
        let e = ClientError::Api {
            status: 409,
            code: "rotation_active".into(),
            message: "a rotation of prod/cache runs".into(),
            rotation: Some("r-9".into()),
        };
        let msg = format!("{:#}", explain_active(e, &"prod/cache".parse().unwrap()));
        assert!(msg.contains("keyshift rotation show r-9"), "{msg}");
    }
}
