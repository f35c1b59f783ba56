//! Targets: the systems that enforce credentials.
//!
//! A [`Target`] is where a secret's value is checked: a Redis ACL user, a
//! database role, a keyring. The rotation drives it through four idempotent
//! operations:
//!
//! - [`Target::precheck`]: no side effects; the target is reachable, the
//!   admin credential works, the managed user exists and the current
//!   credential still logs in.
//! - [`Target::enable`]: the target accepts a new value *in addition* to
//!   what it accepts now (the overlap that makes rotation zero-downtime).
//! - [`Target::revoke`]: the target refuses one value and keeps the others.
//! - [`Target::verify`]: log in with a value against the live target.
//!
//! Secret values never appear in errors, logs or `Debug` output, and never
//! travel to a target except to log in: the Redis target hands passwords to
//! `ACL SETUSER` as SHA-256 digests (`#<hex>` / `!<hex>`).
//!
//! ```no_run
//! use keyshift_core::SecretValue;
//! use keyshift_targets::{RedisConfig, RedisTarget, Target, Verdict};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config: RedisConfig =
//!     serde_json::from_str(r#"{"address": "127.0.0.1:6379", "user": "app"}"#)?;
//! let target = RedisTarget::new(config, None)?;
//! let old = SecretValue::new("the-current-password-0123".into())?;
//! let new = SecretValue::new("the-next-password-456789".into())?;
//!
//! target.precheck(Some(&old)).await?;
//! target.enable(&new).await?; // both old and new log in now
//! assert_eq!(target.verify(&new).await?, Verdict::Accepted);
//! // ... consumers move over ...
//! target.revoke(&old).await?;
//! assert_eq!(target.verify(&old).await?, Verdict::Refused);
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod mariadb;
mod plugin;
mod postgres;
mod redis_acl;
mod scram;
mod slots;
mod x509;

use keyshift_core::SecretValue;

pub use mariadb::{MariaDbConfig, MariaDbMode, MariaDbTarget};
pub use plugin::{
    sign, verify_signature, ExecConfig, PluginConfig, PluginStep, PluginTarget, SignatureError,
    WebhookConfig, DEFAULT_EXEC_TIMEOUT, DEFAULT_WEBHOOK_TIMEOUT, MIN_HMAC_KEY_LEN,
    PLUGIN_PROTOCOL_VERSION, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
pub use postgres::{PgConfig, PgTarget};
pub use redis_acl::{AdminCredential, RedisConfig, RedisTarget, DEFAULT_TIMEOUT};
pub use x509::{
    check_ca, new_ca, renewal_due, X509CaConfig, X509Config, X509Target, CLOCK_SKEW,
    DEFAULT_CA_LIFETIME, DEFAULT_LEAF_LIFETIME, DEFAULT_RENEW_AT, MAX_LIFETIME, MIN_LIFETIME,
};

/// Whether a credential logs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The target let the credential log in.
    Accepted,
    /// The target refused the credential (e.g. Redis `WRONGPASS`).
    Refused,
}

/// Why a target operation failed. Never carries a secret value.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// Could not reach the target or it timed out (transient: retry).
    #[error("target {target} is unreachable: {detail}")]
    Unreachable {
        /// Which target (address; never credentials).
        target: String,
        /// What went wrong.
        detail: String,
    },
    /// The admin credential was refused or lacks permission (not transient).
    #[error("target {target} refused the admin credential: {detail}")]
    AdminRefused {
        /// Which target (address; never credentials).
        target: String,
        /// What went wrong.
        detail: String,
    },
    /// A precondition does not hold, e.g. the user does not exist, or the
    /// current credential no longer logs in (not transient).
    #[error("precondition failed: {detail}")]
    Precondition {
        /// Which precondition does not hold.
        detail: String,
    },
    /// The target's configuration is invalid (not transient).
    #[error("invalid target configuration: {detail}")]
    Config {
        /// What is wrong with it.
        detail: String,
    },
    /// The target answered something unexpected.
    #[error("unexpected answer from target: {detail}")]
    Protocol {
        /// What was unexpected.
        detail: String,
    },
}

impl TargetError {
    /// Whether retrying the same operation later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, TargetError::Unreachable { .. })
    }
}

/// Where a credential is enforced. Every method is idempotent.
#[async_trait::async_trait]
pub trait Target: Send + Sync {
    /// No side effects: target reachable, admin access works, the managed
    /// user exists, and `current` (if Some) logs in.
    async fn precheck(&self, current: Option<&SecretValue>) -> Result<(), TargetError>;

    /// Makes the next value, given the current one: a login for the idle
    /// blue-green role, a certificate issued by the CA, a plugin's
    /// credential. No side effect on the target (enabling is
    /// [`Target::enable`]'s job). `Ok(None)`, the default, means "random
    /// bytes in the kind's format will do" and the caller generates them.
    ///
    /// The caller stores the first value it gets for a rotation, so calling
    /// this again need not return the same value.
    async fn generate(
        &self,
        current: Option<&SecretValue>,
    ) -> Result<Option<SecretValue>, TargetError> {
        let _ = current;
        Ok(None)
    }

    /// Make the target accept `value` in addition to what it accepts now.
    /// Calling it again changes nothing.
    async fn enable(&self, value: &SecretValue) -> Result<(), TargetError>;

    /// Make the target refuse `value`, leaving other credentials alone.
    /// Calling it again (or for a value never enabled) changes nothing and
    /// is Ok.
    async fn revoke(&self, value: &SecretValue) -> Result<(), TargetError>;

    /// Try to log in with `value` against the live target (a fresh
    /// connection each time). `Ok(Refused)` when the target says wrong
    /// password; `Err` only when the target can't be asked.
    async fn verify(&self, value: &SecretValue) -> Result<Verdict, TargetError>;

    /// How many uses of `value` the target sees right now (for example open
    /// sessions of its role), or `Ok(None)`, the default, when the target
    /// cannot observe them.
    async fn usage(&self, value: &SecretValue) -> Result<Option<u64>, TargetError> {
        let _ = value;
        Ok(None)
    }
}

/// A fresh random password: 256 bits as 43 base64url characters, which
/// need no quoting in any protocol.
pub fn random_password() -> SecretValue {
    use rand::RngCore;
    let mut bytes = zeroize::Zeroizing::new([0u8; keyshift_core::GENERATED_ENTROPY_BYTES]);
    rand::rngs::OsRng.fill_bytes(bytes.as_mut());
    keyshift_core::SecretKind::Redis.generate(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unreachable_is_transient() {
        let unreachable = TargetError::Unreachable {
            target: "t".into(),
            detail: "d".into(),
        };
        assert!(unreachable.is_transient());
        for e in [
            TargetError::AdminRefused {
                target: "t".into(),
                detail: "d".into(),
            },
            TargetError::Precondition { detail: "d".into() },
            TargetError::Config { detail: "d".into() },
            TargetError::Protocol { detail: "d".into() },
        ] {
            assert!(!e.is_transient(), "{e}");
        }
    }

    #[test]
    fn target_is_object_safe() {
        fn takes(_: Option<&dyn Target>) {}
        takes(None);
    }
}
