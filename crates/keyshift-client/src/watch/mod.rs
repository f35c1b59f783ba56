//! The consumer SDK: watched secrets that never block on the network.
//!
//! A [`Client`] keeps, per watched secret, an `ArcSwap` snapshot of the
//! last good value (what [`Watched::get`] loads), a `watch` channel that
//! moves on every applied change, and a cancellation token for its
//! background tasks:
//!
//! - one event stream (`GET /v1/watch`) for all watched names, resumed with
//!   `Last-Event-ID` after a reconnect (exponential backoff with jitter);
//!   an event whose `seq` is not higher than the last applied one is
//!   ignored, so a late or replayed event never moves a consumer back;
//! - polling every TTL (clamped below half the secret's overlap window) as
//!   the fallback for missed events;
//! - heartbeats reporting the version held, which gate the revocation of
//!   the old credential;
//! - optionally, an encrypted disk cache so the consumer starts while the
//!   server is unreachable.
//!
//! Layout: `builder` (configuration), `client` (opening secrets),
//! `source` (the handles), `slot` (one secret's state and ordering rules),
//! `supervisor` (shared state, dispatch, polling), `stream` and `sse` (the
//! event stream), `heartbeat`, `cache`, `backoff`, `errors`.

mod backoff;
mod builder;
mod cache;
mod client;
mod errors;
mod heartbeat;
mod slot;
mod source;
mod sse;
mod stream;
mod supervisor;

pub use builder::{
    ClientBuilder, DEFAULT_BACKOFF_MAX, DEFAULT_BACKOFF_MIN, DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_TTL,
};
pub use client::Client;
pub use errors::SdkError;
pub use source::{Current, TypedSnapshot, Watched, WatchedTyped};
