//! The master key file: created 0600, never overwritten, refused when others
//! can read it.

use std::os::unix::fs::PermissionsExt;

use keyshift_store::{KeyError, MasterKey, MASTER_KEY_ENV};

#[test]
fn create_makes_a_0600_file_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    let key = MasterKey::create(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.trim(), &*key.to_hex());
    assert_eq!(MasterKey::load(&path).unwrap().id(), key.id());

    let e = MasterKey::create(&path).unwrap_err();
    assert!(matches!(e, KeyError::Exists { .. }), "{e}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}

#[test]
fn load_refuses_a_file_others_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    let key = MasterKey::create(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = MasterKey::load(&path).unwrap_err();
    assert!(
        matches!(e, KeyError::Permissions { mode: 0o644, .. }),
        "{e}"
    );
    let msg = e.to_string();
    assert!(msg.contains("0644") && msg.contains("chmod 600"), "{msg}");
    assert!(!msg.contains(&*key.to_hex()));

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    assert_eq!(MasterKey::load(&path).unwrap().id(), key.id());
}

#[test]
fn load_reports_missing_and_malformed_files() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.key");
    assert!(matches!(
        MasterKey::load(&missing),
        Err(KeyError::NotFound { .. })
    ));

    let bad = dir.path().join("bad.key");
    let content = "not-a-key-but-maybe-sensitive";
    std::fs::write(&bad, content).unwrap();
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
    let e = MasterKey::load(&bad).unwrap_err();
    assert!(matches!(e, KeyError::Malformed { .. }), "{e}");
    assert!(!e.to_string().contains(content));
}

/// The only test touching the environment (tests run in threads).
#[test]
fn from_env_reads_the_variable() {
    let key = MasterKey::generate();
    std::env::remove_var(MASTER_KEY_ENV);
    assert!(MasterKey::from_env().unwrap().is_none());
    std::env::set_var(MASTER_KEY_ENV, format!("{}\n", &*key.to_hex()));
    assert_eq!(MasterKey::from_env().unwrap().unwrap().id(), key.id());
    std::env::set_var(MASTER_KEY_ENV, "xyz");
    let e = MasterKey::from_env().unwrap_err();
    assert!(e.to_string().contains(MASTER_KEY_ENV), "{e}");
    std::env::remove_var(MASTER_KEY_ENV);
}
