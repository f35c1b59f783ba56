//! keyshift's core: the vocabulary and the rotation state machine.
//!
//! This crate does no IO, reads no clock and spawns nothing. Time comes in
//! as a [`Timestamp`] argument and randomness as bytes, so every transition
//! is a pure function that tests can drive deterministically.
//!
//! ```text
//!  Precheck ─► Generate ─► DualAccept ─► Promote ─► Overlap ─► Revoke ─► Done
//!                               (canary: ─► Canary ─► Observe ─►)
//!     │            │            │            │          │
//!     └────────────┴────────────┴────────────┴──────────┴─► RollBack ─► RolledBack
//! ```
//!
//! The async driver (in `keyshift-server`) feeds [`rotation::Event`]s into
//! [`rotation::Rotation::on`] and performs the [`rotation::Action`] it gets
//! back, persisting the rotation before and after every side effect.
//!
//! ```
//! use keyshift_core::{rotation::{Rotation, Event, Action, Step}, Policy, SecretName, Strategy, Timestamp};
//! let name: SecretName = "prod/orders/api".parse().unwrap();
//! let rot = Rotation::new("r1".into(), name, Policy::default(), Strategy::Dual, None, None, Timestamp::from_millis(0));
//! let t = rot.on(Event::Resume, Timestamp::from_millis(0)).unwrap();
//! assert!(matches!(t.action, Action::Run(Step::Precheck { .. })));
//! ```
#![deny(missing_docs)]

pub mod api;
mod canary;
mod credential;
mod kind;
mod name;
mod policy;
pub mod report;
pub mod rotation;
mod schedule;
mod time;
mod value;
mod version;

pub use canary::in_canary;
pub use credential::{valid_username, Credential, MAX_USERNAME_LEN};
pub use kind::{SecretKind, GENERATED_ENTROPY_BYTES};
pub use name::{NameError, SecretName};
pub use policy::{NotifyWebhook, OnTimeout, Policy, PolicyError, Strategy, MAX_NOTIFY_WEBHOOKS};
pub use schedule::{jitter_offset, Circuit, CronExpr, Schedule, ScheduleError, When, MIN_INTERVAL};
pub use time::Timestamp;
pub use value::{SecretValue, ValueError};
pub use version::{Label, LabelError, VersionNumber, VersionState};
