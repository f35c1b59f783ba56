//! The `canary` strategy end to end, with real SDK consumers of a real
//! in-process server: the new version reaches only the consumers in the
//! canary's share (a stable hash of their id); failures they report roll
//! the rotation back on its own, and the other consumers never hold the
//! new version. Nothing here needs an outside service.

mod support;

use std::time::Duration;

use keyshift_client::{ApiClient, Client, Selector, Watched};
use keyshift_core::api::RotationInfo;
use keyshift_core::api::StartRotation;
use keyshift_core::rotation::{Phase, Status};
use keyshift_core::{in_canary, Policy, SecretName, VersionNumber, VersionState};
use support::{create_api_key_with, wait_rotation, wait_version, TestServer};

/// The share every test here uses.
const SHARE: u8 = 25;

async fn create_canary_secret(api: &ApiClient, observation: &str, tolerated: u64) -> SecretName {
    let policy: Policy = serde_json::from_value(serde_json::json!({
        "strategy": "canary",
        "canary_share": SHARE,
        "canary_observation": observation,
        "canary_max_failures": tolerated,
        "min_overlap": "0s",
    }))
    .unwrap();
    create_api_key_with(api, "canary", policy).await
}

/// One SDK consumer: its own client (its own id) watching `name`.
struct Consumer {
    client: Client,
    watched: Watched,
}

impl Consumer {
    /// Changes applied since it opened the secret: every swap counts, even
    /// one undone before anybody looked.
    fn swaps(&self) -> u64 {
        *self.watched.changes().borrow()
    }
}

/// Three consumers in the canary's share of `name` and three outside it,
/// each watching `name` at version 1.
async fn consumers(server: &TestServer, name: &SecretName) -> (Vec<Consumer>, Vec<Consumer>) {
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    for i in 0.. {
        if inside.len() == 3 && outside.len() == 3 {
            break;
        }
        let id = format!("canary-test-{i}");
        let group = if in_canary(name, &id, SHARE) {
            &mut inside
        } else {
            &mut outside
        };
        if group.len() == 3 {
            continue;
        }
        let client = server.sdk().consumer_id(id).build().unwrap();
        let watched = client.watch(name).await.unwrap();
        assert_eq!(watched.get().version, VersionNumber(1));
        group.push(Consumer { client, watched });
    }
    (inside, outside)
}

/// Polls the rotation until it is in `phase` (bounded).
async fn wait_phase(api: &ApiClient, rotation: &RotationInfo, phase: Phase) {
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        let r = api.get_rotation(&rotation.id).await.unwrap();
        if r.phase == phase {
            return;
        }
        assert_eq!(r.status, Status::Running, "ended before {phase}: {r:?}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "rotation still in {}",
            r.phase
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn failures_in_the_share_roll_the_canary_back_before_anyone_else_sees_it() {
    let server = TestServer::start().await;
    let admin = server.admin();
    // A long observation: only the failure report can end it early.
    let name = create_canary_secret(&admin, "10m", 0).await;
    let (inside, outside) = consumers(&server, &name).await;

    let rotation = admin
        .rotate(&name, &StartRotation::default())
        .await
        .unwrap();
    assert_eq!(rotation.strategy.as_str(), "canary");
    wait_phase(&admin, &rotation, Phase::Observe).await;
    for c in &inside {
        wait_version(&c.watched, 2).await;
    }
    // What the server answers each consumer, read as that consumer.
    for (c, expected) in inside
        .iter()
        .map(|c| (c, 2))
        .chain(outside.iter().map(|c| (c, 1)))
    {
        let as_consumer = admin.for_consumer(c.client.consumer_id());
        let v = as_consumer
            .get_value(&name, Selector::default())
            .await
            .unwrap();
        assert_eq!(
            v.info.version,
            VersionNumber(expected),
            "{}",
            c.client.consumer_id()
        );
    }
    let plain = admin.get_value(&name, Selector::default()).await.unwrap();
    assert_eq!(
        plain.info.version,
        VersionNumber(1),
        "`current` is still v1"
    );

    // One consumer in the share fails with v2 and says so.
    let failing = &inside[0];
    failing
        .watched
        .report_failures(VersionNumber(2), 1)
        .await
        .unwrap();

    let done = wait_rotation(&admin, &rotation).await;
    assert_eq!(done.status, Status::RolledBack, "{done:?}");
    let reason = done.reason.clone().unwrap_or_default();
    assert!(reason.contains("canary"), "{reason}");
    assert!(reason.contains(failing.client.consumer_id()), "{reason}");
    let phases: Vec<Phase> = done.phases.iter().map(|p| p.phase).collect();
    assert!(
        !phases.contains(&Phase::Promote),
        "never promoted: {phases:?}"
    );

    // The share is back on v1; the others never held anything else.
    for c in &inside {
        wait_version(&c.watched, 1).await;
        assert_eq!(c.swaps(), 2, "v2 then back to v1");
    }
    for c in &outside {
        assert_eq!(c.watched.get().version, VersionNumber(1));
        assert_eq!(
            c.swaps(),
            0,
            "{} saw another version",
            c.client.consumer_id()
        );
    }
    // v2 is failed and no longer accepted; the audit log says who rolled back.
    let versions = admin.list_versions(&name).await.unwrap().versions;
    let v2 = versions
        .iter()
        .find(|v| v.version == VersionNumber(2))
        .unwrap();
    assert_eq!(v2.state, VersionState::Failed);
    let accepted = admin.accepted(&name).await.unwrap().versions;
    let accepted: Vec<_> = accepted.iter().map(|v| v.info.version).collect();
    assert_eq!(accepted, [VersionNumber(1)]);
    let secret = admin.get_secret(&name).await.unwrap();
    assert!(!secret.labels.contains_key(&keyshift_core::Label::Canary));
    for c in inside.iter().chain(&outside) {
        c.client.close();
    }
}

#[tokio::test]
async fn a_canary_within_its_tolerance_is_promoted_to_everyone() {
    let server = TestServer::start().await;
    let admin = server.admin();
    let name = create_canary_secret(&admin, "1s", 1).await;
    let (inside, outside) = consumers(&server, &name).await;

    let rotation = admin
        .rotate(&name, &StartRotation::default())
        .await
        .unwrap();
    wait_phase(&admin, &rotation, Phase::Observe).await;
    for c in &inside {
        wait_version(&c.watched, 2).await;
    }
    // One failure is tolerated.
    inside[0]
        .watched
        .report_failures(VersionNumber(2), 1)
        .await
        .unwrap();

    let done = wait_rotation(&admin, &rotation).await;
    assert_eq!(done.status, Status::Succeeded, "{done:?}");
    let phases: Vec<Phase> = done.phases.iter().map(|p| p.phase).collect();
    use Phase::*;
    assert_eq!(
        phases,
        [Precheck, Generate, DualAccept, Canary, Observe, Promote, Overlap, Revoke, Done]
    );
    // Observation lasted its second (the record's own times).
    let observe = done.phases.iter().find(|p| p.phase == Observe).unwrap();
    let lasted = observe.ended_at.unwrap().as_millis() - observe.started_at.as_millis();
    assert!(lasted >= 1000, "observed {lasted} ms");
    for c in inside.iter().chain(&outside) {
        wait_version(&c.watched, 2).await;
        assert_eq!(c.swaps(), 1, "one swap, to v2");
        c.client.close();
    }
}

#[tokio::test]
async fn reads_name_a_valid_consumer_and_rotation_labels_are_not_for_hands() {
    let server = TestServer::start().await;
    let admin = server.admin();
    let name = create_canary_secret(&admin, "1s", 0).await;
    let bad = admin.for_consumer("has space");
    let err = bad.get_value(&name, Selector::default()).await.unwrap_err();
    assert!(err.to_string().contains("consumer id"), "{err}");
    let err = admin
        .add_version(
            &name,
            &keyshift_core::api::AddVersion {
                value: None,
                generate: true,
                labels: Some(vec![keyshift_core::Label::Canary]),
            },
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("set by canary rotations only"),
        "{err}"
    );
}
