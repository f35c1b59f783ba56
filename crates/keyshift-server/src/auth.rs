//! Bearer tokens: minting, checking, and the scopes they carry.
//!
//! A token is `ks.<id>.<secret>`: 16 hex digits of id, used to find the
//! record, and 43 base64url characters of secret (256 bits), of which the
//! store keeps only the SHA-256. The digests are compared in constant time.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine;
use keyshift_core::api::{Grant, Scope};
use keyshift_core::{SecretName, SecretValue, Timestamp};
use keyshift_store::TokenRecord;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// A freshly minted token: the record to store and the bearer string to
/// show once.
pub struct MintedToken {
    /// What the store keeps.
    pub record: TokenRecord,
    /// The bearer token, shown once.
    pub token: SecretValue,
}

/// Mints a token with `grants`.
pub fn mint(description: &str, grants: &[Grant], now: Timestamp) -> MintedToken {
    let mut rng = rand::rngs::OsRng;
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let id = hex::encode(id);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let secret_hash: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    // Invariant: a fixed-format ASCII string is a valid value.
    let token = SecretValue::new(format!("ks.{id}.{secret}")).expect("token is a valid value");
    MintedToken {
        record: TokenRecord {
            id,
            secret_hash,
            description: description.to_owned(),
            grants: serde_json::json!(grants),
            created_at: now,
        },
        token,
    }
}

/// Who is calling: a checked token and its grants.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's id (not secret), for the audit log.
    pub token_id: Arc<str>,
    grants: Arc<[Grant]>,
}

/// A token as the read path remembers it ([`ReadCache`]): the hash of its
/// secret part, and who presenting it makes a caller.
///
/// [`ReadCache`]: crate::cache::ReadCache
#[derive(Debug)]
pub struct KnownToken {
    secret_hash: [u8; 32],
    caller: Caller,
}

impl KnownToken {
    fn from_record(record: TokenRecord) -> Result<Self, ApiError> {
        let grants: Vec<Grant> = serde_json::from_value(record.grants)
            .map_err(|e| ApiError::internal("token grants unreadable", &e))?;
        Ok(Self {
            secret_hash: record.secret_hash,
            caller: Caller {
                token_id: record.id.into(),
                grants: grants.into(),
            },
        })
    }
}

impl Caller {
    /// The actor name written to the audit log.
    pub fn actor(&self) -> String {
        format!("token:{}", self.token_id)
    }

    /// Whether the caller has `scope` (or a wider one) on `name`.
    pub fn can(&self, scope: Scope, name: &SecretName) -> bool {
        self.grants
            .iter()
            .any(|g| g.scope >= scope && name.matches(&g.pattern))
    }

    /// Whether the caller has `scope` on every name `pattern` can match.
    pub fn can_pattern(&self, scope: Scope, pattern: &str) -> bool {
        let Some(prefix) = pattern.strip_suffix('*') else {
            return SecretName::new(pattern).is_ok_and(|n| self.can(scope, &n));
        };
        self.grants.iter().any(|g| {
            g.scope >= scope
                && match g.pattern.strip_suffix('*') {
                    Some(granted) => prefix.starts_with(granted),
                    None => false,
                }
        })
    }

    /// Whether the caller has `scope` somewhere (for endpoints not tied to
    /// one secret).
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.grants.iter().any(|g| g.scope >= scope)
    }

    /// [`can`](Self::can) or a 403 naming what is missing.
    ///
    /// # Errors
    ///
    /// [`ApiError::Forbidden`].
    pub fn require(&self, scope: Scope, name: &SecretName) -> Result<(), ApiError> {
        if self.can(scope, name) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "token lacks `{}` scope on {name}",
                scope_str(scope)
            )))
        }
    }

    /// [`has_scope`](Self::has_scope) or a 403.
    ///
    /// # Errors
    ///
    /// [`ApiError::Forbidden`].
    pub fn require_scope(&self, scope: Scope) -> Result<(), ApiError> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "token lacks `{}` scope",
                scope_str(scope)
            )))
        }
    }
}

fn scope_str(scope: Scope) -> &'static str {
    match scope {
        Scope::Read => "read",
        Scope::Rotate => "rotate",
        Scope::Admin => "admin",
    }
}

/// Checks a bearer token against the store.
///
/// # Errors
///
/// [`ApiError::Unauthorized`] for anything but a known token with the right
/// secret; store errors as they map.
pub async fn authenticate(state: &AppState, bearer: &str) -> Result<Caller, ApiError> {
    let mut parts = bearer.splitn(3, '.');
    let (Some("ks"), Some(id), Some(secret)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ApiError::Unauthorized);
    };
    if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::Unauthorized);
    }
    let given: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    let known = match state.cache.token(id) {
        Some(known) => Some(known),
        None => match state.store.get_token(id).await {
            Ok(Some(record)) => {
                let known = Arc::new(KnownToken::from_record(record)?);
                state.cache.keep_token(id, known.clone());
                Some(known)
            }
            Ok(None) => None,
            // The store does not answer: a token this server checked
            // before holds as it was then, so reads from the cache go on
            // through the outage.
            Err(e) if e.is_transient() => match state.cache.stale_token(id) {
                Some(known) => Some(known),
                None => return Err(e.into()),
            },
            Err(e) => return Err(e.into()),
        },
    };
    // Compare against a dummy digest when the id is unknown, so both paths
    // do the same work.
    let expected = known.as_ref().map_or([0u8; 32], |k| k.secret_hash);
    let matches: bool = given.ct_eq(&expected).into();
    match known {
        Some(known) if matches => Ok(known.caller.clone()),
        _ => Err(ApiError::Unauthorized),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or(ApiError::Unauthorized)?;
        let value = header.to_str().map_err(|_| ApiError::Unauthorized)?;
        // The scheme is case-insensitive (RFC 9110).
        let (scheme, bearer) = value.split_once(' ').ok_or(ApiError::Unauthorized)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::Unauthorized);
        }
        authenticate(state, bearer.trim()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(grants: &[(Scope, &str)]) -> Caller {
        Caller {
            token_id: "t".into(),
            grants: grants
                .iter()
                .map(|(scope, pattern)| Grant {
                    scope: *scope,
                    pattern: (*pattern).to_owned(),
                })
                .collect(),
        }
    }

    #[test]
    fn wider_scopes_include_narrower_ones() {
        let c = caller(&[(Scope::Rotate, "prod/*")]);
        let n: SecretName = "prod/db".parse().unwrap();
        assert!(c.can(Scope::Read, &n));
        assert!(c.can(Scope::Rotate, &n));
        assert!(!c.can(Scope::Admin, &n));
        assert!(!c.can(Scope::Read, &"dev/db".parse().unwrap()));
    }

    #[test]
    fn patterns_are_covered_only_by_wider_grants() {
        let c = caller(&[(Scope::Read, "prod/*")]);
        assert!(c.can_pattern(Scope::Read, "prod/orders/*"));
        assert!(c.can_pattern(Scope::Read, "prod/x"));
        assert!(!c.can_pattern(Scope::Read, "*"));
        assert!(!c.can_pattern(Scope::Read, "pro*"));
    }

    #[test]
    fn minted_tokens_have_the_documented_shape() {
        let m = mint("t", &[], Timestamp::from_millis(0));
        let t = m.token.expose();
        let parts: Vec<_> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], "ks");
        assert_eq!(parts[1], m.record.id);
        assert_eq!(parts[2].len(), 43);
        let digest: [u8; 32] = Sha256::digest(parts[2].as_bytes()).into();
        assert_eq!(digest, m.record.secret_hash);
    }
}
