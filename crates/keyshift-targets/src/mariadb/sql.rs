//! The account statements, built as pure functions from validated names,
//! native password hashes and (MySQL only) checked password literals.
//!
//! Every name put between quotes has passed
//! [`valid_username`](keyshift_core::valid_username) or the host check, and
//! every hash [`is_native_hash`], so nothing in a statement needs escaping.

use keyshift_core::SecretValue;
use sha1::{Digest, Sha1};

use super::config::validate_host;
use super::server::Flavor;
use super::{precondition, protocol, NATIVE_PLUGIN};
use crate::TargetError;

/// The `mysql_native_password` hash of `password`:
/// `'*' + uppercase hex(SHA1(SHA1(password)))`, what `PASSWORD()` returns.
pub(super) fn native_hash(password: &SecretValue) -> String {
    let stage1 = Sha1::digest(password.expose().as_bytes());
    let stage2 = Sha1::digest(stage1);
    format!("*{}", hex::encode_upper(stage2))
}

/// Whether `s` is a well-formed native hash (`*` + 40 uppercase hex digits),
/// the only thing that may be put between quotes in `USING '...'`/`AS '...'`.
pub(super) fn is_native_hash(s: &str) -> bool {
    s.len() == 41
        && s.starts_with('*')
        && s[1..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

/// `'user'@'host'`, checked.
pub(super) fn account(user: &str, host: &str) -> Result<String, TargetError> {
    if !keyshift_core::valid_username(user) {
        return Err(protocol(format!(
            "`{user}` is not a user name keyshift manages"
        )));
    }
    validate_host(host)?;
    Ok(format!("'{user}'@'{host}'"))
}

/// `` `role` ``, checked (a MySQL role is the account `role`@`%`).
fn role_name(role: &str) -> Result<String, TargetError> {
    if !keyshift_core::valid_username(role) {
        return Err(protocol(format!(
            "`{role}` is not a role name keyshift manages"
        )));
    }
    Ok(format!("`{role}`"))
}

fn checked_hash(hash: &str) -> Result<&str, TargetError> {
    if is_native_hash(hash) {
        Ok(hash)
    } else {
        Err(protocol("not a mysql_native_password hash"))
    }
}

/// The password as a MySQL string literal, `'...'`. MySQL has no pre-hashed
/// form for `RETAIN CURRENT PASSWORD`, so the plaintext goes in the
/// statement; a quote or a backslash (whose meaning depends on the
/// `NO_BACKSLASH_ESCAPES` SQL mode) is refused rather than escaped.
/// Credentials already exclude spaces and control characters.
fn password_literal(password: &SecretValue) -> Result<String, TargetError> {
    let p = password.expose();
    if p.bytes()
        .any(|b| matches!(b, b'\'' | b'\\') || !b.is_ascii_graphic())
    {
        return Err(precondition(
            "the password holds a quote, a backslash or a non-printable character, which \
             keyshift never puts in a MySQL statement: generate another one",
        ));
    }
    Ok(format!("'{p}'"))
}

/// MariaDB dual: `ALTER USER 'u'@'h' IDENTIFIED VIA mysql_native_password
/// USING '<hash>' [OR mysql_native_password USING '<hash>' ...]`.
pub(super) fn mariadb_accept(
    user: &str,
    host: &str,
    hashes: &[String],
) -> Result<String, TargetError> {
    let account = account(user, host)?;
    if hashes.is_empty() {
        return Err(precondition(
            "refusing to leave the user without a password",
        ));
    }
    let mut methods = Vec::with_capacity(hashes.len());
    for h in hashes {
        methods.push(format!("{NATIVE_PLUGIN} USING '{}'", checked_hash(h)?));
    }
    Ok(format!(
        "ALTER USER {account} IDENTIFIED VIA {}",
        methods.join(" OR ")
    ))
}

/// MySQL dual, enable: `ALTER USER 'u'@'h' IDENTIFIED BY '<new>' RETAIN
/// CURRENT PASSWORD` (the current primary becomes the secondary).
/// Carries the plaintext: see [`password_literal`].
pub(super) fn mysql_retain(
    user: &str,
    host: &str,
    password: &SecretValue,
) -> Result<String, TargetError> {
    Ok(format!(
        "ALTER USER {} IDENTIFIED BY {} RETAIN CURRENT PASSWORD",
        account(user, host)?,
        password_literal(password)?
    ))
}

/// MySQL dual, revoke the secondary: `ALTER USER 'u'@'h' DISCARD OLD
/// PASSWORD`.
pub(super) fn mysql_discard(user: &str, host: &str) -> Result<String, TargetError> {
    Ok(format!(
        "ALTER USER {} DISCARD OLD PASSWORD",
        account(user, host)?
    ))
}

/// MySQL dual, revoke the primary (a rollback): make the secondary's hash
/// the primary, `ALTER USER 'u'@'h' IDENTIFIED WITH mysql_native_password AS
/// '<hash>'`, then [`mysql_discard`].
pub(super) fn mysql_primary_hash(
    user: &str,
    host: &str,
    hash: &str,
) -> Result<String, TargetError> {
    Ok(format!(
        "ALTER USER {} IDENTIFIED WITH {NATIVE_PLUGIN} AS '{}'",
        account(user, host)?,
        checked_hash(hash)?
    ))
}

/// The authentication clause of a blue-green slot: a native hash on
/// MariaDB, the plaintext on MySQL (whose default plugin since 8.0 is
/// `caching_sha2_password`, whose salted hash keyshift does not compute).
fn slot_auth(flavor: Flavor, password: &SecretValue) -> Result<String, TargetError> {
    Ok(match flavor {
        Flavor::MariaDb => format!(
            "IDENTIFIED VIA {NATIVE_PLUGIN} USING '{}'",
            native_hash(password)
        ),
        Flavor::MySql => format!("IDENTIFIED BY {}", password_literal(password)?),
    })
}

/// What a blue-green slot account looks like before enabling it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SlotState {
    /// No such account.
    Missing,
    /// Locked: idle, whatever its password.
    Locked,
    /// Unlocked, and it accepts the value being enabled.
    LiveWithValue,
    /// Unlocked with another password: it may be in use.
    LiveWithOther,
}

/// The statements that make slot `user` accept `password` with `role` as
/// its default role, from its state. The account is created locked and
/// unlocked last, so it never logs in without its role.
///
/// # Errors
///
/// [`TargetError::Precondition`] for [`SlotState::LiveWithOther`]: changing
/// the password of a live slot would lock out whoever uses it.
pub(super) fn enable_slot(
    flavor: Flavor,
    role: &str,
    user: &str,
    host: &str,
    password: &SecretValue,
    state: SlotState,
) -> Result<Vec<String>, TargetError> {
    let account = account(user, host)?;
    let role = role_name(role)?;
    let grant = format!("GRANT {role} TO {account}");
    let default_role = match flavor {
        Flavor::MariaDb => format!("SET DEFAULT ROLE {role} FOR {account}"),
        Flavor::MySql => format!("SET DEFAULT ROLE ALL TO {account}"),
    };
    Ok(match state {
        SlotState::Missing => vec![
            format!(
                "CREATE USER IF NOT EXISTS {account} {} ACCOUNT LOCK",
                slot_auth(flavor, password)?
            ),
            grant,
            default_role,
            format!("ALTER USER {account} ACCOUNT UNLOCK"),
        ],
        SlotState::Locked => vec![
            grant,
            default_role,
            format!(
                "ALTER USER {account} {} ACCOUNT UNLOCK",
                slot_auth(flavor, password)?
            ),
        ],
        SlotState::LiveWithValue => vec![grant, default_role],
        SlotState::LiveWithOther => {
            return Err(precondition(format!(
                "blue-green slot {account} is unlocked and accepts another password, so it may \
                 be in use: revoke (lock) it before enabling a new password for it"
            )))
        }
    })
}

/// Blue-green revoke: `ALTER USER 'x'@'h' ACCOUNT LOCK` (the account and
/// its password stay, for an instant rollback).
pub(super) fn lock_slot(user: &str, host: &str) -> Result<String, TargetError> {
    Ok(format!("ALTER USER {} ACCOUNT LOCK", account(user, host)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretValue {
        SecretValue::new(s.to_owned()).unwrap()
    }

    #[test]
    fn native_hash_matches_password_function() {
        // SELECT PASSWORD('password') on MariaDB 10.11.
        let h = native_hash(&secret("password"));
        assert_eq!(h, "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19");
        assert!(is_native_hash(&h));
        assert!(!is_native_hash("*2470c0c06dee42fd1618bb99005adca2ec9d1e19"));
    }

    #[test]
    fn mariadb_dual_statements_carry_no_plaintext() {
        let old = secret("old-plaintext-password-123");
        let new = secret("new-plaintext-password-456");
        let hashes = [native_hash(&old), native_hash(&new)];
        let sql = mariadb_accept("app", "%", &hashes).unwrap();
        assert_eq!(
            sql,
            format!(
                "ALTER USER 'app'@'%' IDENTIFIED VIA mysql_native_password USING '{}' OR mysql_native_password USING '{}'",
                hashes[0], hashes[1]
            )
        );
        for v in [&old, &new] {
            assert!(!sql.contains(v.expose()), "{sql}");
        }
        let one = mariadb_accept("app", "10.0.%", &hashes[1..]).unwrap();
        assert!(!one.contains(" OR "), "{one}");
    }

    #[test]
    fn statements_refuse_bad_input() {
        let h = native_hash(&secret("some-password-abcdef"));
        assert!(mariadb_accept("app", "%", &[]).is_err());
        assert!(mariadb_accept("a'pp", "%", std::slice::from_ref(&h)).is_err());
        assert!(mariadb_accept("app", "%'", std::slice::from_ref(&h)).is_err());
        assert!(mariadb_accept("app", "%", &["plaintext".to_owned()]).is_err());
        assert!(mariadb_accept("app", "%", &["*' OR 1".to_owned()]).is_err());
        assert!(mysql_primary_hash("app", "%", "x").is_err());
        assert!(lock_slot("app`", "%").is_err());
        let pw = secret("pw-for-the-slot-0001");
        assert!(enable_slot(Flavor::MariaDb, "r`x", "app", "%", &pw, SlotState::Locked).is_err());
    }

    #[test]
    fn mysql_dual_statements() {
        let new = secret("new-password-AZaz09_-");
        assert_eq!(
            mysql_retain("app", "%", &new).unwrap(),
            "ALTER USER 'app'@'%' IDENTIFIED BY 'new-password-AZaz09_-' RETAIN CURRENT PASSWORD"
        );
        assert_eq!(
            mysql_discard("app", "10.%").unwrap(),
            "ALTER USER 'app'@'10.%' DISCARD OLD PASSWORD"
        );
        let h = native_hash(&new);
        assert_eq!(
            mysql_primary_hash("app", "%", &h).unwrap(),
            format!("ALTER USER 'app'@'%' IDENTIFIED WITH mysql_native_password AS '{h}'")
        );
        for bad in ["it's-a-quote", "back\\slash", "x\u{7f}y"] {
            let e = mysql_retain("app", "%", &secret(bad)).unwrap_err();
            assert!(matches!(e, TargetError::Precondition { .. }), "{e}");
            assert!(!format!("{e} {e:?}").contains(bad), "{e}");
        }
    }

    #[test]
    fn mariadb_slots_get_a_hash_a_role_and_an_unlock() {
        let pw = secret("slot-plaintext-password-1");
        let h = native_hash(&pw);
        let plan = |state| enable_slot(Flavor::MariaDb, "app", "app_blue", "%", &pw, state);
        assert_eq!(
            plan(SlotState::Missing).unwrap(),
            vec![
                format!("CREATE USER IF NOT EXISTS 'app_blue'@'%' IDENTIFIED VIA mysql_native_password USING '{h}' ACCOUNT LOCK"),
                "GRANT `app` TO 'app_blue'@'%'".to_owned(),
                "SET DEFAULT ROLE `app` FOR 'app_blue'@'%'".to_owned(),
                "ALTER USER 'app_blue'@'%' ACCOUNT UNLOCK".to_owned(),
            ]
        );
        assert_eq!(
            plan(SlotState::Locked).unwrap(),
            vec![
                "GRANT `app` TO 'app_blue'@'%'".to_owned(),
                "SET DEFAULT ROLE `app` FOR 'app_blue'@'%'".to_owned(),
                format!("ALTER USER 'app_blue'@'%' IDENTIFIED VIA mysql_native_password USING '{h}' ACCOUNT UNLOCK"),
            ]
        );
        assert_eq!(plan(SlotState::LiveWithValue).unwrap().len(), 2);
        let e = plan(SlotState::LiveWithOther).unwrap_err();
        assert!(matches!(e, TargetError::Precondition { .. }), "{e}");
        for state in [SlotState::Missing, SlotState::Locked] {
            for sql in plan(state).unwrap() {
                assert!(!sql.contains(pw.expose()), "{sql}");
            }
        }
        assert_eq!(
            lock_slot("app_blue", "%").unwrap(),
            "ALTER USER 'app_blue'@'%' ACCOUNT LOCK"
        );
    }

    #[test]
    fn mysql_slots_use_default_role_all_and_the_plaintext() {
        let pw = secret("slot-plaintext-password-2");
        let plan = |state| enable_slot(Flavor::MySql, "app", "app_green", "%", &pw, state);
        assert_eq!(
            plan(SlotState::Missing).unwrap(),
            vec![
                "CREATE USER IF NOT EXISTS 'app_green'@'%' IDENTIFIED BY 'slot-plaintext-password-2' ACCOUNT LOCK",
                "GRANT `app` TO 'app_green'@'%'",
                "SET DEFAULT ROLE ALL TO 'app_green'@'%'",
                "ALTER USER 'app_green'@'%' ACCOUNT UNLOCK",
            ]
        );
        assert_eq!(
            plan(SlotState::Locked).unwrap()[2],
            "ALTER USER 'app_green'@'%' IDENTIFIED BY 'slot-plaintext-password-2' ACCOUNT UNLOCK"
        );
        let quote = secret("has'quote");
        assert!(enable_slot(
            Flavor::MySql,
            "app",
            "app_green",
            "%",
            &quote,
            SlotState::Locked
        )
        .is_err());
    }
}
