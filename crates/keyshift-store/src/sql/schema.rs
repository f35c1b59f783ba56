//! Schema migrations (per-engine DDL) and the master-key check.

use sqlx::Row;

use super::decode::now_millis;
use super::SqlStore;
use crate::crypto::{KEY_CHECK_AAD, KEY_CHECK_PLAINTEXT};
use crate::error::StoreError;
use crate::model::Engine;

/// One schema change: its version, a description, and its DDL per engine.
struct Migration {
    version: i64,
    description: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

/// Every migration, in order. Never edit one that has shipped: add another.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "initial schema",
        sqlite: include_str!("../../migrations/sqlite/0001_init.sql"),
        postgres: include_str!("../../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        description: "consumers and usage windows",
        sqlite: include_str!("../../migrations/sqlite/0002_consumers.sql"),
        postgres: include_str!("../../migrations/postgres/0002_consumers.sql"),
    },
    Migration {
        version: 3,
        description: "failure reports",
        sqlite: include_str!("../../migrations/sqlite/0003_failures.sql"),
        postgres: include_str!("../../migrations/postgres/0003_failures.sql"),
    },
    Migration {
        version: 4,
        description: "when each usage window was last added to",
        sqlite: include_str!("../../migrations/sqlite/0004_usage_last_at.sql"),
        postgres: include_str!("../../migrations/postgres/0004_usage_last_at.sql"),
    },
    Migration {
        version: 5,
        description: "each consumer's heartbeat interval",
        sqlite: include_str!("../../migrations/sqlite/0005_heartbeat_interval.sql"),
        postgres: include_str!("../../migrations/postgres/0005_heartbeat_interval.sql"),
    },
    Migration {
        version: 6,
        description: "which secrets the scheduler looks at",
        sqlite: include_str!("../../migrations/sqlite/0006_scheduled.sql"),
        postgres: include_str!("../../migrations/postgres/0006_scheduled.sql"),
    },
    Migration {
        version: 7,
        description: "rotation leases",
        sqlite: include_str!("../../migrations/sqlite/0007_rotation_leases.sql"),
        postgres: include_str!("../../migrations/postgres/0007_rotation_leases.sql"),
    },
];

/// The advisory lock key PostgreSQL replicas take while migrating
/// (`keyshift` in ASCII).
const MIGRATION_LOCK: i64 = 0x6b65_7973_6869_6674;

impl SqlStore {
    /// Applies the migrations the database lacks, in one transaction.
    ///
    /// On PostgreSQL an advisory lock serializes replicas starting together.
    /// When nothing is missing nothing is written (an unchanged SQLite file
    /// stays byte-identical).
    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        if self.engine == Engine::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS keyshift_schema (\
             version BIGINT PRIMARY KEY, description TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        let current: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM keyshift_schema")
                .fetch_one(&mut *tx)
                .await?;
        let latest = MIGRATIONS.last().map_or(0, |m| m.version);
        if current > latest {
            return Err(StoreError::InvalidData(format!(
                "the store's schema version {current} is newer than this keyshift supports ({latest}); upgrade keyshift"
            )));
        }
        for m in MIGRATIONS.iter().filter(|m| m.version > current) {
            let ddl = match self.engine {
                Engine::Sqlite => m.sqlite,
                Engine::Postgres => m.postgres,
            };
            sqlx::Executor::execute(&mut *tx, ddl)
                .await
                .map_err(|source| StoreError::Migration {
                    version: m.version,
                    source,
                })?;
            sqlx::query(
                "INSERT INTO keyshift_schema (version, description, applied_at) VALUES ($1, $2, $3)",
            )
            .bind(m.version)
            .bind(m.description)
            .bind(now_millis())
            .execute(&mut *tx)
            .await?;
            tracing::info!(
                engine = self.engine.as_str(),
                version = m.version,
                "applied store migration: {}",
                m.description
            );
        }
        tx.commit().await?;
        Ok(())
    }

    /// Checks the master key against the key-check row, storing one (sealed
    /// under this key) if the store has none yet.
    ///
    /// A mismatch is [`StoreError::WrongMasterKey`] and writes nothing.
    pub(super) async fn check_key(&self) -> Result<(), StoreError> {
        let select = "SELECT key_id, nonce, ciphertext FROM key_check WHERE id = 1";
        let mut row = sqlx::query(select).fetch_optional(&self.pool).await?;
        if row.is_none() {
            let sealed = self.key.seal(KEY_CHECK_AAD, KEY_CHECK_PLAINTEXT);
            sqlx::query(
                "INSERT INTO key_check (id, key_id, nonce, ciphertext, created_at) \
                 VALUES (1, $1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
            )
            .bind(self.key.id())
            .bind(sealed.nonce)
            .bind(sealed.ciphertext)
            .bind(now_millis())
            .execute(&self.pool)
            .await?;
            row = sqlx::query(select).fetch_optional(&self.pool).await?;
        }
        let Some(row) = row else {
            return Err(StoreError::InvalidData(
                "the key-check row is missing after being written".into(),
            ));
        };
        let store_key_id: String = row.try_get("key_id")?;
        let nonce: Vec<u8> = row.try_get("nonce")?;
        let ciphertext: Vec<u8> = row.try_get("ciphertext")?;
        match self.key.open(KEY_CHECK_AAD, &nonce, &ciphertext) {
            Ok(p) if p.as_slice() == KEY_CHECK_PLAINTEXT => Ok(()),
            _ => Err(StoreError::WrongMasterKey {
                store_key_id,
                given_key_id: self.key.id(),
            }),
        }
    }
}
