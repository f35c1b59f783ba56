//! The `tls` drill's service: a TLS endpoint in the drill's process that
//! serves the leaf of the `x509` secret through the SDK's [`CertResolver`],
//! the way a real service would, and answers each request with a fixed
//! HTTP response.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use keyshift_client::{CertResolver, Client};
use keyshift_core::SecretName;
use rustls::server::NoServerSessionStorage;
use rustls::ServerConfig;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::provider;
use crate::drill::consumer::{note_versions, Applied};
use crate::drill::setup::DrillServer;

/// The one response the service gives.
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";

/// The longest request head the service reads.
const MAX_REQUEST: usize = 4096;

/// The running service.
pub struct TlsService {
    /// Where it listens (127.0.0.1, a free port).
    pub addr: SocketAddr,
    client: Client,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    watcher: tokio::task::JoinHandle<Applied>,
}

impl TlsService {
    pub async fn start(server: &DrillServer, name: &SecretName) -> anyhow::Result<TlsService> {
        let client = server
            .client_builder(0)
            .consumer_id("drill-service")
            .build()?;
        let watched = client.watch(name).await?;
        let resolver = CertResolver::builder()
            .provider(provider())
            .from_watched(watched.clone())
            .context("serving the drill's certificate")?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        // Every handshake is a full one: no resumption, so each presents
        // the certificate served at that moment.
        config.send_tls13_tickets = 0;
        config.session_storage = Arc::new(NoServerSessionStorage {});
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(accept(listener, acceptor, stop.clone()));
        // The service's SDK client is the secret's consumer `drill-service`.
        let watcher = tokio::spawn(note_versions(watched, stop.clone()));
        Ok(TlsService {
            addr,
            client,
            stop,
            task,
            watcher,
        })
    }

    /// Stops serving; returns when the service held each version.
    pub async fn stop(self) -> Applied {
        self.stop.cancel();
        let _ = self.task.await;
        let applied = self.watcher.await.unwrap_or_default();
        self.client.close();
        applied
    }
}

async fn accept(listener: TcpListener, acceptor: TlsAcceptor, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((tcp, _)) => {
                tokio::spawn(serve(tcp, acceptor.clone()));
            }
            Err(e) => tracing::debug!(error = %e, "accept failed"),
        }
    }
}

/// One connection: the handshake, one request, the response.
async fn serve(tcp: TcpStream, acceptor: TlsAcceptor) {
    let _ = tcp.set_nodelay(true);
    let Ok(mut tls) = acceptor.accept(tcp).await else {
        // The client refused the handshake: it counts the failure.
        return;
    };
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tls.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) if head.len() + n > MAX_REQUEST => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    if tls.write_all(RESPONSE).await.is_ok() {
        let _ = tls.shutdown().await;
    }
}
