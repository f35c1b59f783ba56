//! Versions and labels.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A version's number: per secret, starting at 1 and increasing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VersionNumber(pub u64);

impl fmt::Display for VersionNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a version stands with respect to its target.
///
/// The *accepted set* is the versions in state [`Active`](VersionState::Active).
/// The store marks a version active before the target starts accepting it and
/// revoked only after the target refuses it, so the accepted set as stored
/// always includes what the target really accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionState {
    /// Created by Generate; the target does not accept it yet.
    Pending,
    /// In the accepted set: the target accepts it (or is being made to).
    Active,
    /// The target refuses it; kept for the record.
    Revoked,
    /// A rotation that created it rolled back; never accepted again.
    Failed,
}

impl VersionState {
    /// The stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            VersionState::Pending => "pending",
            VersionState::Active => "active",
            VersionState::Revoked => "revoked",
            VersionState::Failed => "failed",
        }
    }
}

impl FromStr for VersionState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            VersionState::Pending,
            VersionState::Active,
            VersionState::Revoked,
            VersionState::Failed,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| format!("unknown version state `{s}`"))
    }
}

/// A pointer to one version of a secret.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Label {
    /// What consumers should use.
    Current,
    /// Being introduced by a rotation.
    Pending,
    /// The one before current.
    Previous,
    /// A `canary` rotation's new version, served as `current` to the
    /// consumers in the canary's share while it is observed.
    Canary,
    /// An operator's label (`blue`, `green`): `[a-z0-9_-]`, 1 to 64 characters.
    Custom(String),
}

/// Why a string is not a valid [`Label`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label: use 1 to 64 characters of [a-z0-9_-]")]
pub struct LabelError;

impl Label {
    /// The label's name.
    pub fn as_str(&self) -> &str {
        match self {
            Label::Current => "current",
            Label::Pending => "pending",
            Label::Previous => "previous",
            Label::Canary => "canary",
            Label::Custom(s) => s,
        }
    }
}

impl FromStr for Label {
    type Err = LabelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "current" => Label::Current,
            "pending" => Label::Pending,
            "previous" => Label::Previous,
            "canary" => Label::Canary,
            _ if !s.is_empty()
                && s.len() <= 64
                && s.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                }) =>
            {
                Label::Custom(s.to_owned())
            }
            _ => return Err(LabelError),
        })
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Label {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_well_known_and_custom() {
        assert_eq!("current".parse(), Ok(Label::Current));
        assert_eq!("blue".parse(), Ok(Label::Custom("blue".into())));
        assert_eq!("Blue".parse::<Label>(), Err(LabelError));
        assert_eq!("".parse::<Label>(), Err(LabelError));
    }
}
