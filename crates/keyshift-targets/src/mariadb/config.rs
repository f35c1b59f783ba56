//! The target's configuration, as stored (JSON) on a `mariadb` secret.

use keyshift_core::{valid_username, SecretName};
use serde::{Deserialize, Serialize};

use super::{config_error, DEFAULT_PORT};
use crate::TargetError;

/// The longest host part accepted.
const MAX_HOST_LEN: usize = 80;

fn any_host() -> String {
    "%".to_owned()
}

/// How a MariaDB/MySQL target keeps two credentials valid at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MariaDbMode {
    /// Dual where the server supports it (MariaDB 10.4+, MySQL 8.0.14+),
    /// else blue-green. The default: it needs no extra accounts on servers
    /// that can hold two passwords per account. Pin the mode in production,
    /// so that a server upgrade never switches it under a rotation.
    #[default]
    Auto,
    /// One account, `user`, that accepts the old and the new password.
    Dual,
    /// Two slot accounts (`users`) taking turns, sharing the privileges of
    /// the role `user`.
    BlueGreen,
}

impl MariaDbMode {
    /// The mode as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            MariaDbMode::Auto => "auto",
            MariaDbMode::Dual => "dual",
            MariaDbMode::BlueGreen => "blue-green",
        }
    }
}

/// Config of a MariaDB/MySQL target, as stored (JSON) on a secret.
///
/// ```
/// use keyshift_targets::{MariaDbConfig, MariaDbMode};
/// let c: MariaDbConfig = serde_json::from_str(
///     r#"{"address": "10.0.0.7:3306", "user": "orders", "admin_secret": "prod/mariadb/admin"}"#,
/// ).unwrap();
/// assert_eq!(c.host, "%");
/// assert_eq!(c.mode, MariaDbMode::Auto);
/// c.validate().unwrap();
/// assert_eq!(c.slots().unwrap(), ["orders_blue".to_owned(), "orders_green".to_owned()]);
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MariaDbConfig {
    /// `host:port` (or `host`, port 3306; IPv6 as `[::1]:3306`) of the
    /// server. No URL, no credentials.
    pub address: String,
    /// In dual mode the managed account's user name (the `'user'` of
    /// `'user'@'host'`); in blue-green mode the role that holds the
    /// privileges and is granted to both slot users.
    pub user: String,
    /// The accounts' host part (the `'host'` of `'user'@'host'`), default
    /// `%`.
    #[serde(default = "any_host")]
    pub host: String,
    /// How two credentials are valid at once, default
    /// [`MariaDbMode::Auto`].
    #[serde(default)]
    pub mode: MariaDbMode,
    /// The two blue-green slot users; default `[<user>_blue, <user>_green]`.
    /// Refused in dual mode.
    #[serde(default)]
    pub users: Option<[String; 2]>,
    /// Name of another keyshift secret holding the admin credential
    /// (resolved by the server; the JSON form
    /// `{"username": "...", "password": "..."}`); `None` = `root` without a
    /// password.
    #[serde(default)]
    pub admin_secret: Option<String>,
}

impl MariaDbConfig {
    /// Checks the config: `user` (and each slot user unless the mode is
    /// dual) is 1 to 63 of `[A-Za-z0-9_]`, not starting with a digit, the
    /// slots differ from each other and from `user`; `host` is 1 to 80 of
    /// `[A-Za-z0-9_.%-]` (so it quotes safely); `address` parses as
    /// `host[:port]`; `admin_secret`, if given, is a valid secret name.
    ///
    /// # Errors
    ///
    /// [`TargetError::Config`].
    pub fn validate(&self) -> Result<(), TargetError> {
        check_name("user", &self.user)?;
        validate_host(&self.host)?;
        parse_address(&self.address)?;
        if self.mode == MariaDbMode::Dual && self.users.is_some() {
            return Err(config_error(
                "users names the blue-green slots: it has no meaning in dual mode",
            ));
        }
        if self.mode != MariaDbMode::Dual {
            self.slots()?;
        }
        if let Some(name) = &self.admin_secret {
            name.parse::<SecretName>().map_err(|e| {
                config_error(format!("admin_secret is not a valid secret name: {e}"))
            })?;
        }
        Ok(())
    }

    /// The two blue-green slot users: `users`, or `<user>_blue` and
    /// `<user>_green`.
    ///
    /// # Errors
    ///
    /// [`TargetError::Config`] when a slot is not a valid user name, or the
    /// slots are not two names distinct from each other and from `user`.
    pub fn slots(&self) -> Result<[String; 2], TargetError> {
        let slots = match &self.users {
            Some(users) => users.clone(),
            None => [
                format!("{}_blue", self.user),
                format!("{}_green", self.user),
            ],
        };
        for slot in &slots {
            check_name("each blue-green slot user", slot)?;
        }
        if slots[0] == slots[1] || slots.contains(&self.user) {
            return Err(config_error(
                "the two blue-green slot users must differ from each other and from user (the role)",
            ));
        }
        Ok(slots)
    }
}

/// A user or role name: what a credential may carry, which also needs no
/// quoting in SQL.
fn check_name(what: &str, name: &str) -> Result<(), TargetError> {
    if valid_username(name) {
        Ok(())
    } else {
        Err(config_error(format!(
            "{what} must be 1 to {} of [A-Za-z0-9_], not starting with a digit (`{name}` is not)",
            keyshift_core::MAX_USERNAME_LEN
        )))
    }
}

/// The host part: a charset that needs no escaping inside `'...'`.
pub(super) fn validate_host(s: &str) -> Result<(), TargetError> {
    if s.is_empty() || s.len() > MAX_HOST_LEN {
        return Err(config_error(format!(
            "host must be 1 to {MAX_HOST_LEN} characters long"
        )));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '%' | '-'))
    {
        return Err(config_error(
            "host may contain only letters, digits, `_`, `.`, `%` and `-`",
        ));
    }
    Ok(())
}

/// `host[:port]` or `[v6]:port` into (host, port).
pub(super) fn parse_address(address: &str) -> Result<(String, u16), TargetError> {
    if address.is_empty() {
        return Err(config_error("address is empty"));
    }
    if address.contains('@') || address.contains('/') {
        return Err(config_error(
            "address must be host:port (no URL, no credentials: name the admin credential in admin_secret)",
        ));
    }
    if address.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(config_error(
            "address must not contain spaces or control characters",
        ));
    }
    let bad = || config_error(format!("address `{address}` is not host:port"));
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(bad)?),
        };
        (host, port)
    } else {
        match address.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (address, None),
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p != 0 => p,
            _ => return Err(bad()),
        },
    };
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(address: &str, user: &str) -> MariaDbConfig {
        MariaDbConfig {
            address: address.to_owned(),
            user: user.to_owned(),
            host: "%".to_owned(),
            mode: MariaDbMode::Auto,
            users: None,
            admin_secret: None,
        }
    }

    #[test]
    fn addresses_parse_and_refuse_urls_and_credentials() {
        for a in ["127.0.0.1:3306", "db.internal", "[::1]:3306", "db:3307"] {
            cfg(a, "app")
                .validate()
                .unwrap_or_else(|e| panic!("{a}: {e}"));
        }
        assert_eq!(parse_address("db").unwrap(), ("db".into(), 3306));
        assert_eq!(parse_address("[::1]:3307").unwrap(), ("::1".into(), 3307));
        for a in [
            "",
            "mysql://127.0.0.1:3306",
            "root:pw@127.0.0.1:3306",
            "127.0.0.1:notaport",
            "127.0.0.1:0",
            " 127.0.0.1:3306",
            ":3306",
        ] {
            let e = cfg(a, "app").validate().unwrap_err();
            assert!(matches!(e, TargetError::Config { .. }), "{a:?}");
            assert!(!e.to_string().contains("pw@"), "{e}");
        }
    }

    #[test]
    fn users_and_hosts_must_quote_safely() {
        for u in [
            "",
            "a'b",
            "a b",
            "a\\b",
            "a`b",
            "a-b",
            "a.b",
            "1app",
            &"x".repeat(64),
        ] {
            assert!(cfg("127.0.0.1:3306", u).validate().is_err(), "{u:?}");
        }
        let mut c = cfg("127.0.0.1:3306", &"x".repeat(57));
        c.validate().unwrap();
        // `<user>_green` would be 64 long: fine in dual mode only.
        c.user = "x".repeat(58);
        assert!(matches!(c.validate(), Err(TargetError::Config { .. })));
        c.mode = MariaDbMode::Dual;
        c.validate().unwrap();
        let mut c = cfg("127.0.0.1:3306", "app_1");
        c.host = "10.0.%".into();
        c.validate().unwrap();
        c.host = "'; DROP".into();
        assert!(c.validate().is_err());
    }

    #[test]
    fn slots_default_and_must_be_distinct() {
        let mut c = cfg("127.0.0.1:3306", "orders");
        assert_eq!(c.slots().unwrap(), ["orders_blue", "orders_green"]);
        c.users = Some(["a_one".into(), "a_two".into()]);
        assert_eq!(c.slots().unwrap(), ["a_one", "a_two"]);
        for bad in [["a", "a"], ["orders", "b"], ["a", "b-c"]] {
            c.users = Some(bad.map(str::to_owned));
            assert!(
                matches!(c.validate(), Err(TargetError::Config { .. })),
                "{bad:?}"
            );
        }
        c.users = Some(["a".into(), "b".into()]);
        c.mode = MariaDbMode::Dual;
        let e = c.validate().unwrap_err();
        assert!(e.to_string().contains("dual mode"), "{e}");
    }

    #[test]
    fn json_defaults_modes_and_refuses_unknown_fields() {
        let c: MariaDbConfig =
            serde_json::from_str(r#"{"address":"127.0.0.1:3306","user":"app"}"#).unwrap();
        assert_eq!(c.host, "%");
        assert_eq!(c.mode, MariaDbMode::Auto);
        assert!(c.users.is_none());
        assert!(c.admin_secret.is_none());
        for (s, m) in [
            ("auto", MariaDbMode::Auto),
            ("dual", MariaDbMode::Dual),
            ("blue-green", MariaDbMode::BlueGreen),
        ] {
            let c: MariaDbConfig = serde_json::from_value(serde_json::json!(
                {"address": "db", "user": "app", "mode": s}
            ))
            .unwrap();
            assert_eq!(c.mode, m);
            assert_eq!(m.as_str(), s);
        }
        let c: MariaDbConfig = serde_json::from_str(
            r#"{"address":"db","user":"app","mode":"blue-green","users":["app_a","app_b"]}"#,
        )
        .unwrap();
        assert_eq!(c.slots().unwrap(), ["app_a", "app_b"]);
        for bad in [
            r#"{"address":"127.0.0.1:3306","user":"app","password":"x"}"#,
            r#"{"address":"db","user":"app","mode":"bluegreen"}"#,
            r#"{"address":"db","user":"app","users":["only_one"]}"#,
        ] {
            assert!(serde_json::from_str::<MariaDbConfig>(bad).is_err(), "{bad}");
        }
    }
}
