//! PEM to a checked [`CertifiedKey`]: the chain parses, the key parses and
//! is the leaf certificate's.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::{Error, InconsistentKeys};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// A certificate ready to serve, with where it came from.
pub(super) struct Loaded {
    pub key: CertifiedKey,
    /// A secret and version, or file paths: for logs and errors.
    pub origin: String,
}

impl Loaded {
    /// The first 8 bytes of the leaf certificate's SHA-256, in hex: public,
    /// and enough to tell certificates apart in a log.
    pub fn fingerprint(&self) -> String {
        self.key
            .cert
            .first()
            .map(|leaf| hex::encode(&Sha256::digest(leaf.as_ref())[..8]))
            .unwrap_or_default()
    }
}

/// Parses the certificate chain in `cert_pem` (leaf first; other PEM
/// sections are skipped) and the first private key in `key_pem` (PKCS#8,
/// PKCS#1 or SEC1; the two may be the same text), loads the key with
/// `provider` and checks that it is the leaf's.
///
/// The error says what is wrong and never quotes the input.
pub(super) fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<CertifiedKey, String> {
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the certificate chain {}", pem_error(&e)))?;
    if certs.is_empty() {
        return Err("no PEM certificate found".to_owned());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => "no PEM private key found".to_owned(),
        e => format!("the private key {}", pem_error(&e)),
    })?;
    let key: Arc<dyn rustls::sign::SigningKey> = provider
        .key_provider
        .load_private_key(key)
        .map_err(|_| "the private key is not a supported type (ECDSA, Ed25519 or RSA)")?;
    let certified = CertifiedKey::new(certs, key);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        // A key provider (an HSM, say) may not reveal the public key.
        Err(Error::InconsistentKeys(InconsistentKeys::Unknown)) => {
            tracing::debug!("the key provider cannot tell whether key and certificate match");
            Ok(certified)
        }
        Err(Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err("the private key does not match the certificate".to_owned())
        }
        Err(e) => Err(format!("the leaf certificate does not parse ({e})")),
    }
}

/// Describes a PEM error without quoting its input.
fn pem_error(e: &pem::Error) -> &'static str {
    match e {
        pem::Error::MissingSectionEnd { .. } => "has a PEM section with no END line",
        pem::Error::IllegalSectionStart { .. } => "has a malformed PEM BEGIN line",
        pem::Error::Base64Decode(_) => "has a PEM section that is not valid base64",
        pem::Error::SectionTooLarge => "has a PEM section that is too large",
        _ => "is not valid PEM",
    }
}
