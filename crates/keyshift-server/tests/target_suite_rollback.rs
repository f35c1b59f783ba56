//! The rollback half of the target suite (`target_suite.rs` has the rest):
//! for every kind with a real target, a rotation whose DualAccept
//! verification is refused rolls back cleanly, and `current` still logs in.
//!
//! Its own test binary: every server here runs with the process-wide test
//! hook `KEYSHIFT_TEST_REFUSE_VERIFY=dual_accept`, which is read when a
//! server starts.

mod support;
mod target_kinds;

use target_kinds::{refused_verify_rolls_back, MariaDb, Plugin, Postgres, Redis, Webhook, X509};

/// Sets the hook before any test of this binary starts a server (each
/// test calls it first, so no other thread reads the environment while it
/// is written).
fn refuse_dual_accept() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::env::set_var("KEYSHIFT_TEST_REFUSE_VERIFY", "dual_accept"));
}

#[tokio::test]
async fn redis_refused_verify_rolls_back_to_a_working_current() {
    refuse_dual_accept();
    let Some(kind) = Redis::new() else { return };
    refused_verify_rolls_back(&kind).await;
}

#[tokio::test]
async fn postgres_refused_verify_rolls_back_to_a_working_current() {
    refuse_dual_accept();
    let Some(kind) = Postgres::new(true).await else {
        return;
    };
    refused_verify_rolls_back(&kind).await;
}

#[tokio::test]
async fn mariadb_refused_verify_rolls_back_to_a_working_current() {
    refuse_dual_accept();
    let Some(kind) = MariaDb::dual().await else {
        return;
    };
    refused_verify_rolls_back(&kind).await;
}

#[tokio::test]
async fn x509_refused_verify_rolls_back_to_a_working_current() {
    refuse_dual_accept();
    refused_verify_rolls_back(&X509::new()).await;
}

#[tokio::test]
async fn plugin_refused_verify_rolls_back_to_a_working_current() {
    refuse_dual_accept();
    let Some(kind) = Plugin::new() else { return };
    refused_verify_rolls_back(&kind).await;
}

#[tokio::test]
async fn webhook_refused_verify_rolls_back_to_a_working_current() {
    refuse_dual_accept();
    refused_verify_rolls_back(&Webhook::start().await).await;
}
