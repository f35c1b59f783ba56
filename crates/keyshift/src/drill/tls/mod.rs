//! The `tls` kind: a CA secret (`x509-ca`), a leaf secret (`x509`, names
//! 127.0.0.1 and localhost) issued by it, a TLS service in the drill's
//! process that serves the leaf through the SDK's resolver, and consumers
//! that make a full TLS handshake and one request each time.
//!
//! ```text
//!  x509-ca secret ── CA certificate ─────────────► consumers' root store
//!  x509 secret ──SSE──► service: CertResolver ◄── handshake ── consumer
//!       └──── accepted set ──► AcceptedLeaves ◄── served leaf accepted now? ──┘
//! ```
//!
//! A consumer's request fails when the handshake fails (the certificate
//! does not chain to the CA, has expired, or names another host), when the
//! leaf the service presents is no longer in the secret's accepted set
//! (revoked: the check a CRL or OCSP would make), or when the request gets
//! no `200`. Checking the CA alone, a rotation cannot break anything: the
//! CA stays, and every leaf it issued verifies until it expires; the
//! revocation check is what a rotation that revokes too early breaks, and
//! so what `--strategy immediate` shows.

mod accepted;
mod service;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use keyshift_core::api::CreateSecret;
use keyshift_core::{Policy, SecretKind, SecretName};
use keyshift_targets::{new_ca, X509CaConfig, X509Config, X509Target};
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub use accepted::AcceptedLeaves;
pub use service::TlsService;

use super::setup::{DrillServer, Fixture, Made};

/// The names the leaves are issued for; consumers connect to the first.
const NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

/// A leaf's lifetime: a day, far longer than any drill.
const LEAF_LIFETIME: Duration = Duration::from_secs(86_400);

/// The request every consumer sends.
const REQUEST: &[u8] = b"GET /work HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n";

/// The crypto the service and the consumers use.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The drill's CA secret and the CA certificate the consumers trust.
pub struct TlsFixture {
    ca_name: SecretName,
    ca_cert: CertificateDer<'static>,
}

impl TlsFixture {
    /// Makes a CA and stores it as `drill/x509-ca-<id>`; returns the leaf
    /// secret's config and its first certificate, issued by that CA the way
    /// the server issues the next ones.
    pub async fn create(server: &DrillServer, id: &str) -> anyhow::Result<Made> {
        let now = SystemTime::now();
        let ca_config = X509CaConfig::new(format!("keyshift drill CA {id}"));
        let ca = new_ca(&ca_config, now)?;
        let ca_cert = CertificateDer::pem_slice_iter(ca.expose().as_bytes())
            .next()
            .context("the new CA has no certificate")??;
        let ca_name: SecretName = format!("drill/x509-ca-{id}").parse()?;
        let leaf_config = X509Config::new(
            ca_name.to_string(),
            NAMES.iter().map(|n| (*n).to_owned()).collect(),
        )
        .lifetime(LEAF_LIFETIME);
        let first = X509Target::new(leaf_config.clone(), ca.clone())?.issue(now)?;
        let req = CreateSecret {
            name: ca_name.clone(),
            kind: SecretKind::X509Ca,
            policy: Policy::default(),
            // Imported: an x509-ca secret with a value takes no config.
            target: serde_json::Value::Null,
            generate: false,
            value: Some(ca),
        };
        server
            .api
            .create_secret(&req)
            .await
            .context("creating the drill's CA secret")?;
        Ok(Made {
            fixture: Fixture::Tls(TlsFixture { ca_name, ca_cert }),
            kind: SecretKind::X509,
            target: serde_json::to_value(&leaf_config)?,
            value: Some(first),
        })
    }

    /// Deletes the CA secret (after the leaf secret, which names it).
    pub async fn cleanup(&self, server: &DrillServer) -> anyhow::Result<()> {
        server
            .api
            .delete_secret_forced(&self.ca_name)
            .await
            .context("deleting the drill's CA secret")
    }

    /// A consumer of the service at `addr`.
    pub fn caller(&self, addr: SocketAddr, accepted: &AcceptedLeaves) -> anyhow::Result<Caller> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_cert.clone())?;
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // A full handshake every time: a resumed session would skip the
        // certificate the service serves now.
        config.resumption = Resumption::disabled();
        Ok(Caller {
            connector: TlsConnector::from(Arc::new(config)),
            addr,
            server_name: ServerName::try_from(NAMES[0])?.to_owned(),
            accepted: accepted.clone(),
        })
    }
}

/// One TLS consumer: a fresh connection, handshake, revocation check and
/// request for every request.
pub struct Caller {
    connector: TlsConnector,
    addr: SocketAddr,
    server_name: ServerName<'static>,
    accepted: AcceptedLeaves,
}

impl Caller {
    pub async fn request(&self) -> Result<(), String> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect: {}", e.kind()))?;
        let _ = tcp.set_nodelay(true);
        let mut tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let leaf = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(accepted::fingerprint)
            .ok_or("TLS: the server presented no certificate")?;
        let version = self.accepted.check(&leaf).await?;
        let mut response = Vec::with_capacity(128);
        let exchange = async {
            tls.write_all(REQUEST).await?;
            tls.read_to_end(&mut response).await
        };
        exchange
            .await
            .map_err(|e| format!("request with version {version}: {}", e.kind()))?;
        if !response.starts_with(b"HTTP/1.1 200 ") {
            return Err(format!("no 200 with version {version}"));
        }
        Ok(())
    }
}
