//! A [`KeyRing`] as axum middleware (feature `middleware`).
//!
//! ```no_run
//! use axum::{middleware, routing::get, Router};
//! use keyshift_client::{middleware::require_api_key, ApiClient, KeyRing};
//!
//! # async fn demo(api: ApiClient) -> Result<(), Box<dyn std::error::Error>> {
//! let ring = KeyRing::start(api, "prod/api/keys".parse()?, "api-gw-1".to_owned(), None).await?;
//! let app: Router = Router::new()
//!     .route("/orders", get(|| async { "ok" }))
//!     .layer(middleware::from_fn_with_state(ring, require_api_key));
//! # Ok(()) }
//! ```
//!
//! A request without an accepted key gets `401`. A request with a
//! deprecated key (older than `current`: during a rotation's overlap, the
//! old key) is served, and its response carries `Deprecation` (RFC 9745)
//! and, while the overlap lasts, `Sunset` (RFC 8594, the `max_overlap`
//! deadline), so callers that are not SDK consumers learn to move before
//! the old key stops working. Every accepted request counts a use of its
//! version, which the overlap gate reads: a caller still on the old key
//! holds its revocation.

use axum::extract::{Request, State};
use axum::http::header::{HeaderName, HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::KeyRing;

/// The header a key may come in; `Authorization: Bearer <key>` works too.
pub const API_KEY_HEADER: &str = "x-api-key";

/// The key a request presents: `x-api-key`, else `Authorization: Bearer`.
fn presented(req: &Request) -> Option<&str> {
    let headers = req.headers();
    if let Some(key) = headers.get(API_KEY_HEADER) {
        return key.to_str().ok();
    }
    let auth = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Verifies the request's key with `ring`: `401` without an accepted key;
/// otherwise the [`KeyMatch`](crate::KeyMatch) goes into the request's
/// extensions for the handler, and a deprecated key's response gets the
/// `Deprecation` and `Sunset` headers.
pub async fn require_api_key(
    State(ring): State<KeyRing>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(key) = presented(&req) else {
        return unauthorized();
    };
    let Some(found) = ring.verify(key).await else {
        return unauthorized();
    };
    req.extensions_mut().insert(found);
    let mut response = next.run(req).await;
    if found.deprecated {
        let headers = response.headers_mut();
        for (name, value) in ring.deprecation().headers() {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
    }
    response
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
        "missing or unknown API key\n",
    )
        .into_response()
}
