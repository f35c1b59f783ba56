//! Group commit of consumers' heartbeats.
//!
//! Every consumer sends a heartbeat every few seconds and right after each
//! change, so a rotation watched by thousands of consumers brings
//! thousands of heartbeats at once. One writer takes every heartbeat
//! waiting and writes them in one transaction
//! ([`Store::record_heartbeats`]); each request is answered once its batch
//! is committed, so a heartbeat that was answered is in the store, as
//! before. Nothing waits on a timer: alone, a heartbeat is written at
//! once; under load, the batches grow.

use std::sync::Arc;

use keyshift_core::{SecretName, Timestamp};
use keyshift_store::{HeartbeatRecord, Store, StoreError};
use tokio::sync::{mpsc, oneshot};

use crate::error::ApiError;
use crate::state::now;

/// The most heartbeats written in one transaction.
const MAX_BATCH: usize = 512;

/// Heartbeats waiting for the writer before senders wait their turn.
const QUEUE: usize = 4096;

/// What a heartbeat's sender is told: written, or the missing secret that
/// kept it out, or the batch's error.
type Outcome = Result<Option<SecretName>, Arc<StoreError>>;

struct Pending {
    beat: HeartbeatRecord,
    done: oneshot::Sender<Outcome>,
}

/// The handle the heartbeat route writes through; its writer task ends
/// when the last handle is dropped.
#[derive(Clone)]
pub struct Heartbeats {
    queue: mpsc::Sender<Pending>,
}

impl Heartbeats {
    /// Starts the writer (a task on the current runtime).
    pub fn start(store: Arc<dyn Store>) -> Heartbeats {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write(store, rx));
        Heartbeats { queue }
    }

    /// Records `beat` at the time of writing; returns once it is committed.
    ///
    /// # Errors
    ///
    /// [`ApiError::NotFound`] when it names a secret that does not exist
    /// (then none of it is written); the store's error for its batch.
    pub async fn record(&self, beat: HeartbeatRecord) -> Result<(), ApiError> {
        let (done, outcome) = oneshot::channel();
        self.queue
            .send(Pending { beat, done })
            .await
            .map_err(|_| ApiError::Unavailable)?;
        match outcome.await.map_err(|_| ApiError::Unavailable)? {
            Ok(None) => Ok(()),
            Ok(Some(missing)) => Err(StoreError::NotFound {
                what: "secret",
                name: missing.to_string(),
            }
            .into()),
            Err(e) => Err(ApiError::from_store(&e)),
        }
    }
}

/// Writes batches until every handle is gone.
async fn write(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (beats, senders): (Vec<_>, Vec<_>) = batch.drain(..).map(|p| (p.beat, p.done)).unzip();
        let at: Timestamp = now();
        match store.record_heartbeats(&beats, at).await {
            Ok(outcomes) => {
                for (done, outcome) in senders.into_iter().zip(outcomes) {
                    // A sender that went away (client gone) needs no answer.
                    let _ = done.send(Ok(outcome));
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                for done in senders {
                    let _ = done.send(Err(e.clone()));
                }
            }
        }
    }
}
