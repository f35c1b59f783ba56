//! Per-secret rotation policy.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::name::SecretName;
use crate::schedule::{Schedule, ScheduleError};
use crate::time::{human_duration, Timestamp};

/// How a rotation introduces the new credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Old and new are valid together during an overlap window (the default).
    #[default]
    Dual,
    /// Two slots (e.g. two PostgreSQL login roles in one group role): the
    /// new credential goes into the idle slot, `current` switches to it, and
    /// the old slot is disabled after the overlap, kept for instant
    /// rollback. The phases are `dual`'s; the target chooses the slot.
    BlueGreen,
    /// Replace and revoke at once, with no overlap: for a leaked credential,
    /// and the drill's control run. Consumers holding the old value fail
    /// until they move.
    Immediate,
    /// `dual`, with the new version given first to a share of consumers
    /// (`canary_share`, chosen by a stable hash of the consumer id) for
    /// `canary_observation`; more than `canary_max_failures` failures
    /// reported against it roll the rotation back before anyone else sees
    /// it.
    Canary,
}

impl Strategy {
    /// The stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Dual => "dual",
            Strategy::BlueGreen => "blue-green",
            Strategy::Immediate => "immediate",
            Strategy::Canary => "canary",
        }
    }

    /// Whether old and new are valid together for an overlap window.
    pub fn overlaps(self) -> bool {
        !matches!(self, Strategy::Immediate)
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "dual" => Ok(Strategy::Dual),
            "blue-green" => Ok(Strategy::BlueGreen),
            "immediate" => Ok(Strategy::Immediate),
            "canary" => Ok(Strategy::Canary),
            _ => Err(format!(
                "unknown strategy `{s}` (expected dual, blue-green, canary or immediate)"
            )),
        }
    }
}

/// What happens when `max_overlap` passes before the overlap gate opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    /// Stay in Overlap and alert (the default: never break a consumer).
    #[default]
    Hold,
    /// Revoke anyway and report the stragglers.
    Revoke,
}

/// A secret's rotation policy.
///
/// Durations serialize as human strings (`"30s"`, `"1h"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// The strategy a rotation uses when the request names none.
    pub strategy: Strategy,
    /// The least time old and new stay valid together after Promote.
    ///
    /// Default 30 s: longer than a watching SDK needs to move (milliseconds)
    /// and than its polling fallback's TTL, short enough that a rotation
    /// started by hand finishes while someone is looking.
    #[serde(with = "human_duration")]
    pub min_overlap: Duration,
    /// The most time the overlap may last before [`OnTimeout`] decides.
    ///
    /// Default 24 h: a consumer that has not moved in a day is an incident,
    /// not a straggler.
    #[serde(with = "human_duration")]
    pub max_overlap: Duration,
    /// What to do when `max_overlap` passes first.
    pub on_timeout: OnTimeout,
    /// How often the overlap gate is checked once `min_overlap` has
    /// passed. Default 30 s.
    #[serde(with = "human_duration")]
    pub monitoring_cycle: Duration,
    /// A consumer that said how often it sends heartbeats is stale (it no
    /// longer holds the overlap gate) after this many missed ones.
    /// Default 3.
    pub stale_after_missed: u32,
    /// A consumer that did not say how often it sends heartbeats is stale
    /// when not heard from for this long. Default 15 s, three missed
    /// heartbeats of the SDK's 5 s default.
    #[serde(with = "human_duration")]
    pub consumer_stale_after: Duration,
    /// Roll back on its own when a verification fails. Default true.
    pub rollback_on_failure: bool,
    /// Attempts of one step before it counts as failed. Default 3: a blip
    /// of the target is retried, a broken target is not hammered.
    pub max_attempts: u32,
    /// First wait between attempts of a step that failed on a transient
    /// error, doubled each time up to one minute. Default 2 s.
    #[serde(with = "human_duration")]
    pub retry_backoff: Duration,
    /// When the secret rotates on its own (None: only when asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Consecutive failed rotations that open the secret's circuit, after
    /// which no rotation starts on its own for `circuit_open`. Default 3;
    /// 0 never opens it.
    pub circuit_failures: u32,
    /// How long an open circuit stays open. Default 5 minutes.
    #[serde(with = "human_duration")]
    pub circuit_open: Duration,
    /// `canary`: the percentage of consumers (1 to 100) that get the new
    /// version first. Default 10.
    pub canary_share: u8,
    /// `canary`: how long the share uses the new version before everyone
    /// gets it. Default 5 minutes: several heartbeats and usage cycles.
    #[serde(with = "human_duration")]
    pub canary_observation: Duration,
    /// `canary`: failures reported against the new version that are still
    /// tolerated; one more rolls the rotation back. Default 0.
    pub canary_max_failures: u64,
    /// Webhooks told of every phase change of this secret's rotations, on
    /// top of the server's own (`keyshift serve --notify-webhook`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<NotifyWebhook>,
}

/// A receiver of rotation notifications: each phase change is POSTed to
/// `url` as JSON, signed with HMAC-SHA256 keyed by the current value of
/// the secret `hmac_secret` (headers `X-Keyshift-Timestamp` and
/// `X-Keyshift-Signature: sha256=<hex>` over `"<timestamp>.<body>"`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyWebhook {
    /// `http://` or `https://`; its query is never logged.
    pub url: String,
    /// The secret whose current value keys the signature (16 bytes or
    /// more).
    pub hmac_secret: SecretName,
}

/// The most webhooks one policy may name.
pub const MAX_NOTIFY_WEBHOOKS: usize = 16;

impl NotifyWebhook {
    /// The URL as logs and tables show it: without its query or fragment,
    /// which may hold a token of the receiver.
    pub fn shown(&self) -> &str {
        self.url.split(['?', '#']).next().unwrap_or_default()
    }

    /// Checks the URL: `http(s)://host...`, at most 2048 bytes.
    ///
    /// # Errors
    ///
    /// [`PolicyError::Notify`] saying what is wrong.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let rest = self
            .url
            .strip_prefix("https://")
            .or_else(|| self.url.strip_prefix("http://"));
        match rest {
            _ if self.url.len() > 2048 => Err(PolicyError::Notify(
                "a webhook URL is longer than 2048 bytes".to_owned(),
            )),
            Some(r) if !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace) => {
                Ok(())
            }
            _ => Err(PolicyError::Notify(
                "a webhook URL must be http:// or https:// followed by a host".to_owned(),
            )),
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            strategy: Strategy::Dual,
            min_overlap: Duration::from_secs(30),
            max_overlap: Duration::from_secs(24 * 3600),
            on_timeout: OnTimeout::Hold,
            monitoring_cycle: Duration::from_secs(30),
            stale_after_missed: 3,
            consumer_stale_after: Duration::from_secs(15),
            rollback_on_failure: true,
            max_attempts: 3,
            retry_backoff: Duration::from_secs(2),
            schedule: None,
            circuit_failures: 3,
            circuit_open: Duration::from_secs(300),
            canary_share: 10,
            canary_observation: Duration::from_secs(300),
            canary_max_failures: 0,
            notify: Vec::new(),
        }
    }
}

/// Why a policy was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// `min_overlap` is longer than `max_overlap`.
    #[error("min_overlap ({min:?}) is longer than max_overlap ({max:?})")]
    OverlapOrder {
        /// The minimum.
        min: Duration,
        /// The maximum.
        max: Duration,
    },
    /// `max_attempts` is zero or over 100.
    #[error("max_attempts must be between 1 and 100 (actual={actual})")]
    Attempts {
        /// The value given.
        actual: u32,
    },
    /// `monitoring_cycle`, `consumer_stale_after` or `stale_after_missed`
    /// is zero.
    #[error(
        "monitoring_cycle, consumer_stale_after and stale_after_missed must be more than zero"
    )]
    ZeroCycle,
    /// `retry_backoff` is zero or longer than a minute.
    #[error("retry_backoff must be between 1ms and 1m")]
    Backoff,
    /// `canary_share` is not a percentage of consumers.
    #[error("canary_share must be between 1 and 100 (actual={actual})")]
    CanaryShare {
        /// The value given.
        actual: u8,
    },
    /// The schedule is invalid.
    #[error("schedule: {0}")]
    Schedule(#[from] ScheduleError),
    /// A notification webhook is invalid.
    #[error("notify: {0}")]
    Notify(String),
}

impl Policy {
    /// Checks the policy's fields against each other. The one place a
    /// policy is validated.
    ///
    /// # Errors
    ///
    /// The first [`PolicyError`] found.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.min_overlap > self.max_overlap {
            return Err(PolicyError::OverlapOrder {
                min: self.min_overlap,
                max: self.max_overlap,
            });
        }
        if self.max_attempts == 0 || self.max_attempts > 100 {
            return Err(PolicyError::Attempts {
                actual: self.max_attempts,
            });
        }
        if self.monitoring_cycle.is_zero()
            || self.consumer_stale_after.is_zero()
            || self.stale_after_missed == 0
        {
            return Err(PolicyError::ZeroCycle);
        }
        if self.retry_backoff.is_zero() || self.retry_backoff > Duration::from_secs(60) {
            return Err(PolicyError::Backoff);
        }
        if self.canary_share == 0 || self.canary_share > 100 {
            return Err(PolicyError::CanaryShare {
                actual: self.canary_share,
            });
        }
        if let Some(schedule) = &self.schedule {
            schedule.validate()?;
        }
        if self.notify.len() > MAX_NOTIFY_WEBHOOKS {
            return Err(PolicyError::Notify(format!(
                "at most {MAX_NOTIFY_WEBHOOKS} webhooks (actual={})",
                self.notify.len()
            )));
        }
        for hook in &self.notify {
            hook.validate()?;
        }
        Ok(())
    }

    /// Whether a consumer last heard from at `last_seen`, which sends
    /// heartbeats every `interval` (None: it did not say), is live at
    /// `now`: heard from within `stale_after_missed` intervals, or within
    /// `consumer_stale_after` when its interval is unknown.
    pub fn is_live(
        &self,
        last_seen: Timestamp,
        interval: Option<Duration>,
        now: Timestamp,
    ) -> bool {
        let window = interval.map_or(self.consumer_stale_after, |i| {
            i.saturating_mul(self.stale_after_missed)
        });
        last_seen >= now.saturating_sub(window)
    }

    /// The wait before attempt `attempt` (1-based) of a step: zero for the
    /// first, then `retry_backoff` doubling, capped at one minute.
    pub fn backoff(&self, attempt: u32) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let factor = 1u32 << (attempt - 2).min(16);
        self.retry_backoff
            .saturating_mul(factor)
            .min(Duration::from_secs(60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumers_go_stale_after_missed_heartbeats_or_the_fallback() {
        let p = Policy {
            stale_after_missed: 3,
            consumer_stale_after: Duration::from_secs(15),
            ..Policy::default()
        };
        let now = Timestamp::from_millis(100_000);
        let seen = |ms_ago: i64| Timestamp::from_millis(100_000 - ms_ago);
        let every_2s = Some(Duration::from_secs(2));
        assert!(
            p.is_live(seen(6_000), every_2s, now),
            "3 missed: still live"
        );
        assert!(!p.is_live(seen(6_001), every_2s, now));
        assert!(p.is_live(seen(15_000), None, now));
        assert!(!p.is_live(seen(15_001), None, now));
        let zero = Policy {
            stale_after_missed: 0,
            ..Policy::default()
        };
        assert_eq!(zero.validate(), Err(PolicyError::ZeroCycle));
    }

    #[test]
    fn notify_webhooks_are_checked_and_shown_without_their_query() {
        let hook = |url: &str| NotifyWebhook {
            url: url.to_owned(),
            hmac_secret: "ops/hook-key".parse().unwrap(),
        };
        assert!(hook("https://hooks.example/x").validate().is_ok());
        assert!(hook("http://127.0.0.1:8080/x").validate().is_ok());
        for bad in [
            "ftp://h/x",
            "https://",
            "https:///x",
            "hooks.example/x",
            "https://h/a b",
        ] {
            assert!(hook(bad).validate().is_err(), "{bad}");
        }
        assert!(hook(&format!("https://h/{}", "a".repeat(2048)))
            .validate()
            .is_err());
        assert_eq!(
            hook("https://hooks.example/x?token=abc#f").shown(),
            "https://hooks.example/x"
        );
        let too_many = Policy {
            notify: (0..=MAX_NOTIFY_WEBHOOKS)
                .map(|i| hook(&format!("https://h/{i}")))
                .collect(),
            ..Policy::default()
        };
        assert!(matches!(too_many.validate(), Err(PolicyError::Notify(_))));
    }

    #[test]
    fn policy_reads_human_durations_and_fills_defaults() {
        let p: Policy = serde_json::from_str(r#"{"min_overlap":"5s"}"#).unwrap();
        assert_eq!(p.min_overlap, Duration::from_secs(5));
        assert_eq!(p.max_overlap, Policy::default().max_overlap);
        assert!(serde_json::from_str::<Policy>(r#"{"min_overlap":"soon"}"#).is_err());
        assert!(serde_json::from_str::<Policy>(r#"{"nope":1}"#).is_err());
    }

    #[test]
    fn validate_refuses_inverted_overlap() {
        let p = Policy {
            min_overlap: Duration::from_secs(10),
            max_overlap: Duration::from_secs(5),
            ..Policy::default()
        };
        assert!(matches!(
            p.validate(),
            Err(PolicyError::OverlapOrder { .. })
        ));
    }

    #[test]
    fn backoff_doubles_from_the_second_attempt() {
        let p = Policy::default();
        assert_eq!(p.backoff(1), Duration::ZERO);
        assert_eq!(p.backoff(2), Duration::from_secs(2));
        assert_eq!(p.backoff(3), Duration::from_secs(4));
        assert_eq!(p.backoff(40), Duration::from_secs(60));
        let huge = Policy {
            retry_backoff: Duration::from_secs(u64::MAX / 4),
            ..Policy::default()
        };
        assert_eq!(
            huge.backoff(30),
            Duration::from_secs(60),
            "saturates, never panics"
        );
    }
}
