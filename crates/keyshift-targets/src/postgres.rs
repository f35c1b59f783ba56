//! The PostgreSQL blue-green target (being written).

/// Config of a PostgreSQL blue-green target.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PgConfig {}

/// The PostgreSQL blue-green target.
#[derive(Debug)]
pub struct PgTarget {}
