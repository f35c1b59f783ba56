//! The `webhook` transport: each step is an HMAC-signed POST.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use keyshift_core::SecretValue;
use reqwest::StatusCode;
use sha2::Sha256;
use tracing::{debug, warn};
use zeroize::Zeroizing;

use super::config::{human_duration, parse_url, WebhookConfig, MIN_HMAC_KEY_LEN};
use super::protocol::{self, parse_reply, Fields, Reply, Request, MAX_REPLY_BYTES};
use crate::TargetError;

/// Header carrying the request's Unix time in seconds.
pub const TIMESTAMP_HEADER: &str = "X-Keyshift-Timestamp";

/// Header carrying `sha256=<hex HMAC-SHA256(key, "<timestamp>.<body>")>`.
pub const SIGNATURE_HEADER: &str = "X-Keyshift-Signature";

/// The signature of a webhook request, as sent in [`SIGNATURE_HEADER`]:
/// `sha256=` and the lower-case hex HMAC-SHA256, keyed with the HMAC
/// secret's value (its UTF-8 bytes), of the timestamp in decimal, a `.`,
/// and the raw body.
///
/// ```
/// use keyshift_core::SecretValue;
/// let key = SecretValue::new("an-hmac-key-of-32-bytes-or-more!".into()).unwrap();
/// let sig = keyshift_targets::sign(&key, 1_700_000_000, br#"{"protocol":1}"#);
/// assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
/// ```
pub fn sign(key: &SecretValue, timestamp: u64, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(key, timestamp, body).finalize().into_bytes())
    )
}

fn mac(key: &SecretValue, timestamp: u64, body: &[u8]) -> Hmac<Sha256> {
    // Invariant: HMAC accepts keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key.expose().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Why [`verify_signature`] refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A header is missing its `sha256=` prefix, is not hex, or the
    /// timestamp is not a number.
    #[error("malformed signature or timestamp header")]
    Malformed,
    /// The timestamp is further from `now` than the allowed skew: a replay
    /// or a wrong clock.
    #[error("timestamp outside the allowed window (replay or clock skew)")]
    Stale,
    /// The signature does not match: wrong key or altered body.
    #[error("signature does not match")]
    Mismatch,
}

/// What a receiver does with a request: checks that `timestamp` (the
/// [`TIMESTAMP_HEADER`] value) is within `max_skew` of `now` (Unix
/// seconds) and that `signature` (the [`SIGNATURE_HEADER`] value) is
/// [`sign`]`(key, timestamp, body)`, compared in constant time.
///
/// # Errors
///
/// A [`SignatureError`] saying which check failed.
pub fn verify_signature(
    key: &SecretValue,
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: u64,
    max_skew: Duration,
) -> Result<(), SignatureError> {
    let ts: u64 = timestamp.parse().map_err(|_| SignatureError::Malformed)?;
    let tag = signature
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or(SignatureError::Malformed)?;
    if now.abs_diff(ts) > max_skew.as_secs() {
        return Err(SignatureError::Stale);
    }
    mac(key, ts, body)
        .verify_slice(&tag)
        .map_err(|_| SignatureError::Mismatch)
}

/// Posts to a [`WebhookConfig`]'s URL.
pub(super) struct Webhook {
    url: reqwest::Url,
    key: SecretValue,
    client: reqwest::Client,
    timeout: Duration,
    /// Names the plugin in errors: `webhook <scheme://host/path>` (no
    /// query, which may hold an API token of the receiver).
    label: String,
}

impl Webhook {
    pub fn new(config: &WebhookConfig, key: SecretValue) -> Result<Webhook, TargetError> {
        let url = parse_url(&config.url)?;
        if key.expose().len() < MIN_HMAC_KEY_LEN {
            return Err(TargetError::Config {
                detail: format!(
                    "the HMAC key in secret {} is shorter than {MIN_HMAC_KEY_LEN} bytes",
                    config.hmac_secret
                ),
            });
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            // A redirect would re-send the credentials elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| TargetError::Config {
                detail: format!("cannot build the webhook's HTTP client: {e}"),
            })?;
        let mut shown = url.clone();
        shown.set_query(None);
        Ok(Webhook {
            label: format!("webhook {shown}"),
            url,
            key,
            client,
            timeout: config.timeout,
        })
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Runs one step: a signed POST, a capped read of the reply.
    pub async fn call(&self, request: &Request<'_>) -> Result<Fields, TargetError> {
        let mut response = self.send(request).await?;
        let status = response.status();
        let (answer, overflow) = self.read_capped(request, &mut response).await?;
        self.interpret(request, status, &answer, overflow)
    }

    /// POSTs the request, signed.
    async fn send(&self, request: &Request<'_>) -> Result<reqwest::Response, TargetError> {
        let mut body = request.to_json();
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let signature = sign(&self.key, timestamp, &body);
        // reqwest takes ownership and does not zero the buffer when done:
        // hand it over rather than leave a second copy behind.
        let payload = std::mem::take(&mut *body);
        self.client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp)
            .header(SIGNATURE_HEADER, signature)
            .body(payload)
            .send()
            .await
            .map_err(|e| self.network_error(request, &e))
    }

    /// The reply, given the status and the body.
    fn interpret(
        &self,
        request: &Request<'_>,
        status: StatusCode,
        answer: &[u8],
        overflow: bool,
    ) -> Result<Fields, TargetError> {
        let step = request.step;
        if !status.is_success() {
            warn!(
                plugin = %self.label,
                step = step.as_str(),
                status = status.as_u16(),
                body = %protocol::loggable(request, answer),
                "webhook answered an error status"
            );
            return Err(self.status_error(request, status));
        }
        if overflow {
            return Err(self.protocol(format!(
                "answered more than {MAX_REPLY_BYTES} bytes at the {step} step, which is not a protocol reply"
            )));
        }
        match parse_reply(answer) {
            Ok(Reply::Failed { error, transient }) => {
                Err(protocol::failed(&self.label, request, &error, transient))
            }
            Ok(Reply::Done(fields)) => Ok(fields),
            Err(why) => Err(self.protocol(format!(
                "answered something that is not a protocol reply at the {step} step ({why})"
            ))),
        }
    }

    /// Reads at most [`MAX_REPLY_BYTES`] of the body into a buffer sized up
    /// front and zeroed on drop. True when the body was longer.
    async fn read_capped(
        &self,
        request: &Request<'_>,
        response: &mut reqwest::Response,
    ) -> Result<(Zeroizing<Vec<u8>>, bool), TargetError> {
        let mut answer = Zeroizing::new(Vec::with_capacity(MAX_REPLY_BYTES));
        loop {
            let chunk = response
                .chunk()
                .await
                .map_err(|e| self.network_error(request, &e))?;
            let Some(chunk) = chunk else {
                return Ok((answer, false));
            };
            if answer.len() + chunk.len() > MAX_REPLY_BYTES {
                return Ok((answer, true));
            }
            answer.extend_from_slice(&chunk);
        }
    }

    /// Connect errors and timeouts: transient.
    fn network_error(&self, request: &Request<'_>, e: &reqwest::Error) -> TargetError {
        let step = request.step;
        let detail = if e.is_timeout() {
            format!(
                "did not answer the {step} step within {}",
                human_duration::format(self.timeout)
            )
        } else {
            // Without the URL, whose query may hold a token.
            let mut why = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                why = format!("{why}: {s}");
                source = s.source();
            }
            if let Some(url) = e.url() {
                why = why.replace(url.as_str(), "(url)");
            }
            format!("the {step} step failed: {why}")
        };
        debug!(plugin = %self.label, %detail, "webhook unreachable");
        TargetError::Unreachable {
            target: self.label.clone(),
            detail,
        }
    }

    /// 5xx, 408 and 429 are transient; redirects and other 4xx are not.
    fn status_error(&self, request: &Request<'_>, status: StatusCode) -> TargetError {
        let step = request.step;
        if status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
        {
            return TargetError::Unreachable {
                target: self.label.clone(),
                detail: format!("answered HTTP {status} at the {step} step"),
            };
        }
        let hint = match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                " (does the receiver hold the same HMAC key, and is its clock right?)"
            }
            s if s.is_redirection() => " (keyshift does not follow webhook redirects)",
            _ => "",
        };
        self.protocol(format!("refused the {step} step with HTTP {status}{hint}"))
    }

    fn protocol(&self, what: String) -> TargetError {
        TargetError::Protocol {
            detail: format!("{} {what}", self.label),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> SecretValue {
        SecretValue::new(s.to_owned()).unwrap()
    }

    #[test]
    fn sign_matches_a_known_vector() {
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"key-of-sixteen-bytes",
        //   b"1700000000.{\"ok\":true}", hashlib.sha256).hexdigest())'
        assert_eq!(
            sign(
                &key("key-of-sixteen-bytes"),
                1_700_000_000,
                br#"{"ok":true}"#
            ),
            "sha256=09800d09553658753af6188fe871847ab802a4aed0ac08aafec599c5e78720a0"
        );
    }

    #[test]
    fn signatures_verify_and_refuse_tampering_replay_and_other_keys() {
        let k = key("key-of-sixteen-bytes");
        let body = br#"{"protocol":1,"step":"verify"}"#;
        let sig = sign(&k, 1000, body);
        let skew = Duration::from_secs(300);
        assert_eq!(verify_signature(&k, "1000", &sig, body, 1100, skew), Ok(()));
        assert_eq!(
            verify_signature(&k, "1000", &sig, b"{}", 1100, skew),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(&k, "1001", &sig, body, 1100, skew),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(&key("another-key-of-16"), "1000", &sig, body, 1100, skew),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(&k, "1000", &sig, body, 2000, skew),
            Err(SignatureError::Stale)
        );
        for (ts, s) in [
            ("x", sig.as_str()),
            ("1000", "md5=00"),
            ("1000", "sha256=zz"),
        ] {
            assert_eq!(
                verify_signature(&k, ts, s, body, 1000, skew),
                Err(SignatureError::Malformed)
            );
        }
    }

    #[test]
    fn short_keys_are_refused_without_echo() {
        let c = WebhookConfig::new("https://h/x", "a/hmac");
        let e = Webhook::new(&c, key("short-k3y")).err().unwrap();
        assert!(matches!(e, TargetError::Config { .. }));
        assert!(!e.to_string().contains("short-k3y"), "{e}");
    }

    #[test]
    fn label_hides_the_query() {
        let c = WebhookConfig::new("https://h.example/hook?token=abc123", "a/hmac");
        let w = Webhook::new(&c, key("key-of-sixteen-bytes")).unwrap();
        assert_eq!(w.label(), "webhook https://h.example/hook");
    }
}
