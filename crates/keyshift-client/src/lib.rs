//! The keyshift client: a typed client of the keyshift HTTP API.
//!
//! ```text
//!  your program ── ApiClient ──HTTP/JSON──► keyshift server ──► store, targets
//!                     │
//!                     └── request and answer types: keyshift_core::api
//! ```
//!
//! [`ApiClient`] has one async method per endpoint of `docs/api.md`, taking
//! and returning the types of [`keyshift_core::api`], which the server uses
//! too. Every failure is a [`ClientError`]: the server's error code and
//! message, a transport failure, or an answer that does not decode. The
//! bearer token never appears in a `Debug` output, a log line or an error.
//!
//! The consumer SDK (a cached, watched value that never blocks on the
//! network) will build on this client.
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
mod snapshot;

pub use api::{ApiClient, Selector, CONNECT_TIMEOUT, REQUEST_TIMEOUT, USER_AGENT};
pub use error::ClientError;
pub use keyshift_core;
pub use snapshot::{SecretSource, Snapshot};
