//! keyshift's durable state: the [`Store`] trait and [`SqlStore`], its
//! SQLite and PostgreSQL engine.
//!
//! Secret values are encrypted at rest with XChaCha20-Poly1305 under a
//! [`MasterKey`]; the secret's name and version number are the associated
//! data, so a ciphertext cannot be moved to another row. Every change to a
//! secret writes an [`EventRecord`] in the same transaction (for watchers),
//! rotations are stored with the database enforcing at most one active
//! rotation per secret, and an append-only audit log records who did what,
//! never a value. Consumers' heartbeats and per-minute usage counts, the
//! signals of the overlap gate, are kept per secret.
//!
//! ```no_run
//! use keyshift_core::{Label, Policy, SecretKind, SecretName, SecretValue, Timestamp, VersionState};
//! use keyshift_store::{sqlite_url, MasterKey, SqlStore, Store, VersionSelector};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let key = MasterKey::load(std::path::Path::new("/var/lib/keyshift/master.key"))?;
//! let store = SqlStore::open(&sqlite_url("/var/lib/keyshift/keyshift.db".as_ref()), key).await?;
//!
//! let name: SecretName = "prod/orders/api".parse()?;
//! let now = Timestamp::from_system(std::time::SystemTime::now());
//! store.create_secret(&name, SecretKind::Static, &Policy::default(), &serde_json::json!({}), now).await?;
//! let value = SecretValue::new("correct horse battery staple".into())?;
//! store.add_version(&name, &value, VersionState::Active, None, &[Label::Current], now).await?;
//!
//! let (version, value) = store.get_value(&name, &VersionSelector::Label(Label::Current)).await?;
//! assert_eq!(version.number.0, 1);
//! # drop(value);
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod crypto;
mod error;
mod model;
mod sql;
mod store;

pub use crypto::{KeyError, MasterKey, KEY_LEN, MASTER_KEY_ENV};
pub use error::StoreError;
pub use model::{
    AuditEntry, ConsumerRecord, CreateRotation, Engine, EventKind, EventRecord, FailureRecord,
    HeartbeatRecord, NewAudit, RotationFilter, SecretRecord, TokenRecord, UsageWindowRecord,
    VersionRecord, VersionSelector,
};
pub use sql::{sqlite_url, SqlStore};
pub use store::Store;
