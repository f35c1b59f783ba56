//! No value of a database, certificate or plugin secret (first, generated
//! or issued, nor a password inside a credential, nor a private key)
//! appears in the server's logs at trace level, in its audit log, or in the
//! rotation records, through a rotation of each kind. Its own test binary:
//! it owns the process-wide tracing subscriber.

mod support;
mod target_kinds;

use std::io::Write;
use std::sync::{Arc, Mutex};

use reqwest::Method;
use serde_json::{json, Value};
use support::TestServer;
use target_kinds::{create, value, Kind, MariaDb, Plugin, Postgres, Webhook, X509};
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

/// The pieces of `value` that must never be shown: the value itself, the
/// password of a credential, each base64 line of a PEM private key.
fn secret_parts(value: &str) -> Vec<String> {
    let mut parts = vec![value.to_owned()];
    if let Ok(v) = serde_json::from_str::<Value>(value) {
        if let Some(p) = v["password"].as_str() {
            parts.push(p.to_owned());
        }
    }
    if let Some((_, key)) = value.split_once("PRIVATE KEY-----") {
        parts.extend(
            key.lines()
                .take_while(|l| !l.starts_with("-----END"))
                .filter(|l| l.len() >= 16)
                .map(str::to_owned),
        );
    }
    parts
}

/// Every value of every version of `name`, split into its secret parts.
async fn all_secret_parts(server: &TestServer, name: &str) -> Vec<String> {
    let (_, versions) = server
        .call(Method::GET, &format!("/v1/secrets/{name}:versions"), None)
        .await;
    let mut parts = Vec::new();
    for v in versions["versions"].as_array().unwrap() {
        let n = v["version"].as_u64().unwrap();
        parts.extend(secret_parts(
            &value(server, name, &format!("version={n}")).await,
        ));
    }
    parts
}

#[tokio::test]
async fn no_target_secret_reaches_logs_audit_or_rotation_records() {
    // The fixtures are made before the capture starts: their own set-up
    // statements carry the first passwords.
    let mut kinds: Vec<Box<dyn Kind>> =
        vec![Box::new(X509::new()), Box::new(Webhook::start().await)];
    if let Some(k) = Postgres::new(true).await {
        kinds.push(Box::new(k));
    }
    if let Some(k) = MariaDb::dual().await {
        kinds.push(Box::new(k));
    }
    if let Some(k) = Plugin::new() {
        kinds.push(Box::new(k));
    }
    let logs = Capture::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .init();

    let server = TestServer::start().await;
    let mut names = Vec::new();
    for kind in &kinds {
        // A full rotation: every step, the revoke included.
        let name = create(&server, kind.as_ref(), json!({"min_overlap": "0s"})).await;
        let done = support::rotate_and_wait(&server, &name).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        names.push(name);
    }

    let (_, audit) = server.call(Method::GET, "/v1/audit?limit=1000", None).await;
    let (_, rotations) = server.call(Method::GET, "/v1/rotations", None).await;
    let shown = format!("{audit} {rotations}");
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("rotation"),
        "the capture saw the server's logs"
    );
    let mut checked = 0;
    for name in &names {
        for part in all_secret_parts(&server, name).await {
            assert!(
                !shown.contains(&part),
                "{name}: audit or rotations show a secret"
            );
            assert!(!logs.contains(&part), "{name}: logs show a secret");
            checked += 1;
        }
    }
    assert!(
        checked >= 2 * names.len(),
        "every secret's values were checked"
    );
}
