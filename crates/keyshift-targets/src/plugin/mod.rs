//! Plugin targets: credentials enforced by a system keyshift has no built-in
//! target for, reached through an `exec` program or a `webhook`.
//!
//! ```text
//!  PluginTarget ── Request {"protocol":1,"step":..,"value":..} ──► exec: stdin of a fresh process
//!       ▲                                                           webhook: HMAC-signed POST body
//!       └──────── Reply {"ok":true,..} / {"ok":false,"error":..,"transient":..} ◄─┘
//! ```
//!
//! Each [`Target`](crate::Target) method is one request of protocol
//! version [`PLUGIN_PROTOCOL_VERSION`] and one reply; `docs/plugins.md` is the
//! plugin author's reference. Secret values travel only in the request body
//! (stdin or POST body), never in argv, the environment or a URL. A plugin's
//! stderr is logged, never put into errors; its `error` string is, redacted
//! of verbatim values and truncated.
//!
//! Failures: a timeout, a connect error, HTTP 5xx/408/429 or
//! `{"ok": false, "transient": true}` are [`TargetError::Unreachable`]
//! (transient: the orchestrator retries with backoff). A non-zero exit, a
//! reply that is not the protocol's, another HTTP 4xx or
//! `{"ok": false}` are [`TargetError::Protocol`] (a failed precheck is
//! [`TargetError::Precondition`]): not retried, the rotation rolls back.
//!
//! ```no_run
//! use keyshift_core::SecretValue;
//! use keyshift_targets::{ExecConfig, PluginConfig, PluginTarget, Target, Verdict};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = PluginConfig::Exec(
//!     ExecConfig::new("/usr/lib/keyshift/redis-acl.py")
//!         .env("REDIS_ADDR", "127.0.0.1:6379")
//!         .env("REDIS_USER", "orders"),
//! );
//! let target = PluginTarget::new(config, None)?;
//! let old = SecretValue::new("the-current-password-0123".into())?;
//! target.precheck(Some(&old)).await?;
//! let new = target.generate(Some(&old)).await?.unwrap_or_else(keyshift_targets::random_password);
//! target.enable(&new).await?;
//! assert_eq!(target.verify(&new).await?, Verdict::Accepted);
//! target.revoke(&old).await?;
//! # Ok(())
//! # }
//! ```
//!
//! [`TargetError::Unreachable`]: crate::TargetError::Unreachable
//! [`TargetError::Protocol`]: crate::TargetError::Protocol
//! [`TargetError::Precondition`]: crate::TargetError::Precondition

mod config;
mod exec;
mod protocol;
mod target;
mod webhook;

pub use config::{
    ExecConfig, PluginConfig, WebhookConfig, DEFAULT_EXEC_TIMEOUT, DEFAULT_WEBHOOK_TIMEOUT,
    MIN_HMAC_KEY_LEN,
};
pub use protocol::{PluginStep, PLUGIN_PROTOCOL_VERSION};
pub use target::PluginTarget;
pub use webhook::{sign, verify_signature, SignatureError, SIGNATURE_HEADER, TIMESTAMP_HEADER};
