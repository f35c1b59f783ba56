//! The keyshift server: the HTTP API, authentication, the orchestrator that
//! drives rotations, and the watch hub.
//!
//! ```text
//!  HTTP /v1 ──► routes ──► auth ──► Store (SQLite | PostgreSQL)
//!                 │                   ▲
//!                 └──► Orchestrator ──┴──► driver task per rotation ──► Target
//! ```
//!
//! [`routes::app`] builds the router from an [`AppState`], so tests call it
//! without a socket; [`Server`] binds a listener and runs it.
//!
//! ```no_run
//! # async fn f() -> Result<(), keyshift_server::ServerError> {
//! use keyshift_server::{init, ServeConfig, Server};
//! let dir = std::path::PathBuf::from("/tmp/keyshift-demo");
//! let report = init(&dir).await?;
//! println!("root token: {}", report.root_token.expose());
//! let server = Server::start(ServeConfig::new(dir)).await?;
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod auth;
mod bootstrap;
pub mod cache;
pub mod config;
mod dev;
pub mod error;
pub mod heartbeats;
pub mod metrics;
pub mod notify;
pub mod orchestrator;
pub mod routes;
pub mod scheduler;
pub mod state;

pub use bootstrap::{init, init_with_store, InitReport, Server, ServerError};
pub use config::ServeConfig;
pub use dev::DevServer;
pub use state::AppState;
