//! The optional disk cache of last good values, so a consumer starts while
//! the server is unreachable.
//!
//! One file per secret, `<dir>/<sha256(name) in hex>.bin`:
//!
//! ```text
//!  "KSC1" | nonce (24 bytes) | XChaCha20-Poly1305(key, nonce, aad = name, record)
//! ```
//!
//! The record is JSON (name, version, value, the policy's `min_overlap`).
//! Files are written to a temporary file (mode 0600) and renamed over the
//! old one, so a reader sees the old file or the new one, never half of
//! one. A file that does not decrypt (corrupt, truncated, another key,
//! moved from another secret's name) is an error, never served.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use keyshift_core::{SecretName, SecretValue, VersionNumber};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::instrument;
use zeroize::Zeroizing;

use super::errors::SdkError;
use crate::Snapshot;

const MAGIC: &[u8; 4] = b"KSC1";
const NONCE_LEN: usize = 24;

/// A directory of encrypted values under one key.
pub(crate) struct DiskCache {
    dir: PathBuf,
    key: Zeroizing<[u8; 32]>,
    /// Writers of one client take turns, so the last rename is the newest
    /// value.
    write_lock: Mutex<()>,
}

/// What a cache file holds (its `Debug` redacts the value).
#[derive(Debug)]
pub(crate) struct Cached {
    /// The value, as a snapshot with `seq` 0.
    pub snapshot: Snapshot,
    /// The secret's `min_overlap` when it was written, to clamp the TTL
    /// before the server answers.
    pub min_overlap: Option<Duration>,
}

#[derive(Serialize, Deserialize)]
struct Record {
    name: SecretName,
    version: VersionNumber,
    #[serde(with = "keyshift_core::api::secret")]
    value: SecretValue,
    #[serde(default)]
    min_overlap_ms: Option<u64>,
}

impl DiskCache {
    pub(crate) fn new(dir: PathBuf, key: [u8; 32]) -> Self {
        DiskCache {
            dir,
            key: Zeroizing::new(key),
            write_lock: Mutex::new(()),
        }
    }

    /// The file of `name`: the name is hashed so it never shows in a
    /// directory listing and needs no escaping.
    pub(crate) fn path(&self, name: &SecretName) -> PathBuf {
        let digest = Sha256::digest(name.as_str().as_bytes());
        self.dir.join(format!("{}.bin", hex::encode(digest)))
    }

    /// Writes `snap` (blocking IO: call from `spawn_blocking`).
    ///
    /// # Errors
    ///
    /// [`SdkError::Cache`] when the directory or file cannot be written.
    #[instrument(skip_all, fields(secret = %snap.name, version = %snap.version))]
    pub(crate) fn store(
        &self,
        snap: &Snapshot,
        min_overlap: Option<Duration>,
    ) -> Result<(), SdkError> {
        let record = Record {
            name: snap.name.clone(),
            version: snap.version,
            value: snap.value.clone(),
            min_overlap_ms: min_overlap.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        };
        let mut plain = Zeroizing::new(Vec::with_capacity(snap.value.expose().len() + 256));
        serde_json::to_writer(&mut *plain, &record).map_err(|e| {
            SdkError::Cache(format!(
                "cannot encode the cache record: {}",
                e.classify_str()
            ))
        })?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: snap.name.as_str().as_bytes(),
                },
            )
            .map_err(|_| SdkError::Cache("encryption failed".to_owned()))?;
        let mut file = Vec::with_capacity(MAGIC.len() + NONCE_LEN + sealed.len());
        file.extend_from_slice(MAGIC);
        file.extend_from_slice(&nonce);
        file.extend_from_slice(&sealed);

        let _turn = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.write_atomically(&self.path(&snap.name), &file)
    }

    /// Reads the value of `name` (blocking IO: call from `spawn_blocking`);
    /// `None` when there is no file.
    ///
    /// # Errors
    ///
    /// [`SdkError::Cache`] when the file cannot be read or does not decrypt
    /// and decode (wrong key, corrupt, truncated, another secret's file).
    #[instrument(skip_all, fields(secret = %name))]
    pub(crate) fn load(&self, name: &SecretName) -> Result<Option<Cached>, SdkError> {
        let path = self.path(name);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("cannot read", &path, &e)),
        };
        let bad = |why: &str| {
            SdkError::Cache(format!(
                "the cached value of {name} in {} is unusable ({why}); it was not served",
                path.display()
            ))
        };
        let rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| bad("not a keyshift cache file"))?;
        if rest.len() < NONCE_LEN {
            return Err(bad("truncated"));
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let plain = self
            .cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: name.as_str().as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| bad("it does not decrypt: corrupt, or written under another key"))?;
        let record: Record =
            serde_json::from_slice(&plain).map_err(|_| bad("undecodable record"))?;
        if &record.name != name {
            return Err(bad("it belongs to another secret"));
        }
        Ok(Some(Cached {
            snapshot: Snapshot {
                name: record.name,
                version: record.version,
                value: record.value,
                seq: 0,
            },
            min_overlap: record.min_overlap_ms.map(Duration::from_millis),
        }))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(Key::from_slice(self.key.as_slice()))
    }

    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<(), SdkError> {
        create_private_dir(&self.dir)?;
        let mut suffix = [0u8; 6];
        rand::rngs::OsRng.fill_bytes(&mut suffix);
        let tmp = path.with_extension(format!(
            "tmp.{}.{}",
            std::process::id(),
            hex::encode(suffix)
        ));
        let result = (|| {
            let mut f = private_file(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, path)
        })();
        result.map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_error("cannot write", path, &e)
        })
    }
}

fn io_error(what: &str, path: &Path, e: &std::io::Error) -> SdkError {
    SdkError::Cache(format!("{what} {}: {e}", path.display()))
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> Result<(), SdkError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_error("cannot create", dir, &e))
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> Result<(), SdkError> {
    fs::create_dir_all(dir).map_err(|e| io_error("cannot create", dir, &e))
}

#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// serde_json's error category as text, without its message (which may
/// quote the input).
trait ClassifyStr {
    fn classify_str(&self) -> &'static str;
}

impl ClassifyStr for serde_json::Error {
    fn classify_str(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "io",
            serde_json::error::Category::Syntax => "syntax",
            serde_json::error::Category::Data => "data",
            serde_json::error::Category::Eof => "eof",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(name: &str, version: u64, value: &str) -> Snapshot {
        Snapshot {
            name: name.parse().unwrap(),
            version: VersionNumber(version),
            value: SecretValue::new(value.to_owned()).unwrap(),
            seq: 9,
        }
    }

    #[test]
    fn a_stored_value_loads_back_with_its_version_and_overlap() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path().join("c"), [7; 32]);
        let s = snap("prod/db", 3, "hunter2-value");
        cache.store(&s, Some(Duration::from_secs(10))).unwrap();
        let got = cache.load(&s.name).unwrap().unwrap();
        assert_eq!(got.snapshot.version, VersionNumber(3));
        assert_eq!(got.snapshot.value.expose(), "hunter2-value");
        assert_eq!(got.snapshot.seq, 0);
        assert_eq!(got.min_overlap, Some(Duration::from_secs(10)));
        // The file is encrypted and private.
        let path = cache.path(&s.name);
        let raw = fs::read(&path).unwrap();
        assert!(!raw.windows(7).any(|w| w == b"hunter2"));
        assert!(!path.to_string_lossy().contains("prod"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path().join("c")).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path().to_owned(), [7; 32]);
        assert!(cache.load(&"a/b".parse().unwrap()).unwrap().is_none());
    }

    #[test]
    fn wrong_key_corruption_and_moved_files_are_errors_that_quote_no_value() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path().to_owned(), [7; 32]);
        let s = snap("prod/db", 1, "hunter2-value");
        cache.store(&s, None).unwrap();

        let other_key = DiskCache::new(dir.path().to_owned(), [8; 32]);
        let e = other_key.load(&s.name).unwrap_err();
        assert!(matches!(e, SdkError::Cache(_)), "{e:?}");
        assert!(!e.to_string().contains("hunter2"), "{e}");

        // Another secret's file copied over this one's: the AAD differs.
        let b: SecretName = "prod/other".parse().unwrap();
        fs::copy(cache.path(&s.name), cache.path(&b)).unwrap();
        assert!(matches!(cache.load(&b), Err(SdkError::Cache(_))));

        let path = cache.path(&s.name);
        let mut raw = fs::read(&path).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        fs::write(&path, &raw).unwrap();
        assert!(matches!(cache.load(&s.name), Err(SdkError::Cache(_))));
        fs::write(&path, b"KSC1short").unwrap();
        assert!(matches!(cache.load(&s.name), Err(SdkError::Cache(_))));
    }
}
