//! The store conformance suite: every case runs against SQLite (a temporary
//! file) and PostgreSQL (a fresh database, dropped afterwards; skipped with
//! a loud message when PostgreSQL is not reachable, failed in CI).

mod common;

#[path = "conformance/consumers.rs"]
mod consumers;
#[path = "conformance/events.rs"]
mod events;
#[path = "conformance/rotations.rs"]
mod rotations;
#[path = "conformance/secrets.rs"]
mod secrets;
#[path = "conformance/versions.rs"]
mod versions;

/// Generates `sqlite::<case>` and `postgres::<case>` for each case.
macro_rules! conformance {
    ($($module:ident :: $case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::common::run_sqlite(crate::$module::$case).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::common::run_postgres(crate::$module::$case).await;
                }
            )*
        }
    };
}

conformance! {
    secrets::secrets_crud,
    secrets::versions_and_labels,
    secrets::scheduled_secrets_only,
    versions::move_labels_atomically,
    versions::version_state_and_accepted,
    versions::add_version_idempotent_per_rotation,
    events::events_since_patterns_and_order,
    events::subscribe_receives_committed_events,
    events::subscribers_see_concurrent_events_in_id_order,
    rotations::create_rotation_outcomes,
    rotations::concurrent_create_rotation,
    rotations::save_get_list_rotations,
    rotations::delete_refused_while_rotation_active,
    rotations::rotation_leases,
    rotations::audit_append_and_list,
    rotations::tokens,
    rotations::health,
    consumers::heartbeat_upsert_keeps_first_seen,
    consumers::heartbeat_covers_several_secrets,
    consumers::heartbeat_unknown_secret_writes_nothing,
    consumers::heartbeats_in_one_batch,
    consumers::usage_adds_within_window_and_rolls_over,
    consumers::usage_since_filters_by_window,
    consumers::prune_removes_old_rows_only,
    consumers::delete_secret_removes_consumers_and_usage,
    consumers::concurrent_heartbeats_and_usage,
    consumers::failures_add_up_per_consumer_and_version,
}
