//! Exec and webhook plugins (being written).

/// Config of a plugin target.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PluginConfig {}

/// A plugin target.
#[derive(Debug)]
pub struct PluginTarget {}
