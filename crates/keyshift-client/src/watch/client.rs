//! [`Client`]: opens watched secrets and owns the background tasks.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use keyshift_core::api::{FailureReport, UsageCount};
use keyshift_core::{SecretName, VersionNumber};
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tokio_util::sync::DropGuard;
use tracing::instrument;

use super::builder::ClientBuilder;
use super::errors::{unreachable, SdkError};
use super::slot::{Gate, Slot};
use super::source::{TypedSnapshot, Watched, WatchedTyped};
use super::supervisor::Shared;
use crate::{ApiClient, ClientError, Selector, Snapshot};

/// The consumer SDK's entry point: one per process (or per server), shared
/// by every watched secret.
///
/// Cheap to clone. Its `Debug` shows the server address and consumer id,
/// never the token. Background tasks (one event stream, polling,
/// heartbeats) start at the first [`watch`](Self::watch) and stop on
/// [`close`](Self::close) or when the last `Client` and [`Watched`] handle
/// is dropped.
#[derive(Clone)]
pub struct Client {
    pub(crate) shared: Arc<Shared>,
    _guard: Arc<DropGuard>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.shared.api().base_url())
            .field("consumer_id", &self.shared.consumer_id)
            .finish_non_exhaustive()
    }
}

/// The first value of a secret being opened.
struct First {
    snapshot: Snapshot,
    min_overlap: Option<std::time::Duration>,
    /// Read from the server now (else from the disk cache).
    online: bool,
    /// The event stream carried the name when the value was read.
    covered: bool,
}

impl Client {
    /// Starts configuring a client of the server at `addr`
    /// (`http://127.0.0.1:8200`).
    pub fn builder(addr: &str) -> ClientBuilder {
        ClientBuilder::new(addr)
    }

    pub(crate) fn from_shared(shared: Shared) -> Client {
        let guard = shared.cancel.clone().drop_guard();
        Client {
            shared: Arc::new(shared),
            _guard: Arc::new(guard),
        }
    }

    /// The HTTP API client this SDK uses now (same server, same token;
    /// with several addresses, the one in use).
    pub fn api(&self) -> &ApiClient {
        self.shared.api()
    }

    /// The consumer id reported in heartbeats.
    pub fn consumer_id(&self) -> &str {
        &self.shared.consumer_id
    }

    /// Watches `name`: the first value comes from the server (or from the
    /// disk cache when the server is unreachable); then changes are pushed
    /// over the client's event stream, with polling every TTL as a
    /// fallback. Watching the same name twice returns the same value.
    ///
    /// # Errors
    ///
    /// [`SdkError::Api`] when the server refuses (`not_found`,
    /// `forbidden`); [`SdkError::Unavailable`] when it is unreachable and
    /// nothing is cached; [`SdkError::Cache`] when the cached file does not
    /// decrypt; [`SdkError::Config`] after [`close`](Self::close).
    pub async fn watch(&self, name: &SecretName) -> Result<Watched, SdkError> {
        if let Some(slot) = self.shared.raw_slot(name) {
            return Ok(self.handle(slot));
        }
        let (slot, ()) = self.open(name, |_| Ok((None, ()))).await?;
        Ok(self.handle(slot))
    }

    /// Watches `name` as a JSON document parsed into `T` and checked by
    /// `validate`. A value that fails to parse or validate is rejected: the
    /// last good value stays, a warning is logged and
    /// [`WatchedTyped::last_error`] reports it. Parse errors never quote
    /// the value; `validate`'s message is logged as is, so it must not
    /// either.
    ///
    /// # Errors
    ///
    /// As [`watch`](Self::watch), and [`SdkError::Invalid`] when the first
    /// value (from the server or the cache) is rejected.
    pub async fn watch_typed<T, F>(
        &self,
        name: &SecretName,
        validate: F,
    ) -> Result<WatchedTyped<T>, SdkError>
    where
        T: DeserializeOwned + Send + Sync + 'static,
        F: Fn(&T) -> Result<(), String> + Send + Sync + 'static,
    {
        let (slot, typed) = self
            .open(name, move |first| {
                let value = check(&validate, first).map_err(SdkError::Invalid)?;
                let typed = Arc::new(ArcSwap::from_pointee(TypedSnapshot {
                    version: first.version,
                    value,
                    seq: first.seq,
                }));
                let cell = typed.clone();
                let gate: Gate = Box::new(move |snap: &Snapshot| {
                    let value = check(&validate, snap)?;
                    cell.store(Arc::new(TypedSnapshot {
                        version: snap.version,
                        value,
                        seq: snap.seq,
                    }));
                    Ok(())
                });
                Ok((Some(gate), typed))
            })
            .await?;
        Ok(WatchedTyped {
            raw: self.handle(slot),
            typed,
        })
    }

    /// Reports that `count` uses of `version` of `name` failed, as this
    /// consumer (see [`Watched::report_failures`]).
    ///
    /// # Errors
    ///
    /// [`SdkError::Api`] when the server cannot be reached or refuses.
    pub async fn report_failures(
        &self,
        name: &SecretName,
        version: VersionNumber,
        count: u64,
    ) -> Result<(), SdkError> {
        let report = FailureReport {
            reporter: self.shared.consumer_id.clone(),
            failures: vec![UsageCount {
                secret: name.clone(),
                version,
                count,
            }],
        };
        Ok(self.shared.api().report_failures(&report).await?)
    }

    /// Stops every background task (event stream, polling, heartbeats).
    /// Handles keep serving their last value; `watch` fails afterwards.
    pub fn close(&self) {
        self.shared.cancel.cancel();
    }

    fn handle(&self, slot: Arc<Slot>) -> Watched {
        Watched {
            slot,
            client: Some(self.clone()),
        }
    }

    /// Opens `name`: reads its policy, waits for the event stream to carry
    /// it, reads its first value (or the cached one), builds its gate with
    /// `make`, and registers it.
    #[instrument(skip_all, fields(secret = %name))]
    async fn open<X>(
        &self,
        name: &SecretName,
        make: impl FnOnce(&Snapshot) -> Result<(Option<Gate>, X), SdkError>,
    ) -> Result<(Arc<Slot>, X), SdkError> {
        let shared = &self.shared;
        if shared.cancel.is_cancelled() {
            return Err(SdkError::Config("the client is closed".to_owned()));
        }
        shared.ensure_started();
        let policy = match shared.api().get_secret(name).await {
            Ok(info) => Ok(info.policy.min_overlap),
            Err(e) if unreachable(&e) => Err(e),
            Err(e) => return Err(e.into()),
        };
        let opening = Opening::begin(shared, name);
        let first = self.first_value(name, policy, opening.generation).await?;
        let (gate, extra) = make(&first.snapshot)?;
        let slot = Arc::new(Slot::new(first.snapshot, shared.config.ttl, gate));
        if let Some(overlap) = first.min_overlap {
            slot.set_policy(shared.config.ttl, overlap, first.online.then(Instant::now));
        }
        if first.online {
            slot.count_fetch();
        }
        if !first.covered {
            slot.mark_resync();
        }
        let (slot, dirty) = opening.register(slot);
        if first.online {
            shared.persist(&slot).await;
            if dirty || !first.covered {
                let shared = shared.clone();
                let slot = slot.clone();
                tokio::spawn(async move { shared.poll(&slot).await });
            }
        }
        shared.heartbeat_wake.notify_one();
        shared.poll_wake.notify_one();
        Ok((slot, extra))
    }

    /// The first value: from the server once the stream carries the name,
    /// or from the disk cache when the server is unreachable.
    async fn first_value(
        &self,
        name: &SecretName,
        policy: Result<std::time::Duration, ClientError>,
        generation: u64,
    ) -> Result<First, SdkError> {
        let min_overlap = match policy {
            Ok(o) => o,
            Err(e) => return self.cached_value(name, &e).await,
        };
        let covered = self.shared.wait_for_stream(generation).await;
        match self.shared.api().get_value(name, Selector::default()).await {
            Ok(v) => Ok(First {
                snapshot: Snapshot {
                    name: v.name,
                    version: v.info.version,
                    value: v.value,
                    seq: 0,
                },
                min_overlap: Some(min_overlap),
                online: true,
                covered,
            }),
            Err(e) if unreachable(&e) => self.cached_value(name, &e).await,
            Err(e) => Err(e.into()),
        }
    }

    async fn cached_value(
        &self,
        name: &SecretName,
        cause: &ClientError,
    ) -> Result<First, SdkError> {
        let unavailable = || SdkError::Unavailable {
            name: name.clone(),
            reason: cause.to_string(),
        };
        let Some(cache) = self.shared.cache.clone() else {
            return Err(unavailable());
        };
        let key = name.clone();
        let loaded = tokio::task::spawn_blocking(move || cache.load(&key))
            .await
            .map_err(|e| SdkError::Cache(format!("the cache reader failed: {e}")))?;
        let cached = match loaded {
            Ok(Some(c)) => c,
            Ok(None) => return Err(unavailable()),
            Err(e) => {
                tracing::error!(error = %e, "the cached value is unusable and is not served");
                return Err(e);
            }
        };
        tracing::warn!(
            version = %cached.snapshot.version,
            error = %cause,
            "server unreachable: serving the cached value; retrying in the background"
        );
        Ok(First {
            snapshot: cached.snapshot,
            min_overlap: cached.min_overlap,
            online: false,
            covered: false,
        })
    }
}

/// A name being opened: carried by the stream from `begin` until it is
/// registered or the open fails (or is cancelled: dropped).
struct Opening<'a> {
    shared: &'a Shared,
    name: &'a SecretName,
    generation: u64,
    done: bool,
}

impl<'a> Opening<'a> {
    fn begin(shared: &'a Shared, name: &'a SecretName) -> Self {
        let generation = shared.begin_open(name);
        Opening {
            shared,
            name,
            generation,
            done: false,
        }
    }

    /// Registers `slot` (or finds the untyped slot registered first);
    /// says whether an event arrived for the name meanwhile.
    fn register(mut self, slot: Arc<Slot>) -> (Arc<Slot>, bool) {
        self.done = true;
        let (registered, dirty) = self.shared.end_open(self.name, Some(slot.clone()));
        (registered.unwrap_or(slot), dirty)
    }
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.shared.end_open(self.name, None);
        }
    }
}

/// Parses `snap` as a `T` and validates it. Errors never quote the value.
fn check<T, F>(validate: &F, snap: &Snapshot) -> Result<T, String>
where
    T: DeserializeOwned,
    F: Fn(&T) -> Result<(), String>,
{
    let value: T = serde_json::from_str(snap.value.expose()).map_err(|e| {
        format!(
            "version {} is not a JSON document of the expected shape ({:?} error at line {} column {}; details withheld because they may quote the value)",
            snap.version,
            e.classify(),
            e.line(),
            e.column()
        )
    })?;
    validate(&value).map_err(|why| format!("version {} failed validation: {why}", snap.version))?;
    Ok(value)
}

/// For tests of the typed path without a server.
#[cfg(test)]
pub(crate) fn check_for_test<T: DeserializeOwned>(
    validate: impl Fn(&T) -> Result<(), String>,
    version: u64,
    value: &str,
) -> Result<T, String> {
    let snap = Snapshot {
        name: "t/x".parse().expect("valid name"),
        version: keyshift_core::VersionNumber(version),
        value: keyshift_core::SecretValue::new(value.to_owned()).expect("valid value"),
        seq: 0,
    };
    check(&validate, &snap)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct Db {
        port: u16,
    }

    #[test]
    fn parse_errors_never_quote_the_value() {
        let ok = |_: &Db| Ok(());
        let e = check_for_test::<Db>(ok, 3, r#"{"port":"hunter2"}"#).unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("version 3"), "{e}");
        let e = check_for_test::<Db>(ok, 3, "hunter2 not json").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        let db = check_for_test::<Db>(ok, 3, r#"{"port":5432}"#).unwrap();
        assert_eq!(db.port, 5432);
        let e = check_for_test::<Db>(
            |d: &Db| {
                if d.port == 0 {
                    Err("port 0".into())
                } else {
                    Ok(())
                }
            },
            4,
            r#"{"port":0}"#,
        )
        .unwrap_err();
        assert!(e.contains("failed validation: port 0"), "{e}");
    }
}
