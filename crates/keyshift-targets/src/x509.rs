//! TLS certificates issued by a CA keyshift holds (being written).

/// Config of an x509 secret.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct X509Config {}

/// Config of an x509-ca secret.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct X509CaConfig {}

/// The x509 target.
#[derive(Debug)]
pub struct X509Target {}

/// Makes a new CA.
pub fn new_ca() {}
