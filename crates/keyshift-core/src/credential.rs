//! Database credentials: a user name with its password, in one value.

use std::fmt;

use crate::value::{SecretValue, ValueError};

/// The longest user name accepted (PostgreSQL's limit is 63 bytes, MariaDB's 80).
pub const MAX_USERNAME_LEN: usize = 63;

/// A login: the value of a `postgres` or `mariadb` secret.
///
/// It travels as the JSON object `{"username": "...", "password": "..."}`,
/// so a consumer receives the user name with the password: with blue-green
/// rotation the user name changes too. Its `Debug` redacts the password.
///
/// ```
/// use keyshift_core::{Credential, SecretValue};
/// let c = Credential::new("app_blue", SecretValue::new("s3cret-pw".into()).unwrap()).unwrap();
/// let value = c.to_value();
/// let back = Credential::parse(&value).unwrap();
/// assert_eq!(back.username(), "app_blue");
/// assert!(!format!("{back:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
pub struct Credential {
    username: String,
    password: SecretValue,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Whether `name` is a user name keyshift manages: 1-63 of `[A-Za-z0-9_]`,
/// not starting with a digit. Such a name needs no quoting anywhere.
pub fn valid_username(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_USERNAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

impl Credential {
    /// A credential for `username`.
    ///
    /// # Errors
    ///
    /// [`ValueError::BadCredential`] when the user name is not
    /// [`valid_username`] or the password has spaces or control characters.
    pub fn new(username: &str, password: SecretValue) -> Result<Self, ValueError> {
        if !valid_username(username) {
            return Err(ValueError::BadCredential {
                detail: "the user name must be 1-63 of [A-Za-z0-9_], not starting with a digit",
            });
        }
        if !password.expose().bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ValueError::BadCredential {
                detail: "the password must be printable ASCII without spaces",
            });
        }
        Ok(Self {
            username: username.to_owned(),
            password,
        })
    }

    /// Reads a credential from a secret's value: a JSON object with exactly
    /// the string fields `username` and `password`.
    ///
    /// # Errors
    ///
    /// [`ValueError::BadCredential`], which never quotes the value.
    pub fn parse(value: &SecretValue) -> Result<Self, ValueError> {
        #[derive(serde::Deserialize, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
        #[serde(deny_unknown_fields)]
        struct Wire {
            username: String,
            password: String,
        }
        // serde_json's messages may quote the input: never show them.
        let wire: Wire =
            serde_json::from_str(value.expose()).map_err(|_| ValueError::BadCredential {
                detail: "expected {\"username\": \"...\", \"password\": \"...\"}",
            })?;
        let password =
            SecretValue::new(wire.password.clone()).map_err(|_| ValueError::BadCredential {
                detail: "the password is empty or too long",
            })?;
        Self::new(&wire.username, password)
    }

    /// The credential as a secret value (JSON).
    pub fn to_value(&self) -> SecretValue {
        let json = zeroize::Zeroizing::new(
            serde_json::json!({
                "username": self.username,
                "password": self.password.expose(),
            })
            .to_string(),
        );
        // Invariant: a valid user name and a password under 64 KiB stay
        // under the generic limit once wrapped in JSON.
        SecretValue::new(json.to_string()).expect("a credential fits a secret value")
    }

    /// The user name to log in as.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The password.
    pub fn password(&self) -> &SecretValue {
        &self.password
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> SecretValue {
        SecretValue::new(s.into()).unwrap()
    }

    #[test]
    fn round_trips_and_refuses_bad_names_and_shapes() {
        let c = Credential::parse(&v(r#"{"username":"app_green","password":"pw-1"}"#)).unwrap();
        assert_eq!(c.username(), "app_green");
        assert_eq!(c.password().expose(), "pw-1");
        let again = Credential::parse(&c.to_value()).unwrap();
        assert_eq!(again.username(), "app_green");
        for bad in [
            r#"{"username":"1app","password":"pw"}"#,
            r#"{"username":"a-b","password":"pw"}"#,
            r#"{"username":"app","password":"has space"}"#,
            r#"{"username":"app","password":""}"#,
            r#"{"username":"app"}"#,
            r#"{"username":"app","password":"pw","extra":1}"#,
            "just-a-password",
        ] {
            let err = Credential::parse(&v(bad)).unwrap_err();
            assert!(!err.to_string().contains("pw"), "{err}");
        }
    }
}
