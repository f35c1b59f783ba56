//! `ApiClient` against a canned HTTP server: what goes on the wire (paths,
//! query encoding, the bearer token) and how answers are decoded.

use keyshift_client::{ApiClient, ClientError, Selector};
use keyshift_core::api::StartRotation;
use keyshift_core::{Label, SecretName, SecretValue, Strategy, VersionNumber};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request as the server saw it.
struct Seen {
    head: String,
    body: String,
}

impl Seen {
    fn request_line(&self) -> &str {
        self.head.lines().next().unwrap_or("")
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Serves one request with `status` and `body`; returns the base URL and
/// a handle yielding what was received.
async fn serve_once(status: u16, body: &'static str) -> (String, tokio::task::JoinHandle<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            let n = sock.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(n > 0, "connection closed before the end of the head");
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let n = sock.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
        }
        let req_body = String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned();
        let resp = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        sock.write_all(resp.as_bytes()).await.unwrap();
        sock.shutdown().await.unwrap();
        Seen {
            head,
            body: req_body,
        }
    });
    (format!("http://{addr}"), handle)
}

fn client(base: &str) -> ApiClient {
    let token = SecretValue::new("ks.t1.s3cret".to_owned()).unwrap();
    ApiClient::new(base, Some(token)).unwrap()
}

fn name(s: &str) -> SecretName {
    s.parse().unwrap()
}

const VERSION: &str = r#"{"name":"prod/orders/db","version":2,"state":"active","labels":["current"],
  "created_at":"2026-11-22T03:08:34.123Z","rotation":null,"value":"pw-2"}"#;

#[tokio::test]
async fn get_value_sends_token_path_and_encoded_label() {
    let (base, seen) = serve_once(200, VERSION).await;
    let v = client(&base)
        .get_value(&name("prod/orders/db"), Selector::Label(Label::Previous))
        .await
        .unwrap();
    assert_eq!(v.value.expose(), "pw-2");
    assert_eq!(v.info.version, VersionNumber(2));
    let seen = seen.await.unwrap();
    assert_eq!(
        seen.request_line(),
        "GET /v1/secrets/prod/orders/db:value?label=previous HTTP/1.1"
    );
    assert_eq!(seen.header("authorization"), Some("Bearer ks.t1.s3cret"));
    assert!(seen.header("user-agent").unwrap().starts_with("keyshift/"));
}

#[tokio::test]
async fn query_parameters_are_percent_encoded() {
    let (base, seen) = serve_once(200, r#"{"secrets":[]}"#).await;
    client(&base)
        .list_secrets(Some("prod/a b&c=d"))
        .await
        .unwrap();
    let seen = seen.await.unwrap();
    assert_eq!(
        seen.request_line(),
        "GET /v1/secrets?prefix=prod%2Fa+b%26c%3Dd HTTP/1.1"
    );
}

#[tokio::test]
async fn rotate_posts_json_to_the_custom_method() {
    let body = r#"{"id":"k-1","secret":"prod/cache","strategy":"immediate","phase":"precheck",
      "status":"running","old_version":1,"new_version":null,"reason":null,
      "created_at":"2026-11-22T03:08:34.123Z","phases":[]}"#;
    let (base, seen) = serve_once(201, body).await;
    let req = StartRotation {
        strategy: Some(Strategy::Immediate),
        id: Some("k-1".into()),
        ..StartRotation::default()
    };
    let rot = client(&base)
        .rotate(&name("prod/cache"), &req)
        .await
        .unwrap();
    assert_eq!(rot.id.as_str(), "k-1");
    let seen = seen.await.unwrap();
    assert_eq!(
        seen.request_line(),
        "POST /v1/secrets/prod/cache:rotate HTTP/1.1"
    );
    assert_eq!(seen.header("content-type"), Some("application/json"));
    let sent: serde_json::Value = serde_json::from_str(&seen.body).unwrap();
    assert_eq!(sent, serde_json::json!({"strategy":"immediate","id":"k-1"}));
}

#[tokio::test]
async fn list_rotations_filters_by_secret_and_activity() {
    let (base, seen) = serve_once(200, r#"{"rotations":[]}"#).await;
    client(&base)
        .list_rotations(Some(&name("prod/db")), true)
        .await
        .unwrap();
    assert_eq!(
        seen.await.unwrap().request_line(),
        "GET /v1/rotations?secret=prod%2Fdb&active=true HTTP/1.1"
    );
}

#[tokio::test]
async fn error_answers_become_api_errors() {
    let body = r#"{"error":{"code":"rotation_active","message":"a rotation of prod/cache runs","rotation":"r-7"}}"#;
    let (base, _seen) = serve_once(409, body).await;
    let e = client(&base)
        .rotate(&name("prod/cache"), &StartRotation::default())
        .await
        .unwrap_err();
    assert_eq!(
        e,
        ClientError::Api {
            status: 409,
            code: "rotation_active".into(),
            message: "a rotation of prod/cache runs".into(),
            rotation: Some("r-7".into()),
        }
    );
}

#[tokio::test]
async fn delete_accepts_an_empty_204() {
    let (base, seen) = serve_once(204, "").await;
    client(&base).delete_secret(&name("a")).await.unwrap();
    assert_eq!(
        seen.await.unwrap().request_line(),
        "DELETE /v1/secrets/a HTTP/1.1"
    );
}

#[tokio::test]
async fn a_malformed_success_body_is_a_decode_error() {
    let (base, _seen) = serve_once(200, r#"{"status":"ok"}"#).await;
    let e = client(&base).health().await.unwrap_err();
    assert!(matches!(e, ClientError::Decode(_)), "{e:?}");
}

#[tokio::test]
async fn health_needs_no_token() {
    let (base, seen) =
        serve_once(200, r#"{"status":"ok","store":"sqlite","version":"0.1.0"}"#).await;
    let h = ApiClient::new(&base, None).unwrap().health().await.unwrap();
    assert_eq!(h.store, "sqlite");
    assert_eq!(seen.await.unwrap().header("authorization"), None);
}
