//! The rotation state machine.
//!
//! A [`Rotation`] is a plain value. [`Rotation::on`] consumes it with an
//! [`Event`] and the current time and returns the next rotation and the one
//! [`Action`] the driver must take. The driver persists the returned rotation
//! *before* it performs the action, and feeds the action's result back as the
//! next event, so a crash anywhere leaves a persisted rotation whose
//! [`Event::Resume`] re-issues an idempotent step (invariant I5).
//!
//! Phases of the `dual` strategy:
//!
//! ```text
//! Precheck ─► Generate ─► DualAccept ─► Promote ─► Overlap ─► Revoke ─► Done
//! ```
//!
//! `canary` runs `Canary ─► Observe` between DualAccept and Promote: the
//! new version is `current` for a share of consumers while their failure
//! reports are watched;
//! and `immediate`: `Precheck ─► Generate ─► Replace ─► Promote ─► Done`.
//! Any phase before Revoke (or Replace) can go to `RollBack ─► RolledBack`.

mod machine;
mod phase;

pub use machine::{
    Action, Event, FailureKind, Gate, GateVerdict, Migration, Rotation, Step, StepOutput,
    Transition, TransitionError,
};
pub use phase::{Phase, PhaseOutcome, PhaseRecord, RotationId, RotationIdError, Status};
