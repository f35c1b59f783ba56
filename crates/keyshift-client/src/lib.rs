//! The keyshift client: the consumer SDK that applications embed, and the
//! typed client of the keyshift HTTP API it is built on.
//!
//! ```text
//!  keyshift server                  your process (one Client, many secrets)
//!  GET /v1/watch ──SSE events──► seq newer than applied? ──► GET :value ──┐
//!  GET :value    ◄── poll every TTL (clamped below min_overlap / 2) ───────┤
//!                                                                         ▼
//!  POST /v1/consumers/heartbeat ◄── versions held ◄── ArcSwap<Snapshot> ──► changes()
//!                                    disk cache (encrypted) ◄──┘    │
//!                                           Watched::get(): lock-free, never waits
//! ```
//!
//! [`Client`] watches secrets: [`Client::watch`] returns a [`Watched`]
//! whose [`get`](Watched::get) is an atomic load of the last good value.
//! Changes are pushed by the server over one event stream per client and
//! swapped in within milliseconds; polling with a TTL clamped below the
//! secret's overlap window covers missed events; an event older than the
//! last applied one never moves a consumer back. Heartbeats tell the server
//! which version each consumer holds, so the old credential is revoked only
//! once nobody holds it. [`Client::watch_typed`] parses a JSON secret into
//! the application's type and keeps the last good value when a new one
//! fails validation.
//!
//! [`ApiClient`] has one async method per endpoint of `docs/api.md`, taking
//! and returning the types of [`keyshift_core::api`], which the server uses
//! too. Every failure is a [`ClientError`] (or, in the SDK, an
//! [`SdkError`]). The bearer token and secret values never appear in a
//! `Debug` output, a log line or an error.
//!
//! ```no_run
//! use keyshift_client::Client;
//! use keyshift_core::{SecretName, SecretValue};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let token = SecretValue::new(std::env::var("KEYSHIFT_TOKEN")?)?;
//! let client = Client::builder("http://127.0.0.1:8200").token(token).build()?;
//!
//! let name: SecretName = "prod/orders/api".parse()?;
//! let api_key = client.watch(&name).await?;
//!
//! // On every request: lock-free, always the current version.
//! let snap = api_key.get();
//! let _header = format!("Bearer {}", snap.value.expose());
//!
//! // Rebuild what depends on it when it changes.
//! let mut changes = api_key.changes();
//! while changes.changed().await.is_ok() {
//!     println!("now on version {}", api_key.get().version);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The API client alone:
//!
//! ```no_run
//! use keyshift_client::{ApiClient, ClientError, Selector};
//! use keyshift_core::{Label, SecretName, SecretValue};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let token = SecretValue::new(std::env::var("KEYSHIFT_TOKEN")?)?;
//! let client = ApiClient::new("http://127.0.0.1:8200", Some(token))?;
//!
//! let name: SecretName = "prod/orders/db".parse()?;
//! match client.get_value(&name, Selector::Label(Label::Current)).await {
//!     Ok(v) => println!("version {} ({} bytes)", v.info.version, v.value.expose().len()),
//!     Err(e) if e.is_not_found() => println!("no such secret"),
//!     Err(ClientError::Transport(e)) => println!("server unreachable: {e}"),
//!     Err(e) => return Err(e.into()),
//! }
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod api;
mod error;
mod keyring;
#[cfg(feature = "middleware")]
pub mod middleware;
#[cfg(feature = "redis")]
mod redis;
mod snapshot;
mod swap;
#[cfg(feature = "tls")]
pub mod tls;
mod watch;

#[cfg(feature = "redis")]
pub use self::redis::{redis_connection, redis_connection_with};
pub use api::{ApiClient, ConnectOptions, Selector, CONNECT_TIMEOUT, REQUEST_TIMEOUT, USER_AGENT};
pub use error::ClientError;
pub use keyring::{Deprecation, KeyMatch, KeyRing, KeyRingConfig, KeyRingError};
pub use keyshift_core;
pub use snapshot::{SecretSource, Snapshot};
#[cfg(feature = "sqlx-mysql")]
pub use swap::{mysql_pool, mysql_pool_with};
#[cfg(feature = "sqlx-postgres")]
pub use swap::{pg_pool, pg_pool_with};
pub use swap::{HotSwap, RETIRE_GRACE, RETRY_FIRST, RETRY_MAX};
#[cfg(feature = "tls")]
pub use tls::{CertResolver, CertResolverBuilder, TlsError};
pub use watch::{
    Client, ClientBuilder, Current, SdkError, TypedSnapshot, Watched, WatchedTyped,
    DEFAULT_BACKOFF_MAX, DEFAULT_BACKOFF_MIN, DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_TTL,
};
