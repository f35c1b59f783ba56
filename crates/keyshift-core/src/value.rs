//! Secret material.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The longest value accepted, in bytes (a certificate chain with its key fits).
pub const MAX_VALUE_LEN: usize = 64 * 1024;

/// A secret value: a password, an API key, a JSON document, a PEM bundle.
///
/// Its `Debug` prints `SecretValue(<redacted>)`; it has no `Display` and no
/// `Serialize`; its memory is zeroed on drop. Read it with [`expose`].
///
/// [`expose`]: SecretValue::expose
#[derive(Clone)]
pub struct SecretValue(Zeroizing<String>);

/// Why a value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The value is empty.
    #[error("secret value is empty")]
    Empty,
    /// The value is longer than [`MAX_VALUE_LEN`].
    #[error("secret value too long (limit={limit}, actual={actual})")]
    TooLong {
        /// The limit in bytes.
        limit: usize,
        /// The value's length in bytes.
        actual: usize,
    },
    /// The value has a character the secret's kind does not allow.
    #[error("secret value has a character its kind does not allow ({kind})")]
    BadCharacter {
        /// The kind whose format was checked.
        kind: &'static str,
    },
    /// A credential value is malformed.
    #[error("secret value is not a valid credential: {detail}")]
    BadCredential {
        /// What is wrong (never the value).
        detail: &'static str,
    },
    /// A certificate bundle lacks a part.
    #[error("secret value is not a PEM bundle with a certificate and its private key")]
    BadPem,
    /// A generated value is shorter than its kind requires.
    #[error("secret value too short for its kind ({kind}: at least {min} bytes)")]
    TooShort {
        /// The kind whose format was checked.
        kind: &'static str,
        /// The minimum length in bytes.
        min: usize,
    },
}

impl SecretValue {
    /// Wraps `s`, checking only the generic limits (non-empty, at most 64 KiB).
    ///
    /// # Errors
    ///
    /// [`ValueError::Empty`] or [`ValueError::TooLong`].
    pub fn new(s: String) -> Result<Self, ValueError> {
        let v = Self(Zeroizing::new(s));
        if v.0.is_empty() {
            return Err(ValueError::Empty);
        }
        if v.0.len() > MAX_VALUE_LEN {
            return Err(ValueError::TooLong {
                limit: MAX_VALUE_LEN,
                actual: v.0.len(),
            });
        }
        Ok(v)
    }

    /// The secret itself. Every call site is a place where the secret leaves
    /// its wrapper: keep them few.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// SHA-256 of the value, a fixed-length digest to compare or to hand to
    /// a target that stores hashes (Redis ACL `#<hash>`).
    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }

    /// Constant-time equality over the SHA-256 digests of both values, so
    /// neither the content nor the length leaks through timing.
    pub fn ct_eq(&self, other: &SecretValue) -> bool {
        self.sha256().ct_eq(&other.sha256()).into()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let v = SecretValue::new("hunter2".into()).unwrap();
        let dbg = format!("{v:?}");
        assert!(!dbg.contains("hunter2"));
        assert_eq!(dbg, "SecretValue(<redacted>)");
    }

    #[test]
    fn compares_by_content() {
        let a = SecretValue::new("a".repeat(10)).unwrap();
        let b = SecretValue::new("a".repeat(10)).unwrap();
        let c = SecretValue::new("a".repeat(11)).unwrap();
        assert!(a.ct_eq(&b));
        assert!(!a.ct_eq(&c));
    }

    #[test]
    fn refuses_empty_and_oversized() {
        assert_eq!(
            SecretValue::new(String::new()).unwrap_err(),
            ValueError::Empty
        );
        assert!(matches!(
            SecretValue::new("x".repeat(MAX_VALUE_LEN + 1)),
            Err(ValueError::TooLong { .. })
        ));
    }
}
