//! Crash safety: a `dual` Redis rotation is killed with SIGKILL at every
//! phase boundary, the server restarts, and the rotation completes or rolls
//! back. At the moment of the kill and after the restart, the version
//! labelled `current` logs in to Redis (I1) and every password Redis accepts
//! is a version still readable from the store (I2).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use keyshift_testkit::{service, RedisUser, Service};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_keyshift");

struct Serve {
    child: Child,
    addr: String,
    stderr: mpsc::Receiver<String>,
}

impl Serve {
    fn start(dir: &Path, hooks: &[(&str, &str)]) -> Serve {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--data-dir"])
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .env_remove("KEYSHIFT_MASTER_KEY")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in hooks {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn keyshift serve");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (addr_tx, addr_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let _ = addr_tx.send(addr.trim().to_owned());
                }
            }
        });
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (err_tx, err_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let _ = err_tx.send(line);
            }
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server printed its address");
        Serve {
            child,
            addr,
            stderr: err_rx,
        }
    }

    fn wait_for_halt(&self, at: &str) {
        let want = format!("halted at {at}");
        loop {
            let line = self
                .stderr
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("server never reached {at}"));
            if line.contains(&want) {
                return;
            }
        }
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix
        self.child.wait().unwrap();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn init(dir: &Path) -> String {
    let out = Command::new(BIN)
        .args(["init", "--output", "json", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["root_token"].as_str().unwrap().to_owned()
}

struct Api {
    http: reqwest::blocking::Client,
    base: String,
    token: String,
}

impl Api {
    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().unwrap_or(Value::Null))
    }

    fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, path, None);
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }
}

/// I1 and I2 against the real Redis, read through the API.
fn check_invariants(api: &Api, name: &str, user: &RedisUser, when: &str) {
    let current = api.get(&format!("/v1/secrets/{name}:value"));
    let current = current["value"].as_str().unwrap();
    assert!(
        user.logs_in(current),
        "I1 broken {when}: current does not log in"
    );
    let versions = api.get(&format!("/v1/secrets/{name}:versions"));
    let stored: Vec<String> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let n = v["version"].as_u64().unwrap();
            let value = api.get(&format!("/v1/secrets/{name}:value?version={n}"));
            hex::encode(Sha256::digest(value["value"].as_str().unwrap().as_bytes()))
        })
        .collect();
    for digest in user.password_digests() {
        assert!(
            stored.contains(&digest),
            "I2 broken {when}: Redis accepts a password the store lost"
        );
    }
}

/// Runs one rotation with `strategy` (`dual` or `canary`, observed for no
/// time), kills the server at `at`, restarts it, and checks how the
/// rotation ends and that I1 and I2 held throughout.
fn crash_at(url: &str, at: &str, refuse_verify: Option<&str>, strategy: &str) -> String {
    let address = url.trim_start_matches("redis://").to_owned();
    let dir = tempfile::tempdir().unwrap();
    let token = init(dir.path());
    let user = RedisUser::create(url);
    let mut hooks = vec![("KEYSHIFT_TEST_HALT_AT", at)];
    if let Some(phase) = refuse_verify {
        hooks.push(("KEYSHIFT_TEST_REFUSE_VERIFY", phase));
    }
    let server = Serve::start(dir.path(), &hooks);
    let mut api = Api {
        http: reqwest::blocking::Client::new(),
        base: format!("http://{}", server.addr),
        token,
    };
    let name = format!("crash/{}", keyshift_testkit::unique_name("r"));
    let (status, body) = api.call(
        reqwest::Method::POST,
        "/v1/secrets",
        Some(json!({
            "name": name, "kind": "redis", "value": user.password,
            "target": {"address": address, "user": user.name},
            "policy": {"min_overlap": "0s", "strategy": strategy, "canary_observation": "0s"},
        })),
    );
    assert_eq!(status, 201, "{body}");
    let (status, rotation) = api.call(
        reqwest::Method::POST,
        &format!("/v1/secrets/{name}:rotate"),
        Some(json!({})),
    );
    assert_eq!(status, 201, "{rotation}");
    let id = rotation["id"].as_str().unwrap().to_owned();

    server.wait_for_halt(at);
    check_invariants(&api, &name, &user, &format!("at {at}"));
    server.kill();

    // Restarted without hooks: the rotation resumes from its persisted phase.
    let server = Serve::start(dir.path(), &[]);
    api.base = format!("http://{}", server.addr);
    let mut finished = None;
    for _ in 0..600 {
        let r = api.get(&format!("/v1/rotations/{id}"));
        if r["status"] != "running" {
            finished = Some(r);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = finished.unwrap_or_else(|| panic!("rotation killed at {at} never finished"));
    let status = r["status"].as_str().unwrap().to_owned();
    check_invariants(&api, &name, &user, &format!("after restart from {at}"));
    assert_eq!(
        user.password_count(),
        1,
        "killed at {at}: one password left: {r}"
    );
    if status == "rolled_back" {
        assert!(
            user.logs_in(&user.password),
            "rolled back: the old password works"
        );
    }
    eprintln!("killed at {at}: {status}");
    status
}

#[test]
fn killed_at_every_phase_boundary_the_rotation_completes() {
    let Some(url) = service(Service::Redis) else {
        return;
    };
    for phase in ["precheck", "generate", "dual_accept", "promote", "revoke"] {
        for when in ["before", "after"] {
            let at = format!("{phase}:{when}");
            let status = crash_at(&url, &at, None, "dual");
            assert_eq!(status, "succeeded", "killed at {at}");
        }
    }
}

#[test]
fn killed_around_a_canary_the_rotation_completes() {
    let Some(url) = service(Service::Redis) else {
        return;
    };
    for when in ["before", "after"] {
        let at = format!("canary:{when}");
        let status = crash_at(&url, &at, None, "canary");
        assert_eq!(status, "succeeded", "killed at {at}");
    }
}

#[test]
fn killed_while_rolling_back_the_rollback_completes() {
    let Some(url) = service(Service::Redis) else {
        return;
    };
    for when in ["before", "after"] {
        let at = format!("roll_back:{when}");
        assert_eq!(
            crash_at(&url, &at, Some("dual_accept"), "dual"),
            "rolled_back",
            "killed at {at}"
        );
    }
}
