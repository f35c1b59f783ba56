//! Kinds of secret: what the value looks like and what enforces it.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::value::{SecretValue, ValueError};

/// Bytes of randomness in a generated value: 256 bits.
pub const GENERATED_ENTROPY_BYTES: usize = 32;

/// What a secret is, which decides its target and the format of its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecretKind {
    /// An API key checked by keyshift's own keyring verifiers: the accepted
    /// set in the store is the target.
    ApiKey,
    /// The password of a Redis 6+ ACL user.
    Redis,
    /// A value keyshift stores and serves but does not rotate in any system.
    Static,
}

impl SecretKind {
    /// Every kind, for help texts and validation messages.
    pub const ALL: [SecretKind; 3] = [SecretKind::ApiKey, SecretKind::Redis, SecretKind::Static];

    /// The stable lower-case name (`api-key`, `redis`, `static`).
    pub fn as_str(self) -> &'static str {
        match self {
            SecretKind::ApiKey => "api-key",
            SecretKind::Redis => "redis",
            SecretKind::Static => "static",
        }
    }

    /// Whether keyshift can rotate secrets of this kind.
    pub fn rotates(self) -> bool {
        !matches!(self, SecretKind::Static)
    }

    /// Builds a new value from 32 random bytes supplied by the caller.
    ///
    /// API keys look like `ks_<43 base64url chars>`; passwords are 43
    /// base64url characters (no characters that need quoting anywhere).
    pub fn generate(self, random: &[u8; GENERATED_ENTROPY_BYTES]) -> SecretValue {
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random);
        let s = match self {
            SecretKind::ApiKey => format!("ks_{body}"),
            SecretKind::Redis | SecretKind::Static => body,
        };
        // Invariant: 43 or 46 ASCII characters are never empty nor over the limit.
        SecretValue::new(s).expect("generated value fits the generic limits")
    }

    /// Checks that `value` has this kind's format: every value an operator
    /// puts. Keys and passwords travel in headers and protocol commands, so
    /// they are printable ASCII without spaces. No minimum length here: an
    /// existing credential being adopted is what it is.
    ///
    /// # Errors
    ///
    /// A [`ValueError`] naming what is wrong, never the value.
    pub fn validate(self, value: &SecretValue) -> Result<(), ValueError> {
        match self {
            SecretKind::Static => Ok(()),
            SecretKind::ApiKey | SecretKind::Redis => {
                if value.expose().bytes().all(|b| b.is_ascii_graphic()) {
                    Ok(())
                } else {
                    Err(ValueError::BadCharacter {
                        kind: self.as_str(),
                    })
                }
            }
        }
    }

    /// The read-back check after Generate: the kind's format and the full
    /// length of a generated value (256 bits of entropy), so a truncated
    /// store write is caught.
    ///
    /// # Errors
    ///
    /// A [`ValueError`] naming what is wrong, never the value.
    pub fn validate_generated(self, value: &SecretValue) -> Result<(), ValueError> {
        self.validate(value)?;
        let min = self.generate(&[0; GENERATED_ENTROPY_BYTES]).expose().len();
        if value.expose().len() < min {
            return Err(ValueError::TooShort {
                kind: self.as_str(),
                min,
            });
        }
        Ok(())
    }
}

impl fmt::Display for SecretKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SecretKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SecretKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<_> = SecretKind::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown kind `{s}` (expected one of: {})", all.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_values_have_the_kinds_format() {
        for kind in SecretKind::ALL {
            let v = kind.generate(&[7u8; 32]);
            kind.validate_generated(&v).unwrap();
            assert!(v.expose().len() >= 43);
        }
        assert!(SecretKind::ApiKey
            .generate(&[0; 32])
            .expose()
            .starts_with("ks_"));
    }

    #[test]
    fn passwords_refuse_spaces_and_generated_values_their_truncation() {
        let spaced = SecretValue::new("a password with spaces".into()).unwrap();
        assert!(SecretKind::Redis.validate(&spaced).is_err());
        let short = SecretValue::new("short".into()).unwrap();
        assert!(
            SecretKind::ApiKey.validate(&short).is_ok(),
            "adopted keys may be short"
        );
        assert!(matches!(
            SecretKind::ApiKey.validate_generated(&short),
            Err(ValueError::TooShort { .. })
        ));
    }

    #[test]
    fn kinds_parse_from_their_names() {
        assert_eq!("api-key".parse::<SecretKind>(), Ok(SecretKind::ApiKey));
        assert!("mysql"
            .parse::<SecretKind>()
            .unwrap_err()
            .contains("api-key"));
    }
}
