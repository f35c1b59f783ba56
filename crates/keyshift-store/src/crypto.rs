//! The master key and encryption at rest.
//!
//! Values are sealed with XChaCha20-Poly1305 under a 32-byte master key, with
//! a fresh random 24-byte nonce each time. The associated data binds a
//! ciphertext to its row (`keyshift:v1:<name>:<version>`), so a ciphertext
//! copied to another secret or version fails to open.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use keyshift_core::{SecretName, VersionNumber};

/// The environment variable [`MasterKey::from_env`] reads.
pub const MASTER_KEY_ENV: &str = "KEYSHIFT_MASTER_KEY";

/// Bytes in a master key.
pub const KEY_LEN: usize = 32;

/// Bytes in an XChaCha20-Poly1305 nonce.
pub(crate) const NONCE_LEN: usize = 24;

/// The key that encrypts every stored value.
///
/// 32 bytes, zeroed on drop. Its `Debug` shows only its [id](MasterKey::id).
#[derive(Clone)]
pub struct MasterKey {
    bytes: Zeroizing<[u8; KEY_LEN]>,
}

/// Why a master key could not be read, parsed or created. Never carries
/// key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The text is not 64 hex characters (after trimming whitespace).
    /// `origin` says where it came from (a path, the environment variable).
    #[error("master key from {origin} is malformed: expected 64 hex characters")]
    Malformed {
        /// Where the text came from.
        origin: String,
    },
    /// The key file does not exist.
    #[error("master key file {} does not exist (create one with `keyshift init`)", path.display())]
    NotFound {
        /// The path looked at.
        path: PathBuf,
    },
    /// The key file exists but could not be read or written.
    #[error("master key file {}: {source}", path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The key file's mode lets its group or others access it.
    #[error(
        "master key file {} has mode {mode:04o}: it must not be accessible by group or others \
         (mode 0600 or stricter; fix with `chmod 600 {}`)",
        path.display(),
        path.display()
    )]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// [`MasterKey::create`] found a file already at the path; it never
    /// overwrites one.
    #[error("master key file {} already exists; refusing to overwrite it", path.display())]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
}

/// A sealed value: the nonce and the ciphertext (with its tag).
pub(crate) struct Sealed {
    pub(crate) nonce: Vec<u8>,
    pub(crate) ciphertext: Vec<u8>,
}

/// Opening failed: wrong key, wrong associated data or tampered bytes. No
/// detail on purpose.
#[derive(Debug)]
pub(crate) struct OpenError;

impl MasterKey {
    /// A new random key from the operating system's generator.
    pub fn generate() -> MasterKey {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        MasterKey { bytes }
    }

    /// A key from 64 hex characters; surrounding whitespace is ignored.
    ///
    /// # Errors
    ///
    /// [`KeyError::Malformed`] (origin `hex string`).
    pub fn from_hex(s: &str) -> Result<MasterKey, KeyError> {
        Self::parse(s, || "hex string".to_owned())
    }

    fn parse(s: &str, origin: impl FnOnce() -> String) -> Result<MasterKey, KeyError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        match hex::decode_to_slice(s.trim(), bytes.as_mut()) {
            Ok(()) => Ok(MasterKey { bytes }),
            Err(_) => Err(KeyError::Malformed { origin: origin() }),
        }
    }

    /// The key as 64 lower-case hex characters, zeroed when dropped.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.bytes.as_ref()))
    }

    /// The key's id: the first 8 bytes of
    /// SHA-256(`keyshift-master-key-id` || key) as 16 hex characters. Safe
    /// to show and to store; it says which key, not what key.
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"keyshift-master-key-id");
        h.update(self.bytes.as_ref());
        hex::encode(&h.finalize()[..8])
    }

    /// Reads the key file (hex) at `path`.
    ///
    /// # Errors
    ///
    /// [`KeyError::NotFound`] if it is missing, [`KeyError::Io`] if it cannot
    /// be read, [`KeyError::Permissions`] if its mode allows any group or
    /// other access (it must be 0600 or stricter), [`KeyError::Malformed`]
    /// if it does not hold 64 hex characters.
    pub fn load(path: &Path) -> Result<MasterKey, KeyError> {
        let io = |source: std::io::Error| {
            if source.kind() == std::io::ErrorKind::NotFound {
                KeyError::NotFound {
                    path: path.to_owned(),
                }
            } else {
                KeyError::Io {
                    path: path.to_owned(),
                    source,
                }
            }
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        check_mode(path, &meta)?;
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
        Self::parse(&text, || path.display().to_string())
    }

    /// Generates a key and writes it to a new file at `path` with mode 0600.
    ///
    /// # Errors
    ///
    /// [`KeyError::Exists`] if a file is already there (it is never
    /// overwritten), [`KeyError::Io`] if the file cannot be written.
    pub fn create(path: &Path) -> Result<MasterKey, KeyError> {
        let key = MasterKey::generate();
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut file = opts.open(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists {
                    path: path.to_owned(),
                }
            } else {
                KeyError::Io {
                    path: path.to_owned(),
                    source,
                }
            }
        })?;
        let mut text = key.to_hex();
        text.push('\n');
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|source| KeyError::Io {
                path: path.to_owned(),
                source,
            })?;
        Ok(key)
    }

    /// The key in the `KEYSHIFT_MASTER_KEY` environment variable (hex), or
    /// `None` if the variable is unset or empty.
    ///
    /// # Errors
    ///
    /// [`KeyError::Malformed`] if it is set but not 64 hex characters.
    pub fn from_env() -> Result<Option<MasterKey>, KeyError> {
        let origin = || format!("environment variable {MASTER_KEY_ENV}");
        match std::env::var(MASTER_KEY_ENV) {
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(KeyError::Malformed { origin: origin() }),
            Ok(s) => {
                let s = Zeroizing::new(s);
                if s.trim().is_empty() {
                    return Ok(None);
                }
                Self::parse(&s, origin).map(Some)
            }
        }
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.bytes.as_ref().into())
    }

    /// Encrypts `plaintext` bound to `aad` under a fresh random nonce.
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Sealed {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            // Invariant: XChaCha20-Poly1305 fails only on inputs over 256 GiB;
            // values are at most 64 KiB.
            .expect("XChaCha20-Poly1305 encrypts inputs under 256 GiB");
        Sealed {
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    /// Decrypts and authenticates a sealed value bound to `aad`.
    pub(crate) fn open(
        &self,
        aad: &[u8],
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        if nonce.len() != NONCE_LEN {
            return Err(OpenError);
        }
        self.cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| OpenError)
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey(id={}, <redacted>)", self.id())
    }
}

#[cfg(unix)]
fn check_mode(path: &Path, meta: &std::fs::Metadata) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_path: &Path, _meta: &std::fs::Metadata) -> Result<(), KeyError> {
    Ok(())
}

/// The associated data of a version's ciphertext. Names never contain `:`,
/// so distinct (name, number) pairs give distinct strings.
pub(crate) fn value_aad(name: &SecretName, number: VersionNumber) -> Vec<u8> {
    format!("keyshift:v1:{}:{}", name.as_str(), number.0).into_bytes()
}

/// The associated data of the key-check row.
pub(crate) const KEY_CHECK_AAD: &[u8] = b"keyshift:v1:key-check";

/// The known plaintext of the key-check row.
pub(crate) const KEY_CHECK_PLAINTEXT: &[u8] = b"keyshift master key check v1";

/// Turns decrypted bytes into a string, zeroing them if they are not UTF-8.
pub(crate) fn into_string(bytes: Zeroizing<Vec<u8>>) -> Option<Zeroizing<String>> {
    let mut bytes = bytes;
    let v = std::mem::take(&mut *bytes);
    match String::from_utf8(v) {
        Ok(s) => Some(Zeroizing::new(s)),
        Err(e) => {
            e.into_bytes().zeroize();
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> SecretName {
        s.parse().unwrap()
    }

    #[test]
    fn seal_open_round_trip() {
        let k = MasterKey::generate();
        let aad = value_aad(&name("prod/db"), VersionNumber(3));
        let s = k.seal(&aad, b"hunter2");
        assert_eq!(s.nonce.len(), NONCE_LEN);
        assert!(!s.ciphertext.windows(7).any(|w| w == b"hunter2"));
        let p = k.open(&aad, &s.nonce, &s.ciphertext).unwrap();
        assert_eq!(&p[..], b"hunter2");
    }

    #[test]
    fn nonces_differ_between_seals() {
        let k = MasterKey::generate();
        let a = k.seal(b"x", b"v");
        let b = k.seal(b"x", b"v");
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn aad_binds_name_and_version() {
        let k = MasterKey::generate();
        let s = k.seal(&value_aad(&name("prod/db"), VersionNumber(1)), b"v");
        for (n, v) in [("prod/db", 2), ("prod/db2", 1), ("dev/db", 1)] {
            assert!(k
                .open(
                    &value_aad(&name(n), VersionNumber(v)),
                    &s.nonce,
                    &s.ciphertext
                )
                .is_err());
        }
        let mut tampered = s.ciphertext.clone();
        tampered[0] ^= 1;
        let aad = value_aad(&name("prod/db"), VersionNumber(1));
        assert!(k.open(&aad, &s.nonce, &tampered).is_err());
        assert!(k.open(&aad, &s.nonce[..12], &s.ciphertext).is_err());
    }

    #[test]
    fn another_key_cannot_open() {
        let s = MasterKey::generate().seal(b"a", b"v");
        assert!(MasterKey::generate()
            .open(b"a", &s.nonce, &s.ciphertext)
            .is_err());
    }

    #[test]
    fn hex_round_trip_and_id() {
        let k = MasterKey::generate();
        let hex = k.to_hex();
        assert_eq!(hex.len(), 64);
        let again = MasterKey::from_hex(&format!("  {}\n", &*hex)).unwrap();
        assert_eq!(again.id(), k.id());
        assert_eq!(k.id().len(), 16);
        assert_ne!(MasterKey::generate().id(), k.id());
        let known = MasterKey::from_hex(&"00".repeat(32)).unwrap();
        let mut h = Sha256::new();
        h.update(b"keyshift-master-key-id");
        h.update([0u8; 32]);
        assert_eq!(known.id(), hex::encode(&h.finalize()[..8]));
    }

    #[test]
    fn malformed_hex_is_refused_without_echo() {
        for bad in ["", "abc", &"zz".repeat(32), &"00".repeat(33)] {
            let e = MasterKey::from_hex(bad).unwrap_err();
            assert!(matches!(e, KeyError::Malformed { .. }));
        }
        let secretish = "f".repeat(63) + "g";
        let msg = MasterKey::from_hex(&secretish).unwrap_err().to_string();
        assert!(!msg.contains(&secretish));
    }

    #[test]
    fn debug_is_redacted() {
        let k = MasterKey::generate();
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(&*k.to_hex()));
        assert!(dbg.contains(&k.id()));
    }
}
