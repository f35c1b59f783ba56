//! Blue-green slots: two login identities that take turns.
//!
//! A target that keeps one password per identity (PostgreSQL roles, a
//! MySQL server without dual passwords) rotates by alternating between two
//! identities that share one set of privileges: the new credential goes
//! into the identity the current one does not use.

use keyshift_core::{Credential, SecretValue};

use crate::{random_password, TargetError};

/// The identity `current` does not use: the first slot when there is no
/// current credential.
///
/// # Errors
///
/// [`TargetError::Precondition`] when the current credential's user is
/// neither slot (the secret was put by hand for another user).
pub(crate) fn idle_slot<'a>(
    slots: &'a [String; 2],
    current: Option<&Credential>,
) -> Result<&'a str, TargetError> {
    let Some(current) = current else {
        return Ok(&slots[0]);
    };
    match slots.iter().position(|s| s == current.username()) {
        Some(i) => Ok(&slots[1 - i]),
        None => Err(TargetError::Precondition {
            detail: format!(
                "the current credential's user {} is neither blue-green slot ({} or {})",
                current.username(),
                slots[0],
                slots[1]
            ),
        }),
    }
}

/// A new credential for the idle slot, with a fresh random password.
pub(crate) fn next_credential(
    slots: &[String; 2],
    current: Option<&SecretValue>,
) -> Result<SecretValue, TargetError> {
    let current = current.map(parse_credential).transpose()?;
    let user = idle_slot(slots, current.as_ref())?;
    Ok(Credential::new(user, random_password())
        .map_err(|e| TargetError::Config {
            detail: e.to_string(),
        })?
        .to_value())
}

/// Reads a login value, as [`TargetError::Precondition`] when malformed
/// (the message never quotes the value).
pub(crate) fn parse_credential(value: &SecretValue) -> Result<Credential, TargetError> {
    Credential::parse(value).map_err(|e| TargetError::Precondition {
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idle_slot_alternates() {
        let slots = ["app_blue".to_owned(), "app_green".to_owned()];
        assert_eq!(idle_slot(&slots, None).unwrap(), "app_blue");
        let next = next_credential(&slots, None).unwrap();
        let blue = parse_credential(&next).unwrap();
        assert_eq!(blue.username(), "app_blue");
        assert_eq!(blue.password().expose().len(), 43);
        let green = parse_credential(&next_credential(&slots, Some(&next)).unwrap()).unwrap();
        assert_eq!(green.username(), "app_green");
        let other = Credential::new("someone", random_password()).unwrap();
        assert!(matches!(
            idle_slot(&slots, Some(&other)),
            Err(TargetError::Precondition { .. })
        ));
    }
}
