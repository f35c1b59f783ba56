//! The plugin protocol, version 1: one JSON request per step, one JSON
//! reply. Shared by the `exec` and `webhook` transports.

use std::fmt;

use keyshift_core::SecretValue;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::{TargetError, Verdict};

/// The protocol version keyshift speaks, sent as `"protocol"` in every
/// request.
pub const PLUGIN_PROTOCOL_VERSION: u32 = 1;

/// The largest reply keyshift reads (stdout of an `exec` plugin, body of a
/// webhook's answer); a longer one fails the step.
pub(crate) const MAX_REPLY_BYTES: usize = 1024 * 1024;

/// How much of a plugin's stderr (or a webhook's error body) is logged.
pub(super) const MAX_LOGGED_BYTES: usize = 4 * 1024;

/// How much of a plugin's own `error` string goes into keyshift's error.
const MAX_ERROR_CHARS: usize = 512;

/// A step of the rotation, as named in the request's `"step"` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginStep {
    /// No side effects: the system is reachable and `current` logs in.
    Precheck,
    /// Make the next value (or let keyshift make it). No side effects.
    Generate,
    /// Accept `value` in addition to what is accepted now.
    Enable,
    /// Log in with `value`: accepted or refused.
    Verify,
    /// Refuse `value`, leaving other credentials alone.
    Revoke,
    /// How many uses of `value` the system sees now, if it can tell.
    Usage,
}

impl PluginStep {
    /// Every step, in rotation order (usage last).
    pub const ALL: [PluginStep; 6] = [
        PluginStep::Precheck,
        PluginStep::Generate,
        PluginStep::Enable,
        PluginStep::Verify,
        PluginStep::Revoke,
        PluginStep::Usage,
    ];

    /// The step's name on the wire (`precheck`, `generate`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            PluginStep::Precheck => "precheck",
            PluginStep::Generate => "generate",
            PluginStep::Enable => "enable",
            PluginStep::Verify => "verify",
            PluginStep::Revoke => "revoke",
            PluginStep::Usage => "usage",
        }
    }
}

impl fmt::Display for PluginStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step's request: the values it carries stay borrowed until
/// [`Request::to_json`] writes them into a buffer zeroed on drop.
pub(super) struct Request<'a> {
    pub step: PluginStep,
    pub secret: Option<&'a str>,
    pub value: Option<&'a SecretValue>,
    pub current: Option<&'a SecretValue>,
}

#[derive(Serialize)]
struct Wire<'a> {
    protocol: u32,
    step: PluginStep,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    current: Option<&'a str>,
}

impl Request<'_> {
    /// The request body. Its buffer is sized up front (JSON escaping at most
    /// sextuples a character) so it never reallocates, which would leave
    /// copies of the values behind, and is zeroed on drop.
    pub fn to_json(&self) -> Zeroizing<Vec<u8>> {
        let carried = [self.secret, self.value(), self.current()]
            .iter()
            .map(|s| s.map_or(0, str::len))
            .sum::<usize>();
        let mut body = Zeroizing::new(Vec::with_capacity(128 + 6 * carried));
        let wire = Wire {
            protocol: PLUGIN_PROTOCOL_VERSION,
            step: self.step,
            secret: self.secret,
            value: self.value(),
            current: self.current(),
        };
        // Invariant: a struct of strings and numbers always serializes, and
        // writing to a Vec cannot fail.
        serde_json::to_writer(&mut *body, &wire).expect("a request always serializes");
        body
    }

    fn value(&self) -> Option<&str> {
        self.value.map(SecretValue::expose)
    }

    fn current(&self) -> Option<&str> {
        self.current.map(SecretValue::expose)
    }

    /// `text` with every verbatim copy of the values this request carries
    /// replaced by `<redacted>`: a last defence for text keyshift shows
    /// (a plugin's `error`, its stderr), not a licence to echo values.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for v in [self.value(), self.current()].into_iter().flatten() {
            if out.contains(v) {
                out = out.replace(v, "<redacted>");
            }
        }
        out
    }
}

/// A parsed reply.
pub(super) enum Reply {
    /// `{"ok": true, ...}`: the step's other fields.
    Done(Fields),
    /// `{"ok": false, "error": "...", "transient": bool}`.
    Failed {
        /// The plugin's own words (not yet redacted or truncated).
        error: String,
        /// Whether the plugin says retrying may help (absent = false).
        transient: bool,
    },
}

/// The fields of an `ok` reply, taken out one by one per step.
pub(super) struct Fields(Map<String, Value>);

/// Reads a reply. `Err` says, in keyshift's words and without quoting the
/// input (it may hold a secret), why `bytes` is not a protocol reply.
pub(super) fn parse_reply(bytes: &[u8]) -> Result<Reply, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("nothing".to_owned());
    }
    // Parse to a Value first: serde_json's typed errors may quote the
    // input, these messages never do.
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        format!(
            "not one JSON document: error at line {} column {}",
            e.line(),
            e.column()
        )
    })?;
    let Value::Object(mut map) = value else {
        return Err("JSON that is not an object".to_owned());
    };
    match map.remove("protocol") {
        None => {}
        Some(Value::Number(n)) if n.as_u64() == Some(u64::from(PLUGIN_PROTOCOL_VERSION)) => {}
        Some(_) => {
            return Err(format!(
                "a reply for another protocol version (keyshift speaks {PLUGIN_PROTOCOL_VERSION})"
            ))
        }
    }
    match map.remove("ok") {
        Some(Value::Bool(true)) => Ok(Reply::Done(Fields(map))),
        Some(Value::Bool(false)) => {
            let error = match map.remove("error") {
                Some(Value::String(s)) if !s.trim().is_empty() => s,
                _ => "(no error message)".to_owned(),
            };
            let transient = match map.remove("transient") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => b,
                Some(_) => return Err("a `transient` that is not a boolean".to_owned()),
            };
            Ok(Reply::Failed { error, transient })
        }
        _ => Err("JSON without a boolean `ok`".to_owned()),
    }
}

impl Fields {
    /// `generate`'s `value`: absent or null = keyshift generates.
    pub fn take_value(&mut self) -> Result<Option<SecretValue>, &'static str> {
        match self.0.remove("value") {
            None | Some(Value::Null) => Ok(None),
            // Moved, not copied, into the zeroizing wrapper.
            Some(Value::String(s)) => SecretValue::new(s)
                .map(Some)
                .map_err(|_| "a `value` that is empty or longer than 64 KiB"),
            Some(_) => Err("a `value` that is not a string"),
        }
    }

    /// `verify`'s `verdict`.
    pub fn verdict(&self) -> Result<Verdict, &'static str> {
        match self.0.get("verdict").and_then(Value::as_str) {
            Some("accepted") => Ok(Verdict::Accepted),
            Some("refused") => Ok(Verdict::Refused),
            _ => Err("no `verdict` of \"accepted\" or \"refused\""),
        }
    }

    /// `usage`'s `uses`: absent or null = the system cannot tell.
    pub fn uses(&self) -> Result<Option<u64>, &'static str> {
        match self.0.get("uses") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Some)
                .ok_or("a `uses` that is not a non-negative integer"),
            Some(_) => Err("a `uses` that is neither a number nor null"),
        }
    }
}

/// The error for a plugin that answered `{"ok": false}`: transient →
/// [`TargetError::Unreachable`] (retried); otherwise a failed precheck is a
/// [`TargetError::Precondition`] and any other step a
/// [`TargetError::Protocol`] (not retried: the rotation rolls back).
pub(super) fn failed(
    label: &str,
    request: &Request<'_>,
    error: &str,
    transient: bool,
) -> TargetError {
    let said = shown_error(request, error);
    let step = request.step;
    if transient {
        TargetError::Unreachable {
            target: label.to_owned(),
            detail: format!("the {step} step failed, retry may help: {said}"),
        }
    } else if step == PluginStep::Precheck {
        TargetError::Precondition {
            detail: format!("{label} failed the precheck: {said}"),
        }
    } else {
        TargetError::Protocol {
            detail: format!("{label} failed the {step} step: {said}"),
        }
    }
}

/// A plugin's `error`, made fit to show: values redacted, control
/// characters flattened, at most [`MAX_ERROR_CHARS`] characters.
fn shown_error(request: &Request<'_>, error: &str) -> String {
    let flat: String = request
        .redact(error)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    truncate_chars(flat.trim(), MAX_ERROR_CHARS)
}

/// Text a plugin wrote besides its reply (stderr, an error body), made fit
/// to log: lossy UTF-8, values redacted, at most [`MAX_LOGGED_BYTES`].
pub(super) fn loggable(request: &Request<'_>, bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    truncate_chars(request.redact(text.trim_end()).as_str(), MAX_LOGGED_BYTES)
}

fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}… (truncated)", &s[..cut]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretValue {
        SecretValue::new(s.to_owned()).unwrap()
    }

    #[test]
    fn requests_carry_only_the_fields_of_their_step() {
        let v = secret("new-\"value\"\n");
        let c = secret("cur");
        let req = Request {
            step: PluginStep::Enable,
            secret: Some("prod/app"),
            value: Some(&v),
            current: None,
        };
        let json: Value = serde_json::from_slice(&req.to_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"protocol": 1, "step": "enable", "secret": "prod/app", "value": "new-\"value\"\n"})
        );
        let req = Request {
            step: PluginStep::Precheck,
            secret: None,
            value: None,
            current: Some(&c),
        };
        let json: Value = serde_json::from_slice(&req.to_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"protocol": 1, "step": "precheck", "current": "cur"})
        );
    }

    #[test]
    fn request_buffer_never_reallocates() {
        let v = secret(&"\u{1}".repeat(1000));
        let req = Request {
            step: PluginStep::Enable,
            secret: Some("a/b"),
            value: Some(&v),
            current: Some(&v),
        };
        let body = req.to_json();
        let capacity = 128 + 6 * (3 + 2000);
        assert_eq!(body.capacity(), capacity);
    }

    #[test]
    fn replies_parse_per_step() {
        let Ok(Reply::Done(mut f)) = parse_reply(br#"{"ok": true, "value": "abc"}"#) else {
            panic!()
        };
        assert_eq!(f.take_value().unwrap().unwrap().expose(), "abc");
        let Ok(Reply::Done(mut f)) = parse_reply(b"{\"ok\": true}\n") else {
            panic!()
        };
        assert!(f.take_value().unwrap().is_none());
        assert!(f.verdict().is_err());
        assert_eq!(f.uses(), Ok(None));
        let Ok(Reply::Done(f)) =
            parse_reply(br#"{"protocol": 1, "ok": true, "verdict": "refused", "uses": 3}"#)
        else {
            panic!()
        };
        assert_eq!(f.verdict(), Ok(Verdict::Refused));
        assert_eq!(f.uses(), Ok(Some(3)));
        for bad in [
            r#"{"ok": true, "uses": -1}"#,
            r#"{"ok": true, "uses": "3"}"#,
        ] {
            let Ok(Reply::Done(f)) = parse_reply(bad.as_bytes()) else {
                panic!()
            };
            assert!(f.uses().is_err(), "{bad}");
        }
        let Ok(Reply::Done(mut f)) = parse_reply(br#"{"ok": true, "value": ""}"#) else {
            panic!()
        };
        assert!(f.take_value().is_err());
    }

    #[test]
    fn failures_default_to_not_transient() {
        let Ok(Reply::Failed { error, transient }) =
            parse_reply(br#"{"ok": false, "error": "boom"}"#)
        else {
            panic!()
        };
        assert_eq!((error.as_str(), transient), ("boom", false));
        let Ok(Reply::Failed { error, transient }) =
            parse_reply(br#"{"ok": false, "transient": true}"#)
        else {
            panic!()
        };
        assert_eq!((error.as_str(), transient), ("(no error message)", true));
    }

    #[test]
    fn non_replies_are_described_without_quoting_them() {
        for bad in [
            &b""[..],
            b"  \n",
            b"the-secret-value",
            b"[\"the-secret-value\"]",
            br#"{"okay": "the-secret-value"}"#,
            br#"{"ok": "the-secret-value"}"#,
            br#"{"ok": true} {"ok": true}"#,
            br#"{"protocol": 2, "ok": true}"#,
            br#"{"ok": false, "transient": "the-secret-value"}"#,
        ] {
            let why = parse_reply(bad).err().unwrap();
            assert!(!why.contains("the-secret-value"), "{why}");
        }
    }

    #[test]
    fn logged_text_is_redacted_before_it_is_cut() {
        let v = secret("s3cr3t-value");
        let req = Request {
            step: PluginStep::Enable,
            secret: None,
            value: Some(&v),
            current: None,
        };
        // The value straddles the cut: redaction must come first.
        let mut text = "x".repeat(MAX_LOGGED_BYTES - 4);
        text.push_str("s3cr3t-value and more");
        let logged = loggable(&req, text.as_bytes());
        assert!(
            !logged.contains("s3cr3t"),
            "{}",
            &logged[logged.len() - 40..]
        );
        assert!(logged.ends_with("(truncated)"));
        assert_eq!(loggable(&req, b"plain\n"), "plain");
    }

    #[test]
    fn plugin_errors_are_redacted_flattened_and_truncated() {
        let v = secret("s3cr3t-value");
        let req = Request {
            step: PluginStep::Enable,
            secret: None,
            value: Some(&v),
            current: None,
        };
        let e = failed(
            "plugin /p",
            &req,
            &format!("bad value s3cr3t-value\nline2{}", "x".repeat(2000)),
            false,
        );
        let shown = e.to_string();
        assert!(matches!(e, TargetError::Protocol { .. }));
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
        assert!(shown.contains("<redacted>") && shown.contains("line2"));
        assert!(!shown.contains('\n'));
        assert!(shown.len() < 700, "{}", shown.len());
        assert!(shown.contains("failed the enable step"), "{shown}");
        let t = failed("plugin /p", &req, "busy", true);
        assert!(t.is_transient(), "{t}");
        let pre = Request {
            step: PluginStep::Precheck,
            ..req
        };
        assert!(matches!(
            failed("plugin /p", &pre, "no such user", false),
            TargetError::Precondition { .. }
        ));
    }
}
