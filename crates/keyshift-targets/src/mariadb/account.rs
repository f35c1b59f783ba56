//! What an account accepts, as the server stores it, and the dual-mode
//! changes that follow from it. Pure: the caller reads the rows.

use keyshift_core::SecretValue;

use super::server::Flavor;
use super::sql::{
    is_native_hash, mariadb_accept, mysql_discard, mysql_primary_hash, mysql_retain, native_hash,
};
use super::{precondition, protocol, NATIVE_PLUGIN};
use crate::TargetError;

/// How many passwords one account may accept at once (old and new).
pub(super) const MAX_ACCEPTED: usize = 2;

/// One way an account authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum AuthMethod {
    /// `mysql_native_password` with this hash (`""` = empty password).
    Native(String),
    /// Another plugin (ed25519, unix_socket, caching_sha2_password, ...),
    /// by name.
    Other(String),
}

/// A MariaDB account's `mysql.global_priv` `Priv` JSON, the parts used
/// here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Priv {
    /// Its authentication methods, in order.
    pub(super) methods: Vec<AuthMethod>,
    /// `ACCOUNT LOCK`ed.
    pub(super) locked: bool,
}

/// Reads a MariaDB account's `Priv` JSON: the top-level
/// `plugin`/`authentication_string`, or, when there is an `auth_or` array,
/// its entries in order (an empty entry `{}` stands for the top-level
/// method); and `account_locked`.
pub(super) fn parse_priv(json: &str) -> Result<Priv, TargetError> {
    let bad = |what: &str| protocol(format!("mysql.global_priv: {what}"));
    let v: serde_json::Value = serde_json::from_str(json).map_err(|_| bad("Priv is not JSON"))?;
    let obj = v.as_object().ok_or_else(|| bad("Priv is not an object"))?;
    let method = |o: &serde_json::Map<String, serde_json::Value>| {
        let plugin = o
            .get("plugin")
            .and_then(|p| p.as_str())
            .unwrap_or(NATIVE_PLUGIN);
        let auth = o
            .get("authentication_string")
            .and_then(|a| a.as_str())
            .unwrap_or("");
        if plugin == NATIVE_PLUGIN {
            AuthMethod::Native(auth.to_ascii_uppercase())
        } else {
            AuthMethod::Other(plugin.to_owned())
        }
    };
    let locked = obj
        .get("account_locked")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let top = method(obj);
    let Some(or) = obj.get("auth_or") else {
        return Ok(Priv {
            methods: vec![top],
            locked,
        });
    };
    let entries = or
        .as_array()
        .ok_or_else(|| bad("auth_or is not an array"))?;
    let mut methods = Vec::with_capacity(entries.len());
    for e in entries {
        let e = e
            .as_object()
            .ok_or_else(|| bad("auth_or has a non-object"))?;
        methods.push(if e.is_empty() { top.clone() } else { method(e) });
    }
    if methods.is_empty() {
        methods.push(top);
    }
    Ok(Priv { methods, locked })
}

/// Whether a MariaDB `Priv` JSON is a role's (`"is_role": true`).
pub(super) fn is_role(json: &str) -> Result<bool, TargetError> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|_| protocol("mysql.global_priv: Priv is not JSON"))?;
    Ok(v.get("is_role").and_then(serde_json::Value::as_bool) == Some(true))
}

/// A MySQL account's methods from its `mysql.user` row: the primary, then
/// the secondary (`User_attributes` `$.additional_password`) if any. Only
/// `mysql_native_password` hashes can be compared with a value here.
pub(super) fn mysql_methods(
    plugin: &str,
    primary: &str,
    secondary: Option<&str>,
) -> Vec<AuthMethod> {
    if plugin != NATIVE_PLUGIN {
        return vec![AuthMethod::Other(plugin.to_owned())];
    }
    let mut methods = vec![AuthMethod::Native(primary.to_ascii_uppercase())];
    if let Some(s) = secondary.filter(|s| !s.is_empty()) {
        methods.push(AuthMethod::Native(s.to_ascii_uppercase()));
    }
    methods
}

/// The distinct native hashes of `methods`, in order. `account` names the
/// account in messages.
///
/// # Errors
///
/// [`TargetError::Precondition`] when a method is another plugin, or the
/// password is empty (any client without a password logs in; adding one
/// would lock them out); [`TargetError::Protocol`] for a malformed hash.
pub(super) fn rotatable(account: &str, methods: &[AuthMethod]) -> Result<Vec<String>, TargetError> {
    let mut hashes: Vec<String> = Vec::with_capacity(methods.len());
    for m in methods {
        let h = match m {
            AuthMethod::Native(h) => h,
            AuthMethod::Other(plugin) => {
                return Err(precondition(format!(
                    "account {account} authenticates via {plugin}: only {NATIVE_PLUGIN} \
                     accounts can rotate in dual mode (or use mode \"blue-green\")"
                )))
            }
        };
        if h.is_empty() {
            return Err(precondition(format!(
                "account {account} has an empty password; give it a password first"
            )));
        }
        if !is_native_hash(h) {
            return Err(protocol(format!(
                "account {account} has a malformed {NATIVE_PLUGIN} hash"
            )));
        }
        if !hashes.contains(h) {
            hashes.push(h.clone());
        }
    }
    Ok(hashes)
}

/// The statements that make the account (`user`@`host`, accepting
/// `methods` now) accept `password` too; none when it already does.
///
/// # Errors
///
/// [`TargetError::Precondition`] when the account already accepts
/// [`MAX_ACCEPTED`] other passwords, or is not [`rotatable`].
pub(super) fn enable_dual(
    flavor: Flavor,
    user: &str,
    host: &str,
    methods: &[AuthMethod],
    password: &SecretValue,
) -> Result<Vec<String>, TargetError> {
    let account = format!("'{user}'@'{host}'");
    let mut hashes = rotatable(&account, methods)?;
    let hash = native_hash(password);
    if hashes.contains(&hash) {
        return Ok(Vec::new());
    }
    if hashes.len() >= MAX_ACCEPTED {
        return Err(precondition(format!(
            "account {account} already accepts {} passwords; revoke one before enabling another",
            hashes.len()
        )));
    }
    Ok(match flavor {
        Flavor::MariaDb => {
            hashes.push(hash);
            vec![mariadb_accept(user, host, &hashes)?]
        }
        Flavor::MySql => vec![mysql_retain(user, host, password)?],
    })
}

/// The statements that make the account refuse `password` and keep its
/// other one; none when it refuses it already.
///
/// On MySQL, revoking the secondary is `DISCARD OLD PASSWORD`; revoking the
/// primary (a rollback after enable) first makes the secondary's hash the
/// primary. Both leave the account accepting the other password at every
/// instant, and a crash between the two statements leaves it accepting only
/// that password (as primary and secondary), which the next call tidies.
///
/// # Errors
///
/// [`TargetError::Precondition`] when `password` is the only one left, or
/// the account is not [`rotatable`].
pub(super) fn revoke_dual(
    flavor: Flavor,
    user: &str,
    host: &str,
    methods: &[AuthMethod],
    password: &SecretValue,
) -> Result<Vec<String>, TargetError> {
    let hash = native_hash(password);
    if !methods.contains(&AuthMethod::Native(hash.clone())) {
        return Ok(Vec::new());
    }
    let account = format!("'{user}'@'{host}'");
    let hashes = rotatable(&account, methods)?;
    let rest: Vec<String> = hashes.iter().filter(|h| **h != hash).cloned().collect();
    let Some(other) = rest.first() else {
        return Err(precondition(format!(
            "refusing to leave account {account} without a password"
        )));
    };
    Ok(match flavor {
        Flavor::MariaDb => vec![mariadb_accept(user, host, &rest)?],
        Flavor::MySql if hashes[0] == hash => vec![
            mysql_primary_hash(user, host, other)?,
            mysql_discard(user, host)?,
        ],
        Flavor::MySql => vec![mysql_discard(user, host)?],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretValue {
        SecretValue::new(s.to_owned()).unwrap()
    }

    const A: &str = "*2B602296A79E0A8784ACC5C88D92E46588CCA3C3";
    const B: &str = "*B27918D2D9402882CEADA0EF687D35FBDC137D72";

    #[test]
    fn priv_json_parses_single_and_or_forms_and_the_lock() {
        let single = r#"{"access":0,"plugin":"mysql_native_password","authentication_string":"*2b602296a79e0a8784acc5c88d92e46588cca3c3"}"#;
        assert_eq!(
            parse_priv(single).unwrap(),
            Priv {
                methods: vec![AuthMethod::Native(A.into())],
                locked: false
            }
        );
        let or = format!(
            r#"{{"plugin":"mysql_native_password","authentication_string":"{A}","auth_or":[{{}},{{"plugin":"mysql_native_password","authentication_string":"{B}"}}],"account_locked":true}}"#
        );
        assert_eq!(
            parse_priv(&or).unwrap(),
            Priv {
                methods: vec![AuthMethod::Native(A.into()), AuthMethod::Native(B.into())],
                locked: true
            }
        );
        let one_or = format!(
            r#"{{"plugin":"mysql_native_password","authentication_string":"{A}","auth_or":[{{}}]}}"#
        );
        assert_eq!(parse_priv(&one_or).unwrap().methods.len(), 1);
        let socket =
            r#"{"plugin":"unix_socket","authentication_string":"","account_locked":false}"#;
        assert_eq!(
            parse_priv(socket).unwrap().methods,
            vec![AuthMethod::Other("unix_socket".into())]
        );
        assert!(parse_priv("not json").is_err());
        assert!(is_role(r#"{"access":0,"version_id":101119,"is_role":true}"#).unwrap());
        assert!(!is_role(single).unwrap());
        assert!(is_role("[").is_err());
        assert!(parse_priv(r#"{"auth_or": 3}"#).is_err());
    }

    #[test]
    fn mysql_rows_give_primary_then_secondary() {
        assert_eq!(
            mysql_methods(NATIVE_PLUGIN, &A.to_lowercase(), Some(B)),
            vec![AuthMethod::Native(A.into()), AuthMethod::Native(B.into())]
        );
        assert_eq!(mysql_methods(NATIVE_PLUGIN, A, Some("")).len(), 1);
        assert_eq!(mysql_methods(NATIVE_PLUGIN, A, None).len(), 1);
        assert_eq!(
            mysql_methods("caching_sha2_password", "$A$005$...", Some("x")),
            vec![AuthMethod::Other("caching_sha2_password".into())]
        );
    }

    #[test]
    fn rotatable_refuses_other_plugins_and_empty_passwords() {
        let n = |h: &str| AuthMethod::Native(h.into());
        assert_eq!(rotatable("a", &[n(A), n(B), n(A)]).unwrap(), vec![A, B]);
        let e = rotatable(
            "'app'@'%'",
            &[AuthMethod::Other("caching_sha2_password".into())],
        )
        .unwrap_err();
        assert!(e.to_string().contains("caching_sha2_password"), "{e}");
        assert!(e.to_string().contains("blue-green"), "{e}");
        assert!(matches!(
            rotatable("a", &[n("")]),
            Err(TargetError::Precondition { .. })
        ));
        assert!(matches!(
            rotatable("a", &[n("*12")]),
            Err(TargetError::Protocol { .. })
        ));
    }

    #[test]
    fn dual_enable_adds_one_password_at_most() {
        let old = secret("old-password-0001");
        let new = secret("new-password-0002");
        let (ho, hn) = (native_hash(&old), native_hash(&new));
        let one = [AuthMethod::Native(ho.clone())];
        let two = [
            AuthMethod::Native(ho.clone()),
            AuthMethod::Native(hn.clone()),
        ];

        let sql = enable_dual(Flavor::MariaDb, "app", "%", &one, &new).unwrap();
        assert_eq!(
            sql,
            vec![mariadb_accept("app", "%", &[ho.clone(), hn.clone()]).unwrap()]
        );
        let sql = enable_dual(Flavor::MySql, "app", "%", &one, &new).unwrap();
        assert_eq!(sql, vec![mysql_retain("app", "%", &new).unwrap()]);
        for flavor in [Flavor::MariaDb, Flavor::MySql] {
            assert!(enable_dual(flavor, "app", "%", &two, &new)
                .unwrap()
                .is_empty());
            assert!(enable_dual(flavor, "app", "%", &two, &old)
                .unwrap()
                .is_empty());
            let third = secret("third-password-03");
            let e = enable_dual(flavor, "app", "%", &two, &third).unwrap_err();
            assert!(e.to_string().contains("already accepts 2"), "{e}");
        }
        // A MySQL account left with the same hash as primary and secondary
        // (a revoke interrupted between its statements) holds one password.
        let dup = [
            AuthMethod::Native(ho.clone()),
            AuthMethod::Native(ho.clone()),
        ];
        let sql = enable_dual(Flavor::MySql, "app", "%", &dup, &new).unwrap();
        assert_eq!(sql.len(), 1);
    }

    #[test]
    fn dual_revoke_keeps_the_other_password() {
        let old = secret("old-password-0001");
        let new = secret("new-password-0002");
        let (ho, hn) = (native_hash(&old), native_hash(&new));
        // MySQL after enable(new): primary new, secondary old.
        let mysql = [
            AuthMethod::Native(hn.clone()),
            AuthMethod::Native(ho.clone()),
        ];
        assert_eq!(
            revoke_dual(Flavor::MySql, "app", "%", &mysql, &old).unwrap(),
            vec!["ALTER USER 'app'@'%' DISCARD OLD PASSWORD"]
        );
        // Rolling back: the primary goes, the secondary becomes the primary.
        assert_eq!(
            revoke_dual(Flavor::MySql, "app", "%", &mysql, &new).unwrap(),
            vec![
                format!("ALTER USER 'app'@'%' IDENTIFIED WITH mysql_native_password AS '{ho}'"),
                "ALTER USER 'app'@'%' DISCARD OLD PASSWORD".to_owned(),
            ]
        );
        let mariadb = [
            AuthMethod::Native(ho.clone()),
            AuthMethod::Native(hn.clone()),
        ];
        assert_eq!(
            revoke_dual(Flavor::MariaDb, "app", "%", &mariadb, &old).unwrap(),
            vec![mariadb_accept("app", "%", std::slice::from_ref(&hn)).unwrap()]
        );
        for flavor in [Flavor::MariaDb, Flavor::MySql] {
            let only = [AuthMethod::Native(hn.clone())];
            assert!(revoke_dual(flavor, "app", "%", &only, &old)
                .unwrap()
                .is_empty());
            let e = revoke_dual(flavor, "app", "%", &only, &new).unwrap_err();
            assert!(e.to_string().contains("without a password"), "{e}");
            let dup = [
                AuthMethod::Native(hn.clone()),
                AuthMethod::Native(hn.clone()),
            ];
            assert!(revoke_dual(flavor, "app", "%", &dup, &new).is_err());
            let other = [AuthMethod::Other("ed25519".into())];
            assert!(revoke_dual(flavor, "app", "%", &other, &new)
                .unwrap()
                .is_empty());
        }
    }
}
