//! When a secret rotates on its own: an interval or a cron expression in
//! UTC, spread by a jitter, and the circuit breaker that stops a secret
//! whose rotations keep failing.
//!
//! All of it is arithmetic on [`Timestamp`]s the caller passes in: the
//! scheduler in the server owns the clock.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::name::SecretName;
use crate::policy::Policy;
use crate::rotation::{PhaseOutcome, Rotation, Status};
use crate::time::Timestamp;

/// The shortest interval a schedule may have.
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);

/// When a secret rotates on its own.
///
/// JSON: `{"every": "30d", "jitter": "1h"}` or
/// `{"cron": "0 3 * * 1", "jitter": "15m"}` (five fields, UTC). `jitter`
/// is optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The interval or the cron expression.
    pub when: When,
    /// Each secret's due time is moved later by a stable share of this
    /// window (derived from its name and the due time), so secrets on the
    /// same schedule do not all rotate in the same instant.
    pub jitter: Duration,
}

/// The base of a [`Schedule`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    /// This long after the secret's last rotation started (or, before its
    /// first, after it was created).
    Every(Duration),
    /// At each match of a five-field cron expression in UTC after the last
    /// rotation started.
    Cron(CronExpr),
}

/// A parsed five-field cron expression (minute hour day-of-month month
/// day-of-week), evaluated in UTC.
#[derive(Clone)]
pub struct CronExpr {
    text: String,
    // Boxed: a parsed pattern is large, and schedules travel in policies.
    cron: Box<croner::Cron>,
}

impl PartialEq for CronExpr {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for CronExpr {}

impl fmt::Debug for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CronExpr").field(&self.text).finish()
    }
}

impl fmt::Display for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for CronExpr {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.split(' ').count() != 5 {
            return Err(ScheduleError::Cron {
                detail: format!(
                    "`{s}` has {} fields; expected five (minute hour day-of-month month day-of-week)",
                    text.split(' ').filter(|f| !f.is_empty()).count()
                ),
            });
        }
        let cron = croner::Cron::from_str(&text).map_err(|e| ScheduleError::Cron {
            detail: format!("`{s}`: {e}"),
        })?;
        Ok(Self {
            text,
            cron: Box::new(cron),
        })
    }
}

impl CronExpr {
    /// The first match strictly after `after`, or None if there is none
    /// (a date that never comes, such as 30 February).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let t = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(after.as_millis())?;
        let next = self.cron.find_next_occurrence(&t, false).ok()?;
        Some(Timestamp::from_millis(next.timestamp_millis()))
    }
}

/// Why a schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The cron expression does not parse.
    #[error("invalid cron expression: {detail}")]
    Cron {
        /// What is wrong.
        detail: String,
    },
    /// The interval is shorter than [`MIN_INTERVAL`].
    #[error("the interval must be at least 1m")]
    Interval,
    /// The jitter is not shorter than the interval.
    #[error("the jitter must be shorter than the interval")]
    Jitter,
    /// Neither or both of `every` and `cron`.
    #[error("a schedule has exactly one of `every` and `cron`")]
    Shape,
}

impl Schedule {
    /// An interval schedule without jitter.
    pub fn every(d: Duration) -> Self {
        Self {
            when: When::Every(d),
            jitter: Duration::ZERO,
        }
    }

    /// Checks the interval and the jitter.
    ///
    /// # Errors
    ///
    /// [`ScheduleError::Interval`] or [`ScheduleError::Jitter`].
    pub fn validate(&self) -> Result<(), ScheduleError> {
        if let When::Every(d) = self.when {
            if d < MIN_INTERVAL {
                return Err(ScheduleError::Interval);
            }
            if self.jitter >= d {
                return Err(ScheduleError::Jitter);
            }
        }
        Ok(())
    }

    /// When `name` is next due: the schedule's next time after `last`
    /// (when its last rotation started, or when it was created), moved
    /// later by its share of the jitter window. None when a cron
    /// expression has no next match.
    pub fn next_due(&self, name: &SecretName, last: Timestamp) -> Option<Timestamp> {
        let base = match &self.when {
            When::Every(d) => last.saturating_add(*d),
            When::Cron(cron) => cron.next_after(last)?,
        };
        Some(base.saturating_add(jitter_offset(name, base, self.jitter)))
    }
}

/// `name`'s share of a `window`-long jitter for the due time `base`: stable
/// (the same inputs always give the same offset, on every replica) and
/// spread evenly over `[0, window)` across names.
pub fn jitter_offset(name: &SecretName, base: Timestamp, window: Duration) -> Duration {
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    if window_ms == 0 {
        return Duration::ZERO;
    }
    let digest = Sha256::new()
        .chain_update(name.as_str().as_bytes())
        .chain_update(base.as_millis().to_be_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    Duration::from_millis(u64::from_be_bytes(first) % window_ms)
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleJson {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_duration"
    )]
    every: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cron: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_duration"
    )]
    jitter: Option<Duration>,
}

mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

impl Serialize for Schedule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (every, cron) = match &self.when {
            When::Every(d) => (Some(*d), None),
            When::Cron(c) => (None, Some(c.text.clone())),
        };
        ScheduleJson {
            every,
            cron,
            jitter: (!self.jitter.is_zero()).then_some(self.jitter),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let json = ScheduleJson::deserialize(d)?;
        let when = match (json.every, json.cron) {
            (Some(d), None) => When::Every(d),
            (None, Some(c)) => When::Cron(c.parse().map_err(serde::de::Error::custom)?),
            _ => return Err(serde::de::Error::custom(ScheduleError::Shape)),
        };
        let schedule = Schedule {
            when,
            jitter: json.jitter.unwrap_or_default(),
        };
        schedule.validate().map_err(serde::de::Error::custom)?;
        Ok(schedule)
    }
}

/// Whether a secret's rotations may start: its circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    /// Rotations start as usual.
    Closed,
    /// The last `circuit_failures` rotations failed: scheduled rotations
    /// are not started, and started by hand only when forced, until then.
    Open {
        /// When the circuit closes again (one more try is then allowed).
        until: Timestamp,
    },
}

impl Circuit {
    /// The circuit of a secret with `policy` whose rotations, newest first,
    /// are `rotations`, at `now`. It is open when the newest
    /// `policy.circuit_failures` rotations all ended in failure (an error,
    /// not an operator's rollback) and the newest ended less than
    /// `policy.circuit_open` ago.
    pub fn of(policy: &Policy, rotations: &[Rotation], now: Timestamp) -> Circuit {
        let n = policy.circuit_failures as usize;
        if n == 0 || rotations.len() < n {
            return Circuit::Closed;
        }
        let recent = &rotations[..n];
        if !recent.iter().all(Rotation::failed_by_error) {
            return Circuit::Closed;
        }
        let ended = recent[0].ended_at().unwrap_or(recent[0].created_at);
        let until = ended.saturating_add(policy.circuit_open);
        if now < until {
            Circuit::Open { until }
        } else {
            Circuit::Closed
        }
    }
}

impl Rotation {
    /// When the rotation reached its final phase, if it has.
    pub fn ended_at(&self) -> Option<Timestamp> {
        if !self.phase.is_terminal() {
            return None;
        }
        self.history.last().map(|r| r.started_at)
    }

    /// Whether the rotation ended in failure because something went wrong
    /// (rolled back or failed on an error), as opposed to succeeding or
    /// being rolled back by an operator.
    pub fn failed_by_error(&self) -> bool {
        let cancelled = self
            .history
            .iter()
            .any(|r| r.outcome == Some(PhaseOutcome::Cancelled));
        matches!(self.status(), Status::RolledBack | Status::Failed) && !cancelled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> SecretName {
        SecretName::new(s).unwrap()
    }

    fn at(rfc3339: &str) -> Timestamp {
        Timestamp::from_system(humantime::parse_rfc3339(rfc3339).unwrap())
    }

    #[test]
    fn reads_and_writes_both_shapes() {
        let s: Schedule = serde_json::from_str(r#"{"every":"1day","jitter":"10m"}"#).unwrap();
        assert_eq!(s.when, When::Every(Duration::from_secs(86400)));
        assert_eq!(s.jitter, Duration::from_secs(600));
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"every":"1day","jitter":"10m"}"#
        );
        let c: Schedule = serde_json::from_str(r#"{"cron":"0  3 * * 1"}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"cron":"0 3 * * 1"}"#
        );
    }

    #[test]
    fn refuses_bad_schedules_with_the_reason() {
        for (json, why) in [
            (r#"{}"#, "exactly one"),
            (r#"{"every":"1h","cron":"* * * * *"}"#, "exactly one"),
            (r#"{"every":"10s"}"#, "at least 1m"),
            (
                r#"{"every":"1h","jitter":"2h"}"#,
                "shorter than the interval",
            ),
            (r#"{"cron":"61 * * * *"}"#, "invalid cron"),
            (r#"{"cron":"* * * *"}"#, "five"),
            (r#"{"every":"soon"}"#, ""),
        ] {
            let e = serde_json::from_str::<Schedule>(json)
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{json}: {e}");
        }
    }

    #[test]
    fn interval_is_due_after_the_last_start() {
        let s = Schedule::every(Duration::from_secs(3600));
        let last = at("2026-11-22T10:00:00Z");
        assert_eq!(
            s.next_due(&name("a"), last),
            Some(at("2026-11-22T11:00:00Z"))
        );
    }

    #[test]
    fn cron_is_due_at_its_next_match_in_utc() {
        let s: Schedule = serde_json::from_str(r#"{"cron":"30 3 * * *"}"#).unwrap();
        let due = s.next_due(&name("a"), at("2026-11-22T03:30:00Z"));
        assert_eq!(due, Some(at("2026-11-23T03:30:00Z")), "strictly after");
        let due = s.next_due(&name("a"), at("2026-11-22T01:00:00Z"));
        assert_eq!(due, Some(at("2026-11-22T03:30:00Z")));
    }

    #[test]
    fn jitter_is_stable_and_spreads_names_over_the_window() {
        let window = Duration::from_secs(600);
        let base = at("2026-11-22T10:00:00Z");
        let offsets: Vec<Duration> = (0..100)
            .map(|i| jitter_offset(&name(&format!("db-{i}")), base, window))
            .collect();
        assert!(offsets.iter().all(|o| *o < window));
        assert_eq!(offsets[7], jitter_offset(&name("db-7"), base, window));
        let mut buckets = [0u32; 10];
        for o in &offsets {
            buckets[(o.as_secs() / 60) as usize] += 1;
        }
        assert!(buckets.iter().all(|b| *b > 0), "{buckets:?}");
    }

    fn finished(phase: crate::rotation::Phase, cancelled: bool, ended: Timestamp) -> Rotation {
        use crate::rotation::{Phase, PhaseRecord};
        let mut r = Rotation::new(
            "r1".into(),
            name("a"),
            Policy::default(),
            crate::Strategy::Dual,
            None,
            None,
            ended,
        );
        r.history[0].outcome = Some(if cancelled {
            PhaseOutcome::Cancelled
        } else if phase == Phase::Done {
            PhaseOutcome::Ok
        } else {
            PhaseOutcome::Failed
        });
        r.history.push(PhaseRecord {
            phase,
            started_at: ended,
            ended_at: None,
            outcome: None,
            attempts: 0,
            error: None,
        });
        r.phase = phase;
        r
    }

    #[test]
    fn circuit_opens_after_consecutive_failures_and_closes_after_the_wait() {
        use crate::rotation::Phase;
        let p = Policy::default();
        let t = at("2026-11-22T10:00:00Z");
        let failed = finished(Phase::RolledBack, false, t);
        let ok = finished(Phase::Done, false, t);
        let by_hand = finished(Phase::RolledBack, true, t);
        let three = vec![failed.clone(), failed.clone(), failed.clone()];
        assert_eq!(
            Circuit::of(&p, &three, t),
            Circuit::Open {
                until: t.saturating_add(p.circuit_open)
            }
        );
        assert_eq!(
            Circuit::of(&p, &three, t.saturating_add(p.circuit_open)),
            Circuit::Closed
        );
        let two = vec![failed.clone(), failed.clone(), ok];
        assert_eq!(Circuit::of(&p, &two, t), Circuit::Closed);
        let operator = vec![failed.clone(), by_hand, failed];
        assert_eq!(Circuit::of(&p, &operator, t), Circuit::Closed);
    }
}
