//! What every handler shares.

use std::sync::Arc;
use std::time::SystemTime;

use keyshift_core::Timestamp;
use keyshift_store::{NewAudit, Store};
use tokio_util::sync::CancellationToken;

use crate::cache::ReadCache;
use crate::heartbeats::Heartbeats;
use crate::orchestrator::Orchestrator;
use crate::scheduler::Scheduler;

/// The app's shared state: one pointer, cheap to clone (each request's
/// handler gets a clone); its fields are [`Shared`]'s.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// The state of a server made of these parts.
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What every handler shares.
pub struct Shared {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Drives rotations.
    pub orchestrator: Orchestrator,
    /// Starts rotations when they are due.
    pub scheduler: Arc<Scheduler>,
    /// The store engine's name, for health.
    pub engine: &'static str,
    /// Cancelled when the server shuts down (ends watch streams).
    pub shutdown: CancellationToken,
    /// Tokens and values of the read path, kept current by store events.
    pub cache: Arc<ReadCache>,
    /// Consumers' heartbeats, written in batches.
    pub heartbeats: Heartbeats,
}

impl AppState {
    /// Appends to the audit log; a failure is logged, never hidden from
    /// the operator, but does not undo the action that was taken.
    pub async fn audit(&self, entry: NewAudit) {
        if let Err(e) = self.store.append_audit(&entry).await {
            tracing::error!(error = %e, action = %entry.action, "could not write audit entry");
        }
    }
}

/// The wall clock, read at the edge: the core never reads it.
pub fn now() -> Timestamp {
    Timestamp::from_system(SystemTime::now())
}
