//! A Redis connection that follows a rotating ACL password (feature `redis`).
//!
//! Redis keeps a connection authenticated after its password is removed
//! (`ACL SETUSER u <old`), so a consumer must reconnect with the new
//! password during the overlap window, before the old one is revoked:
//! [`redis_connection`] does that with a [`HotSwap`], connecting with the
//! new password and checking it with `PING` before swapping.
//!
//! The snapshot's value is **the password alone**; the application's
//! closure gives the address, the user name and the database.
//!
//! See [`redis_connection`] for an example.

use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client, ConnectionInfo, RedisError};

use crate::{HotSwap, SecretSource, Snapshot};

/// How long connecting and each reply may take by default: 5 s. Redis
/// answers in microseconds; a connection that takes seconds is broken.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A multiplexed Redis connection that follows `source`: see
/// [`redis_connection_with`], with 5 s connection and response timeouts.
///
/// Redis keeps a connection authenticated after its password is removed
/// (`ACL SETUSER u <old`), so a consumer must reconnect with the new
/// password during the overlap window: this does, as soon as the source
/// changes.
///
/// ```no_run
/// use keyshift_client::{redis_connection, SecretSource, Snapshot};
/// use redis::{ConnectionAddr, ConnectionInfo, RedisConnectionInfo};
///
/// # async fn demo(source: impl SecretSource) -> Result<(), redis::RedisError> {
/// let redis = redis_connection(source, |_: &Snapshot| ConnectionInfo {
///     addr: ConnectionAddr::Tcp("127.0.0.1".into(), 6379),
///     redis: RedisConnectionInfo {
///         username: Some("app".into()),
///         ..Default::default()
///     },
/// })
/// .await?;
///
/// // Per request: clone the multiplexed handle out of the Arc (cheap).
/// let mut con = redis::aio::MultiplexedConnection::clone(&redis.get());
/// let _: () = redis::cmd("SET").arg("k").arg("v").query_async(&mut con).await?;
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// The first connection's error (`WRONGPASS` for a refused password).
pub async fn redis_connection<S, F>(
    source: S,
    info: F,
) -> Result<HotSwap<MultiplexedConnection>, RedisError>
where
    S: SecretSource,
    F: Fn(&Snapshot) -> ConnectionInfo + Send + Sync + 'static,
{
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(TIMEOUT)
        .set_response_timeout(TIMEOUT);
    redis_connection_with(source, config, info).await
}

/// A multiplexed Redis connection that follows `source`.
///
/// `info` gives the address, user name and database; the password is set
/// from the snapshot's value on what it returns (so the value is the
/// password alone). Each new connection authenticates and answers `PING`
/// before it is swapped in. The old connection closes once the last clone
/// of it is dropped: commands already sent on it get their replies.
///
/// # Errors
///
/// The first connection's error (`WRONGPASS` for a refused password).
pub async fn redis_connection_with<S, F>(
    source: S,
    config: AsyncConnectionConfig,
    info: F,
) -> Result<HotSwap<MultiplexedConnection>, RedisError>
where
    S: SecretSource,
    F: Fn(&Snapshot) -> ConnectionInfo + Send + Sync + 'static,
{
    let build = move |snap: Arc<Snapshot>| {
        let mut info = info(&snap);
        info.redis.password = Some(snap.value.expose().to_owned());
        let config = config.clone();
        async move { connect(info, &config).await }
    };
    // Dropping the last handle closes the connection; nothing else to do.
    HotSwap::start(source, build, |_old: Arc<MultiplexedConnection>| async {}).await
}

async fn connect(
    info: ConnectionInfo,
    config: &AsyncConnectionConfig,
) -> Result<MultiplexedConnection, RedisError> {
    let client = Client::open(info)?;
    let mut con = client
        .get_multiplexed_async_connection_with_config(config)
        .await?;
    ::redis::cmd("PING").query_async::<()>(&mut con).await?;
    Ok(con)
}
