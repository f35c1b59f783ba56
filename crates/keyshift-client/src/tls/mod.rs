//! A rustls certificate resolver that hot-swaps the served certificate
//! (feature `tls`).
//!
//! ```text
//!  x509 secret (Watched) ── changes() ──┐
//!                                       ├─► parse chain + key, check they match
//!  PEM files ── inotify on the dirs ────┤      ├─ ok:      swap into the ArcSwap<CertifiedKey>
//!            └─ re-read every 10 s ─────┘      └─ refused: keep serving the old one;
//!                                                          warn + last_error()
//!  TLS handshake ── resolve() ── lock-free load ──► Arc<CertifiedKey>
//! ```
//!
//! A [`CertResolver`] serves one certificate chain and key to every new
//! handshake (as a server, and as a client presenting a certificate);
//! connections already established keep the certificate they were made
//! with, so a rotation breaks nothing in flight. It follows either a
//! keyshift `x509` secret ([`CertResolver::from_watched`]) or PEM files on
//! disk ([`CertResolver::from_files`]), and refuses any update whose
//! chain or key does not parse or whose key is not the certificate's:
//! the previous certificate stays in service and
//! [`last_error`](CertResolver::last_error) says why.
//!
//! ```no_run
//! use std::sync::Arc;
//! use keyshift_client::{CertResolver, Client};
//!
//! # async fn demo(client: Client) -> Result<(), Box<dyn std::error::Error>> {
//! let watched = client.watch(&"prod/orders/tls".parse()?).await?;
//! let resolver = CertResolver::from_watched(watched)?;
//! let config = rustls::ServerConfig::builder()
//!     .with_no_client_auth()
//!     .with_cert_resolver(Arc::new(resolver));
//! # drop(config);
//! # Ok(()) }
//! ```
//!
//! Layout: `resolver` (the handle and what it serves), `builder`
//! (configuration), `load` (PEM to a checked `CertifiedKey`), `secret` and
//! `files` (the two sources), `errors`.

mod builder;
mod errors;
mod files;
mod load;
mod resolver;
mod secret;

pub use builder::{CertResolverBuilder, DEFAULT_RECHECK, DEFAULT_SETTLE};
pub use errors::TlsError;
pub use resolver::CertResolver;
