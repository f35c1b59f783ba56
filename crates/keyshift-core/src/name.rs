//! Secret names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// A validated secret name, e.g. `prod/orders/db`.
///
/// 1 to 256 characters: segments of `[A-Za-z0-9._-]` joined by `/`, with no
/// empty, `.` or `..` segment.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretName(String);

/// Why a string is not a valid [`SecretName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("secret name is empty")]
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`].
    #[error("secret name too long (limit={limit}, actual={actual})")]
    TooLong {
        /// The limit in bytes.
        limit: usize,
        /// The name's length in bytes.
        actual: usize,
    },
    /// A segment between two `/` (or at either end) is empty.
    #[error("secret name has an empty segment")]
    EmptySegment,
    /// A segment is `.` or `..`.
    #[error("secret name has a `.` or `..` segment")]
    DotSegment,
    /// A character outside `[A-Za-z0-9._-/]`; the position is a byte offset.
    #[error("secret name has a character outside [A-Za-z0-9._-/] at byte {position}")]
    BadCharacter {
        /// Byte offset of the first bad character.
        position: usize,
    },
}

impl SecretName {
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Validates `s` as a secret name.
    ///
    /// # Errors
    ///
    /// Returns the first [`NameError`] found.
    pub fn new(s: &str) -> Result<Self, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong {
                limit: MAX_NAME_LEN,
                actual: s.len(),
            });
        }
        if let Some(position) = s
            .bytes()
            .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/')))
        {
            return Err(NameError::BadCharacter { position });
        }
        for segment in s.split('/') {
            match segment {
                "" => return Err(NameError::EmptySegment),
                "." | ".." => return Err(NameError::DotSegment),
                _ => {}
            }
        }
        Ok(Self(s.to_owned()))
    }

    /// Whether this name matches `pattern`: `*` matches everything, a pattern
    /// ending in `*` matches names starting with what comes before it, any
    /// other pattern matches itself exactly.
    pub fn matches(&self, pattern: &str) -> bool {
        match pattern.strip_suffix('*') {
            Some(prefix) => self.0.starts_with(prefix),
            None => self.0 == pattern,
        }
    }
}

impl FromStr for SecretName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl AsRef<str> for SecretName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for SecretName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in ["a", "prod/orders/db", "x.y_z-1/A", &"a".repeat(256)] {
            assert!(SecretName::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_each_bad_shape_with_its_reason() {
        assert_eq!(SecretName::new(""), Err(NameError::Empty));
        assert_eq!(
            SecretName::new(&"a".repeat(257)),
            Err(NameError::TooLong {
                limit: 256,
                actual: 257
            })
        );
        assert_eq!(SecretName::new("a//b"), Err(NameError::EmptySegment));
        assert_eq!(SecretName::new("/a"), Err(NameError::EmptySegment));
        assert_eq!(SecretName::new("a/"), Err(NameError::EmptySegment));
        assert_eq!(SecretName::new("../x"), Err(NameError::DotSegment));
        assert_eq!(SecretName::new("a/./b"), Err(NameError::DotSegment));
        assert_eq!(
            SecretName::new("a\nb"),
            Err(NameError::BadCharacter { position: 1 })
        );
        assert_eq!(
            SecretName::new("a b"),
            Err(NameError::BadCharacter { position: 1 })
        );
        assert_eq!(
            SecretName::new("é"),
            Err(NameError::BadCharacter { position: 0 })
        );
    }

    #[test]
    fn patterns_match_prefix_or_exact() {
        let n = SecretName::new("prod/orders/db").unwrap();
        assert!(n.matches("*"));
        assert!(n.matches("prod/*"));
        assert!(n.matches("prod/orders/db"));
        assert!(!n.matches("prod/orders"));
        assert!(!n.matches("dev/*"));
    }
}
