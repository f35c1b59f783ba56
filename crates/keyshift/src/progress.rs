//! `rotate --wait`: follows a rotation by polling and shows its phases on
//! stderr, live with spinners on a terminal, one plain line per change
//! otherwise.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::time::{Duration, Instant, SystemTime};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use keyshift_client::{ApiClient, ClientError};
use keyshift_core::api::{ConsumerInfo, ConsumerStatus, RotationInfo};
use keyshift_core::rotation::{Phase, PhaseOutcome, PhaseRecord, Status};
use keyshift_core::Timestamp;
use tokio::time::MissedTickBehavior;

use crate::output::{duration, or_dash};

/// How often the rotation is polled.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// How often the consumers are read while the rotation is in its overlap.
const CONSUMERS_EVERY: Duration = Duration::from_secs(1);

/// How long polling may fail (server restarting, network blip) before
/// waiting gives up. A restarted server resumes the rotation, so a short
/// outage is no reason to stop following it.
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// How waiting ended.
#[derive(Debug)]
pub enum WaitEnd {
    /// The rotation ended (its status is not `running`).
    Finished(RotationInfo),
    /// Ctrl-C: the rotation as last seen; it continues on the server.
    Interrupted(RotationInfo),
}

/// Polls the rotation every [`POLL_EVERY`] until it ends or Ctrl-C.
///
/// # Errors
///
/// An API error other than a transient one, or transient errors for longer
/// than [`GIVE_UP_AFTER`].
pub async fn wait(client: &ApiClient, first: RotationInfo) -> anyhow::Result<WaitEnd> {
    let mut view = View::new(std::io::stderr().is_terminal());
    let mut tracker = Tracker::default();
    let mut rot = first;
    view.apply(&tracker.changes(&rot.phases), &rot);

    let id = rot.id.clone();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut ticker = tokio::time::interval(POLL_EVERY);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut failing_since: Option<Instant> = None;
    let mut consumers_read: Option<Instant> = None;

    while rot.status == Status::Running {
        let poll = async {
            ticker.tick().await;
            client.get_rotation(&id).await
        };
        let result = tokio::select! {
            r = &mut ctrl_c => {
                r?;
                view.interrupt();
                return Ok(WaitEnd::Interrupted(rot));
            }
            r = poll => r,
        };
        match result {
            Ok(next) => {
                if failing_since.take().is_some() {
                    view.note("reached the server again");
                }
                rot = next;
                view.apply(&tracker.changes(&rot.phases), &rot);
                let due = consumers_read.is_none_or(|t| t.elapsed() >= CONSUMERS_EVERY);
                if rot.phase == Phase::Overlap && due {
                    consumers_read = Some(Instant::now());
                    // Best effort: the rotation's own record is what counts.
                    if let Ok(list) = client.consumers(&rot.secret).await {
                        let now = Timestamp::from_system(SystemTime::now());
                        view.migration(&rot, &migration_line(&rot, &list.consumers, now));
                    }
                }
            }
            Err(e) if is_transient(&e) => {
                let since = *failing_since.get_or_insert_with(|| {
                    view.note(&format!("cannot poll the rotation ({e}); retrying"));
                    Instant::now()
                });
                if since.elapsed() > GIVE_UP_AFTER {
                    view.interrupt();
                    return Err(anyhow::Error::from(e).context(format!(
                        "gave up waiting after {}s without the server; rotation {id} \
                         continues there (see `keyshift rotation show {id}`)",
                        GIVE_UP_AFTER.as_secs()
                    )));
                }
            }
            Err(e) => {
                view.interrupt();
                return Err(e.into());
            }
        }
    }
    view.finish(&rot);
    Ok(WaitEnd::Finished(rot))
}

/// Errors worth polling through: the server is restarting or unreachable.
fn is_transient(e: &ClientError) -> bool {
    match e {
        ClientError::Transport(_) => true,
        ClientError::Api { status, .. } => matches!(status, 502..=504),
        ClientError::Decode(_) | ClientError::Config(_) => false,
    }
}

/// What changed in a rotation's phase list since the last poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// The phase at this index appeared.
    Started(usize),
    /// Its attempts or last error changed.
    Progress(usize),
    /// It ended.
    Ended(usize),
}

/// Remembers what was shown of each phase record (by index), to report only
/// changes. Terminal phases (done, rolled_back, failed) are not shown as
/// phases: the final summary reports them.
#[derive(Debug, Default)]
struct Tracker {
    seen: Vec<Seen>,
}

#[derive(Debug)]
struct Seen {
    ended: bool,
    attempts: u32,
    error: Option<String>,
}

impl Tracker {
    fn changes(&mut self, phases: &[PhaseRecord]) -> Vec<Change> {
        let mut out = Vec::new();
        for (i, p) in phases.iter().enumerate() {
            let terminal = p.phase.is_terminal();
            let ended = p.ended_at.is_some() || terminal;
            if i >= self.seen.len() {
                self.seen.push(Seen {
                    ended,
                    attempts: p.attempts,
                    error: p.error.clone(),
                });
                if !terminal {
                    out.push(Change::Started(i));
                    if ended {
                        out.push(Change::Ended(i));
                    }
                }
                continue;
            }
            let seen = &mut self.seen[i];
            if seen.ended {
                continue;
            }
            if seen.attempts != p.attempts || seen.error != p.error {
                seen.attempts = p.attempts;
                seen.error.clone_from(&p.error);
                if !ended {
                    out.push(Change::Progress(i));
                }
            }
            if ended {
                seen.ended = true;
                out.push(Change::Ended(i));
            }
        }
        out
    }
}

/// Where progress goes.
enum View {
    Live(Live),
    /// One line per change; the last migration line, printed again only
    /// when it changes.
    Plain(Option<String>),
}

struct Live {
    multi: MultiProgress,
    bars: HashMap<usize, ProgressBar>,
}

impl View {
    fn new(terminal: bool) -> Self {
        if terminal {
            View::Live(Live {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                bars: HashMap::new(),
            })
        } else {
            View::Plain(None)
        }
    }

    fn apply(&mut self, changes: &[Change], rot: &RotationInfo) {
        for &change in changes {
            match self {
                View::Live(live) => live.apply(change, rot),
                View::Plain(_) => eprintln!("{}", plain_line(change, rot)),
            }
        }
    }

    /// Shows the consumers' migration on the overlap's line.
    fn migration(&mut self, rot: &RotationInfo, line: &str) {
        match self {
            View::Live(live) => {
                let overlap = rot.phases.len().checked_sub(1);
                if let Some(bar) = overlap.and_then(|i| live.bars.get(&i)) {
                    bar.set_message(line.to_owned());
                }
            }
            View::Plain(last) => {
                if last.as_deref() != Some(line) {
                    eprintln!("overlap: {line}");
                    *last = Some(line.to_owned());
                }
            }
        }
    }

    fn note(&self, msg: &str) {
        match self {
            View::Live(live) => {
                let _ = live.multi.println(msg);
            }
            View::Plain(_) => eprintln!("{msg}"),
        }
    }

    /// Stops drawing, leaving what was shown.
    fn interrupt(&mut self) {
        if let View::Live(live) = self {
            live.bars.values().for_each(ProgressBar::abandon);
        }
    }

    fn finish(&mut self, rot: &RotationInfo) {
        self.interrupt();
        eprintln!("{}", summary(rot));
    }
}

impl Live {
    fn apply(&mut self, change: Change, rot: &RotationInfo) {
        match change {
            Change::Started(i) => {
                let p = &rot.phases[i];
                let now = Timestamp::from_system(SystemTime::now());
                let bar = ProgressBar::new_spinner()
                    .with_style(running_style())
                    .with_prefix(p.phase.to_string())
                    .with_elapsed(now.since(p.started_at))
                    .with_message(detail(p));
                let bar = self.multi.add(bar);
                bar.enable_steady_tick(Duration::from_millis(100));
                self.bars.insert(i, bar);
            }
            Change::Progress(i) => {
                if let Some(bar) = self.bars.get(&i) {
                    bar.set_message(detail(&rot.phases[i]));
                }
            }
            Change::Ended(i) => {
                if let Some(bar) = self.bars.get(&i) {
                    bar.set_style(done_style());
                    bar.finish_with_message(ended_line(&rot.phases[i]));
                }
            }
        }
    }
}

fn running_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner:.cyan} {prefix:<12} {elapsed:>6}  {msg}")
        .expect("valid template")
}

fn done_style() -> ProgressStyle {
    ProgressStyle::with_template("{msg}").expect("valid template")
}

/// A running phase's attempts and last error, if there is anything to say.
fn detail(p: &PhaseRecord) -> String {
    match (&p.error, p.attempts) {
        (Some(e), n) => format!("attempt {n}, last error: {}", one_line(e)),
        (None, n) if n > 1 => format!("attempt {n}"),
        (None, _) => String::new(),
    }
}

/// `✓ precheck     412ms`, `✗ dual_accept  3.1s  failed after 3 attempts: ...`
fn ended_line(p: &PhaseRecord) -> String {
    let took = or_dash(p.ended_at.map(|e| duration(e.since(p.started_at))));
    let (mark, what) = match p.outcome {
        Some(PhaseOutcome::Ok) | None => ("✓", String::new()),
        Some(PhaseOutcome::Failed) => ("✗", format!("  failed{}", attempts_and_error(p))),
        Some(PhaseOutcome::Cancelled) => ("↩", "  cancelled".to_owned()),
    };
    format!("{mark} {:<12} {took:>6}{what}", p.phase.as_str())
}

/// One line per change, for logs.
fn plain_line(change: Change, rot: &RotationInfo) -> String {
    match change {
        Change::Started(i) => format!("{}: started", rot.phases[i].phase),
        Change::Progress(i) => format!("{}: {}", rot.phases[i].phase, detail(&rot.phases[i])),
        Change::Ended(i) => {
            let p = &rot.phases[i];
            let outcome = p.outcome.map_or("ended", crate::output::outcome);
            let took = or_dash(p.ended_at.map(|e| duration(e.since(p.started_at))));
            format!("{}: {outcome} in {took}{}", p.phase, attempts_and_error(p))
        }
    }
}

fn attempts_and_error(p: &PhaseRecord) -> String {
    let attempts = match p.attempts {
        0 | 1 => String::new(),
        n => format!(" after {n} attempts"),
    };
    match &p.error {
        // A phase that succeeded after retries: its old error is noise.
        Some(e) if p.outcome != Some(PhaseOutcome::Ok) => format!("{attempts}: {}", one_line(e)),
        _ => attempts,
    }
}

/// The last line: how the rotation ended and how long it took.
fn summary(rot: &RotationInfo) -> String {
    let end = rot
        .phases
        .iter()
        .map(|p| p.ended_at.unwrap_or(p.started_at))
        .max()
        .unwrap_or(rot.created_at);
    let took = duration(end.since(rot.created_at));
    let reason = rot
        .reason
        .as_deref()
        .map_or_else(|| "no reason given".to_owned(), one_line);
    match rot.status {
        Status::Succeeded => format!(
            "✓ rotation {} succeeded in {took}: version {} is current",
            rot.id,
            or_dash(rot.new_version)
        ),
        Status::RolledBack => format!(
            "↩ rotation {} rolled back after {took} ({reason}); version {} is current",
            rot.id,
            or_dash(rot.old_version)
        ),
        Status::Failed => format!(
            "✗ rotation {} failed after {took} ({reason}); see `keyshift rotation show {}`",
            rot.id, rot.id
        ),
        Status::Running => format!("rotation {} is still running", rot.id),
    }
}

/// The overlap's progress: consumers migrated out of live (a bar), how
/// fast they moved since Promote, the old version's uses and sessions at
/// the gate's last check, and who has not moved.
///
/// `[######----] 6/10 consumers migrated (3.0/min); old version: 12 uses
/// in the last cycle; waiting on web-7, web-9`
fn migration_line(rot: &RotationInfo, consumers: &[ConsumerInfo], now: Timestamp) -> String {
    const WIDTH: usize = 10;
    let live: Vec<&ConsumerInfo> = consumers
        .iter()
        .filter(|c| c.status != ConsumerStatus::Stale)
        .collect();
    let migrated = live
        .iter()
        .filter(|c| c.status == ConsumerStatus::Migrated)
        .count();
    let filled = (migrated * WIDTH).checked_div(live.len()).unwrap_or(WIDTH);
    let mut line = format!(
        "[{}{}] {migrated}/{} consumers migrated",
        "#".repeat(filled),
        "-".repeat(WIDTH - filled),
        live.len()
    );
    let promoted = rot
        .phases
        .iter()
        .find(|p| p.phase == Phase::Promote)
        .and_then(|p| p.ended_at);
    if let Some(t) = promoted {
        let minutes = now.since(t).as_secs_f64() / 60.0;
        if minutes > 0.0 && migrated > 0 {
            line.push_str(&format!(" ({:.1}/min)", migrated as f64 / minutes));
        }
    }
    if let Some(m) = &rot.gate.migration {
        line.push_str(&format!(
            "; old version: {} uses in the last cycle",
            m.old_uses
        ));
        if let Some(n) = m.old_sessions {
            line.push_str(&format!(", {n} open sessions"));
        }
    }
    let waiting: Vec<&str> = live
        .iter()
        .filter(|c| c.status == ConsumerStatus::Pending)
        .map(|c| c.consumer_id.as_str())
        .collect();
    if !waiting.is_empty() {
        const NAMED: usize = 5;
        let mut who = waiting[..waiting.len().min(NAMED)].join(", ");
        if waiting.len() > NAMED {
            who.push_str(", ...");
        }
        line.push_str(&format!("; waiting on {who}"));
    }
    line
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use keyshift_core::rotation::Migration;
    use keyshift_core::{Strategy, VersionNumber};

    use super::*;

    fn rec(phase: Phase, start: i64, end: Option<i64>) -> PhaseRecord {
        PhaseRecord {
            phase,
            started_at: Timestamp::from_millis(start),
            ended_at: end.map(Timestamp::from_millis),
            outcome: end.map(|_| PhaseOutcome::Ok),
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
            reason: Some("verify failed".into()),
            created_at: Timestamp::from_millis(0),
            phases,
            emergency: None,
            gate: Default::default(),
        }
    }

    #[test]
    fn migration_line_shows_the_bar_velocity_uses_and_who_waits() {
        let mut rot = rotation(
            vec![
                rec(Phase::Promote, 0, Some(1000)),
                rec(Phase::Overlap, 1000, None),
            ],
            Status::Running,
        );
        let consumer = |id: &str, status| ConsumerInfo {
            consumer_id: id.to_owned(),
            version: None,
            host: None,
            process: None,
            first_seen: Timestamp::from_millis(0),
            last_seen: Timestamp::from_millis(0),
            status,
        };
        let consumers = [
            consumer("a", ConsumerStatus::Migrated),
            consumer("b", ConsumerStatus::Migrated),
            consumer("c", ConsumerStatus::Migrated),
            consumer("d", ConsumerStatus::Pending),
            consumer("e", ConsumerStatus::Stale),
        ];
        let a_minute_later = Timestamp::from_millis(61_000);
        assert_eq!(
            migration_line(&rot, &consumers, a_minute_later),
            "[#######---] 3/4 consumers migrated (3.0/min); waiting on d"
        );
        rot.gate.migration = Some(Migration {
            live: 4,
            migrated: 3,
            old_uses: 12,
            old_sessions: Some(1),
        });
        assert_eq!(
            migration_line(&rot, &consumers[..3], a_minute_later),
            "[##########] 3/3 consumers migrated (3.0/min); \
             old version: 12 uses in the last cycle, 1 open sessions"
        );
        assert_eq!(
            migration_line(&rot, &[], a_minute_later),
            "[##########] 0/0 consumers migrated; \
             old version: 12 uses in the last cycle, 1 open sessions"
        );
    }

    #[test]
    fn tracker_reports_each_change_once() {
        let mut t = Tracker::default();
        let mut phases = vec![rec(Phase::Precheck, 0, None)];
        assert_eq!(t.changes(&phases), [Change::Started(0)]);
        assert_eq!(t.changes(&phases), []);

        phases[0].attempts = 2;
        phases[0].error = Some("refused".into());
        assert_eq!(t.changes(&phases), [Change::Progress(0)]);

        phases[0] = rec(Phase::Precheck, 0, Some(500));
        phases.push(rec(Phase::Generate, 500, Some(600)));
        phases.push(rec(Phase::DualAccept, 600, None));
        assert_eq!(
            t.changes(&phases),
            [
                Change::Ended(0),
                Change::Started(1),
                Change::Ended(1),
                Change::Started(2)
            ]
        );
        assert_eq!(t.changes(&phases), []);
    }

    #[test]
    fn tracker_skips_terminal_phases() {
        let mut t = Tracker::default();
        let phases = vec![rec(Phase::Precheck, 0, Some(1)), rec(Phase::Done, 1, None)];
        assert_eq!(t.changes(&phases), [Change::Started(0), Change::Ended(0)]);
    }

    #[test]
    fn plain_lines_say_phase_outcome_and_duration() {
        let mut failed = rec(Phase::DualAccept, 0, Some(3_100));
        failed.outcome = Some(PhaseOutcome::Failed);
        failed.attempts = 3;
        failed.error = Some("auth\nrefused".into());
        let rot = rotation(
            vec![rec(Phase::Precheck, 0, Some(412)), failed],
            Status::Running,
        );
        assert_eq!(plain_line(Change::Started(0), &rot), "precheck: started");
        assert_eq!(plain_line(Change::Ended(0), &rot), "precheck: ok in 412ms");
        assert_eq!(
            plain_line(Change::Ended(1), &rot),
            "dual_accept: failed in 3.1s after 3 attempts: auth refused"
        );
        assert_eq!(ended_line(&rot.phases[0]), "✓ precheck      412ms");
    }

    #[test]
    fn summary_says_how_it_ended() {
        let phases = vec![
            rec(Phase::Precheck, 0, Some(2_000)),
            rec(Phase::RolledBack, 2_500, None),
        ];
        let rot = rotation(phases, Status::RolledBack);
        assert_eq!(
            summary(&rot),
            "↩ rotation r-1 rolled back after 2.5s (verify failed); version 1 is current"
        );
    }

    #[test]
    fn only_unreachable_or_gateway_errors_are_retried() {
        assert!(is_transient(&ClientError::Transport("reset".into())));
        let api = |status| ClientError::Api {
            status,
            code: "x".into(),
            message: "m".into(),
            rotation: None,
        };
        assert!(is_transient(&api(503)));
        assert!(!is_transient(&api(404)));
        assert!(!is_transient(&api(401)));
    }
}
