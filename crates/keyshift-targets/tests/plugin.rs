//! Plugin targets: the example Redis plugin (`examples/plugins/redis-acl.py`)
//! against the real Redis (`KEYSHIFT_TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379`), misbehaving exec plugins written to temporary
//! directories, and webhooks answered by an axum receiver on 127.0.0.1:0
//! that checks every signature.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use keyshift_core::{SecretName, SecretValue};
use keyshift_targets::{
    verify_signature, ExecConfig, PluginConfig, PluginTarget, Target, TargetError, Verdict,
    WebhookConfig, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
use keyshift_testkit::{service, unique_name, RedisUser, Service};
use redis::IntoConnectionInfo;
use serde_json::{json, Value};
use tempfile::TempDir;

fn secret(s: &str) -> SecretValue {
    SecretValue::new(s.to_owned()).unwrap()
}

fn exec_target(config: ExecConfig) -> PluginTarget {
    PluginTarget::new(PluginConfig::Exec(config), None).unwrap()
}

/// Asserts that neither the error's Display nor its Debug shows `value`.
fn assert_hides(e: &TargetError, value: &str) {
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains(value), "error shows the value: {shown}");
}

// ---------------------------------------------------------------------------
// The example Redis plugin, against the real Redis.

fn example_plugin() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/plugins/redis-acl.py");
    path.canonicalize()
        .expect("examples/plugins/redis-acl.py exists")
        .to_string_lossy()
        .into_owned()
}

/// The example plugin's config for `user`; an admin password the test URL
/// carries goes to the plugin in a file, never in its env.
fn redis_plugin(url: &str, user: &RedisUser, dir: &TempDir) -> PluginTarget {
    let info = url.into_connection_info().expect("test redis URL parses");
    let mut config = ExecConfig::new(example_plugin())
        .env("REDIS_ADDR", info.addr.to_string())
        .env("REDIS_USER", &user.name)
        .timeout(Duration::from_secs(20));
    if let Some(password) = &info.redis.password {
        let file = dir.path().join("admin-password");
        std::fs::write(&file, password).unwrap();
        let admin = info.redis.username.as_deref().unwrap_or("default");
        config = config
            .env("REDIS_ADMIN_USER", admin)
            .env("REDIS_ADMIN_PASSWORD_FILE", file.to_string_lossy());
    }
    exec_target(config).with_secret(SecretName::new("test/plugin/redis").unwrap())
}

#[tokio::test]
async fn example_redis_plugin_rotates_a_real_acl_user() {
    let Some(url) = service(Service::Redis) else {
        return;
    };
    let dir = TempDir::new().unwrap();
    let user = RedisUser::create(&url);
    let target = redis_plugin(&url, &user, &dir);
    let old = secret(&user.password);

    for _ in 0..2 {
        target.precheck(Some(&old)).await.unwrap();
    }
    let new = target
        .generate(Some(&old))
        .await
        .unwrap()
        .expect("the plugin generates");
    assert_eq!(new.expose().len(), 43, "256 bits, base64url");
    assert!(!new.ct_eq(&old));
    assert_eq!(user.password_count(), 1, "generate has no side effect");

    for _ in 0..2 {
        target.enable(&new).await.unwrap();
        assert_eq!(user.password_count(), 2, "enable twice = enable once");
    }
    assert!(user.logs_in(&user.password), "old still logs in");
    assert!(user.logs_in(new.expose()), "new logs in");
    assert_eq!(target.verify(&old).await.unwrap(), Verdict::Accepted);
    assert_eq!(target.verify(&new).await.unwrap(), Verdict::Accepted);

    for _ in 0..2 {
        target.revoke(&old).await.unwrap();
        assert_eq!(user.password_count(), 1, "revoke twice = revoke once");
    }
    assert!(!user.logs_in(&user.password), "old refused");
    assert!(user.logs_in(new.expose()), "new still logs in");
    assert_eq!(target.verify(&old).await.unwrap(), Verdict::Refused);
    assert_eq!(target.verify(&new).await.unwrap(), Verdict::Accepted);
    assert_eq!(target.usage(&new).await.unwrap(), None);

    // Revoking a value never enabled changes nothing.
    target.revoke(&secret("never-enabled-value")).await.unwrap();
    assert_eq!(user.password_count(), 1);
}

#[tokio::test]
async fn example_redis_plugin_precheck_refuses_a_stale_credential_and_a_missing_user() {
    let Some(url) = service(Service::Redis) else {
        return;
    };
    let dir = TempDir::new().unwrap();
    let user = RedisUser::create(&url);
    let target = redis_plugin(&url, &user, &dir);
    let stale = "stale-password-that-never-worked";
    let e = target.precheck(Some(&secret(stale))).await.unwrap_err();
    assert!(matches!(e, TargetError::Precondition { .. }), "{e}");
    assert!(e.to_string().contains("no longer logs in"), "{e}");
    assert_hides(&e, stale);

    let PluginConfig::Exec(config) = target.config().clone() else {
        unreachable!("an exec plugin")
    };
    let config = config.env("REDIS_USER", unique_name("ks_never_created"));
    let e = exec_target(config).precheck(None).await.unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
}

#[tokio::test]
async fn example_redis_plugin_reports_an_unreachable_redis_as_transient() {
    let port = closed_port().await;
    let config = ExecConfig::new(example_plugin())
        .env("REDIS_ADDR", format!("127.0.0.1:{port}"))
        .env("REDIS_USER", "nobody");
    let value = "value-for-an-unreachable-redis";
    let e = exec_target(config)
        .verify(&secret(value))
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert_hides(&e, value);
}

// ---------------------------------------------------------------------------
// Misbehaving exec plugins: shell scripts run by /bin/sh (never exec'd
// themselves, so writing them cannot race with a fork: no ETXTBSY).

fn sh_plugin(dir: &TempDir, name: &str, body: &str) -> ExecConfig {
    let path = dir.path().join(name);
    std::fs::write(&path, body).unwrap();
    ExecConfig::new("/bin/sh")
        .arg(path.to_string_lossy())
        .timeout(Duration::from_secs(10))
}

/// Whether `pid` is gone or a zombie (dead, not yet reaped by init).
fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

/// Polls `condition` until it holds or `limit` passes.
async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    condition()
}

#[tokio::test]
async fn hung_plugin_fails_at_the_timeout_and_is_killed_with_its_children() {
    let dir = TempDir::new().unwrap();
    let pids = dir.path().join("pids");
    let config = sh_plugin(
        &dir,
        "hang.sh",
        "sleep 600 &\necho \"$$ $!\" > \"$PIDS.tmp\"\nmv \"$PIDS.tmp\" \"$PIDS\"\nwait\n",
    )
    .env("PIDS", pids.to_string_lossy())
    .timeout(Duration::from_secs(1));
    let target = exec_target(config);

    let started = Instant::now();
    let e = target
        .enable(&secret("value-sent-to-a-hung-plugin"))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(matches!(e, TargetError::Unreachable { .. }), "{e}");
    assert!(e.is_transient());
    assert!(
        e.to_string()
            .contains("did not answer the enable step within 1s"),
        "{e}"
    );
    assert_hides(&e, "value-sent-to-a-hung-plugin");

    let written = std::fs::read_to_string(&pids).expect("the plugin wrote its pids");
    let pids: Vec<u32> = written
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2, "{written}");
    for pid in pids {
        assert!(
            eventually(Duration::from_secs(5), || is_dead(pid)).await,
            "process {pid} of the hung plugin is still running"
        );
    }
}

#[tokio::test]
async fn garbage_output_is_a_protocol_error() {
    let dir = TempDir::new().unwrap();
    let config = sh_plugin(&dir, "garbage.sh", "cat >/dev/null\necho 'hello, world'\n");
    let e = exec_target(config)
        .enable(&secret("v-123456"))
        .await
        .unwrap_err();
    assert!(matches!(e, TargetError::Protocol { .. }), "{e}");
    assert!(!e.is_transient());
    assert!(
        e.to_string()
            .contains("printed something that is not a protocol reply at the enable step"),
        "{e}"
    );

    let config = sh_plugin(&dir, "silent.sh", "cat >/dev/null\n");
    let e = exec_target(config)
        .revoke(&secret("v-123456"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not a protocol reply"), "{e}");

    let config = sh_plugin(&dir, "flood.sh", "head -c 2000000 /dev/zero\n");
    let e = exec_target(config)
        .revoke(&secret("v-123456"))
        .await
        .unwrap_err();
    assert!(matches!(e, TargetError::Protocol { .. }), "{e}");
    assert!(e.to_string().contains("printed more than"), "{e}");
}

#[tokio::test]
async fn non_zero_exit_is_a_protocol_error() {
    let dir = TempDir::new().unwrap();
    let config = sh_plugin(&dir, "exit3.sh", "cat >/dev/null\necho oops >&2\nexit 3\n");
    let e = exec_target(config)
        .verify(&secret("v-123456"))
        .await
        .unwrap_err();
    assert!(matches!(e, TargetError::Protocol { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("exited with status 3 at the verify step"),
        "{e}"
    );
    assert!(
        !e.to_string().contains("oops"),
        "stderr is logged, not shown: {e}"
    );

    let config = sh_plugin(&dir, "ok-but-3.sh", "echo '{\"ok\": true}'\nexit 3\n");
    let e = exec_target(config)
        .enable(&secret("v-123456"))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("replied ok but exited with status 3"),
        "{e}"
    );

    let config = sh_plugin(&dir, "killed.sh", "kill -9 $$\n");
    let e = exec_target(config)
        .enable(&secret("v-123456"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("killed by signal 9"), "{e}");
}

#[tokio::test]
async fn failure_replies_map_to_transient_or_not() {
    let dir = TempDir::new().unwrap();
    let transient = sh_plugin(
        &dir,
        "busy.sh",
        "echo '{\"ok\": false, \"error\": \"database is restarting\", \"transient\": true}'\n",
    );
    let e = exec_target(transient)
        .enable(&secret("v-123456"))
        .await
        .unwrap_err();
    assert!(matches!(e, TargetError::Unreachable { .. }), "{e}");
    assert!(e.is_transient());
    assert!(e.to_string().contains("database is restarting"), "{e}");

    let config = sh_plugin(
        &dir,
        "locked.sh",
        "echo '{\"ok\": false, \"error\": \"account locked\"}'\nexit 1\n",
    );
    let target = exec_target(config);
    let e = target.enable(&secret("v-123456")).await.unwrap_err();
    assert!(matches!(e, TargetError::Protocol { .. }), "{e}");
    assert!(!e.is_transient());
    assert!(
        e.to_string()
            .contains("failed the enable step: account locked"),
        "{e}"
    );
    let e = target.precheck(None).await.unwrap_err();
    assert!(matches!(e, TargetError::Precondition { .. }), "{e}");
}

#[tokio::test]
async fn replies_are_read_per_step() {
    let dir = TempDir::new().unwrap();
    let reply = |name: &str, json: &str| sh_plugin(&dir, name, &format!("echo '{json}'\n"));
    let t = exec_target(reply("ok.sh", r#"{"ok": true}"#));
    assert!(
        t.generate(None).await.unwrap().is_none(),
        "keyshift generates"
    );
    assert_eq!(t.usage(&secret("v-123456")).await.unwrap(), None);
    let e = t.verify(&secret("v-123456")).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("answered the verify step with no `verdict`"),
        "{e}"
    );
    let t = exec_target(reply("uses.sh", r#"{"ok": true, "uses": 3}"#));
    assert_eq!(t.usage(&secret("v-123456")).await.unwrap(), Some(3));
    let t = exec_target(reply("refused.sh", r#"{"ok": true, "verdict": "refused"}"#));
    assert_eq!(
        t.verify(&secret("v-123456")).await.unwrap(),
        Verdict::Refused
    );
}

#[tokio::test]
async fn plugin_gets_values_on_stdin_only_and_a_cleared_environment() {
    let dir = TempDir::new().unwrap();
    let seen = dir.path().join("seen");
    let config = sh_plugin(
        &dir,
        "record.sh",
        "{ echo \"argv: $0 $*\"; env; } > \"$SEEN.env\"\ncat > \"$SEEN.stdin\"\necho '{\"ok\": true}'\n",
    )
    .arg("--flag")
    .env("SEEN", seen.to_string_lossy())
    .env("FOO", "bar");
    let target = exec_target(config).with_secret(SecretName::new("test/plugin/record").unwrap());
    let value = "the-value-only-stdin-may-see";
    target.enable(&secret(value)).await.unwrap();

    let env = std::fs::read_to_string(seen.with_extension("env")).unwrap();
    assert!(!env.contains(value), "{env}");
    assert!(env.contains("--flag") && env.contains("FOO=bar") && env.contains("PATH="));
    for leaked in ["HOME=", "CARGO", "RUST"] {
        assert!(
            !env.contains(leaked),
            "{leaked} leaked into the plugin: {env}"
        );
    }
    let stdin: Value =
        serde_json::from_slice(&std::fs::read(seen.with_extension("stdin")).unwrap()).unwrap();
    assert_eq!(
        stdin,
        json!({"protocol": 1, "step": "enable", "secret": "test/plugin/record", "value": value})
    );
}

#[tokio::test]
async fn a_missing_program_is_a_config_error() {
    let e = exec_target(ExecConfig::new("/nonexistent/keyshift-plugin"))
        .precheck(None)
        .await
        .unwrap_err();
    assert!(matches!(e, TargetError::Config { .. }), "{e}");
}

/// A python3 plugin that echoes the values it gets everywhere it can: its
/// error, its stdout, its stderr.
fn leaky_plugin(dir: &TempDir, mode: &str) -> ExecConfig {
    let path = dir.path().join("leaky.py");
    std::fs::write(
        &path,
        r#"import json, os, sys
req = json.load(sys.stdin)
leak = " ".join(v for v in (req.get("value"), req.get("current")) if v)
sys.stderr.write("stderr: " + leak + "\n")
mode = os.environ["MODE"]
if mode == "error":
    print(json.dumps({"ok": False, "error": "cannot use " + leak}))
elif mode == "transient":
    print(json.dumps({"ok": False, "error": "later: " + leak, "transient": True}))
elif mode == "garbage":
    print("not json: " + leak)
elif mode == "exit":
    print("crashed with " + leak)
    sys.exit(2)
elif mode == "bad-verdict":
    print(json.dumps({"ok": True, "verdict": leak}))
"#,
    )
    .unwrap();
    ExecConfig::new(python3())
        .arg(path.to_string_lossy())
        .env("MODE", mode)
        .timeout(Duration::from_secs(10))
}

fn python3() -> String {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("python3"))
        .find(|p| p.is_file())
        .map(|p: PathBuf| p.to_string_lossy().into_owned())
        .expect("python3 on PATH")
}

#[tokio::test]
async fn exec_errors_never_contain_the_values() {
    let dir = TempDir::new().unwrap();
    let value = secret("value-that-must-not-leak-1");
    let current = secret("current-that-must-not-leak-2");
    for mode in ["error", "transient", "garbage", "exit", "bad-verdict"] {
        let target = exec_target(leaky_plugin(&dir, mode));
        let verified = target.verify(&value).await;
        let e = verified.expect_err("every mode fails verify");
        let mut errors = vec![e];
        errors.extend(target.precheck(Some(&current)).await.err());
        errors.extend(target.generate(Some(&current)).await.err());
        for e in errors {
            assert_hides(&e, value.expose());
            assert_hides(&e, current.expose());
        }
    }
    let e = exec_target(leaky_plugin(&dir, "error"))
        .revoke(&value)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("cannot use <redacted>"), "{e}");
}

// ---------------------------------------------------------------------------
// Webhooks, answered by a receiver that checks signatures.

const HMAC_KEY: &str = "the-receivers-hmac-key-0123456789";

/// What the receiver saw and holds: the accepted set (SHA-256 digests, as
/// a real target would store them) and counters.
#[derive(Default)]
struct Receiver {
    accepted: Mutex<HashSet<[u8; 32]>>,
    rejected: AtomicUsize,
    served: AtomicUsize,
    secrets_named: Mutex<Vec<String>>,
}

async fn hook(
    State(rx): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Json<Value>) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let checked = verify_signature(
        &secret(HMAC_KEY),
        &header(TIMESTAMP_HEADER),
        &header(SIGNATURE_HEADER),
        &body,
        now,
        Duration::from_secs(300),
    );
    if let Err(e) = checked {
        rx.rejected.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": e.to_string()})),
        );
    }
    assert_eq!(header("content-type"), "application/json");
    rx.served.fetch_add(1, Ordering::SeqCst);
    let req: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(req["protocol"], 1);
    if let Some(name) = req["secret"].as_str() {
        rx.secrets_named.lock().unwrap().push(name.to_owned());
    }
    let digest = |field: &str| req[field].as_str().map(|v| secret(v).sha256());
    let mut accepted = rx.accepted.lock().unwrap();
    let reply = match req["step"].as_str().unwrap() {
        "precheck" => match digest("current") {
            Some(d) if !accepted.contains(&d) => {
                json!({"ok": false, "error": "the current key is not accepted"})
            }
            _ => json!({"ok": true}),
        },
        "generate" => json!({"ok": true}),
        "enable" => {
            accepted.insert(digest("value").unwrap());
            json!({"ok": true})
        }
        "revoke" => {
            accepted.remove(&digest("value").unwrap());
            json!({"ok": true})
        }
        "verify" => {
            let verdict = if accepted.contains(&digest("value").unwrap()) {
                "accepted"
            } else {
                "refused"
            };
            json!({"ok": true, "verdict": verdict})
        }
        "usage" => json!({"ok": true, "uses": 7}),
        other => panic!("unknown step {other}"),
    };
    (StatusCode::OK, Json(reply))
}

/// Answers 500, with the request's value in the body.
async fn down(body: Bytes) -> (StatusCode, String) {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("boom: {}", String::from_utf8_lossy(&body)),
    )
}

/// Answers 400 quoting the body, or `{"ok": false}` quoting the value.
async fn echo(body: Bytes) -> (StatusCode, String) {
    let req: Value = serde_json::from_slice(&body).unwrap();
    if req["step"] == "verify" {
        return (
            StatusCode::BAD_REQUEST,
            String::from_utf8_lossy(&body).into(),
        );
    }
    let error = format!("refusing {}", req["value"].as_str().unwrap_or_default());
    (
        StatusCode::OK,
        json!({"ok": false, "error": error}).to_string(),
    )
}

/// Never answers.
async fn slow() -> StatusCode {
    std::future::pending::<()>().await;
    StatusCode::OK
}

/// Serves the receiver on 127.0.0.1:0 for the rest of the test.
async fn receiver() -> (String, Arc<Receiver>) {
    let rx = Arc::new(Receiver::default());
    let app = Router::new()
        .route("/hook", post(hook))
        .route("/down", post(down))
        .route("/echo", post(echo))
        .route("/slow", post(slow))
        .with_state(rx.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, rx)
}

fn webhook(url: &str, key: &str) -> PluginTarget {
    let config = WebhookConfig::new(url, "test/hooks/hmac").timeout(Duration::from_secs(5));
    PluginTarget::new(PluginConfig::Webhook(config), Some(secret(key))).unwrap()
}

/// A port nothing listens on (bound, then released).
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn webhook_steps_work_through_a_signature_checking_receiver() {
    let (base, rx) = receiver().await;
    let target = webhook(&format!("{base}/hook"), HMAC_KEY)
        .with_secret(SecretName::new("test/hooks/secret").unwrap());
    let old = secret("old-key-value-0000000001");
    let new = secret("new-key-value-0000000002");

    target.enable(&old).await.unwrap();
    target.precheck(Some(&old)).await.unwrap();
    let e = target.precheck(Some(&new)).await.unwrap_err();
    assert!(matches!(e, TargetError::Precondition { .. }), "{e}");
    assert!(target.generate(Some(&old)).await.unwrap().is_none());

    for _ in 0..2 {
        target.enable(&new).await.unwrap();
    }
    assert_eq!(rx.accepted.lock().unwrap().len(), 2);
    assert_eq!(target.verify(&new).await.unwrap(), Verdict::Accepted);
    assert_eq!(target.verify(&old).await.unwrap(), Verdict::Accepted);
    for _ in 0..2 {
        target.revoke(&old).await.unwrap();
    }
    assert_eq!(target.verify(&old).await.unwrap(), Verdict::Refused);
    assert_eq!(target.verify(&new).await.unwrap(), Verdict::Accepted);
    assert_eq!(target.usage(&new).await.unwrap(), Some(7));

    assert_eq!(rx.rejected.load(Ordering::SeqCst), 0);
    let named = rx.secrets_named.lock().unwrap();
    assert_eq!(named.len(), rx.served.load(Ordering::SeqCst));
    assert!(named.iter().all(|n| n == "test/hooks/secret"));
}

#[tokio::test]
async fn webhook_with_the_wrong_key_is_rejected_by_the_receiver() {
    let (base, rx) = receiver().await;
    let target = webhook(&format!("{base}/hook"), "not-the-receivers-key-987654321");
    let e = target
        .enable(&secret("value-0000000001"))
        .await
        .unwrap_err();
    assert_eq!(
        rx.rejected.load(Ordering::SeqCst),
        1,
        "the receiver rejected it"
    );
    assert_eq!(rx.served.load(Ordering::SeqCst), 0);
    assert!(rx.accepted.lock().unwrap().is_empty());
    assert!(matches!(e, TargetError::Protocol { .. }), "{e}");
    assert!(!e.is_transient());
    assert!(e.to_string().contains("HTTP 401"), "{e}");
}

#[tokio::test]
async fn webhook_server_errors_timeouts_and_refused_connections_are_transient() {
    let (base, _rx) = receiver().await;
    let value = secret("value-sent-to-a-failing-hook");
    let e = webhook(&format!("{base}/down"), HMAC_KEY)
        .enable(&value)
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(e.to_string().contains("HTTP 500"), "{e}");
    assert_hides(&e, value.expose());

    let config = WebhookConfig::new(format!("{base}/slow"), "test/hooks/hmac")
        .timeout(Duration::from_secs(1));
    let target = PluginTarget::new(PluginConfig::Webhook(config), Some(secret(HMAC_KEY))).unwrap();
    let e = target.revoke(&value).await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(
        e.to_string()
            .contains("did not answer the revoke step within 1s"),
        "{e}"
    );

    let port = closed_port().await;
    let e = webhook(&format!("http://127.0.0.1:{port}/hook"), HMAC_KEY)
        .verify(&value)
        .await
        .unwrap_err();
    assert!(matches!(e, TargetError::Unreachable { .. }), "{e}");
}

#[tokio::test]
async fn webhook_errors_never_contain_the_values() {
    let (base, _rx) = receiver().await;
    let target = webhook(&format!("{base}/echo?token=query-token-0001"), HMAC_KEY);
    let value = secret("hook-value-that-must-not-leak");
    let e = target.verify(&value).await.unwrap_err();
    assert!(e.to_string().contains("HTTP 400"), "{e}");
    assert_hides(&e, value.expose());
    assert_hides(&e, "query-token-0001");
    let e = target.enable(&value).await.unwrap_err();
    assert!(e.to_string().contains("refusing <redacted>"), "{e}");
    assert_hides(&e, value.expose());
}
