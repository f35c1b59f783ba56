//! TLS certificates: leaves (`x509` secrets) issued by a CA keyshift holds
//! (`x509-ca` secrets).
//!
//! ```text
//!  x509-ca secret: CA certificate + its PKCS#8 key   (stays; made by new_ca or imported)
//!        │ signs
//!        ▼
//!  x509 secret:    leaf certificate + CA certificate + the leaf's PKCS#8 key
//!                  (re-issued on every rotation, served by the consumers)
//! ```
//!
//! The overlap of a certificate rotation lives in the consumers, not in a
//! server keyshift logs into: every client that trusts the CA accepts both
//! the old and the new leaf, servers hot-swap the leaf they serve (in-flight
//! connections keep theirs), and the old leaf simply stops being served and
//! then expires. So [`X509Target`]'s `enable` and `revoke` change nothing,
//! and `verify` checks the certificate itself: it parses, its key matches,
//! it chains to the CA and it is valid now.
//!
//! Private keys never appear in errors, logs or `Debug` output.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keyshift_core::{SecretName, SecretValue};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{Target, TargetError, Verdict};

/// A CA's lifetime unless its config says otherwise: 10 years, so the CA
/// (which every client trusts) outlives many leaf rotations and is replaced
/// deliberately, not by surprise.
pub const DEFAULT_CA_LIFETIME: Duration = Duration::from_secs(3650 * 86_400);

/// A leaf's lifetime unless its config says otherwise: 90 days, the
/// common public-CA lifetime; rotation renews it at [`DEFAULT_RENEW_AT`].
pub const DEFAULT_LEAF_LIFETIME: Duration = Duration::from_secs(90 * 86_400);

/// The shortest lifetime a config accepts: 1 minute.
pub const MIN_LIFETIME: Duration = Duration::from_secs(60);

/// The longest lifetime a config accepts: 100 years.
pub const MAX_LIFETIME: Duration = Duration::from_secs(100 * 365 * 86_400);

/// The fraction of a leaf's validity after which its renewal is due unless
/// the config says otherwise: 2/3, which leaves a third of the lifetime to
/// retry a failed rotation before the old leaf expires.
pub const DEFAULT_RENEW_AT: f64 = 2.0 / 3.0;

/// How far a certificate's `not_before` is set in the past, so a consumer
/// whose clock is a little behind accepts it at once.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// The longest common name or DNS name accepted.
const MAX_NAME_LEN: usize = 253;

/// The signature algorithms `verify` accepts on a leaf (whatever the CA's
/// key type: the CA may be imported).
static VERIFY_ALGS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::ED25519,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// Config of an `x509-ca` secret that keyshift generates.
///
/// ```
/// let c: keyshift_targets::X509CaConfig =
///     serde_json::from_str(r#"{"common_name": "orders internal CA", "lifetime": "3650d"}"#).unwrap();
/// c.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct X509CaConfig {
    /// The CA certificate's subject common name.
    pub common_name: String,
    /// How long the CA certificate is valid (`"3650d"`); default
    /// [`DEFAULT_CA_LIFETIME`].
    #[serde(default = "default_ca_lifetime", with = "human_duration")]
    pub lifetime: Duration,
}

fn default_ca_lifetime() -> Duration {
    DEFAULT_CA_LIFETIME
}

impl X509CaConfig {
    /// A config with `common_name` and the default lifetime.
    pub fn new(common_name: impl Into<String>) -> Self {
        Self {
            common_name: common_name.into(),
            lifetime: DEFAULT_CA_LIFETIME,
        }
    }

    /// Sets [`lifetime`](Self::lifetime).
    #[must_use]
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Checks the config: a common name of 1 to 253 printable characters,
    /// a lifetime between [`MIN_LIFETIME`] and [`MAX_LIFETIME`].
    ///
    /// # Errors
    ///
    /// [`TargetError::Config`] saying which field is wrong.
    pub fn validate(&self) -> Result<(), TargetError> {
        let cn = &self.common_name;
        if cn.trim().is_empty() || cn.len() > MAX_NAME_LEN || cn.chars().any(char::is_control) {
            return Err(config(
                "common_name must have 1 to 253 characters and no control characters",
            ));
        }
        validate_lifetime("lifetime", self.lifetime)
    }
}

/// Config of an `x509` secret: the leaf certificates a CA issues for a set
/// of names.
///
/// ```
/// let c: keyshift_targets::X509Config = serde_json::from_str(
///     r#"{"ca_secret": "prod/tls/ca", "names": ["orders.internal", "10.0.0.5"], "lifetime": "30d"}"#,
/// ).unwrap();
/// c.validate().unwrap();
/// assert_eq!(c.renew_at, keyshift_targets::DEFAULT_RENEW_AT);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct X509Config {
    /// Name of the `x509-ca` secret whose CA issues the leaves (resolved by
    /// the server).
    pub ca_secret: String,
    /// DNS names (`*.example.com` allowed) or IP addresses for the subject
    /// alternative names; the first one is also the common name.
    pub names: Vec<String>,
    /// How long a leaf is valid (`"90d"`); default
    /// [`DEFAULT_LEAF_LIFETIME`], at least [`MIN_LIFETIME`]. A leaf never
    /// outlives its CA: `not_after` is capped at the CA's.
    #[serde(default = "default_leaf_lifetime", with = "human_duration")]
    pub lifetime: Duration,
    /// The fraction of a leaf's validity after which its renewal is due,
    /// in (0, 1); default [`DEFAULT_RENEW_AT`]. See [`renewal_due`].
    #[serde(default = "default_renew_at")]
    pub renew_at: f64,
}

fn default_leaf_lifetime() -> Duration {
    DEFAULT_LEAF_LIFETIME
}

fn default_renew_at() -> f64 {
    DEFAULT_RENEW_AT
}

impl X509Config {
    /// A config for leaves of `names` issued by the CA in `ca_secret`, with
    /// the default lifetime and renewal point.
    pub fn new(ca_secret: impl Into<String>, names: Vec<String>) -> Self {
        Self {
            ca_secret: ca_secret.into(),
            names,
            lifetime: DEFAULT_LEAF_LIFETIME,
            renew_at: DEFAULT_RENEW_AT,
        }
    }

    /// Sets [`lifetime`](Self::lifetime).
    #[must_use]
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Sets [`renew_at`](Self::renew_at).
    #[must_use]
    pub fn renew_at(mut self, renew_at: f64) -> Self {
        self.renew_at = renew_at;
        self
    }

    /// Checks the config: `ca_secret` is a valid secret name; `names` has
    /// 1 to 100 entries, each an IP address or a DNS name (optionally
    /// `*.`-prefixed); the lifetime is between [`MIN_LIFETIME`] and
    /// [`MAX_LIFETIME`]; `renew_at` is in (0, 1).
    ///
    /// # Errors
    ///
    /// [`TargetError::Config`] saying which field is wrong.
    pub fn validate(&self) -> Result<(), TargetError> {
        self.ca_secret
            .parse::<SecretName>()
            .map_err(|e| config(format!("ca_secret is not a valid secret name: {e}")))?;
        if self.names.is_empty() || self.names.len() > 100 {
            return Err(config("names must have 1 to 100 entries"));
        }
        for name in &self.names {
            validate_san(name)?;
        }
        validate_lifetime("lifetime", self.lifetime)?;
        if !(self.renew_at.is_finite() && self.renew_at > 0.0 && self.renew_at < 1.0) {
            return Err(config(format!(
                "renew_at must be a fraction in (0, 1) (actual={})",
                self.renew_at
            )));
        }
        Ok(())
    }
}

fn validate_lifetime(field: &str, lifetime: Duration) -> Result<(), TargetError> {
    if lifetime < MIN_LIFETIME || lifetime > MAX_LIFETIME {
        return Err(config(format!(
            "{field} must be between 1 minute and 100 years (actual={})",
            human_duration::format(lifetime)
        )));
    }
    Ok(())
}

/// A SAN entry: an IP address, or a DNS name with an optional `*.` prefix.
fn validate_san(name: &str) -> Result<(), TargetError> {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let dns = name.strip_prefix("*.").unwrap_or(name);
    let shown: String = name.chars().take(64).filter(|c| !c.is_control()).collect();
    if name.len() > MAX_NAME_LEN || rustls_pki_types::DnsName::try_from(dns).is_err() {
        return Err(config(format!(
            "names: `{shown}` is neither an IP address nor a DNS name"
        )));
    }
    Ok(())
}

fn config(detail: impl Into<String>) -> TargetError {
    TargetError::Config {
        detail: detail.into(),
    }
}

/// Makes a self-signed CA: a fresh ECDSA P-256 key, basic constraints
/// `CA:true, pathlen:0` (it issues leaves only), key usage certificate and
/// CRL signing, valid from `now` minus [`CLOCK_SKEW`] for
/// `config.lifetime`. The value is the `x509-ca` format: the CA certificate
/// then its PKCS#8 private key, in PEM.
///
/// # Errors
///
/// [`TargetError::Config`] when the config is invalid or the certificate
/// cannot be made.
#[tracing::instrument(skip_all, fields(common_name = %config.common_name))]
pub fn new_ca(config: &X509CaConfig, now: SystemTime) -> Result<SecretValue, TargetError> {
    config.validate()?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(rcgen_error("CA key"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, config.common_name.as_str());
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(random_serial());
    set_validity(&mut params, now, config.lifetime);
    let cert = params
        .self_signed(&key)
        .map_err(rcgen_error("CA certificate"))?;
    pem_bundle(&[&cert.pem()], &key)
}

/// Checks an `x509-ca` value (generated or imported): it holds a
/// certificate and a PKCS#8 private key, the certificate is a CA (basic
/// constraints `CA:true`) and the key is the certificate's.
///
/// # Errors
///
/// [`TargetError::Config`] saying what is wrong, never quoting the value.
#[tracing::instrument(skip_all)]
pub fn check_ca(value: &SecretValue) -> Result<(), TargetError> {
    Ca::parse(value).map(drop)
}

/// When the leaf in an `x509` value should be renewed: `renew_at` of the
/// way through its validity (`not_before + renew_at × (not_after −
/// not_before)`), for the scheduler to rotate by certificate age. `None`
/// when the value holds no parseable certificate or `renew_at` is not in
/// (0, 1).
pub fn renewal_due(value: &SecretValue, renew_at: f64) -> Option<SystemTime> {
    if !(renew_at.is_finite() && renew_at > 0.0 && renew_at < 1.0) {
        return None;
    }
    let bundle = Bundle::parse(value).ok()?;
    let leaf = der::parse_cert(bundle.certs.first()?)?;
    let validity = leaf.not_after.duration_since(leaf.not_before).ok()?;
    Some(leaf.not_before + validity.mul_f64(renew_at))
}

/// An `x509` secret's leaves, issued by one CA.
///
/// Its `Debug` shows the config and the CA's subject, never a key.
pub struct X509Target {
    config: X509Config,
    ca: Ca,
}

impl fmt::Debug for X509Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X509Target")
            .field("config", &self.config)
            .field("ca", &self.ca)
            .finish()
    }
}

impl X509Target {
    /// A target issuing leaves for `config` with the CA in `ca` (the
    /// current value of the `x509-ca` secret named by `config.ca_secret`).
    ///
    /// # Errors
    ///
    /// [`TargetError::Config`] when the config is invalid or `ca` is not a
    /// usable CA (see [`check_ca`]).
    #[tracing::instrument(skip_all, fields(ca_secret = %config.ca_secret))]
    pub fn new(config: X509Config, ca: SecretValue) -> Result<Self, TargetError> {
        config.validate()?;
        let ca = Ca::parse(&ca)?;
        Ok(Self { config, ca })
    }

    /// The config.
    pub fn config(&self) -> &X509Config {
        &self.config
    }

    /// Issues a leaf as of `now`: a fresh ECDSA P-256 key, the configured
    /// names, EKU serverAuth and clientAuth, a random serial, valid from
    /// `now` minus [`CLOCK_SKEW`] to `now` plus the lifetime (capped at the
    /// CA's `not_after`). Returns the `x509` value: leaf, CA certificate,
    /// leaf key.
    ///
    /// # Errors
    ///
    /// [`TargetError::Precondition`] when the CA has expired by `now`;
    /// [`TargetError::Config`] when the certificate cannot be made.
    #[tracing::instrument(skip_all, fields(ca_secret = %self.config.ca_secret))]
    pub fn issue(&self, now: SystemTime) -> Result<SecretValue, TargetError> {
        self.ca.check_valid_at(now)?;
        let key =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(rcgen_error("leaf key"))?;
        let mut params =
            CertificateParams::new(self.config.names.clone()).map_err(rcgen_error("leaf names"))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        // `new` validated the config: there is at least one name.
        if let Some(cn) = self.config.names.first() {
            params
                .distinguished_name
                .push(DnType::CommonName, cn.as_str());
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        set_validity(&mut params, now, self.config.lifetime);
        if SystemTime::from(params.not_after) > self.ca.not_after {
            params.not_after = self.ca.not_after.into();
        }
        let cert = params
            .signed_by(&key, &self.ca.issuer)
            .map_err(rcgen_error("leaf certificate"))?;
        pem_bundle(&[&cert.pem(), &self.ca.cert_pem], &key)
    }

    /// Whether `value` is a leaf of this CA that is usable at `now`: see
    /// [`Target::verify`].
    pub fn verify_at(&self, value: &SecretValue, now: SystemTime) -> Verdict {
        match self.check_leaf(value, now) {
            Ok(()) => Verdict::Accepted,
            Err(why) => {
                tracing::debug!(reason = %why, "certificate refused");
                Verdict::Refused
            }
        }
    }

    /// When the leaf in `value` should be renewed, by this config's
    /// `renew_at`: see [`renewal_due`].
    pub fn renewal_due(&self, value: &SecretValue) -> Option<SystemTime> {
        renewal_due(value, self.config.renew_at)
    }

    /// Why `value` is not a usable leaf of this CA at `now`.
    fn check_leaf(&self, value: &SecretValue, now: SystemTime) -> Result<(), String> {
        let bundle = Bundle::parse(value)?;
        let (leaf, chain) = bundle
            .certs
            .split_first()
            .ok_or("the value holds no certificate")?;
        let info = der::parse_cert(leaf).ok_or("the leaf certificate does not parse")?;
        let key = bundle.key_pair()?;
        if key.public_key_raw() != info.public_key {
            return Err("the private key does not match the leaf certificate".into());
        }
        let ee = webpki::EndEntityCert::try_from(leaf)
            .map_err(|e| format!("the leaf certificate does not parse ({e})"))?;
        let anchor = webpki::anchor_from_trusted_cert(&self.ca.cert_der)
            .map_err(|e| format!("the CA certificate does not parse ({e})"))?;
        let unix = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        ee.verify_for_usage(
            VERIFY_ALGS,
            &[anchor],
            chain,
            UnixTime::since_unix_epoch(unix),
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map(drop)
        .map_err(|e| match e {
            webpki::Error::CertExpired { .. } => "the leaf certificate has expired".to_owned(),
            webpki::Error::CertNotValidYet { .. } => {
                "the leaf certificate is not valid yet".to_owned()
            }
            webpki::Error::UnknownIssuer | webpki::Error::InvalidSignatureForPublicKey => {
                "the leaf certificate was not issued by this CA".to_owned()
            }
            other => format!("the leaf certificate does not verify against the CA ({other})"),
        })
    }
}

#[async_trait::async_trait]
impl Target for X509Target {
    /// No side effects: the CA is valid now, and `current` (if any) is a
    /// leaf of this CA, valid now, whose key matches.
    #[tracing::instrument(skip_all, fields(ca_secret = %self.config.ca_secret))]
    async fn precheck(&self, current: Option<&SecretValue>) -> Result<(), TargetError> {
        let now = SystemTime::now();
        self.ca.check_valid_at(now)?;
        if let Some(value) = current {
            self.check_leaf(value, now)
                .map_err(|why| TargetError::Precondition {
                    detail: format!("the current certificate is not usable: {why}"),
                })?;
        }
        Ok(())
    }

    /// Issues a new leaf as of now (see [`X509Target::issue`]); `current`
    /// is not needed: every leaf gets a fresh key.
    #[tracing::instrument(skip_all, fields(ca_secret = %self.config.ca_secret))]
    async fn generate(
        &self,
        current: Option<&SecretValue>,
    ) -> Result<Option<SecretValue>, TargetError> {
        let _ = current;
        self.issue(SystemTime::now()).map(Some)
    }

    /// Nothing to do: every client that trusts the CA accepts the new leaf
    /// as soon as it exists; the consumers that serve it are the target,
    /// and they pick it up when `current` moves.
    async fn enable(&self, value: &SecretValue) -> Result<(), TargetError> {
        let _ = value;
        Ok(())
    }

    /// Nothing to do: the old leaf stops being served once the consumers
    /// have swapped to the new one (which the overlap gate waits for), and
    /// it expires on its own. There is no CRL to publish.
    async fn revoke(&self, value: &SecretValue) -> Result<(), TargetError> {
        let _ = value;
        Ok(())
    }

    /// `Accepted` when `value` parses, its key matches the leaf, the leaf
    /// chains to this CA (serverAuth) and is within its validity period
    /// now; `Refused` otherwise. Never `Err`.
    #[tracing::instrument(skip_all, fields(ca_secret = %self.config.ca_secret))]
    async fn verify(&self, value: &SecretValue) -> Result<Verdict, TargetError> {
        Ok(self.verify_at(value, SystemTime::now()))
    }
}

/// A parsed CA: its certificate, validity and signing key.
struct Ca {
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    not_after: SystemTime,
    /// The subject's common name, for `Debug` and errors.
    subject: String,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("subject", &self.subject)
            .field("not_after", &humanize(self.not_after))
            .finish_non_exhaustive()
    }
}

impl Ca {
    fn parse(value: &SecretValue) -> Result<Ca, TargetError> {
        let bad = |why: String| config(format!("the CA is not usable: {why}"));
        let bundle = Bundle::parse(value).map_err(bad)?;
        let cert_der = bundle
            .certs
            .first()
            .ok_or_else(|| bad("the value holds no certificate".into()))?
            .clone();
        let info = der::parse_cert(&cert_der)
            .ok_or_else(|| bad("the CA certificate does not parse".into()))?;
        if !info.is_ca {
            return Err(bad(
                "the certificate is not a CA (basic constraints lack CA:true)".into(),
            ));
        }
        let key = bundle.key_pair().map_err(bad)?;
        if key.public_key_raw() != info.public_key {
            return Err(bad(
                "the private key does not match the CA certificate".into()
            ));
        }
        webpki::anchor_from_trusted_cert(&cert_der).map_err(|e| {
            bad(format!(
                "the CA certificate is not a valid trust anchor ({e})"
            ))
        })?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)
            .map_err(|e| bad(format!("the CA certificate cannot issue ({e})")))?;
        Ok(Ca {
            cert_pem: pem_encode("CERTIFICATE", &cert_der),
            not_after: info.not_after,
            subject: info.common_name.unwrap_or_default(),
            cert_der,
            issuer,
        })
    }

    fn check_valid_at(&self, now: SystemTime) -> Result<(), TargetError> {
        if now >= self.not_after {
            return Err(TargetError::Precondition {
                detail: format!(
                    "the CA `{}` expired at {}: replace the x509-ca secret",
                    self.subject,
                    humanize(self.not_after)
                ),
            });
        }
        Ok(())
    }
}

/// The sections of a PEM value: certificates in order, and one PKCS#8 key.
struct Bundle {
    certs: Vec<CertificateDer<'static>>,
    key: Zeroizing<Vec<u8>>,
}

impl Bundle {
    /// Parses `value`. Errors say what is missing, never quote the value.
    fn parse(value: &SecretValue) -> Result<Bundle, String> {
        let mut certs = Vec::new();
        let mut key: Option<Zeroizing<Vec<u8>>> = None;
        for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(value.expose().as_bytes()) {
            let (kind, der) = section.map_err(|e| pem_error(&e))?;
            let der = Zeroizing::new(der);
            match kind {
                SectionKind::Certificate => certs.push(CertificateDer::from(der.to_vec())),
                SectionKind::PrivateKey if key.is_none() => key = Some(der),
                SectionKind::PrivateKey => return Err("the value holds two private keys".into()),
                SectionKind::EcPrivateKey | SectionKind::RsaPrivateKey => {
                    return Err("the private key is not PKCS#8 (`BEGIN PRIVATE KEY`)".into())
                }
                _ => {}
            }
        }
        if certs.is_empty() {
            return Err("the value holds no PEM certificate".into());
        }
        let key = key.ok_or("the value holds no PEM private key")?;
        Ok(Bundle { certs, key })
    }

    fn key_pair(&self) -> Result<KeyPair, String> {
        KeyPair::try_from(self.key.as_slice())
            .map_err(|_| "the private key does not parse (PKCS#8 ECDSA, Ed25519 or RSA)".into())
    }
}

/// Describes a PEM error without quoting its input.
fn pem_error(e: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error as E;
    let what = match e {
        E::MissingSectionEnd { .. } => "a PEM section has no END line",
        E::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed",
        E::Base64Decode(_) => "a PEM section is not valid base64",
        E::SectionTooLarge => "a PEM section is too large",
        _ => "the value is not valid PEM",
    };
    what.to_owned()
}

/// The value `certs` then `key`, in PEM. Every copy of the key is zeroed.
fn pem_bundle(certs: &[&str], key: &KeyPair) -> Result<SecretValue, TargetError> {
    let key_pem = Zeroizing::new(key.serialize_pem());
    let len = certs.iter().map(|c| c.len()).sum::<usize>() + key_pem.len();
    let mut out = String::with_capacity(len);
    for cert in certs {
        out.push_str(cert);
    }
    out.push_str(&key_pem);
    SecretValue::new(out).map_err(|e| config(format!("the issued bundle is not storable: {e}")))
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Sets `not_before` to `now` − [`CLOCK_SKEW`] and `not_after` to `now` +
/// `lifetime`, in whole seconds.
fn set_validity(params: &mut CertificateParams, now: SystemTime, lifetime: Duration) {
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let now = UNIX_EPOCH + Duration::from_secs(secs);
    params.not_before = (now - CLOCK_SKEW).into();
    params.not_after = (now + lifetime).into();
}

/// 16 random bytes, positive and of fixed length as a DER integer.
fn random_serial() -> SerialNumber {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn rcgen_error(what: &'static str) -> impl Fn(rcgen::Error) -> TargetError {
    move |e| config(format!("could not make the {what}: {e}"))
}

/// RFC 3339, for errors and `Debug`.
fn humanize(t: SystemTime) -> String {
    keyshift_core::Timestamp::from_system(t).to_string()
}

/// Just enough DER to read what webpki does not expose: a certificate's
/// validity, public key, CA flag and common name.
mod der {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    const BIT_STRING: u8 = 0x03;
    const OCTET_STRING: u8 = 0x04;
    const OID: u8 = 0x06;
    const BOOLEAN: u8 = 0x01;
    const SET: u8 = 0x31;
    const UTC_TIME: u8 = 0x17;
    const GENERALIZED_TIME: u8 = 0x18;
    const VERSION: u8 = 0xA0;
    const EXTENSIONS: u8 = 0xA3;
    /// 2.5.29.19
    const BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1D, 0x13];
    /// 2.5.4.3
    const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

    /// What keyshift reads from a certificate.
    pub(super) struct CertInfo<'a> {
        pub not_before: SystemTime,
        pub not_after: SystemTime,
        /// The subject public key (the BIT STRING's bytes).
        pub public_key: &'a [u8],
        /// Basic constraints say `CA:true`.
        pub is_ca: bool,
        /// The subject's first common name, if printable.
        pub common_name: Option<String>,
    }

    /// Reads a certificate; `None` if it is not DER of the expected shape.
    pub(super) fn parse_cert(der: &[u8]) -> Option<CertInfo<'_>> {
        let mut input = der;
        let mut cert = expect(&mut input, SEQUENCE)?;
        let mut tbs = expect(&mut cert, SEQUENCE)?;
        if tbs.first() == Some(&VERSION) {
            tlv(&mut tbs)?;
        }
        expect(&mut tbs, INTEGER)?;
        expect(&mut tbs, SEQUENCE)?; // signature algorithm
        expect(&mut tbs, SEQUENCE)?; // issuer
        let mut validity = expect(&mut tbs, SEQUENCE)?;
        let not_before = time(&mut validity)?;
        let not_after = time(&mut validity)?;
        let subject = expect(&mut tbs, SEQUENCE)?;
        let mut spki = expect(&mut tbs, SEQUENCE)?;
        expect(&mut spki, SEQUENCE)?;
        let (&unused, public_key) = expect(&mut spki, BIT_STRING)?.split_first()?;
        if unused != 0 {
            return None;
        }
        let mut is_ca = false;
        while !tbs.is_empty() {
            let (tag, mut value) = tlv(&mut tbs)?;
            if tag == EXTENSIONS {
                is_ca = basic_constraints_ca(expect(&mut value, SEQUENCE)?)?;
            }
        }
        Some(CertInfo {
            not_before,
            not_after,
            public_key,
            is_ca,
            common_name: common_name(subject),
        })
    }

    fn basic_constraints_ca(mut extensions: &[u8]) -> Option<bool> {
        while !extensions.is_empty() {
            let mut ext = expect(&mut extensions, SEQUENCE)?;
            let oid = expect(&mut ext, OID)?;
            if ext.first() == Some(&BOOLEAN) {
                tlv(&mut ext)?;
            }
            let mut value = expect(&mut ext, OCTET_STRING)?;
            if oid == BASIC_CONSTRAINTS {
                let mut bc = expect(&mut value, SEQUENCE)?;
                if bc.first() == Some(&BOOLEAN) {
                    return Some(expect(&mut bc, BOOLEAN)? == [0xFF]);
                }
                return Some(false);
            }
        }
        Some(false)
    }

    fn common_name(mut name: &[u8]) -> Option<String> {
        while !name.is_empty() {
            let mut rdn = expect(&mut name, SET)?;
            while !rdn.is_empty() {
                let mut atv = expect(&mut rdn, SEQUENCE)?;
                if expect(&mut atv, OID)? == COMMON_NAME {
                    let (_, value) = tlv(&mut atv)?;
                    let s = std::str::from_utf8(value).ok()?;
                    return Some(s.chars().filter(|c| !c.is_control()).collect());
                }
            }
        }
        None
    }

    /// Reads one tag-length-value; only single-byte tags and lengths up to
    /// four bytes (certificates need no more).
    fn tlv<'a>(input: &mut &'a [u8]) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let (bytes, after) = rest.split_at(n);
            rest = after;
            bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        if rest.len() < len {
            return None;
        }
        let (value, after) = rest.split_at(len);
        *input = after;
        Some((tag, value))
    }

    fn expect<'a>(input: &mut &'a [u8], tag: u8) -> Option<&'a [u8]> {
        match tlv(input)? {
            (t, value) if t == tag => Some(value),
            _ => None,
        }
    }

    /// A UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
    fn time(input: &mut &[u8]) -> Option<SystemTime> {
        let (tag, value) = tlv(input)?;
        let s = std::str::from_utf8(value).ok()?;
        let digits = s.strip_suffix('Z')?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let num = |r: std::ops::Range<usize>| digits.get(r)?.parse::<i64>().ok();
        let (year, rest) = match (tag, digits.len()) {
            (UTC_TIME, 12) => {
                let yy = num(0..2)?;
                (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
            }
            (GENERALIZED_TIME, 14) => (num(0..4)?, 4),
            _ => return None,
        };
        let field = |i: usize| num(rest + 2 * i..rest + 2 * i + 2);
        let (month, day, hour, min, sec) = (field(0)?, field(1)?, field(2)?, field(3)?, field(4)?);
        if !(1..=12).contains(&month)
            || !(1..=31).contains(&day)
            || hour > 23
            || min > 59
            || sec > 60
        {
            return None;
        }
        let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec;
        Some(if secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
        })
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard
    /// Hinnant's `days_from_civil`).
    pub(super) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }
}

/// Serde for a [`Duration`] as a human string: `"90d"`, `"24h"`,
/// `"1h 30m"` (units s, m, h, d, w, y as in `humantime`, which the rest of
/// keyshift's configs use).
mod human_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }

    /// Seconds per unit; a year is 365.25 days, as in `humantime`.
    fn unit(name: &str) -> Option<u64> {
        Some(match name {
            "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            "w" | "week" | "weeks" => 7 * 86_400,
            "y" | "year" | "years" => 31_557_600,
            _ => return None,
        })
    }

    /// Parses a sum of `<number><unit>` terms, spaces allowed between.
    pub(super) fn parse(s: &str) -> Result<Duration, String> {
        let bad = || format!("`{s}` is not a duration such as \"90d\", \"24h\" or \"1h 30m\"");
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err(bad());
        }
        let mut total: u64 = 0;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = rest[digits..].trim_start();
            let letters = rest
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(rest.len());
            let per = unit(&rest[..letters]).ok_or_else(bad)?;
            rest = rest[letters..].trim_start();
            total = number
                .checked_mul(per)
                .and_then(|n| total.checked_add(n))
                .ok_or_else(bad)?;
        }
        Ok(Duration::from_secs(total))
    }

    /// `90d`, `1d 2h`, `30s`: whole seconds, largest units first.
    pub(super) fn format(d: Duration) -> String {
        let mut secs = d.as_secs();
        if secs == 0 {
            return "0s".to_owned();
        }
        let mut parts = Vec::new();
        for (per, name) in [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")] {
            if secs >= per {
                parts.push(format!("{}{name}", secs / per));
                secs %= per;
            }
        }
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_parse_and_round_trip() {
        let p = |s: &str| human_duration::parse(s).unwrap();
        assert_eq!(p("90d"), Duration::from_secs(90 * 86_400));
        assert_eq!(p("1h 30m"), Duration::from_secs(5400));
        assert_eq!(p("1h30m"), Duration::from_secs(5400));
        assert_eq!(p("3650days"), DEFAULT_CA_LIFETIME);
        assert_eq!(p("1y"), Duration::from_secs(31_557_600));
        for bad in ["", "d", "12", "5 parsecs", "-1d", "99999999999999999999y"] {
            assert!(human_duration::parse(bad).is_err(), "{bad:?}");
        }
        for d in [60, 5400, 90 * 86_400, 86_400 + 7201] {
            let d = Duration::from_secs(d);
            assert_eq!(p(&human_duration::format(d)), d);
        }
        assert_eq!(human_duration::format(DEFAULT_LEAF_LIFETIME), "90d");
    }

    #[test]
    fn civil_dates_count_days_from_the_epoch() {
        assert_eq!(der::days_from_civil(1970, 1, 1), 0);
        assert_eq!(der::days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(der::days_from_civil(1969, 12, 31), -1);
        assert_eq!(der::days_from_civil(2050, 1, 1), 29_220);
    }

    #[test]
    fn reads_validity_and_ca_flag_that_rcgen_wrote() {
        // 2049 is written as UTCTime, 2051 as GeneralizedTime.
        let start = UNIX_EPOCH + Duration::from_secs(2_500_000_000);
        let ca = new_ca(&X509CaConfig::new("test CA"), start).unwrap();
        let bundle = Bundle::parse(&ca).unwrap();
        let info = der::parse_cert(&bundle.certs[0]).unwrap();
        assert!(info.is_ca);
        assert_eq!(info.not_before, start - CLOCK_SKEW);
        assert_eq!(info.not_after, start + DEFAULT_CA_LIFETIME);
        assert_eq!(info.common_name.as_deref(), Some("test CA"));
        assert_eq!(bundle.key_pair().unwrap().public_key_raw(), info.public_key);
    }

    #[test]
    fn configs_refuse_out_of_range_fields() {
        let ok = X509Config::new("prod/tls/ca", vec!["a.example".into()]);
        ok.validate().unwrap();
        ok.clone()
            .renew_at(0.5)
            .lifetime(MIN_LIFETIME)
            .validate()
            .unwrap();
        let wildcard = X509Config::new("prod/tls/ca", vec!["*.example.com".into(), "::1".into()]);
        wildcard.validate().unwrap();
        for bad in [
            ok.clone().renew_at(0.0),
            ok.clone().renew_at(1.0),
            ok.clone().renew_at(f64::NAN),
            ok.clone().lifetime(Duration::from_secs(59)),
            X509Config::new("prod/tls/ca", vec![]),
            X509Config::new("prod/tls/ca", vec!["not a name".into()]),
            X509Config::new("../ca", vec!["a.example".into()]),
        ] {
            assert!(
                matches!(bad.validate(), Err(TargetError::Config { .. })),
                "{bad:?}"
            );
        }
        assert!(X509CaConfig::new("").validate().is_err());
        assert!(X509CaConfig::new("ca")
            .lifetime(Duration::from_secs(1))
            .validate()
            .is_err());
    }

    #[test]
    fn configs_deserialize_with_defaults() {
        let c: X509Config =
            serde_json::from_str(r#"{"ca_secret": "prod/tls/ca", "names": ["a.example"]}"#)
                .unwrap();
        assert_eq!(c.lifetime, DEFAULT_LEAF_LIFETIME);
        assert_eq!(c.renew_at, DEFAULT_RENEW_AT);
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["lifetime"], "90d");
        let ca: X509CaConfig = serde_json::from_str(r#"{"common_name": "ca"}"#).unwrap();
        assert_eq!(ca.lifetime, DEFAULT_CA_LIFETIME);
        assert!(serde_json::from_str::<X509CaConfig>(r#"{"common_name": "ca", "x": 1}"#).is_err());
    }
}
