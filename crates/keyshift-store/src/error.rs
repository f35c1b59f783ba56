//! The store's errors. None of them ever carries a secret value.

use keyshift_core::rotation::RotationId;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The secret, version, label, rotation or token named does not exist.
    /// `what` is the kind of thing (`secret`, `version`, ...).
    #[error("{what} not found: {name}")]
    NotFound {
        /// The kind of thing looked for.
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// Creating a secret or token whose name or id is taken.
    #[error("{what} already exists: {name}")]
    AlreadyExists {
        /// The kind of thing.
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// Another rotation of the same secret has not ended: creating a second
    /// one, or deleting the secret, is refused.
    #[error("rotation {id} is active for this secret")]
    RotationActive {
        /// The active rotation.
        id: RotationId,
    },
    /// The rotation's lease is not held by the replica saving it: another
    /// replica took it over (after it expired) and drives the rotation.
    #[error("the lease on rotation {id} is held by another replica")]
    LeaseLost {
        /// The rotation.
        id: RotationId,
    },
    /// The request conflicts with the stored state in another way.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The store was initialised with another master key: opening it with
    /// this one is refused and nothing is changed.
    #[error(
        "wrong master key: the store was initialised with key {store_key_id}, \
         but key {given_key_id} was given"
    )]
    WrongMasterKey {
        /// The id of the key the store was initialised with.
        store_key_id: String,
        /// The id of the key given.
        given_key_id: String,
    },
    /// A stored value failed to decrypt or authenticate (wrong key, moved
    /// or tampered ciphertext). No detail on purpose.
    #[error("stored value failed to decrypt")]
    Decrypt,
    /// The database failed; see [`StoreError::is_transient`].
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A schema migration failed while opening the store.
    #[error("schema migration {version} failed: {source}")]
    Migration {
        /// The migration's version.
        version: i64,
        /// What failed.
        #[source]
        source: sqlx::Error,
    },
    /// A JSON column (policy, target, rotation, labels, grants) could not be
    /// written or read.
    #[error("serialization error: {0}")]
    Serialization(#[from] serde_json::Error),
    /// A stored row holds something this version of keyshift cannot read.
    #[error("invalid data in store: {0}")]
    InvalidData(String),
    /// The store URL is neither `sqlite:` nor `postgres:`/`postgresql:`.
    #[error("unsupported store URL scheme `{scheme}` (expected sqlite: or postgres:)")]
    UnsupportedUrl {
        /// The URL's scheme (never the rest of the URL, which may hold a password).
        scheme: String,
    },
}

impl StoreError {
    /// Whether trying again later may succeed: a lost or refused connection,
    /// a pool timeout, a busy or locked SQLite database, a PostgreSQL
    /// serialization failure, deadlock or shutdown.
    pub fn is_transient(&self) -> bool {
        let StoreError::Database(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Tls(_) => true,
            sqlx::Error::Database(db) => {
                let Some(code) = db.code() else {
                    return false;
                };
                if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                    code.parse().is_ok_and(transient_sqlite)
                } else {
                    transient_sqlstate(&code)
                }
            }
            _ => false,
        }
    }
}

/// SQLite (extended) result codes worth retrying: the primary code is the
/// low byte; 5 is BUSY, 6 is LOCKED.
fn transient_sqlite(code: i64) -> bool {
    matches!(code & 0xff, 5 | 6)
}

/// PostgreSQL SQLSTATEs worth retrying.
fn transient_sqlstate(code: &str) -> bool {
    code.starts_with("08") // connection exception
        || code == "40001" // serialization_failure
        || code == "40P01" // deadlock_detected
        || code == "53300" // too_many_connections
        || code == "57P01" // admin_shutdown
        || code == "57P02" // crash_shutdown
        || code == "57P03" // cannot_connect_now
}

/// Whether `e` is a unique (or primary key) violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_codes() {
        assert!(transient_sqlite(5));
        assert!(transient_sqlite(517));
        assert!(transient_sqlite(6));
        assert!(!transient_sqlite(2067));
        assert!(transient_sqlstate("40001"));
        assert!(transient_sqlstate("08006"));
        assert!(!transient_sqlstate("23505"));
        assert!(StoreError::Database(sqlx::Error::PoolTimedOut).is_transient());
        assert!(!StoreError::Decrypt.is_transient());
        assert!(!StoreError::Database(sqlx::Error::RowNotFound).is_transient());
    }

    #[test]
    fn messages_name_the_thing() {
        let e = StoreError::NotFound {
            what: "secret",
            name: "prod/x".into(),
        };
        assert_eq!(e.to_string(), "secret not found: prod/x");
    }
}
