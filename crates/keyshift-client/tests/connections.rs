//! How many connections an SDK client holds: over HTTP/2 (h2c with prior
//! knowledge) one connection carries the event stream, reads and
//! heartbeats; over HTTP/1.1 the open stream needs a second. Counted by a
//! TCP relay between the client and a real in-process server.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keyshift_client::{ApiClient, ConnectOptions, Selector};
use keyshift_core::{SecretName, VersionNumber};
use support::{create_api_key, rotate, wait_version, TestServer};
use tokio::net::{TcpListener, TcpStream};

/// Relays every connection it accepts to `to`, counting them.
async fn relay(to: SocketAddr) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut outbound = TcpStream::connect(to).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    (addr, accepted)
}

/// Watches a secret through a relay, sees a rotation pushed, and waits
/// for the heartbeat that reports the new version; returns how many
/// connections the client opened.
async fn connections_used(options: ConnectOptions, consumer: &str) -> usize {
    let server = TestServer::start().await;
    let admin = server.admin();
    let name = create_api_key(&admin, "conns", "10m").await;
    let (addr, accepted) = relay(server.addr).await;
    let client = keyshift_client::Client::builder(&format!("http://{addr}"))
        .token(server.token.clone())
        .consumer_id(consumer)
        .heartbeat_interval(Duration::from_millis(100))
        .connect(options)
        .build()
        .unwrap();
    let watched = client.watch(&name).await.unwrap();
    rotate(&admin, &name).await;
    let snap = wait_version(&watched, 2).await;
    let on_server = admin
        .get_value(&name, Selector::Version(VersionNumber(2)))
        .await
        .unwrap();
    assert!(snap.value.ct_eq(&on_server.value));
    wait_heartbeat(&admin, &name, consumer, VersionNumber(2)).await;
    // A few more heartbeats go out while the stream stays open.
    tokio::time::sleep(Duration::from_millis(300)).await;
    wait_heartbeat(&admin, &name, consumer, VersionNumber(2)).await;
    let used = accepted.load(Ordering::SeqCst);
    client.close();
    used
}

async fn wait_heartbeat(admin: &ApiClient, name: &SecretName, consumer: &str, v: VersionNumber) {
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        let list = admin.consumers(name).await.unwrap();
        if list
            .consumers
            .iter()
            .any(|c| c.consumer_id == consumer && c.version == Some(v))
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no heartbeat with {v}: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn over_http2_one_connection_carries_the_stream_reads_and_heartbeats() {
    let used = connections_used(
        ConnectOptions::default().http2_prior_knowledge(),
        "conns-h2:1",
    )
    .await;
    assert_eq!(used, 1);
}

#[tokio::test]
async fn over_http1_the_open_stream_needs_a_second_connection() {
    let used = connections_used(ConnectOptions::default(), "conns-h1:1").await;
    assert_eq!(used, 2);
}

#[tokio::test]
async fn the_api_client_speaks_http2_to_the_server() {
    let server = TestServer::start().await;
    let api = ApiClient::with_options(
        &server.url(),
        Some(server.token.clone()),
        &ConnectOptions::default().http2_prior_knowledge(),
    )
    .unwrap();
    assert_eq!(api.health().await.unwrap().status, "ok");
    let name = create_api_key(&api, "h2api", "0s").await;
    let value = api.get_value(&name, Selector::default()).await.unwrap();
    assert_eq!(value.info.version, VersionNumber(1));
}
