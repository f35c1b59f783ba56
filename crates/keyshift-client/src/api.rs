//! The typed HTTP API client.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use keyshift_core::api::{
    AcceptedSet, AddVersion, ConsumerList, CreateSecret, CreateToken, FailureReport, Health,
    Heartbeat, RollbackRequest, RotationInfo, RotationList, SecretInfo, SecretList, SecretVersion,
    StartRotation, StatusList, TokenCreated, UsageList, UsageReport, VersionAdded, VersionList,
};
use keyshift_core::rotation::RotationId;
use keyshift_core::{Label, Policy, SecretName, SecretValue, Timestamp, VersionNumber};
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::ClientError;

/// How long one request may take, connecting included.
///
/// 30 s: every endpoint answers from the store without waiting for a
/// target (rotations run in the background), so an answer slower than this
/// means the server or the network is in trouble.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long connecting may take: a server that does not accept a connection
/// in 10 s is not there.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `User-Agent` the client sends.
pub const USER_AGENT: &str = concat!("keyshift/", env!("CARGO_PKG_VERSION"));

/// Which version of a secret [`ApiClient::get_value`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// The version a label points at (`current` is what consumers use).
    Label(Label),
    /// A version by number.
    Version(VersionNumber),
}

impl Default for Selector {
    /// The `current` label.
    fn default() -> Self {
        Selector::Label(Label::Current)
    }
}

impl From<Label> for Selector {
    fn from(l: Label) -> Self {
        Selector::Label(l)
    }
}

impl From<VersionNumber> for Selector {
    fn from(v: VersionNumber) -> Self {
        Selector::Version(v)
    }
}

/// A client of the keyshift HTTP API (`docs/api.md`), one method per
/// endpoint, with the request and answer types of [`keyshift_core::api`].
///
/// Cheap to clone: clones share one connection pool. Its `Debug` shows the
/// base URL only, never the token.
#[derive(Clone)]
pub struct ApiClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// The base URL without a trailing `/`.
    base: String,
    /// `Bearer <token>`, marked sensitive.
    auth: Option<HeaderValue>,
    /// The consumer whose reads of `current` these are (see
    /// [`ApiClient::for_consumer`]).
    consumer: Option<String>,
}

impl fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiClient")
            .field("base_url", &self.inner.base)
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    /// A client of the server at `base_url` (`http://127.0.0.1:8200`, or
    /// with a path prefix: `https://gw.example/keyshift`), authenticating
    /// with `token` when given (only `health` works without one).
    ///
    /// Requests time out after [`REQUEST_TIMEOUT`]; redirects are not
    /// followed, so the token never goes anywhere but `base_url`.
    ///
    /// # Errors
    ///
    /// [`ClientError::Config`] when `base_url` is not an `http` or `https`
    /// URL, has a user name, password, query or fragment, or the token has
    /// characters an HTTP header cannot carry.
    pub fn new(base_url: &str, token: Option<SecretValue>) -> Result<ApiClient, ClientError> {
        Self::with_options(base_url, token, &ConnectOptions::default())
    }

    /// Like [`new`](Self::new), with `options`: a private CA to trust as
    /// well as the system's roots, or HTTP/2 over plain `http://`.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new), and [`ClientError::Config`] for a CA that is
    /// not a PEM certificate.
    pub fn with_options(
        base_url: &str,
        token: Option<SecretValue>,
        options: &ConnectOptions,
    ) -> Result<ApiClient, ClientError> {
        let base = validate_base_url(base_url)?;
        let auth = token.as_ref().map(bearer).transpose()?;
        let http = http_client(options)?;
        Ok(ApiClient {
            inner: Arc::new(Inner {
                http,
                base,
                auth,
                consumer: None,
            }),
        })
    }

    /// This client, reading `current` as consumer `id`: while a `canary`
    /// rotation runs, the server answers its new version to the consumers
    /// in the canary's share (chosen by a stable hash of their id) and the
    /// old one to the others. The SDK's [`Client`](crate::Client) reads
    /// this way with its consumer id. Shares the connection pool.
    #[must_use]
    pub fn for_consumer(&self, id: &str) -> ApiClient {
        ApiClient {
            inner: Arc::new(Inner {
                http: self.inner.http.clone(),
                base: self.inner.base.clone(),
                auth: self.inner.auth.clone(),
                consumer: Some(id.to_owned()),
            }),
        }
    }

    /// The base URL requests go to, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// The HTTP client (and so the connections) this client sends with.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// `GET /v1/health`: whether the server and its store answer.
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] with status 503 when the store does not answer;
    /// [`ClientError::Transport`] when the server cannot be reached.
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.call(Method::GET, "/v1/health", &[], None, Sensitive::No)
            .await
    }

    /// `POST /v1/secrets`: creates a secret, with its first value (given or
    /// generated) labelled `current`.
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`]: `conflict` when it exists, `bad_request` for an
    /// invalid policy, target or value, `forbidden` without `admin`.
    pub async fn create_secret(&self, req: &CreateSecret) -> Result<SecretInfo, ClientError> {
        let body = encode(req)?;
        self.call(Method::POST, "/v1/secrets", &[], Some(body), Sensitive::No)
            .await
    }

    /// `GET /v1/secrets`: the secrets the token may read, optionally only
    /// those whose name starts with `prefix`.
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] or [`ClientError::Transport`].
    pub async fn list_secrets(&self, prefix: Option<&str>) -> Result<SecretList, ClientError> {
        let query: Vec<_> = prefix
            .map(|p| ("prefix", p.to_owned()))
            .into_iter()
            .collect();
        self.call(Method::GET, "/v1/secrets", &query, None, Sensitive::No)
            .await
    }

    /// `GET /v1/secrets/{name}`: a secret's metadata (never its value).
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] `not_found` when it does not exist.
    pub async fn get_secret(&self, name: &SecretName) -> Result<SecretInfo, ClientError> {
        let path = format!("/v1/secrets/{name}");
        self.call(Method::GET, &path, &[], None, Sensitive::No)
            .await
    }

    /// `DELETE /v1/secrets/{name}`: deletes a secret and all its versions.
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`]: `not_found`, or `conflict`/`rotation_active`
    /// while a rotation runs.
    pub async fn delete_secret(&self, name: &SecretName) -> Result<(), ClientError> {
        let path = format!("/v1/secrets/{name}");
        self.send(Method::DELETE, &path, &[], None).await?;
        Ok(())
    }

    /// `DELETE /v1/secrets/{name}?force=true`: deletes a secret even while an
    /// external target (Redis) still accepts one of its values, which are
    /// then lost: only for credentials that are being removed anyway.
    ///
    /// # Errors
    ///
    /// As [`delete_secret`](Self::delete_secret), without the `conflict` for
    /// values still accepted.
    pub async fn delete_secret_forced(&self, name: &SecretName) -> Result<(), ClientError> {
        let path = format!("/v1/secrets/{name}");
        let query = [("force", "true".to_owned())];
        self.send(Method::DELETE, &path, &query, None).await?;
        Ok(())
    }

    /// `PUT /v1/secrets/{name}:policy`: replaces a secret's policy.
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`]: `bad_request` for an invalid policy,
    /// `not_found`.
    pub async fn set_policy(
        &self,
        name: &SecretName,
        policy: &Policy,
    ) -> Result<SecretInfo, ClientError> {
        let path = format!("/v1/secrets/{name}:policy");
        let body = encode(policy)?;
        self.call(Method::PUT, &path, &[], Some(body), Sensitive::No)
            .await
    }

    /// `GET /v1/secrets/{name}:value`: one version with its value, chosen by
    /// label or number.
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] `not_found` when the secret, label or version
    /// does not exist. A [`ClientError::Decode`] never quotes the body.
    pub async fn get_value(
        &self,
        name: &SecretName,
        sel: Selector,
    ) -> Result<SecretVersion, ClientError> {
        let path = format!("/v1/secrets/{name}:value");
        let mut query = match &sel {
            Selector::Label(l) => vec![("label", l.as_str().to_owned())],
            Selector::Version(v) => vec![("version", v.to_string())],
        };
        if let (Selector::Label(Label::Current), Some(id)) = (&sel, &self.inner.consumer) {
            query.push(("consumer", id.clone()));
        }
        self.call(Method::GET, &path, &query, None, Sensitive::Yes)
            .await
    }

    /// `POST /v1/secrets/{name}:versions`: adds a version by hand (by
    /// default labelled `current`, moving `previous` to the old current).
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`]: `not_found`, `bad_request` for a value the
    /// kind refuses, `rotation_active` while a rotation runs.
    pub async fn add_version(
        &self,
        name: &SecretName,
        req: &AddVersion,
    ) -> Result<VersionAdded, ClientError> {
        let path = format!("/v1/secrets/{name}:versions");
        let body = encode(req)?;
        self.call(Method::POST, &path, &[], Some(body), Sensitive::No)
            .await
    }

    /// `GET /v1/secrets/{name}:versions`: every version's metadata,
    /// ascending.
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] `not_found`.
    pub async fn list_versions(&self, name: &SecretName) -> Result<VersionList, ClientError> {
        let path = format!("/v1/secrets/{name}:versions");
        self.call(Method::GET, &path, &[], None, Sensitive::No)
            .await
    }

    /// `GET /v1/secrets/{name}:accepted`: the versions (with values) the
    /// target accepts now; what a verifier should accept.
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] `not_found`. A [`ClientError::Decode`] never
    /// quotes the body.
    pub async fn accepted(&self, name: &SecretName) -> Result<AcceptedSet, ClientError> {
        let path = format!("/v1/secrets/{name}:accepted");
        self.call(Method::GET, &path, &[], None, Sensitive::Yes)
            .await
    }

    /// `POST /v1/secrets/{name}:rotate`: starts a rotation, or returns the
    /// existing one when `req.id` names a rotation that exists already.
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`]: `rotation_active` (with the running rotation's
    /// id) when another rotation of this secret runs, `bad_request` for a
    /// kind that does not rotate, `forbidden` without `rotate`.
    pub async fn rotate(
        &self,
        name: &SecretName,
        req: &StartRotation,
    ) -> Result<RotationInfo, ClientError> {
        let path = format!("/v1/secrets/{name}:rotate");
        let body = encode(req)?;
        self.call(Method::POST, &path, &[], Some(body), Sensitive::No)
            .await
    }

    /// `GET /v1/rotations`: rotations newest first, optionally of one
    /// secret and only those still running.
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] or [`ClientError::Transport`].
    pub async fn list_rotations(
        &self,
        secret: Option<&SecretName>,
        active_only: bool,
    ) -> Result<RotationList, ClientError> {
        let mut query = Vec::new();
        if let Some(s) = secret {
            query.push(("secret", s.as_str().to_owned()));
        }
        if active_only {
            query.push(("active", "true".to_owned()));
        }
        self.call(Method::GET, "/v1/rotations", &query, None, Sensitive::No)
            .await
    }

    /// `GET /v1/status`: every readable secret's schedule, next rotation,
    /// newest rotation and circuit.
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] or [`ClientError::Transport`].
    pub async fn status(&self) -> Result<StatusList, ClientError> {
        self.call(Method::GET, "/v1/status", &[], None, Sensitive::No)
            .await
    }

    /// `GET /v1/report`: the health of the rotations created since `since`
    /// (default all) that the token may read.
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] or [`ClientError::Transport`].
    pub async fn report(
        &self,
        since: Option<Timestamp>,
    ) -> Result<keyshift_core::report::HealthReport, ClientError> {
        let query: Vec<(&str, String)> = since
            .map(|t| ("since", t.to_string()))
            .into_iter()
            .collect();
        self.call(Method::GET, "/v1/report", &query, None, Sensitive::No)
            .await
    }

    /// `GET /v1/rotations/{id}`: one rotation with its phases.
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] `not_found`.
    pub async fn get_rotation(&self, id: &RotationId) -> Result<RotationInfo, ClientError> {
        let path = format!("/v1/rotations/{id}");
        self.call(Method::GET, &path, &[], None, Sensitive::No)
            .await
    }

    /// `POST /v1/rotations/{id}:rollback`: asks the server to roll the
    /// rotation back (accepted: it happens in the background).
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] `conflict` once Revoke has started or the
    /// rotation has ended; `not_found`.
    pub async fn rollback(
        &self,
        id: &RotationId,
        reason: Option<String>,
    ) -> Result<RotationInfo, ClientError> {
        self.cancel(id, "rollback", reason).await
    }

    /// `POST /v1/rotations/{id}:abort`: like [`rollback`](Self::rollback),
    /// recorded as an abort.
    ///
    /// # Errors
    ///
    /// As [`rollback`](Self::rollback).
    pub async fn abort(
        &self,
        id: &RotationId,
        reason: Option<String>,
    ) -> Result<RotationInfo, ClientError> {
        self.cancel(id, "abort", reason).await
    }

    /// `POST /v1/rotations/{id}:advance`: forces the overlap gate of a
    /// rotation in Overlap: the old credential is revoked now, whatever
    /// its consumers hold. `reason` goes to the audit log.
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] `conflict` when the rotation is not in
    /// Overlap; `not_found`.
    pub async fn advance(
        &self,
        id: &RotationId,
        reason: Option<String>,
    ) -> Result<RotationInfo, ClientError> {
        self.cancel(id, "advance", reason).await
    }

    /// `POST /v1/tokens`: creates a token. The answer is the only time its
    /// secret is shown.
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`]: `bad_request` for an invalid grant, `forbidden`
    /// without `admin`. A [`ClientError::Decode`] never quotes the body.
    pub async fn create_token(&self, req: &CreateToken) -> Result<TokenCreated, ClientError> {
        let body = encode(req)?;
        self.call(Method::POST, "/v1/tokens", &[], Some(body), Sensitive::Yes)
            .await
    }

    /// `POST /v1/consumers/heartbeat`: tells the server which versions this
    /// consumer holds.
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`]: `forbidden` without `read` on a held secret,
    /// `bad_request` for an invalid consumer id.
    pub async fn heartbeat(&self, beat: &Heartbeat) -> Result<(), ClientError> {
        let body = encode(beat)?;
        self.send(Method::POST, "/v1/consumers/heartbeat", &[], Some(body))
            .await
            .map(drop)
    }

    /// `POST /v1/usage`: reports uses per version counted by a verifier.
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`]: `forbidden` without `read` on a counted secret.
    pub async fn report_usage(&self, report: &UsageReport) -> Result<(), ClientError> {
        let body = encode(report)?;
        self.send(Method::POST, "/v1/usage", &[], Some(body))
            .await
            .map(drop)
    }

    /// `POST /v1/failures`: reports failed uses per version (a `canary`
    /// rotation rolls back on them).
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`]: `forbidden` without `read` on a named secret,
    /// `not_found` for an unknown one.
    pub async fn report_failures(&self, report: &FailureReport) -> Result<(), ClientError> {
        let body = encode(report)?;
        self.send(Method::POST, "/v1/failures", &[], Some(body))
            .await
            .map(drop)
    }

    /// `GET /v1/secrets/{name}:consumers`: who holds which version.
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] `not_found` for an unknown secret.
    pub async fn consumers(&self, name: &SecretName) -> Result<ConsumerList, ClientError> {
        let path = format!("/v1/secrets/{name}:consumers");
        self.call(Method::GET, &path, &[], None, Sensitive::No)
            .await
    }

    /// `GET /v1/secrets/{name}:usage`: uses per version per minute since
    /// `since` (default: the last hour).
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] `not_found` for an unknown secret.
    pub async fn usage(
        &self,
        name: &SecretName,
        since: Option<Timestamp>,
    ) -> Result<UsageList, ClientError> {
        let path = format!("/v1/secrets/{name}:usage");
        let query: Vec<(&str, String)> = since
            .map(|t| ("since", t.to_string()))
            .into_iter()
            .collect();
        self.call(Method::GET, &path, &query, None, Sensitive::No)
            .await
    }

    async fn cancel(
        &self,
        id: &RotationId,
        verb: &str,
        reason: Option<String>,
    ) -> Result<RotationInfo, ClientError> {
        let path = format!("/v1/rotations/{id}:{verb}");
        let body = encode(&RollbackRequest { reason })?;
        self.call(Method::POST, &path, &[], Some(body), Sensitive::No)
            .await
    }

    /// Sends a request and decodes a 2xx answer as `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
        sensitive: Sensitive,
    ) -> Result<T, ClientError> {
        let bytes = self.send(method, path, query, body).await?;
        decode(&bytes, sensitive)
    }

    /// Sends a request; a non-2xx answer becomes [`ClientError::Api`].
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}{path}", self.inner.base);
        let mut req = self
            .inner
            .http
            .request(method.clone(), url)
            .timeout(REQUEST_TIMEOUT);
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(auth) = &self.inner.auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let resp = req.send().await.map_err(|e| ClientError::transport(&e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| ClientError::transport(&e))?;
        tracing::debug!(%method, path, status = status.as_u16(), "keyshift api call");
        if !status.is_success() {
            return Err(ClientError::from_error_body(status.as_u16(), &bytes));
        }
        Ok(bytes.to_vec())
    }
}

/// How to connect to the keyshift server: the CAs to trust, and the HTTP
/// version.
///
/// Over `https://` the HTTP version is negotiated (ALPN): HTTP/2 when the
/// server or its proxy offers it, so one connection carries a client's
/// event stream, reads and heartbeats. Over plain `http://` the default is
/// HTTP/1.1, which needs a second connection while the event stream is
/// open; [`http2_prior_knowledge`](Self::http2_prior_knowledge) makes it
/// one.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    ca_pem: Option<Vec<u8>>,
    h2c: bool,
}

impl ConnectOptions {
    /// Also trust this CA certificate (PEM), e.g. the private CA that
    /// issued the server's certificate. The system's roots stay trusted.
    #[must_use]
    pub fn ca_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// Speak HTTP/2 over plain `http://` from the first byte (h2c with
    /// prior knowledge), so a client holds one connection, not two. The
    /// keyshift server speaks it; a proxy between the client and the
    /// server must speak it too, or every request fails.
    #[must_use]
    pub fn http2_prior_knowledge(mut self) -> Self {
        self.h2c = true;
        self
    }
}

/// The HTTP client every keyshift connection of one client shares: user
/// agent, connect timeout, no redirects (the token only ever goes to the
/// address configured), and the connect options. It has no overall
/// timeout, so it can carry the event stream; API calls set
/// [`REQUEST_TIMEOUT`] per request.
pub(crate) fn http_client(options: &ConnectOptions) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none());
    if options.h2c {
        builder = builder.http2_prior_knowledge();
    }
    if let Some(pem) = &options.ca_pem {
        let bad = |why: String| {
            ClientError::Config(format!("the CA certificate is not valid PEM: {why}"))
        };
        // The parser is lenient: without a certificate block it would
        // quietly trust nothing new.
        const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
        if !pem.windows(BEGIN.len()).any(|w| w == BEGIN) {
            return Err(bad("no CERTIFICATE block in it".to_owned()));
        }
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| bad(e.to_string()))?;
        for ca in certs {
            builder = builder.add_root_certificate(ca);
        }
    }
    builder
        .build()
        .map_err(|e| ClientError::Config(format!("cannot build the HTTP client: {e}")))
}

/// Whether an answer carries secret values, so a decoding error must not
/// quote it (serde_json's messages quote the offending string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sensitive {
    Yes,
    No,
}

fn encode<T: Serialize>(body: &T) -> Result<Vec<u8>, ClientError> {
    serde_json::to_vec(body)
        .map_err(|e| ClientError::Config(format!("cannot encode the request body: {e}")))
}

fn decode<T: DeserializeOwned>(body: &[u8], sensitive: Sensitive) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|e| {
        let what = std::any::type_name::<T>().rsplit("::").next().unwrap_or("body");
        match sensitive {
            Sensitive::No => ClientError::Decode(format!("invalid {what}: {e}")),
            Sensitive::Yes => ClientError::Decode(format!(
                "invalid {what} ({:?} error at line {} column {}; details withheld because the body carries secrets)",
                e.classify(),
                e.line(),
                e.column()
            )),
        }
    })
}

/// `Authorization: Bearer <token>`, marked sensitive so it is never logged.
fn bearer(token: &SecretValue) -> Result<HeaderValue, ClientError> {
    let mut v = HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
        ClientError::Config("the token has characters an HTTP header cannot carry".into())
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// Checks `s` and returns it without a trailing `/`.
fn validate_base_url(s: &str) -> Result<String, ClientError> {
    // An address with `@` may carry a password: never quote it.
    let shown = if s.contains('@') { "(withheld)" } else { s };
    let bad = |why: &str| ClientError::Config(format!("invalid server address `{shown}`: {why}"));
    let url = Url::parse(s).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("use an http:// or https:// URL"));
    }
    if url.host().is_none() {
        return Err(bad("no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("credentials do not belong in the URL; use a token"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("no query or fragment allowed"));
    }
    if url.scheme() == "http" && !is_loopback(&url) {
        tracing::warn!(
            base_url = %url,
            "the token travels unencrypted over http to a host that is not loopback; use https"
        );
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

fn is_loopback(url: &Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_ca_that_is_not_pem_is_a_config_error() {
        let tls = ConnectOptions::default().ca_certificate_pem(b"not a certificate".to_vec());
        let err = ApiClient::with_options("https://keyshift.example", None, &tls).unwrap_err();
        assert!(
            matches!(err, ClientError::Config(ref m) if m.contains("CA")),
            "{err}"
        );
        assert!(ApiClient::with_options(
            "https://keyshift.example",
            None,
            &ConnectOptions::default()
        )
        .is_ok());
    }

    use super::*;

    fn token(s: &str) -> SecretValue {
        SecretValue::new(s.to_owned()).unwrap()
    }

    #[test]
    fn base_url_is_normalised_without_trailing_slash() {
        let c = ApiClient::new("http://127.0.0.1:8200/", None).unwrap();
        assert_eq!(c.base_url(), "http://127.0.0.1:8200");
        let c = ApiClient::new("https://gw.example/keyshift/", None).unwrap();
        assert_eq!(c.base_url(), "https://gw.example/keyshift");
    }

    #[test]
    fn bad_base_urls_are_config_errors() {
        for bad in [
            "127.0.0.1:8200",
            "ftp://h",
            "http://user:pw@h",
            "http://user:pw@h:badport",
            "http://h/?x=1",
            "not a url",
        ] {
            let e = ApiClient::new(bad, None).unwrap_err();
            assert!(matches!(e, ClientError::Config(_)), "{bad}: {e:?}");
            assert!(!e.to_string().contains("pw@"), "{e}");
        }
    }

    #[test]
    fn debug_never_shows_the_token() {
        let c = ApiClient::new("http://localhost:1", Some(token("ks.abc.hunter2"))).unwrap();
        let dbg = format!("{c:?}");
        assert!(dbg.contains("http://localhost:1"), "{dbg}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
    }

    #[test]
    fn token_with_a_newline_is_refused_without_quoting_it() {
        let e = ApiClient::new("http://h", Some(token("ks.a.b\nc"))).unwrap_err();
        assert!(matches!(e, ClientError::Config(_)));
        assert!(!e.to_string().contains("ks.a.b"), "{e}");
    }

    #[test]
    fn decoding_errors_of_secret_bodies_do_not_quote_them() {
        let body = br#"{"id":"t1","token":17}"#;
        let e = decode::<TokenCreated>(body, Sensitive::Yes).unwrap_err();
        assert!(matches!(e, ClientError::Decode(_)));
        let body = br#"{"name":"a","version":"hunter2-secret"}"#;
        let e = decode::<SecretVersion>(body, Sensitive::Yes).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = decode::<VersionAdded>(br#"{"version":"x"}"#, Sensitive::No).unwrap_err();
        assert!(e.to_string().contains("VersionAdded"), "{e}");
    }

    #[tokio::test]
    async fn unreachable_server_is_a_transport_error() {
        // Port 9 (discard) on loopback is closed on test machines.
        let c = ApiClient::new("http://127.0.0.1:9", Some(token("ks.x.secretpart"))).unwrap();
        let e = c.health().await.unwrap_err();
        assert!(matches!(e, ClientError::Transport(_)), "{e:?}");
        assert!(!e.to_string().contains("secretpart"), "{e}");
    }
}
