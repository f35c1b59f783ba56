//! The x509 target: a CA issues leaves, and `verify` accepts exactly the
//! leaves of that CA whose key matches and that are valid now. No external
//! service: the target is the certificate itself.

use std::time::{Duration, SystemTime};

use keyshift_core::{SecretKind, SecretValue};
use keyshift_targets::{
    check_ca, new_ca, renewal_due, Target, TargetError, Verdict, X509CaConfig, X509Config,
    X509Target, CLOCK_SKEW,
};

fn ca(name: &str) -> SecretValue {
    new_ca(&X509CaConfig::new(name), SystemTime::now()).unwrap()
}

fn config() -> X509Config {
    X509Config::new(
        "test/tls/ca",
        vec!["orders.internal".into(), "127.0.0.1".into()],
    )
}

fn target(ca: &SecretValue) -> X509Target {
    X509Target::new(config(), ca.clone()).unwrap()
}

/// The PEM sections of a value, in order, by label.
fn labels(value: &SecretValue) -> Vec<&str> {
    value
        .expose()
        .lines()
        .filter_map(|l| l.strip_prefix("-----BEGIN ")?.strip_suffix("-----"))
        .collect()
}

/// The PEM section `n` (0-based) of `value`, markers included.
fn section(value: &SecretValue, n: usize) -> String {
    let text = value.expose();
    let starts: Vec<usize> = text.match_indices("-----BEGIN ").map(|(i, _)| i).collect();
    let end = starts.get(n + 1).copied().unwrap_or(text.len());
    text[starts[n]..end].to_owned()
}

fn value(s: String) -> SecretValue {
    SecretValue::new(s).unwrap()
}

/// Asserts that no error text carries a base64 body line or a PEM marker.
fn assert_no_material(text: &str, value: &SecretValue) {
    assert!(!text.contains("-----"), "PEM marker in: {text}");
    for line in value.expose().lines().filter(|l| !l.starts_with("-----")) {
        assert!(!text.contains(line), "PEM content in: {text}");
    }
}

#[test]
fn new_ca_is_a_ca_with_its_key() {
    let ca = ca("orders CA");
    assert_eq!(labels(&ca), ["CERTIFICATE", "PRIVATE KEY"]);
    SecretKind::X509Ca.validate(&ca).unwrap();
    check_ca(&ca).unwrap();
}

#[tokio::test]
async fn issued_leaf_is_accepted_and_has_the_bundle_format() {
    let ca = ca("orders CA");
    let target = target(&ca);
    target.precheck(None).await.unwrap();
    let leaf = target
        .generate(None)
        .await
        .unwrap()
        .expect("an issued leaf");
    assert_eq!(labels(&leaf), ["CERTIFICATE", "CERTIFICATE", "PRIVATE KEY"]);
    assert_eq!(
        section(&leaf, 1),
        section(&ca, 0),
        "the chain carries the CA"
    );
    SecretKind::X509.validate(&leaf).unwrap();
    assert_eq!(target.verify(&leaf).await.unwrap(), Verdict::Accepted);
    target.precheck(Some(&leaf)).await.unwrap();
    // enable and revoke change nothing and are idempotent.
    target.enable(&leaf).await.unwrap();
    target.revoke(&leaf).await.unwrap();
    target.revoke(&leaf).await.unwrap();
    assert_eq!(target.verify(&leaf).await.unwrap(), Verdict::Accepted);
}

#[tokio::test]
async fn leaf_of_another_ca_is_refused() {
    let ours = target(&ca("ours"));
    let theirs = target(&ca("theirs"));
    let foreign = theirs.issue(SystemTime::now()).unwrap();
    assert_eq!(ours.verify(&foreign).await.unwrap(), Verdict::Refused);
    let err = ours.precheck(Some(&foreign)).await.unwrap_err();
    assert!(matches!(err, TargetError::Precondition { .. }), "{err}");
    assert!(err.to_string().contains("not issued by this CA"), "{err}");
    assert_no_material(&err.to_string(), &foreign);
}

#[tokio::test]
async fn expired_and_not_yet_valid_leaves_are_refused() {
    let target = target(&ca("ca"));
    let long_ago = SystemTime::now() - Duration::from_secs(200 * 86_400);
    let expired = target.issue(long_ago).unwrap();
    assert_eq!(target.verify(&expired).await.unwrap(), Verdict::Refused);
    // Still accepted within its validity, so only time refuses it.
    assert_eq!(
        target.verify_at(&expired, long_ago + Duration::from_secs(3600)),
        Verdict::Accepted
    );
    let err = target.precheck(Some(&expired)).await.unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");

    let later = target
        .issue(SystemTime::now() + Duration::from_secs(3600))
        .unwrap();
    assert_eq!(target.verify(&later).await.unwrap(), Verdict::Refused);
    let err = target.precheck(Some(&later)).await.unwrap_err();
    assert!(err.to_string().contains("not valid yet"), "{err}");
}

#[tokio::test]
async fn a_bundle_whose_key_does_not_match_is_refused() {
    let target = target(&ca("ca"));
    let a = target.issue(SystemTime::now()).unwrap();
    let b = target.issue(SystemTime::now()).unwrap();
    // a's certificates with b's key.
    let mixed = value(format!(
        "{}{}{}",
        section(&a, 0),
        section(&a, 1),
        section(&b, 2)
    ));
    assert_eq!(target.verify(&mixed).await.unwrap(), Verdict::Refused);
    let err = target.precheck(Some(&mixed)).await.unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    assert_no_material(&err.to_string(), &mixed);
}

#[tokio::test]
async fn unparseable_values_are_refused_not_errors() {
    let target = target(&ca("ca"));
    let leaf = target.issue(SystemTime::now()).unwrap();
    let cert_only = value(section(&leaf, 0));
    let key_only = value(section(&leaf, 2));
    let garbage = value("-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into());
    let truncated = value(leaf.expose()[..leaf.expose().len() / 2].to_owned());
    for bad in [
        cert_only,
        key_only,
        garbage,
        truncated,
        value("hunter2".into()),
    ] {
        assert_eq!(target.verify(&bad).await.unwrap(), Verdict::Refused);
        let err = target.precheck(Some(&bad)).await.unwrap_err();
        assert!(matches!(err, TargetError::Precondition { .. }), "{err}");
        assert_no_material(&err.to_string(), &bad);
        assert_no_material(&format!("{err:?}"), &bad);
    }
}

#[test]
fn renewal_is_due_two_thirds_through_the_validity() {
    let target = X509Target::new(
        config().lifetime(Duration::from_secs(30 * 86_400)),
        ca("ca"),
    )
    .unwrap();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let leaf = target.issue(now).unwrap();
    let not_before = now - CLOCK_SKEW;
    let validity = Duration::from_secs(30 * 86_400) + CLOCK_SKEW;
    let due = target.renewal_due(&leaf).unwrap();
    assert_eq!(due, not_before + validity * 2 / 3);
    assert_eq!(renewal_due(&leaf, 0.5).unwrap(), not_before + validity / 2);
    assert_eq!(renewal_due(&leaf, 1.5), None);
    assert_eq!(renewal_due(&value("nothing".into()), 0.5), None);
}

#[test]
fn a_leaf_never_outlives_its_ca() {
    let now = SystemTime::now();
    let short_ca = new_ca(
        &X509CaConfig::new("short").lifetime(Duration::from_secs(86_400)),
        now,
    )
    .unwrap();
    let target = X509Target::new(config(), short_ca).unwrap();
    let leaf = target.issue(now).unwrap();
    // Renewal at 2/3 of a validity capped at the CA's day.
    let due = target.renewal_due(&leaf).unwrap();
    assert!(due < now + Duration::from_secs(86_400), "{due:?}");
    assert_eq!(target.verify_at(&leaf, now), Verdict::Accepted);
}

#[tokio::test]
async fn an_expired_ca_fails_precheck_and_issues_nothing() {
    let past = SystemTime::now() - Duration::from_secs(2 * 86_400);
    let old_ca = new_ca(
        &X509CaConfig::new("old").lifetime(Duration::from_secs(86_400)),
        past,
    )
    .unwrap();
    let target = X509Target::new(config(), old_ca).unwrap();
    let err = target.precheck(None).await.unwrap_err();
    assert!(matches!(err, TargetError::Precondition { .. }), "{err}");
    assert!(err.to_string().contains("expired"), "{err}");
    assert!(target.generate(None).await.is_err());
}

#[test]
fn a_leaf_or_a_mismatched_pair_is_not_a_ca() {
    let ca_a = ca("a");
    let ca_b = ca("b");
    let leaf = target(&ca_a).issue(SystemTime::now()).unwrap();
    // A leaf (not CA:true) with its own key.
    let not_ca = value(format!("{}{}", section(&leaf, 0), section(&leaf, 2)));
    let err = check_ca(&not_ca).unwrap_err();
    assert!(err.to_string().contains("not a CA"), "{err}");
    assert_no_material(&err.to_string(), &not_ca);
    // CA a's certificate with CA b's key.
    let mixed = value(format!("{}{}", section(&ca_a, 0), section(&ca_b, 1)));
    let err = check_ca(&mixed).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    assert_no_material(&err.to_string(), &mixed);
    let err = X509Target::new(config(), mixed.clone()).unwrap_err();
    assert!(matches!(err, TargetError::Config { .. }), "{err}");
    assert_no_material(&format!("{err} {err:?}"), &mixed);
    let err = check_ca(&value("garbage".into())).unwrap_err();
    assert!(err.to_string().contains("no PEM certificate"), "{err}");
}

#[test]
fn debug_output_never_shows_keys() {
    let ca = ca("debug CA");
    let target = target(&ca);
    let dbg = format!("{target:?}");
    assert!(dbg.contains("debug CA"), "{dbg}");
    assert_no_material(&dbg, &ca);
}
