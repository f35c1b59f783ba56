//! The target suite: every kind with a real target rotates end to end
//! through the server (see `target_kinds` for the kinds and the checks), plus
//! what is particular to one kind: blue-green slots made by the first
//! rotation, certificates issued at create time, misbehaving plugins.
//!
//! The rollback half of the suite runs in `target_suite_rollback.rs`: its
//! server needs a process-wide test hook.

mod support;
mod target_kinds;

use std::path::Path;
use std::time::Duration;

use keyshift_targets::{new_ca, random_password, X509CaConfig};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{phases, rotate_and_wait, start_rotation, unique_secret, TestServer};
use target_kinds::{
    create, credential, emergency_replaces_at_once, overlap_then_revoke, parse_credential, value,
    version_state, wait_phase, Kind, MariaDb, Plugin, Postgres, Redis, Webhook, X509,
};

#[tokio::test]
async fn redis_old_and_new_overlap_then_only_the_new_one_logs_in() {
    let Some(kind) = Redis::new() else { return };
    overlap_then_revoke(&kind).await;
}

#[tokio::test]
async fn postgres_old_and_new_overlap_then_only_the_new_one_logs_in() {
    let Some(kind) = Postgres::new(true).await else {
        return;
    };
    overlap_then_revoke(&kind).await;
}

#[tokio::test]
async fn mariadb_old_and_new_overlap_then_only_the_new_one_logs_in() {
    let Some(kind) = MariaDb::dual().await else {
        return;
    };
    overlap_then_revoke(&kind).await;
}

#[tokio::test]
async fn x509_leaves_overlap_then_the_new_one_is_current() {
    overlap_then_revoke(&X509::new()).await;
}

#[tokio::test]
async fn plugin_old_and_new_overlap_then_only_the_new_one_logs_in() {
    let Some(kind) = Plugin::new() else { return };
    overlap_then_revoke(&kind).await;
}

#[tokio::test]
async fn webhook_old_and_new_overlap_then_only_the_new_one_is_accepted() {
    overlap_then_revoke(&Webhook::start().await).await;
}

#[tokio::test]
async fn a_webhook_signed_with_another_key_is_refused_at_create() {
    let mut hook = Webhook::start().await;
    hook.server_key = format!("not-the-receivers-{}", unique_secret("key"));
    let server = TestServer::start().await;
    let mut body = hook.secret(&server).await;
    body["name"] = json!(unique_secret("hook"));
    let (status, answer) = server.call(Method::POST, "/v1/secrets", Some(body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer.to_string().contains("401"), "{answer}");
    assert!(!answer.to_string().contains(&hook.server_key), "{answer}");
    assert!(
        hook.receiver
            .rejected
            .load(std::sync::atomic::Ordering::SeqCst)
            > 0
    );
}

#[tokio::test]
async fn emergency_rotations_replace_and_revoke_at_once_for_every_kind() {
    let server_kinds: Vec<Box<dyn Kind>> = {
        let mut kinds: Vec<Box<dyn Kind>> =
            vec![Box::new(X509::new()), Box::new(Webhook::start().await)];
        if let Some(k) = Redis::new() {
            kinds.push(Box::new(k));
        }
        if let Some(k) = Postgres::new(true).await {
            kinds.push(Box::new(k));
        }
        if let Some(k) = MariaDb::dual().await {
            kinds.push(Box::new(k));
        }
        if let Some(k) = Plugin::new() {
            kinds.push(Box::new(k));
        }
        kinds
    };
    for kind in &server_kinds {
        emergency_replaces_at_once(kind.as_ref()).await;
    }
}

/// A blue-green secret created without a value: the first rotation makes
/// the first slot, the next ones alternate.
async fn first_rotation_creates_the_first_slot(kind: &dyn Kind, blue: &str, green: &str) {
    let label = kind.label();
    let server = TestServer::start().await;
    let name = create(&server, kind, json!({"min_overlap": "3s"})).await;
    let (_, versions) = server
        .call(Method::GET, &format!("/v1/secrets/{name}:versions"), None)
        .await;
    assert_eq!(versions["versions"], json!([]), "{label}: no value yet");

    let first = rotate_and_wait(&server, &name).await;
    assert_eq!(first["status"], "succeeded", "{label}: {first}");
    assert_eq!(
        phases(&first),
        ["precheck", "generate", "dual_accept", "promote", "done"],
        "{label}: nothing to overlap with or revoke"
    );
    let one = value(&server, &name, "label=current").await;
    assert_eq!(parse_credential(&one).0, blue, "{label}");
    assert!(kind.logs_in(&one).await, "{label}: the first slot logs in");

    let id = start_rotation(&server, &name).await;
    wait_phase(&server, &id, "overlap").await;
    let two = value(&server, &name, "label=current").await;
    assert_eq!(parse_credential(&two).0, green, "{label}");
    assert!(
        kind.logs_in(&one).await,
        "{label}: blue works in the overlap"
    );
    assert!(
        kind.logs_in(&two).await,
        "{label}: green works in the overlap"
    );
    let done = server.wait_rotation(&id).await;
    assert_eq!(done["status"], "succeeded", "{label}: {done}");
    assert!(
        !kind.logs_in(&one).await,
        "{label}: blue refused after revoke"
    );
    assert!(kind.logs_in(&two).await, "{label}: green works");

    // The third goes back into the blue slot, with a new password.
    let third = rotate_and_wait(&server, &name).await;
    assert_eq!(third["status"], "succeeded", "{label}: {third}");
    let three = value(&server, &name, "label=current").await;
    assert_eq!(parse_credential(&three).0, blue, "{label}");
    assert!(kind.logs_in(&three).await, "{label}: blue is back");
    assert!(
        !kind.logs_in(&one).await,
        "{label}: blue's old password stays refused"
    );
    assert!(!kind.logs_in(&two).await, "{label}: green refused");
}

#[tokio::test]
async fn postgres_without_a_value_gets_its_first_slot_role_from_the_first_rotation() {
    let Some(kind) = Postgres::new(false).await else {
        return;
    };
    let (blue, green) = (
        format!("{}_blue", kind.group),
        format!("{}_green", kind.group),
    );
    first_rotation_creates_the_first_slot(&kind, &blue, &green).await;
}

#[tokio::test]
async fn mariadb_blue_green_without_a_value_gets_its_first_slot_from_the_first_rotation() {
    let Some(kind) = MariaDb::blue_green().await else {
        return;
    };
    let (blue, green) = (
        format!("{}_blue", kind.user),
        format!("{}_green", kind.user),
    );
    first_rotation_creates_the_first_slot(&kind, &blue, &green).await;
}

#[tokio::test]
async fn database_values_put_by_hand_must_log_in_as_a_managed_user() {
    let Some(pg) = Postgres::new(true).await else {
        return;
    };
    let server = TestServer::start().await;
    let blue = format!("{}_blue", pg.group);
    // A wrong password, a user that is not a slot, a bare password.
    pg.env
        .run(&[format!(
            "CREATE ROLE {}_other LOGIN PASSWORD 'other-password-1' IN ROLE {}",
            pg.group, pg.group
        )])
        .await;
    let other = credential(
        &format!("{}_other", pg.group),
        &keyshift_core::SecretValue::new("other-password-1".into()).unwrap(),
    );
    for (value, why) in [
        (credential(&blue, &random_password()), "refuses"),
        (other, "neither blue-green slot"),
    ] {
        let body = json!({
            "name": unique_secret("pg"), "kind": "postgres",
            "target": pg.target(), "value": value.expose(),
        });
        let (status, answer) = server.call(Method::POST, "/v1/secrets", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        let message = answer.to_string();
        assert!(message.contains(why), "{message}");
        assert!(!message.contains(value.expose()), "{message}");
    }
    pg.env.run(&[format!("DROP ROLE {}_other", pg.group)]).await;
    let bare = json!({"name": unique_secret("pg"), "kind": "postgres", "target": pg.target(), "value": "just-a-password"});
    let (status, answer) = server.call(Method::POST, "/v1/secrets", Some(bare)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    // `generate` cannot make a login PostgreSQL knows.
    let generate = json!({"name": unique_secret("pg"), "kind": "postgres", "target": pg.target(), "generate": true});
    let (status, answer) = server
        .call(Method::POST, "/v1/secrets", Some(generate))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
}

#[tokio::test]
async fn the_admin_credential_is_read_from_the_secret_the_target_names() {
    let Some(mut pg) = Postgres::new(false).await else {
        return;
    };
    let admin = pg.admin_role().await;
    let server = TestServer::start().await;
    let admin_secret = unique_secret("pgadmin");
    let body = json!({"name": admin_secret, "kind": "static", "value": admin.expose()});
    let (status, answer) = server.call(Method::POST, "/v1/secrets", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let mut target = pg.target();
    target["admin_secret"] = json!(admin_secret);
    let name = unique_secret("pg");
    let body = json!({"name": name, "kind": "postgres", "target": target, "policy": {"min_overlap": "0s"}});
    let (status, answer) = server.call(Method::POST, "/v1/secrets", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");

    let done = rotate_and_wait(&server, &name).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let current = value(&server, &name, "label=current").await;
    assert!(pg.logs_in(&current).await, "the admin made the slot");

    // The admin secret's current value is what the target uses: a wrong
    // password fails the precheck, which never shows it.
    let (admin_user, _) = parse_credential(admin.expose());
    let wrong = credential(&admin_user, &random_password());
    let (status, answer) = server
        .call(
            Method::POST,
            &format!("/v1/secrets/{admin_secret}:versions"),
            Some(json!({"value": wrong.expose()})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let failed = rotate_and_wait(&server, &name).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["phases"][0]["phase"], "precheck", "{failed}");
    let reason = failed["reason"].as_str().unwrap();
    assert!(reason.contains("admin"), "{reason}");
    let (_, wrong_password) = parse_credential(wrong.expose());
    assert!(!failed.to_string().contains(&wrong_password), "{failed}");
    assert!(pg.logs_in(&current).await, "nothing was touched");
}

#[tokio::test]
async fn bad_target_configs_are_refused_naming_the_field() {
    let server = TestServer::start().await;
    for (kind, target, field) in [
        (
            "postgres",
            json!({"address": "127.0.0.1", "group": "1bad"}),
            "group",
        ),
        (
            "postgres",
            json!({"address": "127.0.0.1", "group": "app", "admin_secret": "a//b"}),
            "admin_secret",
        ),
        (
            "postgres",
            json!({"address": "127.0.0.1", "group": "app", "password": "x"}),
            "password",
        ),
        (
            "mariadb",
            json!({"address": "db", "user": "app", "mode": "dual", "users": ["a", "b"]}),
            "dual mode",
        ),
        (
            "mariadb",
            json!({"address": "user:pw@db", "user": "app"}),
            "address",
        ),
        ("x509", json!({"ca_secret": "ca", "names": []}), "names"),
        (
            "x509",
            json!({"ca_secret": "/ca", "names": ["a.test"]}),
            "ca_secret",
        ),
        ("x509-ca", json!({"common_name": ""}), "common_name"),
        (
            "plugin",
            json!({"exec": {"program": "relative/path"}}),
            "absolute",
        ),
        (
            "plugin",
            json!({"webhook": {"url": "http://example.com/x", "hmac_secret": "k/h"}}),
            "https",
        ),
        (
            "plugin",
            json!({"webhook": {"url": "https://example.com/x", "hmac_secret": "k//h"}}),
            "hmac_secret",
        ),
    ] {
        let body = json!({"name": unique_secret("bad"), "kind": kind, "target": target});
        let (status, answer) = server.call(Method::POST, "/v1/secrets", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{kind} {target}: {answer}");
        let message = answer.to_string();
        assert!(message.contains(field), "{kind}: {message}");
        assert!(!message.contains("pw@"), "{message}");
    }
}

#[tokio::test]
async fn certificate_authorities_are_made_or_imported_and_checked() {
    let server = TestServer::start().await;
    // Made by the server from its config.
    let x509 = X509::new();
    x509.create_ca(&server).await;
    let made = value(&server, &x509.ca_name, "label=current").await;
    assert!(made.contains("BEGIN CERTIFICATE"));

    // Imported: a usable CA is stored as it is; anything else is refused.
    let pem = new_ca(
        &X509CaConfig::new("imported CA"),
        std::time::SystemTime::now(),
    )
    .unwrap();
    let imported = unique_secret("ca");
    let body = json!({"name": imported, "kind": "x509-ca", "value": pem.expose()});
    let (status, answer) = server.call(Method::POST, "/v1/secrets", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(
        value(&server, &imported, "label=current").await,
        pem.expose()
    );
    let leaf = value(
        &server,
        &x509_leaf(&server, &imported).await,
        "label=current",
    )
    .await;
    for bad in [leaf.as_str(), "not a pem"] {
        let body = json!({"name": unique_secret("ca"), "kind": "x509-ca", "value": bad});
        let (status, answer) = server.call(Method::POST, "/v1/secrets", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    }
    // Neither a value nor a config to make one from.
    let body = json!({"name": unique_secret("ca"), "kind": "x509-ca"});
    let (status, answer) = server.call(Method::POST, "/v1/secrets", Some(body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer.to_string().contains("common_name"), "{answer}");
    // A CA does not rotate.
    let (status, answer) = server
        .call(
            Method::POST,
            &format!("/v1/secrets/{imported}:rotate"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
}

/// Creates an x509 secret issued by the CA secret `ca`; returns its name.
async fn x509_leaf(server: &TestServer, ca: &str) -> String {
    let name = unique_secret("leaf");
    let body = json!({"name": name, "kind": "x509", "target": {"ca_secret": ca, "names": ["service.test"]}});
    let (status, answer) = server.call(Method::POST, "/v1/secrets", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    name
}

#[tokio::test]
async fn leaves_are_issued_at_create_time_and_foreign_ones_refused() {
    let server = TestServer::start().await;
    let x509 = X509::new();
    x509.create_ca(&server).await;
    let leaf = x509_leaf(&server, &x509.ca_name).await;
    let issued = value(&server, &leaf, "label=current").await;
    assert!(x509.logs_in(&issued).await, "issued by the CA, valid now");

    // A leaf of another CA is not what this secret's clients trust.
    let other = X509::new();
    other.create_ca(&server).await;
    let foreign = value(
        &server,
        &x509_leaf(&server, &other.ca_name).await,
        "label=current",
    )
    .await;
    assert!(
        !x509.logs_in(&foreign).await,
        "a client of this CA refuses it"
    );
    assert!(other.logs_in(&foreign).await);
    let (status, answer) = server
        .call(
            Method::POST,
            &format!("/v1/secrets/{leaf}:versions"),
            Some(json!({"value": foreign})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(!answer.to_string().contains("PRIVATE KEY"), "{answer}");

    // A CA that does not exist issues nothing.
    let body = json!({"name": unique_secret("leaf"), "kind": "x509", "target": {"ca_secret": "test/no/such/ca", "names": ["a.test"]}});
    let (status, answer) = server.call(Method::POST, "/v1/secrets", Some(body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer.to_string().contains("no current value"), "{answer}");
}

// ---------------------------------------------------------------------------
// Misbehaving plugins

/// A wrapper of the example plugin that misbehaves once, on the `enable`
/// step (so that the rollback, which enables the old value again, runs for
/// real): it hangs (`MISBEHAVE=hang`) or prints garbage
/// (`MISBEHAVE=garbage`). Every other call goes to the example plugin.
const MISBEHAVING: &str = r#"import json, os, subprocess, sys, time
raw = sys.stdin.read()
marker = os.environ["MARKER"]
if json.loads(raw).get("step") == "enable" and not os.path.exists(marker):
    open(marker, "w").close()
    if os.environ["MISBEHAVE"] == "hang":
        time.sleep(3600)
    print("this is not the plugin protocol")
    sys.exit(0)
done = subprocess.run([sys.executable, os.environ["EXAMPLE_PLUGIN"]], input=raw, capture_output=True, text=True)
sys.stdout.write(done.stdout)
sys.stderr.write(done.stderr)
sys.exit(done.returncode)
"#;

async fn misbehaving_plugin_rolls_back(how: &str, expected_error: &str) {
    let Some(plugin) = Plugin::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("misbehaving.py");
    std::fs::write(&script, MISBEHAVING).unwrap();
    let marker = dir.path().join("misbehaved");
    let marker = marker.to_string_lossy();
    let kind = plugin.wrapped(
        Path::new(&script),
        "1s",
        &[("MISBEHAVE", how), ("MARKER", &marker)],
    );

    let server = TestServer::start().await;
    let name = create(
        &server,
        &kind,
        json!({"min_overlap": "0s", "max_attempts": 1}),
    )
    .await;
    let old = value(&server, &name, "label=current").await;
    let started = std::time::Instant::now();
    let done = rotate_and_wait(&server, &name).await;
    assert_eq!(done["status"], "rolled_back", "{done}");
    assert!(Path::new(marker.as_ref()).exists(), "the plugin misbehaved");
    let failed: Vec<&Value> = done["phases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["outcome"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{done}");
    assert_eq!(failed[0]["phase"], "dual_accept", "{done}");
    let error = failed[0]["error"].as_str().unwrap();
    assert!(error.contains(expected_error), "{error}");
    assert!(!error.contains(&old), "{error}");
    assert!(
        done["reason"].as_str().unwrap().contains(expected_error),
        "the rotation says why: {done}"
    );
    if how == "hang" {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the hung plugin was given up after its timeout"
        );
    }
    assert_eq!(value(&server, &name, "label=current").await, old);
    assert!(kind.logs_in(&old).await, "old works after the rollback");
    assert_eq!(version_state(&server, &name, 2).await, "failed");
    let new = value(&server, &name, "version=2").await;
    assert!(!kind.logs_in(&new).await, "new refused after the rollback");
}

#[tokio::test]
async fn a_plugin_that_hangs_fails_the_step_at_its_timeout_and_the_rotation_rolls_back() {
    misbehaving_plugin_rolls_back("hang", "did not answer the enable step within 1s").await;
}

#[tokio::test]
async fn a_plugin_that_prints_garbage_fails_the_step_and_the_rotation_rolls_back() {
    misbehaving_plugin_rolls_back("garbage", "not one JSON document").await;
}
