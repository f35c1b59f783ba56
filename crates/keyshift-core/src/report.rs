//! Rotation health: the figures of one rotation ([`Figures`]) and of a
//! period ([`HealthReport`]), read off rotation records alone.
//!
//! `keyshift report` shows a [`HealthReport`]; the server's `/metrics`
//! records each finished rotation's [`Figures`], so both say the same.
//!
//! ```
//! use keyshift_core::report::HealthReport;
//! use keyshift_core::Timestamp;
//! let report = HealthReport::of(&[], None, Timestamp::from_millis(0));
//! assert_eq!(report.rotations, 0);
//! assert_eq!(report.success_rate, None);
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::rotation::{Phase, PhaseOutcome, PhaseRecord, Rotation, Status};
use crate::time::Timestamp;

/// What one rotation's record says about it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Figures {
    /// From the rotation's creation to the end of the step that made the
    /// target refuse the old credential (Revoke, or Replace for
    /// `immediate`): the time to rotate. None until that step succeeded.
    pub time_to_revoke: Option<Duration>,
    /// How long the Overlap phase lasted, once it has ended.
    pub overlap: Option<Duration>,
    /// The overlap's length against the window allocated to it (the
    /// policy's `min_overlap`): 1.0 is an overlap that ended as soon as it
    /// could. None without an ended overlap or with no window.
    pub overlap_utilization: Option<f64>,
    /// Consumers that moved to the new version per minute of overlap, as
    /// the overlap gate last counted them. None without an ended overlap
    /// or without consumers.
    pub migration_velocity_per_min: Option<f64>,
    /// Incidents: ended rolled back or failed, revoked at `max_overlap`
    /// with consumers left behind, or rotated in an emergency.
    pub incidents: u32,
}

/// How long the Overlap phase in `history` lasted, once it has ended.
pub fn overlap_length(history: &[PhaseRecord]) -> Option<Duration> {
    history
        .iter()
        .find(|p| p.phase == Phase::Overlap)
        .and_then(|p| Some(p.ended_at?.since(p.started_at)))
}

impl Rotation {
    /// What this rotation's record says about it.
    pub fn figures(&self) -> Figures {
        let ended_ok = |phase: Phase| {
            self.history.iter().find_map(|p| {
                (p.phase == phase && p.outcome == Some(PhaseOutcome::Ok))
                    .then_some(p.ended_at)
                    .flatten()
            })
        };
        let time_to_revoke = ended_ok(Phase::Revoke)
            .or_else(|| ended_ok(Phase::Replace))
            .map(|at| at.since(self.created_at));
        let overlap = overlap_length(&self.history);
        let window = self.policy.min_overlap;
        let overlap_utilization = overlap
            .filter(|_| !window.is_zero())
            .map(|used| used.as_secs_f64() / window.as_secs_f64());
        let migrated = self.gate.migration.as_ref().map(|m| m.migrated);
        let migration_velocity_per_min = match (overlap, migrated) {
            (Some(used), Some(n)) if n > 0 && !used.is_zero() => {
                Some(n as f64 / (used.as_secs_f64() / 60.0))
            }
            _ => None,
        };
        let mut incidents = 0;
        if matches!(self.status(), Status::RolledBack | Status::Failed) {
            incidents += 1;
        }
        if self.gate.passed_by.as_deref() == Some("max_overlap") && !self.gate.stragglers.is_empty()
        {
            incidents += 1;
        }
        if self.emergency.is_some() {
            incidents += 1;
        }
        Figures {
            time_to_revoke,
            overlap,
            overlap_utilization,
            migration_velocity_per_min,
            incidents,
        }
    }
}

/// Rotation health over a period: what `keyshift report` prints.
///
/// Each mean is over the rotations that have the figure; None when none
/// has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    /// The period's start (None: since the first rotation).
    pub since: Option<Timestamp>,
    /// The period's end: when the report was made.
    pub until: Timestamp,
    /// Rotations created in the period.
    pub rotations: u64,
    /// Of those, still running.
    pub running: u64,
    /// Ended in Done.
    pub succeeded: u64,
    /// Ended rolled back.
    pub rolled_back: u64,
    /// Ended failed.
    pub failed: u64,
    /// Mean time from a rotation's start to the old credential's
    /// revocation, in seconds.
    pub mean_time_to_rotate_s: Option<f64>,
    /// Succeeded / ended.
    pub success_rate: Option<f64>,
    /// Mean overlap used / allocated (`min_overlap`).
    pub overlap_utilization: Option<f64>,
    /// Mean consumers migrated per minute of overlap.
    pub migration_velocity_per_min: Option<f64>,
    /// Incidents (see [`Figures::incidents`]) per rotation.
    pub incidents_per_rotation: Option<f64>,
    /// Incidents in all.
    pub incidents: u64,
}

impl HealthReport {
    /// The report over `rotations` (the caller picks those of the period).
    pub fn of(rotations: &[Rotation], since: Option<Timestamp>, until: Timestamp) -> Self {
        let count = |s: Status| rotations.iter().filter(|r| r.status() == s).count() as u64;
        let (succeeded, rolled_back, failed) = (
            count(Status::Succeeded),
            count(Status::RolledBack),
            count(Status::Failed),
        );
        let figures: Vec<Figures> = rotations.iter().map(Rotation::figures).collect();
        let mean = |f: fn(&Figures) -> Option<f64>| mean(figures.iter().filter_map(f));
        let ended = succeeded + rolled_back + failed;
        let incidents: u64 = figures.iter().map(|f| u64::from(f.incidents)).sum();
        let total = rotations.len() as u64;
        Self {
            since,
            until,
            rotations: total,
            running: count(Status::Running),
            succeeded,
            rolled_back,
            failed,
            mean_time_to_rotate_s: mean(|f| f.time_to_revoke.map(|d| d.as_secs_f64())),
            success_rate: (ended > 0).then(|| succeeded as f64 / ended as f64),
            overlap_utilization: mean(|f| f.overlap_utilization),
            migration_velocity_per_min: mean(|f| f.migration_velocity_per_min),
            incidents_per_rotation: (total > 0).then(|| incidents as f64 / total as f64),
            incidents,
        }
    }
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0u32), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / f64::from(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rotation::Migration;
    use crate::{Policy, SecretName, Strategy};

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn rec(phase: Phase, from: i64, to: Option<i64>, outcome: Option<PhaseOutcome>) -> PhaseRecord {
        PhaseRecord {
            phase,
            started_at: at(from),
            ended_at: to.map(at),
            outcome,
            attempts: 1,
            error: None,
        }
    }

    /// A rotation created at 0 with a 2 s min_overlap that went through
    /// `phases` and ended in `end`.
    fn rotation(phases: Vec<PhaseRecord>, end: Phase) -> Rotation {
        let name: SecretName = "prod/api".parse().unwrap();
        let policy = Policy {
            min_overlap: Duration::from_secs(2),
            ..Policy::default()
        };
        let mut r = Rotation::new("r1".into(), name, policy, Strategy::Dual, None, None, at(0));
        r.history = phases;
        r.phase = end;
        r
    }

    fn succeeded(overlap_ms: i64, migrated: u64) -> Rotation {
        let ok = Some(PhaseOutcome::Ok);
        let end = 1000 + overlap_ms;
        let mut r = rotation(
            vec![
                rec(Phase::Precheck, 0, Some(500), ok),
                rec(Phase::Promote, 500, Some(1000), ok),
                rec(Phase::Overlap, 1000, Some(end), ok),
                rec(Phase::Revoke, end, Some(end + 500), ok),
                rec(Phase::Done, end + 500, None, None),
            ],
            Phase::Done,
        );
        r.gate.migration = Some(Migration {
            live: migrated,
            migrated,
            old_uses: 0,
            old_sessions: None,
        });
        r.gate.passed_by = Some("gate".to_owned());
        r
    }

    #[test]
    fn figures_of_a_rotation_that_succeeded() {
        let f = succeeded(3000, 10).figures();
        assert_eq!(f.time_to_revoke, Some(Duration::from_millis(4500)));
        assert_eq!(f.overlap, Some(Duration::from_secs(3)));
        assert_eq!(f.overlap_utilization, Some(1.5));
        assert_eq!(f.migration_velocity_per_min, Some(200.0));
        assert_eq!(f.incidents, 0);
    }

    #[test]
    fn a_rollback_and_a_timeout_with_stragglers_are_incidents() {
        let failed = Some(PhaseOutcome::Failed);
        let rolled = rotation(
            vec![
                rec(Phase::Precheck, 0, Some(100), Some(PhaseOutcome::Ok)),
                rec(Phase::DualAccept, 100, Some(200), failed),
                rec(Phase::RollBack, 200, Some(300), Some(PhaseOutcome::Ok)),
                rec(Phase::RolledBack, 300, None, None),
            ],
            Phase::RolledBack,
        );
        let f = rolled.figures();
        assert_eq!(f.incidents, 1);
        assert_eq!(f.time_to_revoke, None, "nothing was revoked");
        assert_eq!(f.overlap, None);

        let mut timed_out = succeeded(10_000, 3);
        timed_out.gate.passed_by = Some("max_overlap".to_owned());
        timed_out.gate.stragglers = vec!["web-7".to_owned()];
        assert_eq!(timed_out.figures().incidents, 1);
    }

    #[test]
    fn the_report_averages_what_each_rotation_has() {
        let rolled = rotation(
            vec![rec(Phase::RolledBack, 0, None, None)],
            Phase::RolledBack,
        );
        let running = rotation(vec![rec(Phase::Overlap, 0, None, None)], Phase::Overlap);
        let all = [succeeded(2000, 4), succeeded(4000, 4), rolled, running];
        let r = HealthReport::of(&all, Some(at(0)), at(60_000));
        assert_eq!(
            (r.rotations, r.running, r.succeeded, r.rolled_back, r.failed),
            (4, 1, 2, 1, 0)
        );
        // Revoked at 3.5 s and 5.5 s.
        assert_eq!(r.mean_time_to_rotate_s, Some(4.5));
        assert_eq!(r.success_rate, Some(2.0 / 3.0));
        // 2 s and 4 s of a 2 s window.
        assert_eq!(r.overlap_utilization, Some(1.5));
        // 4 consumers in 2 s (120/min) and in 4 s (60/min).
        assert_eq!(r.migration_velocity_per_min, Some(90.0));
        assert_eq!(r.incidents, 1);
        assert_eq!(r.incidents_per_rotation, Some(0.25));
    }

    #[test]
    fn an_empty_period_has_no_figures() {
        let r = HealthReport::of(&[], None, at(0));
        assert_eq!(r.mean_time_to_rotate_s, None);
        assert_eq!(r.success_rate, None);
        assert_eq!(r.overlap_utilization, None);
        assert_eq!(r.incidents_per_rotation, None);
    }
}
