//! `KeyRing` against a real in-process keyshift server: what it accepts
//! before, during and after a rotation, refresh on a miss, the bound on
//! refreshes a flood of bogus keys causes, and the counting of uses.

mod support;

use std::time::Duration;

use keyshift_client::{ApiClient, KeyMatch, KeyRing, KeyRingConfig, KeyRingError, Selector};
use keyshift_core::api::{AddVersion, StartRotation};
use keyshift_core::rotation::{Phase, RotationId, Status};
use keyshift_core::{Label, SecretName, VersionNumber};
use support::TestServer;
use tokio::sync::watch;

/// Creates an `api-key` secret with a generated first key (min overlap
/// 5 s); returns its name and that key.
async fn api_key_secret(api: &ApiClient) -> (SecretName, String) {
    let name = support::create_api_key(api, "keys", "5s").await;
    let key = key(api, &name, Selector::Label(Label::Current)).await;
    (name, key)
}

async fn key(api: &ApiClient, name: &SecretName, sel: Selector) -> String {
    let v = api.get_value(name, sel).await.unwrap();
    v.value.expose().to_owned()
}

/// Waits (bounded) until the rotation reaches `phase` or ends.
async fn wait_phase(api: &ApiClient, id: &RotationId, phase: Phase) -> Status {
    for _ in 0..1500 {
        let r = api.get_rotation(id).await.unwrap();
        if r.phase == phase || r.status != Status::Running {
            return r.status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("rotation {id} did not reach {phase} in 30 s");
}

/// A config whose periodic refresh and report never fire during a test,
/// so only what the test does causes refreshes and reports.
fn quiet() -> KeyRingConfig {
    KeyRingConfig::default()
        .refresh_every(Duration::from_secs(3600))
        .report_every(Duration::from_secs(3600))
}

async fn ring(
    api: &ApiClient,
    name: &SecretName,
    changes: Option<watch::Receiver<u64>>,
) -> KeyRing {
    KeyRing::start_with(
        api.clone(),
        name.clone(),
        "keyring-test".to_owned(),
        changes,
        quiet(),
    )
    .await
    .unwrap()
}

/// Waits (bounded) until the ring has finished more than `n` refreshes.
async fn wait_refreshes(ring: &KeyRing, n: u64) {
    for _ in 0..500 {
        if ring.refreshes() > n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no refresh after {n} in 5 s");
}

const V1: VersionNumber = VersionNumber(1);
const V2: VersionNumber = VersionNumber(2);

#[tokio::test]
async fn accepts_the_current_key_and_rejects_a_bogus_one() {
    let server = TestServer::start().await;
    let api = server.admin();
    let (name, key) = api_key_secret(&api).await;
    let ring = ring(&api, &name, None).await;

    assert_eq!(ring.accepted_versions(), vec![V1]);
    assert_eq!(
        ring.verify(&key).await,
        Some(KeyMatch {
            version: V1,
            deprecated: false
        })
    );
    assert_eq!(ring.verify("ks_not-a-key-of-this-ring").await, None);
    assert_eq!(ring.verify("").await, None);
    // A prefix or an extension of the key is not the key.
    assert_eq!(ring.verify(&key[..key.len() - 1]).await, None);
    assert_eq!(ring.verify(&format!("{key}x")).await, None);

    let dbg = format!("{ring:?}");
    assert!(!dbg.contains(&key), "{dbg}");
}

#[tokio::test]
async fn during_the_overlap_both_keys_are_accepted_and_the_old_is_deprecated_then_revoked() {
    let server = TestServer::start().await;
    let api = server.admin();
    let (name, old) = api_key_secret(&api).await;
    // The application's watch: bumped when the secret changes.
    let (changed, changes) = watch::channel(0u64);
    let ring = ring(&api, &name, Some(changes)).await;

    let rotation = api.rotate(&name, &StartRotation::default()).await.unwrap();
    let status = wait_phase(&api, &rotation.id, Phase::Overlap).await;
    assert_eq!(
        status,
        Status::Running,
        "the rotation ended before the overlap"
    );
    let refreshed = ring.refreshes();
    changed.send_modify(|n| *n += 1);
    wait_refreshes(&ring, refreshed).await;

    let new = key(&api, &name, Selector::Version(V2)).await;
    assert_eq!(ring.accepted_versions(), vec![V1, V2]);
    assert_eq!(
        ring.verify(&new).await,
        Some(KeyMatch {
            version: V2,
            deprecated: false
        })
    );
    assert_eq!(
        ring.verify(&old).await,
        Some(KeyMatch {
            version: V1,
            deprecated: true
        }),
        "the old key works during the overlap, flagged deprecated"
    );

    let status = wait_phase(&api, &rotation.id, Phase::Done).await;
    assert_eq!(status, Status::Succeeded);
    let refreshed = ring.refreshes();
    changed.send_modify(|n| *n += 1);
    wait_refreshes(&ring, refreshed).await;
    assert_eq!(ring.accepted_versions(), vec![V2]);
    assert_eq!(ring.verify(&old).await, None, "revoked");
    assert_eq!(
        ring.verify(&new).await,
        Some(KeyMatch {
            version: V2,
            deprecated: false
        })
    );
}

#[tokio::test]
async fn a_key_added_after_the_last_refresh_is_accepted_on_first_presentation() {
    let server = TestServer::start().await;
    let api = server.admin();
    let (name, _) = api_key_secret(&api).await;
    // No watch and no periodic refresh: only the miss can refresh.
    let ring = ring(&api, &name, None).await;
    assert_eq!(ring.accepted_versions(), vec![V1]);

    let added = api
        .add_version(
            &name,
            &AddVersion {
                value: None,
                generate: true,
                labels: Some(vec![Label::Pending]),
            },
        )
        .await
        .unwrap();
    assert_eq!(added.version, V2);
    let new = key(&api, &name, Selector::Version(V2)).await;

    // Newer than `current`: accepted and not deprecated.
    assert_eq!(
        ring.verify(&new).await,
        Some(KeyMatch {
            version: V2,
            deprecated: false
        })
    );
    assert_eq!(ring.accepted_versions(), vec![V1, V2]);
    assert_eq!(ring.refreshes(), 2, "one refresh: the miss's");
}

#[tokio::test]
async fn a_flood_of_bogus_keys_refreshes_at_most_once_per_gap() {
    let server = TestServer::start().await;
    let api = server.admin();
    let (name, key) = api_key_secret(&api).await;
    let ring = ring(&api, &name, None).await;

    let before = ring.refreshes();
    let started = std::time::Instant::now();
    // 1,000 presentations: 20 waves of 50 concurrent ones.
    for wave in 0..20 {
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let ring = ring.clone();
                tokio::spawn(async move { ring.verify(&format!("ks_bogus_{wave}_{i}")).await })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), None);
        }
    }
    let elapsed = started.elapsed();
    let refreshes = ring.refreshes() - before;
    let bound = elapsed.as_millis() as u64 / 100 + 1;
    assert!(
        refreshes <= bound,
        "{refreshes} refreshes in {elapsed:?} (bound {bound})"
    );
    assert!(
        refreshes >= 20,
        "each wave waited for a refresh: {refreshes}"
    );
    // The real key still works, without a refresh.
    let refreshed = ring.refreshes();
    assert!(ring.verify(&key).await.is_some());
    assert_eq!(ring.refreshes(), refreshed);
}

#[tokio::test]
async fn uses_are_counted_per_version_and_kept_when_a_report_fails() {
    let mut server = TestServer::start().await;
    let api = server.admin();
    let (name, old) = api_key_secret(&api).await;
    api.add_version(
        &name,
        &AddVersion {
            value: None,
            generate: true,
            labels: None,
        },
    )
    .await
    .unwrap();
    let new = key(&api, &name, Selector::Version(V2)).await;
    let ring = ring(&api, &name, None).await;

    for _ in 0..3 {
        assert!(ring.verify(&old).await.unwrap().deprecated);
    }
    for _ in 0..5 {
        assert!(!ring.verify(&new).await.unwrap().deprecated);
    }
    assert_eq!(ring.verify("ks_bogus").await, None);
    let counted = [(V1, 3), (V2, 5)].into_iter().collect();
    assert_eq!(ring.unreported_uses(), counted);

    server.stop().await;
    let e = ring.report_now().await.unwrap_err();
    assert!(
        matches!(e, keyshift_client::ClientError::Transport(_)),
        "{e:?}"
    );
    assert_eq!(ring.unreported_uses(), counted, "kept for the next report");
    ring.verify(&new).await.unwrap();
    assert_eq!(
        ring.unreported_uses(),
        [(V1, 3), (V2, 6)].into_iter().collect()
    );
}

#[tokio::test]
async fn reported_uses_reach_the_servers_usage_windows() {
    let server = TestServer::start().await;
    let api = server.admin();
    let (name, key) = api_key_secret(&api).await;
    let ring = ring(&api, &name, None).await;
    for _ in 0..7 {
        ring.verify(&key).await.unwrap();
    }
    ring.report_now().await.unwrap();
    assert!(ring.unreported_uses().is_empty(), "drained by the report");
    // Nothing new counted: nothing sent.
    ring.report_now().await.unwrap();

    let usage = api.usage(&name, None).await.unwrap();
    let total: u64 = usage
        .windows
        .iter()
        .filter(|w| w.version == V1)
        .map(|w| w.count)
        .sum();
    assert_eq!(total, 7, "{usage:?}");
}

#[tokio::test]
async fn the_periodic_report_sends_uses_and_stop_flushes_the_rest() {
    let server = TestServer::start().await;
    let api = server.admin();
    let (name, key) = api_key_secret(&api).await;
    let ring = KeyRing::start_with(
        api.clone(),
        name.clone(),
        "keyring-test".to_owned(),
        None,
        quiet().report_every(Duration::from_millis(200)),
    )
    .await
    .unwrap();
    ring.verify(&key).await.unwrap();
    ring.verify(&key).await.unwrap();
    for _ in 0..100 {
        if ring.unreported_uses().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ring.unreported_uses().is_empty(), "reported within 2 s");

    ring.verify(&key).await.unwrap();
    ring.stop();
    for _ in 0..100 {
        if ring.unreported_uses().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ring.unreported_uses().is_empty(), "flushed at stop");
    let usage = api.usage(&name, None).await.unwrap();
    let total: u64 = usage.windows.iter().map(|w| w.count).sum();
    assert_eq!(total, 3, "{usage:?}");

    // Stopped: a miss is rejected at once, without waiting for a refresh.
    let refreshed = ring.refreshes();
    assert_eq!(ring.verify("ks_bogus").await, None);
    assert_eq!(ring.refreshes(), refreshed);
    assert!(ring.verify(&key).await.is_some());
}

#[tokio::test]
async fn start_refuses_a_bad_reporter_and_an_unknown_secret() {
    let server = TestServer::start().await;
    let api = server.admin();
    let name: SecretName = "test/no-such-secret".parse().unwrap();
    let e = KeyRing::start(api.clone(), name.clone(), "a b".to_owned(), None)
        .await
        .unwrap_err();
    assert_eq!(e, KeyRingError::InvalidReporter("a b".to_owned()));
    let e = KeyRing::start(api.clone(), name, "gw-1".to_owned(), None)
        .await
        .unwrap_err();
    match e {
        KeyRingError::Load { source, .. } => assert!(source.is_not_found(), "{source:?}"),
        other => panic!("unexpected {other:?}"),
    }
}
