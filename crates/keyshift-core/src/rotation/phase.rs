//! Phases, their records, and rotation ids.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::time::Timestamp;

/// One phase of a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Checks without side effects: target reachable, current credential works.
    Precheck,
    /// Creates the new value as a version labelled `pending`.
    Generate,
    /// Makes the target accept the new credential as well as the old.
    DualAccept,
    /// `canary`: labels the new version `canary`, so the consumers in the
    /// canary's share get it as their `current`.
    Canary,
    /// `canary`: the share uses the new version while failures are counted.
    Observe,
    /// Moves `current` to the new version and `previous` to the old.
    Promote,
    /// Old and new stay valid while consumers move.
    Overlap,
    /// Makes the target refuse the old credential.
    Revoke,
    /// `immediate` only: the target accepts the new credential alone.
    Replace,
    /// Restores the old credential as the only one accepted.
    RollBack,
    /// Finished: the new version is current and the old one revoked.
    Done,
    /// Finished: the old version is current again.
    RolledBack,
    /// Stopped on an error that needs an operator; see the rotation's reason.
    Failed,
}

impl Phase {
    /// The stable snake_case name (`dual_accept`).
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Precheck => "precheck",
            Phase::Generate => "generate",
            Phase::DualAccept => "dual_accept",
            Phase::Canary => "canary",
            Phase::Observe => "observe",
            Phase::Promote => "promote",
            Phase::Overlap => "overlap",
            Phase::Revoke => "revoke",
            Phase::Replace => "replace",
            Phase::RollBack => "roll_back",
            Phase::Done => "done",
            Phase::RolledBack => "rolled_back",
            Phase::Failed => "failed",
        }
    }

    /// Whether the rotation has ended in this phase.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Done | Phase::RolledBack | Phase::Failed)
    }

    /// Whether a rollback may still start from this phase: every phase
    /// before the old credential is touched.
    pub fn can_roll_back(self) -> bool {
        matches!(
            self,
            Phase::Precheck
                | Phase::Generate
                | Phase::DualAccept
                | Phase::Canary
                | Phase::Observe
                | Phase::Promote
                | Phase::Overlap
        )
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseOutcome {
    /// The phase's step succeeded.
    Ok,
    /// The phase's step failed for good.
    Failed,
    /// An operator's rollback or abort ended the phase.
    Cancelled,
}

/// The record of one phase: when it started and ended, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseRecord {
    /// The phase.
    pub phase: Phase,
    /// When the rotation entered it.
    pub started_at: Timestamp,
    /// When it left it, if it has.
    pub ended_at: Option<Timestamp>,
    /// How it ended, if it has.
    pub outcome: Option<PhaseOutcome>,
    /// Attempts of its step so far.
    pub attempts: u32,
    /// The last error of its step, if any (never a secret value).
    pub error: Option<String>,
}

/// Where a rotation stands, for people and scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Not finished.
    Running,
    /// Ended in [`Phase::Done`].
    Succeeded,
    /// Ended in [`Phase::RolledBack`].
    RolledBack,
    /// Ended in [`Phase::Failed`].
    Failed,
}

impl Status {
    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::RolledBack => "rolled_back",
            Status::Failed => "failed",
        }
    }
}

/// A rotation's id, which doubles as its idempotency key: 1 to 128
/// characters of `[A-Za-z0-9._-]`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RotationId(String);

/// Why a string is not a valid [`RotationId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rotation id: use 1 to 128 characters of [A-Za-z0-9._-]")]
pub struct RotationIdError;

impl RotationId {
    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RotationId {
    type Err = RotationIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(RotationIdError)
        }
    }
}

impl From<&str> for RotationId {
    /// For tests and literals.
    ///
    /// # Panics
    ///
    /// If `s` is not a valid id.
    fn from(s: &str) -> Self {
        s.parse().expect("valid rotation id literal")
    }
}

impl fmt::Display for RotationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RotationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl Serialize for RotationId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RotationId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}
