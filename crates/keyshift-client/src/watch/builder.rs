//! [`ClientBuilder`]: the SDK's configuration, its defaults and why, and
//! the one place that validates it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use keyshift_core::api::valid_consumer_id;
use keyshift_core::SecretValue;
use rand::Rng;
use zeroize::Zeroizing;

use super::errors::SdkError;
use super::supervisor::Shared;
use super::Client;

/// Default polling TTL: 30 s, the default `min_overlap`, so events (pushed
/// within milliseconds) do the work and polling only covers missed ones.
/// It is clamped below each secret's overlap window anyway.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// Default first reconnect delay: 2 s, long enough that a restarting
/// server is not hammered, short enough that a consumer is back quickly.
pub const DEFAULT_BACKOFF_MIN: Duration = Duration::from_secs(2);

/// Default longest reconnect delay: 60 s. Meanwhile polling (every TTL)
/// still picks up changes as soon as the server answers.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Default heartbeat interval: 5 s, so the overlap gate sees a consumer's
/// move to a new version within seconds (a heartbeat also goes out right
/// after every change).
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);

/// Configures a [`Client`]: `Client::builder(addr)...build()`.
///
/// Its `Debug` shows neither the token nor the cache key.
pub struct ClientBuilder {
    addr: String,
    failover: Vec<String>,
    token: Option<SecretValue>,
    consumer_id: Option<String>,
    ttl: Duration,
    backoff: (Duration, Duration),
    heartbeat_interval: Duration,
    cache: Option<(PathBuf, Zeroizing<[u8; 32]>)>,
    connect: crate::ConnectOptions,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("addr", &self.addr)
            .field("failover", &self.failover)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("consumer_id", &self.consumer_id)
            .field("ttl", &self.ttl)
            .field("backoff", &self.backoff)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("cache_dir", &self.cache.as_ref().map(|(d, _)| d))
            .field("connect", &self.connect)
            .finish()
    }
}

/// The validated configuration a client runs on.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub ttl: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub heartbeat_interval: Duration,
}

impl ClientBuilder {
    pub(crate) fn new(addr: &str) -> Self {
        ClientBuilder {
            addr: addr.to_owned(),
            failover: Vec::new(),
            token: None,
            consumer_id: None,
            ttl: DEFAULT_TTL,
            backoff: (DEFAULT_BACKOFF_MIN, DEFAULT_BACKOFF_MAX),
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            cache: None,
            connect: crate::ConnectOptions::default(),
        }
    }

    /// Another replica of the same keyshift (same store): when the server
    /// in use stops answering, the client moves to the next address (in
    /// the order given, then back to the first) and resumes its event
    /// stream there after the last event it had, so it misses no change.
    /// Repeat for several.
    #[must_use]
    pub fn failover(mut self, addr: &str) -> Self {
        self.failover.push(addr.to_owned());
        self
    }

    /// The bearer token (scope `read` on the watched names is enough).
    #[must_use]
    pub fn token(mut self, token: SecretValue) -> Self {
        self.token = Some(token);
        self
    }

    /// The id this consumer reports in heartbeats: stable across restarts
    /// of the same instance, 1 to 128 characters of `[A-Za-z0-9._:-]`.
    /// Default: `<hostname>:<pid>:<6 random hex digits>`.
    #[must_use]
    pub fn consumer_id(mut self, id: impl Into<String>) -> Self {
        self.consumer_id = Some(id.into());
        self
    }

    /// The polling TTL (default [`DEFAULT_TTL`]). Each watched secret uses
    /// at most half its `min_overlap` and at least 1 s; a log line says
    /// when it is clamped.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Reconnect delays of the event stream: exponential from `min` to
    /// `max`, with jitter (default [`DEFAULT_BACKOFF_MIN`] to
    /// [`DEFAULT_BACKOFF_MAX`]).
    #[must_use]
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff = (min, max);
        self
    }

    /// How often the consumer reports the versions it holds (default
    /// [`DEFAULT_HEARTBEAT_INTERVAL`]).
    #[must_use]
    pub fn heartbeat_interval(mut self, every: Duration) -> Self {
        self.heartbeat_interval = every;
        self
    }

    /// Keeps the last good value of each watched secret in `dir`,
    /// encrypted with XChaCha20-Poly1305 under `key`, so the consumer
    /// starts while the server is unreachable. Keep the key out of the
    /// directory (an environment variable, a KMS).
    #[must_use]
    pub fn cache_dir(mut self, dir: PathBuf, key: [u8; 32]) -> Self {
        self.cache = Some((dir, Zeroizing::new(key)));
        self
    }

    /// How to connect to the server: a private CA to trust
    /// ([`ConnectOptions::ca_certificate_pem`](crate::ConnectOptions::ca_certificate_pem)),
    /// or HTTP/2 over plain `http://`
    /// ([`ConnectOptions::http2_prior_knowledge`](crate::ConnectOptions::http2_prior_knowledge)).
    #[must_use]
    pub fn connect(mut self, options: crate::ConnectOptions) -> Self {
        self.connect = options;
        self
    }

    /// Validates the configuration and builds the client. Nothing touches
    /// the network until the first [`Client::watch`].
    ///
    /// # Errors
    ///
    /// [`SdkError::Config`] for an invalid address or token, an invalid
    /// consumer id, a zero TTL or heartbeat interval, or a backoff whose
    /// minimum is zero or above its maximum.
    pub fn build(self) -> Result<Client, SdkError> {
        let consumer_id = self.consumer_id.unwrap_or_else(default_consumer_id);
        if !valid_consumer_id(&consumer_id) {
            return Err(SdkError::Config(format!(
                "invalid consumer id `{consumer_id}`: use 1 to 128 characters of [A-Za-z0-9._:-]"
            )));
        }
        let (backoff_min, backoff_max) = self.backoff;
        if backoff_min.is_zero() || backoff_min > backoff_max {
            return Err(SdkError::Config(format!(
                "invalid backoff {backoff_min:?}..{backoff_max:?}: the minimum must be above zero and at most the maximum"
            )));
        }
        if self.ttl.is_zero() {
            return Err(SdkError::Config("the TTL must be above zero".to_owned()));
        }
        if self.heartbeat_interval.is_zero() {
            return Err(SdkError::Config(
                "the heartbeat interval must be above zero".to_owned(),
            ));
        }
        let config = Config {
            ttl: self.ttl,
            backoff_min,
            backoff_max,
            heartbeat_interval: self.heartbeat_interval,
        };
        let cache = self.cache.map(|(dir, key)| (dir, *key));
        let addrs: Vec<String> = std::iter::once(self.addr).chain(self.failover).collect();
        let shared = Shared::new(
            &addrs,
            self.token,
            consumer_id,
            config,
            cache,
            &self.connect,
        )?;
        Ok(Client::from_shared(shared))
    }
}

/// `<hostname>:<pid>:<6 random hex digits>`: unique per process, readable
/// by people, within the consumer id's alphabet.
pub(crate) fn default_consumer_id() -> String {
    let host: String = hostname()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(100)
        .collect();
    let host = if host.is_empty() {
        "host".to_owned()
    } else {
        host
    };
    let tag: u32 = rand::thread_rng().gen_range(0..0x100_0000);
    format!("{host}:{}:{tag:06x}", std::process::id())
}

/// The machine's name, best effort.
pub(crate) fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// `<program> (pid N)`, for people reading the consumer list.
pub(crate) fn process_label() -> String {
    let program = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "unknown".to_owned());
    format!("{program} (pid {})", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_consumer_id_is_valid_and_unique_per_client() {
        let a = default_consumer_id();
        assert!(valid_consumer_id(&a), "{a}");
        assert!(a.contains(&format!(":{}:", std::process::id())), "{a}");
        assert_ne!(a, default_consumer_id());
    }

    #[test]
    fn invalid_settings_are_config_errors() {
        let b = || crate::Client::builder("http://127.0.0.1:1");
        let cases = [
            b().consumer_id("has space"),
            b().consumer_id(""),
            b().ttl(Duration::ZERO),
            b().heartbeat_interval(Duration::ZERO),
            b().backoff(Duration::ZERO, Duration::from_secs(1)),
            b().backoff(Duration::from_secs(2), Duration::from_secs(1)),
            crate::Client::builder("not a url"),
        ];
        for builder in cases {
            let shown = format!("{builder:?}");
            assert!(
                matches!(builder.build(), Err(SdkError::Config(_))),
                "{shown}"
            );
        }
    }

    #[test]
    fn debug_shows_neither_token_nor_key() {
        let b = crate::Client::builder("http://127.0.0.1:1")
            .token(SecretValue::new("ks.id.hunter2".into()).unwrap())
            .cache_dir(PathBuf::from("/tmp/x"), [0x41; 32]);
        let dbg = format!("{b:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(!dbg.contains("65, 65"), "{dbg}");
        assert!(dbg.contains("/tmp/x"), "{dbg}");
    }
}
