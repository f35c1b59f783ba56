//! The read path's memory: API tokens and secret values, so that reading a
//! secret's current value takes no store round trip.
//!
//! A value stays cached until its secret changes. The cache holds its own
//! subscription to the store's change events (the ones watchers get) and
//! drains it at the start of every read: the store sends an event before
//! the write that made it returns, so a read that starts after a write
//! never sees what the write replaced. A value read from the store is only
//! kept when no event arrived while it was being read. Should the events
//! lag, the cache empties; should they stop, it stays off.
//!
//! Token records never change once minted (there is no revocation yet);
//! each is kept for [`TOKEN_TTL`], so that a change made by another process
//! on a shared store reaches this one within it.
//!
//! Values live in memory as [`SecretValue`]s, zeroized when dropped; at
//! most [`MAX_SECRETS`] secrets and [`MAX_TOKENS`] tokens are kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use keyshift_core::{SecretName, SecretValue};
use keyshift_store::{EventRecord, Store, StoreError, VersionRecord, VersionSelector};
use tokio::sync::broadcast::{self, error::TryRecvError};

use crate::auth::KnownToken;

/// How long a token record is trusted without reading the store again.
pub const TOKEN_TTL: Duration = Duration::from_secs(30);
/// The most secrets whose values are kept; past it the cache starts over.
pub const MAX_SECRETS: usize = 10_000;
/// The most tokens kept; past it the cache starts over.
pub const MAX_TOKENS: usize = 10_000;

/// Tokens and values of the read path.
pub struct ReadCache {
    values: Mutex<Values>,
    tokens: RwLock<HashMap<String, (Instant, Arc<KnownToken>)>>,
}

struct Values {
    by_secret: HashMap<SecretName, HashMap<VersionSelector, (VersionRecord, SecretValue)>>,
    events: broadcast::Receiver<EventRecord>,
    /// Counts the changes seen.
    generation: u64,
    /// False once the store's events stopped: every read goes to the store.
    live: bool,
}

impl Values {
    /// Applies the change events that arrived since the last call.
    fn catch_up(&mut self) {
        loop {
            match self.events.try_recv() {
                Ok(e) => {
                    self.generation += 1;
                    self.by_secret.remove(&e.secret);
                }
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Lagged(_)) => {
                    self.generation += 1;
                    self.by_secret.clear();
                }
                Err(TryRecvError::Closed) => {
                    self.live = false;
                    self.by_secret.clear();
                    return;
                }
            }
        }
    }
}

impl ReadCache {
    /// A cache kept current by `store`'s change events.
    pub fn new(store: &dyn Store) -> Self {
        Self {
            values: Mutex::new(Values {
                by_secret: HashMap::new(),
                events: store.subscribe(),
                generation: 0,
                live: true,
            }),
            tokens: RwLock::new(HashMap::new()),
        }
    }

    fn values(&self) -> MutexGuard<'_, Values> {
        let mut values = lock(&self.values);
        values.catch_up();
        values
    }

    /// The version `sel` picks of `name` and its value, from memory or
    /// from `store`.
    ///
    /// # Errors
    ///
    /// The store's, as [`Store::get_value`].
    pub async fn value(
        &self,
        store: &dyn Store,
        name: &SecretName,
        sel: &VersionSelector,
    ) -> Result<(VersionRecord, SecretValue), StoreError> {
        let before = match self.lookup(name, sel) {
            Ok(hit) => return Ok(hit),
            Err(generation) => generation,
        };
        let found = store.get_value(name, sel).await?;
        self.keep(name, sel, &found, before);
        Ok(found)
    }

    /// The cached entry, or the generation to hand [`keep`](Self::keep).
    fn lookup(
        &self,
        name: &SecretName,
        sel: &VersionSelector,
    ) -> Result<(VersionRecord, SecretValue), u64> {
        let values = self.values();
        match values.by_secret.get(name).and_then(|m| m.get(sel)) {
            Some(hit) => Ok(hit.clone()),
            None => Err(values.generation),
        }
    }

    /// Keeps `found`, read from the store after [`lookup`](Self::lookup)
    /// said `before`, unless a change arrived since: then it may be old.
    fn keep(
        &self,
        name: &SecretName,
        sel: &VersionSelector,
        found: &(VersionRecord, SecretValue),
        before: u64,
    ) {
        let mut values = self.values();
        if !values.live || values.generation != before {
            return;
        }
        if values.by_secret.len() >= MAX_SECRETS && !values.by_secret.contains_key(name) {
            values.by_secret.clear();
        }
        values
            .by_secret
            .entry(name.clone())
            .or_default()
            .insert(sel.clone(), found.clone());
    }

    /// The token `id` if it was kept less than [`TOKEN_TTL`] ago.
    pub fn token(&self, id: &str) -> Option<Arc<KnownToken>> {
        read(&self.tokens)
            .get(id)
            .filter(|(at, _)| at.elapsed() < TOKEN_TTL)
            .map(|(_, known)| known.clone())
    }

    /// The token `id` as last kept, however long ago: for when the store
    /// cannot be asked (an outage), so reads go on.
    pub fn stale_token(&self, id: &str) -> Option<Arc<KnownToken>> {
        read(&self.tokens).get(id).map(|(_, known)| known.clone())
    }

    /// Keeps the token `id`, just read from the store. (Unknown ids are
    /// never kept: they would let anyone fill the memory.)
    pub fn keep_token(&self, id: &str, known: Arc<KnownToken>) {
        let mut tokens = write(&self.tokens);
        if tokens.len() >= MAX_TOKENS && !tokens.contains_key(id) {
            tokens.clear();
        }
        tokens.insert(id.to_owned(), (Instant::now(), known));
    }
}

// A panic while holding a lock leaves maps that are still whole (every
// update is one insert or remove): keep using them.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use keyshift_core::{Label, Policy, SecretKind, Timestamp, VersionState};
    use keyshift_store::{sqlite_url, MasterKey, SqlStore};

    use super::*;

    const CURRENT: VersionSelector = VersionSelector::Label(Label::Current);

    async fn store(dir: &tempfile::TempDir) -> SqlStore {
        let url = sqlite_url(&dir.path().join("keyshift.db"));
        SqlStore::open(&url, MasterKey::generate()).await.unwrap()
    }

    fn value(s: &str) -> SecretValue {
        SecretValue::new(s.to_owned()).unwrap()
    }

    async fn put(store: &SqlStore, name: &SecretName, v: &str) {
        store
            .add_version(
                name,
                &value(v),
                VersionState::Active,
                None,
                &[Label::Current],
                Timestamp::from_millis(0),
            )
            .await
            .unwrap();
    }

    async fn read(cache: &ReadCache, store: &SqlStore, name: &SecretName) -> String {
        let (_, v) = cache.value(store, name, &CURRENT).await.unwrap();
        v.expose().to_owned()
    }

    /// A store with `prod/db` at "one", a cache over it, and the name.
    async fn with_one() -> (tempfile::TempDir, SqlStore, ReadCache, SecretName) {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let cache = ReadCache::new(&store);
        let name: SecretName = "prod/db".parse().unwrap();
        let now = Timestamp::from_millis(0);
        store
            .create_secret(
                &name,
                SecretKind::Static,
                &Policy::default(),
                &serde_json::json!({}),
                now,
            )
            .await
            .unwrap();
        put(&store, &name, "one").await;
        (dir, store, cache, name)
    }

    #[tokio::test]
    async fn a_read_after_a_write_sees_the_write() {
        let (_dir, store, cache, name) = with_one().await;
        assert_eq!(read(&cache, &store, &name).await, "one");
        assert_eq!(read(&cache, &store, &name).await, "one", "from memory");

        put(&store, &name, "two").await;
        assert_eq!(read(&cache, &store, &name).await, "two");

        store
            .delete_secret(&name, Timestamp::from_millis(0))
            .await
            .unwrap();
        let gone = cache.value(&store, &name, &CURRENT).await;
        assert!(matches!(gone, Err(StoreError::NotFound { .. })), "{gone:?}");
    }

    #[tokio::test]
    async fn a_value_read_across_a_change_is_not_kept() {
        let (_dir, store, cache, name) = with_one().await;
        // A read that began before the change: it missed, read the old
        // value, and only then tries to keep it.
        let before = cache.lookup(&name, &CURRENT).unwrap_err();
        let old = store.get_value(&name, &CURRENT).await.unwrap();
        put(&store, &name, "two").await;
        cache.keep(&name, &CURRENT, &old, before);
        assert!(
            cache.lookup(&name, &CURRENT).is_err(),
            "the old value was kept"
        );
        assert_eq!(read(&cache, &store, &name).await, "two");
    }
}
