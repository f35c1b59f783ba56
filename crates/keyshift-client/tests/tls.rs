//! `CertResolver` behind a real TLS server (tokio-rustls on 127.0.0.1:0)
//! and a client that trusts the test CA: the certificate served by each new
//! handshake follows PEM files (rename, in-place garbage, mismatched pairs,
//! a Kubernetes-style `..data` symlink flip) and a watched keyshift secret,
//! while connections made before a swap keep working on their certificate.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use keyshift_client::{CertResolver, Snapshot, TlsError, Watched};
use keyshift_core::{SecretName, SecretValue, VersionNumber};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use support::{create_static, put_value, TestServer, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A test CA that issues leaves for `localhost`.
struct Ca {
    cert: rcgen::Certificate,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf: its chain (leaf then CA) and key in PEM, and its DER to compare
/// with what a handshake served.
struct Leaf {
    chain: String,
    key: String,
    der: CertificateDer<'static>,
}

impl Leaf {
    /// The `x509` secret format: chain then key.
    fn bundle(&self) -> String {
        format!("{}{}", self.chain, self.key)
    }
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "keyshift test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Ca {
            cert,
            issuer: Issuer::new(params, key),
        }
    }

    fn leaf(&self, cn: &str) -> Leaf {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            chain: format!("{}{}", cert.pem(), self.cert.pem()),
            key: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// A client that trusts this CA and never resumes a session, so every
    /// handshake shows the certificate served at that moment.
    fn connector(&self) -> TlsConnector {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.der().clone()).unwrap();
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.resumption = Resumption::disabled();
        TlsConnector::from(Arc::new(config))
    }
}

/// A TLS echo server on 127.0.0.1:0 that takes its certificate from
/// `resolver`; it runs until the test's runtime ends.
async fn serve(resolver: CertResolver) -> SocketAddr {
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 256];
                while let Ok(n @ 1..) = tls.read(&mut buf).await {
                    if tls.write_all(&buf[..n]).await.is_err() || tls.flush().await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn connect(connector: &TlsConnector, addr: SocketAddr) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// The leaf certificate the server presented on `conn`.
fn served(conn: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    conn.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

/// The leaf a fresh handshake gets.
async fn handshake(connector: &TlsConnector, addr: SocketAddr) -> CertificateDer<'static> {
    served(&connect(connector, addr).await)
}

/// One request/response over an established connection.
async fn echo(conn: &mut TlsStream<TcpStream>, msg: &[u8]) {
    conn.write_all(msg).await.unwrap();
    conn.flush().await.unwrap();
    let mut back = vec![0u8; msg.len()];
    conn.read_exact(&mut back).await.unwrap();
    assert_eq!(back, msg);
}

/// Waits on the resolver's update channel (bounded) until `cond` holds.
async fn wait_until(resolver: &CertResolver, what: &str, cond: impl Fn(&CertResolver) -> bool) {
    let mut updates = resolver.updates();
    let reached = tokio::time::timeout(WAIT, updates.wait_for(|_| cond(resolver))).await;
    assert!(
        reached.is_ok(),
        "timed out after {WAIT:?} waiting for {what}: {resolver:?}"
    );
}

/// Writes `contents` to `dir/name` atomically: a temporary file, renamed.
fn replace(dir: &Path, name: &str, contents: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

/// Asserts that `text` quotes no line of any private key in `keys`.
fn assert_no_key_material(text: &str, keys: &[&str]) {
    for key in keys {
        for line in key.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!text.contains(line), "key material in: {text}");
        }
    }
}

#[tokio::test]
async fn files_replaced_by_rename_swap_for_new_handshakes_only() {
    let ca = Ca::new();
    let (leaf1, leaf2, leaf3) = (ca.leaf("one"), ca.leaf("two"), ca.leaf("three"));
    let dir = tempfile::tempdir().unwrap();
    replace(dir.path(), "tls.crt", &leaf1.chain);
    replace(dir.path(), "tls.key", &leaf1.key);
    let resolver = CertResolver::builder()
        .recheck_every(Duration::from_secs(2))
        .from_files(dir.path().join("tls.crt"), dir.path().join("tls.key"))
        .unwrap();
    let addr = serve(resolver.clone()).await;
    let connector = ca.connector();

    let mut before = connect(&connector, addr).await;
    assert_eq!(served(&before), leaf1.der);
    echo(&mut before, b"hello").await;

    // Atomic replace of both files.
    replace(dir.path(), "tls.crt", &leaf2.chain);
    replace(dir.path(), "tls.key", &leaf2.key);
    wait_until(&resolver, "the swap to leaf 2", |r| r.swaps() == 1).await;
    assert_eq!(handshake(&connector, addr).await, leaf2.der);
    assert_eq!(resolver.last_error(), None);
    // The connection made before the swap still works, on leaf 1.
    echo(&mut before, b"still here after the swap").await;
    assert_eq!(served(&before), leaf1.der);

    // Garbage written in place: refused, leaf 2 still served.
    let rejected = resolver.rejections();
    std::fs::write(
        dir.path().join("tls.crt"),
        "-----BEGIN CERTIFICATE-----\nMIIB!!not base64\n",
    )
    .unwrap();
    wait_until(&resolver, "the garbage to be refused", |r| {
        r.rejections() > rejected
    })
    .await;
    let why = resolver.last_error().expect("a reason");
    assert!(why.contains("PEM"), "{why}");
    assert_eq!(handshake(&connector, addr).await, leaf2.der);

    // Leaf 3's certificate next to leaf 2's key: refused.
    let rejected = resolver.rejections();
    replace(dir.path(), "tls.crt", &leaf3.chain);
    wait_until(&resolver, "the mismatched pair to be refused", |r| {
        r.rejections() > rejected
    })
    .await;
    let why = resolver.last_error().expect("a reason");
    assert!(why.contains("does not match"), "{why}");
    assert_no_key_material(&why, &[&leaf2.key, &leaf3.key]);
    assert_no_key_material(&format!("{resolver:?}"), &[&leaf2.key, &leaf3.key]);
    assert_eq!(handshake(&connector, addr).await, leaf2.der);
    assert_eq!(resolver.swaps(), 1);

    // The key arrives: the pair matches and is swapped in.
    replace(dir.path(), "tls.key", &leaf3.key);
    wait_until(&resolver, "the swap to leaf 3", |r| r.swaps() == 2).await;
    assert_eq!(resolver.last_error(), None);
    assert_eq!(handshake(&connector, addr).await, leaf3.der);
    echo(&mut before, b"and after the second swap").await;
}

#[tokio::test]
async fn a_kubernetes_style_symlink_flip_is_picked_up() {
    let ca = Ca::new();
    let (leaf1, leaf2) = (ca.leaf("one"), ca.leaf("two"));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // d/tls.crt -> ..data/tls.crt, ..data -> data-1 (what the kubelet does).
    std::fs::create_dir(d.join("data-1")).unwrap();
    replace(&d.join("data-1"), "tls.crt", &leaf1.chain);
    replace(&d.join("data-1"), "tls.key", &leaf1.key);
    std::os::unix::fs::symlink("data-1", d.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/tls.crt", d.join("tls.crt")).unwrap();
    std::os::unix::fs::symlink("..data/tls.key", d.join("tls.key")).unwrap();
    let resolver = CertResolver::builder()
        .recheck_every(Duration::from_secs(2))
        .from_files(d.join("tls.crt"), d.join("tls.key"))
        .unwrap();
    let addr = serve(resolver.clone()).await;
    let connector = ca.connector();
    assert_eq!(handshake(&connector, addr).await, leaf1.der);

    // A new directory, then one atomic rename flips `..data` to it.
    std::fs::create_dir(d.join("data-2")).unwrap();
    replace(&d.join("data-2"), "tls.crt", &leaf2.chain);
    replace(&d.join("data-2"), "tls.key", &leaf2.key);
    std::os::unix::fs::symlink("data-2", d.join("..data_tmp")).unwrap();
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    std::fs::remove_dir_all(d.join("data-1")).unwrap();

    wait_until(&resolver, "the swap after the flip", |r| r.swaps() == 1).await;
    assert_eq!(handshake(&connector, addr).await, leaf2.der);
    assert_eq!(resolver.last_error(), None);
}

#[tokio::test]
async fn without_notifications_the_periodic_check_swaps_a_combined_file() {
    let ca = Ca::new();
    let (leaf1, leaf2) = (ca.leaf("one"), ca.leaf("two"));
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("server.pem");
    replace(dir.path(), "server.pem", &leaf1.bundle());
    let resolver = CertResolver::builder()
        .notify(false)
        .recheck_every(Duration::from_millis(100))
        .from_files(&pem, &pem)
        .unwrap();
    assert_eq!(resolver.origin(), format!("file {}", pem.display()));
    let addr = serve(resolver.clone()).await;
    let connector = ca.connector();
    assert_eq!(handshake(&connector, addr).await, leaf1.der);

    replace(dir.path(), "server.pem", &leaf2.bundle());
    wait_until(&resolver, "the periodic check's swap", |r| r.swaps() == 1).await;
    assert_eq!(handshake(&connector, addr).await, leaf2.der);

    // The same content again changes nothing.
    replace(dir.path(), "server.pem", &leaf2.bundle());
    resolver.recheck();
    let mut updates = resolver.updates();
    updates.borrow_and_update();
    let quiet = tokio::time::timeout(Duration::from_millis(500), updates.changed()).await;
    assert!(quiet.is_err(), "an update without a change: {resolver:?}");
    assert_eq!(resolver.swaps(), 1);
}

#[tokio::test]
async fn unusable_first_files_are_an_error_without_key_material() {
    let ca = Ca::new();
    let (leaf1, leaf2) = (ca.leaf("one"), ca.leaf("two"));
    let dir = tempfile::tempdir().unwrap();
    replace(dir.path(), "tls.crt", &leaf1.chain);
    replace(dir.path(), "tls.key", &leaf2.key);
    let cert = dir.path().join("tls.crt");
    let err = CertResolver::from_files(&cert, dir.path().join("tls.key")).unwrap_err();
    assert!(matches!(err, TlsError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("does not match"), "{err}");
    assert_no_key_material(&format!("{err} {err:?}"), &[&leaf2.key]);

    let err = CertResolver::from_files(&cert, dir.path().join("missing.key")).unwrap_err();
    assert!(matches!(err, TlsError::Read { .. }), "{err}");

    let err = CertResolver::from_files(&cert, &cert).unwrap_err();
    assert!(err.to_string().contains("no PEM private key"), "{err}");
}

fn snapshot(version: u64, value: &str) -> Snapshot {
    Snapshot {
        name: SecretName::new("test/tls").unwrap(),
        version: VersionNumber(version),
        value: SecretValue::new(value.to_owned()).unwrap(),
        seq: version,
    }
}

#[tokio::test]
async fn a_bad_secret_version_is_refused_and_the_old_leaf_kept() {
    let ca = Ca::new();
    let (leaf1, leaf2) = (ca.leaf("one"), ca.leaf("two"));
    let watched = Watched::fixed(snapshot(1, &leaf1.bundle()));
    let resolver = CertResolver::from_watched(watched.clone()).unwrap();
    let addr = serve(resolver.clone()).await;
    let connector = ca.connector();

    // Leaf 2's certificate with leaf 1's key.
    watched.replace(snapshot(2, &format!("{}{}", leaf2.chain, leaf1.key)));
    wait_until(&resolver, "the refusal", |r| r.rejections() == 1).await;
    let why = resolver.last_error().expect("a reason");
    assert!(why.contains("does not match"), "{why}");
    assert_no_key_material(&why, &[&leaf1.key]);
    assert_eq!(handshake(&connector, addr).await, leaf1.der);
    assert_eq!(resolver.origin(), "secret test/tls version 1");

    let err = CertResolver::from_watched(Watched::fixed(snapshot(1, "not pem"))).unwrap_err();
    assert!(matches!(err, TlsError::Invalid { .. }), "{err}");
}

#[tokio::test]
async fn a_new_version_of_the_watched_secret_is_served_to_the_next_handshake() {
    let server = TestServer::start().await;
    let api = server.admin();
    let ca = Ca::new();
    let (leaf1, leaf2) = (ca.leaf("one"), ca.leaf("two"));
    // x509 secrets are not wired in the server yet: a static one holds the
    // bundle just the same.
    let name = create_static(&api, "tls", &leaf1.bundle()).await;
    let client = server.sdk().build().unwrap();
    let watched = client.watch(&name).await.unwrap();
    let resolver = CertResolver::from_watched(watched).unwrap();
    let addr = serve(resolver.clone()).await;
    let connector = ca.connector();
    let mut before = connect(&connector, addr).await;
    assert_eq!(served(&before), leaf1.der);

    let version = put_value(&api, &name, Some(&leaf2.bundle())).await;
    wait_until(&resolver, "the swap to the new version", |r| r.swaps() == 1).await;
    assert_eq!(handshake(&connector, addr).await, leaf2.der);
    assert_eq!(
        resolver.origin(),
        format!("secret {name} version {version}")
    );
    echo(&mut before, b"in flight across the rotation").await;
    assert_eq!(served(&before), leaf1.der);
    client.close();
}
