//! A known secret value never appears in the logs at the most verbose
//! level, in audit rows, or in error bodies. Its own test binary: it owns
//! the process-wide tracing subscriber.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{unique_secret, TestServer};
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

#[tokio::test]
async fn a_known_value_never_reaches_logs_audit_or_error_bodies() {
    let logs = Capture::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .init();

    let server = TestServer::start().await;
    let known = "KNOWN-secret-value-7f3a9c1e2b";
    let name = unique_secret("leak");

    // Create with the known value, read it, list versions, rotate (the
    // generated value must not leak either), read the new one.
    let (status, body) = server
        .call(
            Method::POST,
            "/v1/secrets",
            Some(json!({"name": name, "kind": "api-key", "value": known, "policy": {"min_overlap": "0s"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(!body.to_string().contains(known));
    let (_, got) = server
        .call(Method::GET, &format!("/v1/secrets/{name}:value"), None)
        .await;
    assert_eq!(got["value"], known);
    let (_, rotation) = server
        .call(Method::POST, &format!("/v1/secrets/{name}:rotate"), None)
        .await;
    let done = server.wait_rotation(rotation["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let (_, new) = server
        .call(Method::GET, &format!("/v1/secrets/{name}:value"), None)
        .await;
    let generated = new["value"].as_str().unwrap().to_owned();
    assert_ne!(generated, known);

    // Requests that fail while carrying the value.
    let mut error_bodies = Vec::new();
    for body in [
        json!({"name": name, "kind": "api-key", "value": known}), // exists: 409
        json!({"name": "../bad", "kind": "api-key", "value": known}), // bad name
        json!({"name": "x/y", "kind": "redis", "value": known}),  // no target
        json!({"name": "x/z", "kind": "api-key", "value": known, "generate": true}),
        json!({"name": "x/w", "kind": "api-key", "value": known, "nope": 1}),
        json!({"name": "x/v", "kind": known, "value": known}), // bad kind
        json!({"name": known, "kind": 5, "value": known}),
    ] {
        let (status, answer) = server.call(Method::POST, "/v1/secrets", Some(body)).await;
        assert!(status.is_client_error(), "{status} {answer}");
        error_bodies.push(answer.to_string());
    }
    let (status, answer) = server
        .call(
            Method::POST,
            &format!("/v1/secrets/{name}:versions"),
            Some(json!({"value": 42, "labels": [known]})),
        )
        .await;
    assert!(status.is_client_error(), "{answer}");
    error_bodies.push(answer.to_string());
    for body in &error_bodies {
        assert!(!body.contains(known), "error body leaks the value: {body}");
        assert!(
            !body.contains(&generated),
            "error body leaks the value: {body}"
        );
    }

    // The audit log.
    let (status, audit) = server.call(Method::GET, "/v1/audit?limit=1000", None).await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    assert!(
        audit["entries"].as_array().is_some_and(|e| e.len() >= 3),
        "{audit}"
    );
    let audit = audit.to_string();
    assert!(!audit.contains(known), "audit leaks the value");
    assert!(!audit.contains(&generated), "audit leaks the value");

    // The logs, at trace level, of everything above.
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("rotation"),
        "the capture saw the server's logs"
    );
    assert!(!logs.contains(known), "logs leak the value");
    assert!(!logs.contains(&generated), "logs leak the generated value");
    assert!(
        !logs.contains(server.token.split('.').nth(2).unwrap()),
        "logs leak the token"
    );
}
