//! The driver: one task per running rotation.
//!
//! It feeds events into the core's transition function, persists the
//! result *before* performing the step it asks for (so a crash re-issues an
//! idempotent step on resume), performs it, and feeds the outcome back.

use std::time::Duration;

use keyshift_core::rotation::{Action, Event, Phase, Rotation, RotationId};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{gate_detail, steps, Orchestrator, Order, OrderKind};
use crate::metrics;
use crate::state::now;

/// Longest wait between attempts to persist while the store is down.
const MAX_PERSIST_BACKOFF: Duration = Duration::from_secs(5);

/// Drives `rotation` until it ends or the server shuts down.
pub(super) async fn drive(
    orch: &Orchestrator,
    rotation: Rotation,
    mut orders: mpsc::Receiver<Order>,
) {
    let span = tracing::info_span!("rotation", id = %rotation.id, secret = %rotation.secret);
    async move {
        let _running = metrics::Counted::rotation();
        // The kind labels the rotation's metrics; the secret cannot change
        // kind, and a rotation holds its secret from deletion.
        let kind = orch.inner.store.get_secret(&rotation.secret).await.ok();
        let kind = metrics::kind_label(kind.map(|s| s.kind));
        let shutdown = orch.inner.shutdown.clone();
        let lost = CancellationToken::new();
        let keeper = tokio::spawn(keep_lease(orch.clone(), rotation.id.clone(), lost.clone()));
        let id = rotation.id.clone();
        tokio::select! {
            _ = shutdown.cancelled() => {
                tracing::debug!("driver stopped by shutdown");
                // Another replica (or this one, restarted) may take it at
                // once, rather than when the lease expires.
                let release = orch.inner.store.release_rotation(&id, &orch.inner.lease.owner);
                let _ = tokio::time::timeout(Duration::from_secs(1), release).await;
            }
            _ = lost.cancelled() => tracing::warn!("lease lost: another replica drives this rotation now"),
            _ = run(orch, rotation, &mut orders, kind) => {}
        }
        keeper.abort();
    }
    .instrument(span)
    .await
}

/// Renews the driver's lease every third of its length until aborted;
/// cancels `lost` when another replica holds it, or when it could not be
/// renewed before it expires (the store unreachable): the driver must
/// stop before another replica may take over.
async fn keep_lease(orch: Orchestrator, id: RotationId, lost: CancellationToken) {
    let lease = orch.inner.lease.clone();
    let every = lease.renew_every();
    // Taken just before the driver started.
    let mut held_until = Instant::now() + lease.ttl;
    loop {
        tokio::time::sleep(every).await;
        let asked = Instant::now();
        let at = now();
        match orch
            .inner
            .store
            .lease_rotation(&id, &lease.owner, at, at.saturating_add(lease.ttl))
            .await
        {
            Ok(true) => held_until = asked + lease.ttl,
            Ok(false) => {
                lost.cancel();
                return;
            }
            Err(e) if Instant::now() + every < held_until => {
                tracing::warn!(error = %e, "cannot renew the rotation's lease; retrying");
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the rotation's lease before it expires; stopping its driver");
                lost.cancel();
                return;
            }
        }
    }
}

async fn run(
    orch: &Orchestrator,
    mut rotation: Rotation,
    orders: &mut mpsc::Receiver<Order>,
    kind: &'static str,
) {
    let mut event = Event::Resume;
    let mut pending_reply = None;
    loop {
        let before = rotation.clone();
        let transition = match rotation.on(event, now()) {
            Ok(t) => t,
            Err(e) => {
                // Only an operator's order can be refused here.
                if let Some(reply) = pending_reply.take() {
                    let _ = Order::answer(reply, Err(e));
                } else {
                    tracing::error!(error = %e, "state machine refused an event");
                }
                rotation = before;
                event = Event::Resume;
                continue;
            }
        };
        rotation = transition.rotation;
        if !persist(orch, &rotation).await {
            return;
        }
        if let Some(reply) = pending_reply.take() {
            let _ = Order::answer(reply, Ok(rotation.clone()));
        }
        if before.phase != rotation.phase {
            tracing::info!(from = %before.phase, to = %rotation.phase, "phase");
            metrics::phase_ended(kind, &rotation, before.phase);
            orch.inner.notifier.phase(&rotation);
        }
        // The gate passed on its own (the operator's advance is audited by
        // the order): say how, and who had not moved.
        let passed = before.phase == Phase::Overlap && rotation.phase == Phase::Revoke;
        if passed && rotation.gate.passed_by.as_deref() != Some("operator") {
            orch.audit(
                &rotation,
                "keyshift",
                "rotation.gate",
                "ok",
                gate_detail(&rotation),
            )
            .await;
        }
        if rotation.gate.checked_at != before.gate.checked_at {
            if let Some(why) = &rotation.gate.held {
                tracing::warn!(held = %why, next_check = ?rotation.gate.next_check, "overlap gate held");
            }
        }
        match transition.action {
            Action::Finished(status) => {
                let outcome = status.as_str();
                orch.audit(
                    &rotation,
                    "keyshift",
                    "rotation.finish",
                    outcome,
                    rotation.reason.clone(),
                )
                .await;
                tracing::info!(status = outcome, "rotation finished");
                metrics::rotation_finished(kind, &rotation);
                orch.finished(&rotation).await;
                return;
            }
            Action::WaitUntil(at) => {
                let wait = at.since(now());
                tokio::select! {
                    _ = tokio::time::sleep(wait) => event = Event::Resume,
                    Some(order) = orders.recv() => {
                        event = order.kind.into_event();
                        pending_reply = Some(order.reply);
                    }
                }
            }
            Action::Run(step) => {
                // An operator's rollback that arrived during the last step
                // is applied before the next side effect.
                if let Ok(order) = orders.try_recv() {
                    event = order.kind.into_event();
                    pending_reply = Some(order.reply);
                    continue;
                }
                let phase = rotation.phase;
                orch.inner.hooks.halt_point(phase, "before").await;
                let started = std::time::Instant::now();
                let result = steps::perform(
                    orch.inner.store.as_ref(),
                    &orch.inner.hooks,
                    &rotation,
                    &step,
                )
                .await;
                orch.inner.hooks.halt_point(phase, "after").await;
                match &result {
                    Ok(_) => {
                        tracing::info!(phase = %phase, elapsed_ms = started.elapsed().as_millis() as u64, "step ok")
                    }
                    Err(f) => {
                        tracing::warn!(phase = %phase, error = %f.error, transient = f.transient, "step failed")
                    }
                }
                event = steps::into_event(result);
            }
        }
    }
}

impl OrderKind {
    fn into_event(self) -> Event {
        match self {
            OrderKind::Rollback(reason) => Event::RollbackRequested { reason },
            OrderKind::Advance(_) => Event::AdvanceRequested,
        }
    }
}

impl Order {
    fn answer(
        reply: tokio::sync::oneshot::Sender<
            Result<Rotation, keyshift_core::rotation::TransitionError>,
        >,
        result: Result<Rotation, keyshift_core::rotation::TransitionError>,
    ) -> Result<(), ()> {
        reply.send(result).map_err(|_| ())
    }
}

/// Persists `rotation`, retrying while the store is unavailable: no side
/// effect may run before its state is durable. A permanent error (the row
/// is gone) stops the driver: it returns false.
async fn persist(orch: &Orchestrator, rotation: &Rotation) -> bool {
    let mut backoff = Duration::from_millis(100);
    loop {
        match orch
            .inner
            .store
            .save_leased_rotation(rotation, &orch.inner.lease.owner)
            .await
        {
            Ok(()) => return true,
            Err(keyshift_store::StoreError::LeaseLost { .. }) => {
                tracing::warn!(
                    "lease lost: another replica drives this rotation now; this driver stops"
                );
                return false;
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "could not persist rotation; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_PERSIST_BACKOFF);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot persist rotation; its driver stops");
                return false;
            }
        }
    }
}
