//! [`PluginTarget`]: the [`Target`] steps as protocol requests.

use std::fmt;

use keyshift_core::{SecretName, SecretValue};
use tracing::debug;

use super::config::PluginConfig;
use super::exec::Exec;
use super::protocol::{Fields, PluginStep, Request};
use super::webhook::Webhook;
use crate::{Target, TargetError, Verdict};

/// A target enforced by a plugin: an `exec` program or a `webhook`. Each
/// [`Target`] method sends one request of the protocol and reads one reply
/// (see `docs/plugins.md`).
pub struct PluginTarget {
    config: PluginConfig,
    transport: Transport,
    secret: Option<SecretName>,
}

enum Transport {
    Exec(Exec),
    Webhook(Webhook),
}

impl fmt::Debug for PluginTarget {
    /// Shows the config; never the HMAC key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginTarget")
            .field("config", &self.config)
            .field("secret", &self.secret.as_ref().map(SecretName::as_str))
            .finish_non_exhaustive()
    }
}

impl PluginTarget {
    /// A target for `config`. A webhook needs `hmac_key`, the current value
    /// of its `hmac_secret` (at least 16 bytes); an exec plugin takes none.
    /// Runs and connects to nothing yet.
    ///
    /// # Errors
    ///
    /// [`TargetError::Config`] when the config does not validate, or the
    /// key is missing, short or given to an exec plugin.
    pub fn new(
        config: PluginConfig,
        hmac_key: Option<SecretValue>,
    ) -> Result<PluginTarget, TargetError> {
        config.validate()?;
        let transport = match (&config, hmac_key) {
            (PluginConfig::Exec(c), None) => Transport::Exec(Exec::new(c.clone())),
            (PluginConfig::Exec(_), Some(_)) => {
                return Err(TargetError::Config {
                    detail: "an exec plugin takes no HMAC key".to_owned(),
                })
            }
            (PluginConfig::Webhook(c), Some(key)) => Transport::Webhook(Webhook::new(c, key)?),
            (PluginConfig::Webhook(c), None) => {
                return Err(TargetError::Config {
                    detail: format!(
                        "a webhook plugin needs its HMAC key (the value of secret {})",
                        c.hmac_secret
                    ),
                })
            }
        };
        Ok(PluginTarget {
            config,
            transport,
            secret: None,
        })
    }

    /// Names the secret being rotated in every request's `"secret"` field,
    /// so one plugin can serve several secrets.
    #[must_use]
    pub fn with_secret(mut self, name: SecretName) -> PluginTarget {
        self.secret = Some(name);
        self
    }

    /// The config this target was built from.
    pub fn config(&self) -> &PluginConfig {
        &self.config
    }

    /// Names the plugin in errors and logs: `plugin <program>` or
    /// `webhook <url without query>`.
    pub fn label(&self) -> &str {
        match &self.transport {
            Transport::Exec(e) => e.label(),
            Transport::Webhook(w) => w.label(),
        }
    }

    /// Sends one step; `Ok` only for an `{"ok": true}` reply.
    async fn call(
        &self,
        step: PluginStep,
        value: Option<&SecretValue>,
        current: Option<&SecretValue>,
    ) -> Result<Fields, TargetError> {
        let request = Request {
            step,
            secret: self.secret.as_ref().map(SecretName::as_str),
            value,
            current,
        };
        let fields = match &self.transport {
            Transport::Exec(e) => e.call(&request).await?,
            Transport::Webhook(w) => w.call(&request).await?,
        };
        debug!(plugin = %self.label(), %step, "step done");
        Ok(fields)
    }

    fn bad_reply(&self, step: PluginStep, what: &str) -> TargetError {
        TargetError::Protocol {
            detail: format!("{} answered the {step} step with {what}", self.label()),
        }
    }
}

#[async_trait::async_trait]
impl Target for PluginTarget {
    #[tracing::instrument(skip_all, fields(plugin = %self.label()))]
    async fn precheck(&self, current: Option<&SecretValue>) -> Result<(), TargetError> {
        self.call(PluginStep::Precheck, None, current).await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(plugin = %self.label()))]
    async fn generate(
        &self,
        current: Option<&SecretValue>,
    ) -> Result<Option<SecretValue>, TargetError> {
        let step = PluginStep::Generate;
        let mut fields = self.call(step, None, current).await?;
        fields
            .take_value()
            .map_err(|what| self.bad_reply(step, what))
    }

    #[tracing::instrument(skip_all, fields(plugin = %self.label()))]
    async fn enable(&self, value: &SecretValue) -> Result<(), TargetError> {
        self.call(PluginStep::Enable, Some(value), None).await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(plugin = %self.label()))]
    async fn revoke(&self, value: &SecretValue) -> Result<(), TargetError> {
        self.call(PluginStep::Revoke, Some(value), None).await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(plugin = %self.label()))]
    async fn verify(&self, value: &SecretValue) -> Result<Verdict, TargetError> {
        let step = PluginStep::Verify;
        let fields = self.call(step, Some(value), None).await?;
        fields.verdict().map_err(|what| self.bad_reply(step, what))
    }

    #[tracing::instrument(skip_all, fields(plugin = %self.label()))]
    async fn usage(&self, value: &SecretValue) -> Result<Option<u64>, TargetError> {
        let step = PluginStep::Usage;
        let fields = self.call(step, Some(value), None).await?;
        fields.uses().map_err(|what| self.bad_reply(step, what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{ExecConfig, WebhookConfig};

    fn key(s: &str) -> SecretValue {
        SecretValue::new(s.to_owned()).unwrap()
    }

    #[test]
    fn keys_go_with_webhooks_only() {
        let exec = PluginConfig::Exec(ExecConfig::new("/bin/true"));
        let hook = PluginConfig::Webhook(WebhookConfig::new("https://h/x", "a/hmac"));
        let k = || Some(key("the-hmac-key-0123456789"));
        assert!(PluginTarget::new(exec.clone(), None).is_ok());
        assert!(PluginTarget::new(exec, k()).is_err());
        assert!(PluginTarget::new(hook.clone(), None).is_err());
        let t = PluginTarget::new(hook, k()).unwrap();
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("the-hmac-key"), "{dbg}");
        assert!(dbg.contains("a/hmac"), "{dbg}");
    }

    #[test]
    fn invalid_configs_are_refused() {
        let exec = PluginConfig::Exec(ExecConfig::new("relative/plugin"));
        assert!(matches!(
            PluginTarget::new(exec, None),
            Err(TargetError::Config { .. })
        ));
    }
}
