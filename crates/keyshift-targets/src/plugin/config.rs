//! What a plugin target is configured with, and the one place that checks it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use keyshift_core::SecretName;
use serde::{Deserialize, Serialize};

use crate::TargetError;

/// How long an `exec` plugin may take for one step unless its config says
/// otherwise: long enough for a plugin that logs in to a remote system and
/// changes a credential there, short enough that a hung plugin is noticed
/// (and retried) within the orchestrator's step budget.
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a `webhook` plugin may take for one step (connect, request and
/// reply) unless its config says otherwise: a receiver answers over the
/// network and should do its work synchronously but promptly.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// The shortest timeout a plugin config may set.
pub(crate) const MIN_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest timeout a plugin config may set.
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// The shortest HMAC key a webhook accepts, in bytes.
pub const MIN_HMAC_KEY_LEN: usize = 16;

/// Config of a plugin target, as stored (JSON) on a secret of kind `plugin`:
/// either an `exec` program or a `webhook` URL.
///
/// ```
/// use keyshift_targets::PluginConfig;
///
/// let exec: PluginConfig = serde_json::from_str(r#"{"exec": {
///     "program": "/usr/lib/keyshift/redis-acl.py",
///     "args": ["--verbose"],
///     "timeout": "30s",
///     "env": {"REDIS_ADDR": "10.0.0.5:6379", "REDIS_USER": "orders"}
/// }}"#).unwrap();
/// exec.validate().unwrap();
///
/// let hook: PluginConfig = serde_json::from_str(r#"{"webhook": {
///     "url": "https://rotator.internal/keyshift",
///     "hmac_secret": "prod/rotator/hmac",
///     "timeout": "10s"
/// }}"#).unwrap();
/// hook.validate().unwrap();
/// assert_eq!(hook.referenced_secrets(), ["prod/rotator/hmac"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginConfig {
    /// Run a program on this machine once per step.
    Exec(ExecConfig),
    /// POST each step to an HTTP(S) endpoint, signed with HMAC-SHA256.
    Webhook(WebhookConfig),
}

/// An `exec` plugin: a program run once per step, without a shell, with the
/// request on stdin and the reply read from stdout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecConfig {
    /// Absolute path of the program (no `PATH` lookup, no shell).
    pub program: String,
    /// Arguments, passed as they are. Never secret values: any process on
    /// the machine can read a command line.
    #[serde(default)]
    pub args: Vec<String>,
    /// How long one step may take, e.g. `"30s"` (1s to 10min; default
    /// [`DEFAULT_EXEC_TIMEOUT`]).
    #[serde(default = "default_exec_timeout", with = "human_duration")]
    pub timeout: Duration,
    /// Environment of the program, on top of keyshift's `PATH` (everything
    /// else is cleared). Stored in plain config: never put secrets here.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// A `webhook` plugin: each step is POSTed to `url` and signed with the HMAC
/// key held by the keyshift secret `hmac_secret`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `https://` URL without credentials. `http://` is accepted only for a
    /// loopback host (the body carries credentials in clear).
    pub url: String,
    /// Name of the keyshift secret whose current value is the HMAC key
    /// (resolved by the server).
    pub hmac_secret: String,
    /// How long one step may take, connect to reply, e.g. `"10s"` (1s to
    /// 10min; default [`DEFAULT_WEBHOOK_TIMEOUT`]).
    #[serde(default = "default_webhook_timeout", with = "human_duration")]
    pub timeout: Duration,
}

fn default_exec_timeout() -> Duration {
    DEFAULT_EXEC_TIMEOUT
}

fn default_webhook_timeout() -> Duration {
    DEFAULT_WEBHOOK_TIMEOUT
}

impl ExecConfig {
    /// A config running `program` with no arguments, no extra environment
    /// and [`DEFAULT_EXEC_TIMEOUT`].
    pub fn new(program: impl Into<String>) -> ExecConfig {
        ExecConfig {
            program: program.into(),
            args: Vec::new(),
            timeout: DEFAULT_EXEC_TIMEOUT,
            env: BTreeMap::new(),
        }
    }

    /// Appends an argument.
    #[must_use]
    pub fn arg(mut self, arg: impl Into<String>) -> ExecConfig {
        self.args.push(arg.into());
        self
    }

    /// Sets an environment variable of the program.
    #[must_use]
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> ExecConfig {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Sets the timeout of one step.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> ExecConfig {
        self.timeout = timeout;
        self
    }

    fn validate(&self) -> Result<(), TargetError> {
        if self.program.contains('\0') || !Path::new(&self.program).is_absolute() {
            return Err(config(
                "exec program must be an absolute path (no PATH lookup, no shell)",
            ));
        }
        if self.args.iter().any(|a| a.contains('\0')) {
            return Err(config("exec args must not contain NUL characters"));
        }
        for (key, value) in &self.env {
            if key.is_empty() || key.contains(['=', '\0']) {
                return Err(config(format!(
                    "exec env has an invalid variable name {key:?} (empty, `=` or NUL)"
                )));
            }
            if value.contains('\0') {
                return Err(config(format!(
                    "exec env variable {key} contains a NUL character"
                )));
            }
        }
        validate_timeout(self.timeout)
    }
}

impl WebhookConfig {
    /// A config for `url`, signed with the key held by the secret
    /// `hmac_secret`, with [`DEFAULT_WEBHOOK_TIMEOUT`].
    pub fn new(url: impl Into<String>, hmac_secret: impl Into<String>) -> WebhookConfig {
        WebhookConfig {
            url: url.into(),
            hmac_secret: hmac_secret.into(),
            timeout: DEFAULT_WEBHOOK_TIMEOUT,
        }
    }

    /// Sets the timeout of one step.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> WebhookConfig {
        self.timeout = timeout;
        self
    }

    fn validate(&self) -> Result<(), TargetError> {
        parse_url(&self.url)?;
        SecretName::new(&self.hmac_secret).map_err(|e| {
            config(format!(
                "webhook hmac_secret is not a valid secret name: {e}"
            ))
        })?;
        validate_timeout(self.timeout)
    }
}

impl PluginConfig {
    /// Checks the config. `exec`: `program` is absolute, no NUL in args or
    /// env, env names are valid. `webhook`: `url` is `https://` (or
    /// `http://` to a loopback host) without credentials or fragment;
    /// `hmac_secret` is a valid secret name. Both: the timeout is 1s to
    /// 10min.
    ///
    /// # Errors
    ///
    /// [`TargetError::Config`], which never repeats credentials found in a
    /// URL.
    pub fn validate(&self) -> Result<(), TargetError> {
        match self {
            PluginConfig::Exec(c) => c.validate(),
            PluginConfig::Webhook(c) => c.validate(),
        }
    }

    /// Names of the other keyshift secrets this config needs resolved: the
    /// webhook's `hmac_secret`.
    pub fn referenced_secrets(&self) -> Vec<String> {
        match self {
            PluginConfig::Exec(_) => Vec::new(),
            PluginConfig::Webhook(c) => vec![c.hmac_secret.clone()],
        }
    }

    /// The timeout of one step.
    pub fn timeout(&self) -> Duration {
        match self {
            PluginConfig::Exec(c) => c.timeout,
            PluginConfig::Webhook(c) => c.timeout,
        }
    }
}

fn validate_timeout(timeout: Duration) -> Result<(), TargetError> {
    if !(MIN_TIMEOUT..=MAX_TIMEOUT).contains(&timeout) {
        return Err(config(format!(
            "plugin timeout must be between 1s and 10min (got {})",
            human_duration::format(timeout)
        )));
    }
    Ok(())
}

/// Parses and checks a webhook URL.
pub(super) fn parse_url(raw: &str) -> Result<reqwest::Url, TargetError> {
    // Never echo a URL that may hold userinfo.
    let shown = if raw.contains('@') || raw.chars().any(char::is_control) {
        "(not shown)".to_owned()
    } else {
        format!("`{raw}`")
    };
    let url = reqwest::Url::parse(raw)
        .map_err(|e| config(format!("webhook url {shown} does not parse: {e}")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(config(
            "webhook url must not carry credentials: requests are signed with the key in hmac_secret",
        ));
    }
    if url.fragment().is_some() {
        return Err(config(format!("webhook url {shown} has a #fragment")));
    }
    if url.host_str().is_none() {
        return Err(config(format!("webhook url {shown} has no host")));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(config(format!(
            "webhook url {shown} is plain http to a non-loopback host: use https, the body carries credentials"
        ))),
        other => Err(config(format!(
            "webhook url {shown} has scheme {other}: use https"
        ))),
    }
}

/// Whether the URL's host is `localhost` or a loopback address.
fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn config(detail: impl Into<String>) -> TargetError {
    TargetError::Config {
        detail: detail.into(),
    }
}

/// Serde for a timeout as a human string: `"30s"`, `"500ms"`, `"2m"`,
/// `"1m30s"`, `"10min"`, `"1h"`.
pub(super) mod human_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }

    /// `"30s"` for whole seconds, `"1500ms"` otherwise.
    pub fn format(d: Duration) -> String {
        if d.subsec_millis() == 0 {
            format!("{}s", d.as_secs())
        } else {
            format!("{}ms", d.as_millis())
        }
    }

    /// Sums `<number><unit>` parts (units `ms`, `s`, `m`/`min`, `h`),
    /// optionally separated by spaces.
    pub fn parse(s: &str) -> Result<Duration, String> {
        let bad = || {
            format!("invalid duration {s:?}: expected e.g. \"30s\", \"500ms\", \"2m\", \"1m30s\"")
        };
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err(bad());
        }
        let mut total = Duration::ZERO;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(rest.len());
            let millis_per_unit = match &rest[..unit_len] {
                "ms" => 1,
                "s" => 1_000,
                "m" | "min" => 60_000,
                "h" => 3_600_000,
                _ => return Err(bad()),
            };
            let part = number.checked_mul(millis_per_unit).ok_or_else(bad)?;
            total = total
                .checked_add(Duration::from_millis(part))
                .ok_or_else(bad)?;
            rest = rest[unit_len..].trim_start();
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(json: &str) -> Result<PluginConfig, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn durations_parse_and_format() {
        use human_duration::{format, parse};
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("10min"), Ok(Duration::from_secs(600)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "30", "s", "30x", "-1s", "1.5s", "99999999999999999999h"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(format(Duration::from_secs(30)), "30s");
        assert_eq!(format(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn exec_config_reads_defaults_and_refuses_unknown_fields() {
        let c = exec(r#"{"exec": {"program": "/bin/true"}}"#).unwrap();
        assert_eq!(c, PluginConfig::Exec(ExecConfig::new("/bin/true")));
        assert_eq!(c.timeout(), DEFAULT_EXEC_TIMEOUT);
        assert!(c.referenced_secrets().is_empty());
        c.validate().unwrap();
        assert!(exec(r#"{"exec": {"program": "/bin/true", "shell": true}}"#).is_err());
        assert!(exec(r#"{"script": {"program": "/bin/true"}}"#).is_err());
        let round = serde_json::to_string(&c).unwrap();
        assert_eq!(exec(&round).unwrap(), c);
    }

    #[test]
    fn exec_config_refuses_relative_programs_bad_env_and_timeouts() {
        let ok = ExecConfig::new("/opt/plugin").arg("-v").env("A", "1");
        PluginConfig::Exec(ok.clone()).validate().unwrap();
        for bad in [
            ExecConfig::new("plugin"),
            ExecConfig::new("./plugin"),
            ExecConfig::new(""),
            ok.clone().arg("nul\0"),
            ok.clone().env("", "x"),
            ok.clone().env("A=B", "x"),
            ok.clone().env("A", "nul\0"),
            ok.clone().timeout(Duration::from_millis(999)),
            ok.clone().timeout(Duration::from_secs(601)),
        ] {
            let e = PluginConfig::Exec(bad.clone()).validate().unwrap_err();
            assert!(matches!(e, TargetError::Config { .. }), "{bad:?}: {e}");
        }
    }

    #[test]
    fn webhook_config_checks_url_name_and_timeout() {
        let hook = |url: &str| WebhookConfig::new(url, "prod/hooks/hmac");
        for good in [
            "https://rotator.internal/keyshift",
            "https://10.0.0.1:8443/x?tenant=a",
            "http://127.0.0.1:8080/hook",
            "http://localhost/hook",
            "http://[::1]:9000/",
        ] {
            PluginConfig::Webhook(hook(good))
                .validate()
                .unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "",
            "rotator.internal/x",
            "ftp://rotator.internal/x",
            "http://rotator.internal/x",
            "http://10.0.0.1/x",
            "https://rotator.internal/x#frag",
            "unix:/run/hook.sock",
        ] {
            let e = PluginConfig::Webhook(hook(bad)).validate().unwrap_err();
            assert!(matches!(e, TargetError::Config { .. }), "{bad}: {e}");
        }
        let mut c = hook("https://rotator.internal/x");
        c.hmac_secret = "../nope".into();
        assert!(PluginConfig::Webhook(c).validate().is_err());
        let c = hook("https://rotator.internal/x").timeout(Duration::ZERO);
        assert!(PluginConfig::Webhook(c).validate().is_err());
    }

    #[test]
    fn webhook_url_credentials_are_refused_without_echo() {
        for url in [
            "https://admin:hunter2secret@rotator.internal/x",
            "https://hunter2secret@rotator.internal/x",
            "http://admin:hunter2secret@127.0.0.1/x",
        ] {
            let e = PluginConfig::Webhook(WebhookConfig::new(url, "a/b"))
                .validate()
                .unwrap_err();
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains("hunter2secret"), "{shown}");
        }
    }

    #[test]
    fn webhook_config_defaults_its_timeout_and_refuses_unknown_fields() {
        let c: PluginConfig =
            serde_json::from_str(r#"{"webhook": {"url": "https://h/x", "hmac_secret": "a/b"}}"#)
                .unwrap();
        assert_eq!(c.timeout(), DEFAULT_WEBHOOK_TIMEOUT);
        assert!(serde_json::from_str::<PluginConfig>(
            r#"{"webhook": {"url": "https://h/x", "hmac_secret": "a/b", "hmac_key": "k"}}"#,
        )
        .is_err());
    }
}
