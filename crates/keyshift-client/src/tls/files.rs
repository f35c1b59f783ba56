//! The file source: PEM files on disk, watched with inotify (through
//! `notify`) and re-read periodically.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher as _};
use rustls::crypto::CryptoProvider;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Notify;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use super::builder::CertResolverBuilder;
use super::errors::TlsError;
use super::load::{certified_key, Loaded};
use super::resolver::{CertResolver, Inner};

/// The certificate and key files (possibly the same file).
#[derive(Debug, Clone)]
pub(super) struct Paths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Paths {
    fn origin(&self) -> String {
        if self.cert == self.key {
            format!("file {}", self.cert.display())
        } else {
            format!("files {} + {}", self.cert.display(), self.key.display())
        }
    }

    /// The directories to watch: each path's own, where a rename or a
    /// symlink flip shows, and that of the file it resolves to now, where
    /// an in-place write to a symlinked file shows.
    fn dirs(&self) -> HashSet<PathBuf> {
        let mut dirs = HashSet::new();
        for path in [&self.cert, &self.key] {
            dirs.insert(parent(path));
            if let Ok(real) = std::fs::canonicalize(path) {
                dirs.insert(parent(&real));
            }
        }
        dirs
    }
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The files' bytes (zeroed on drop) and a digest of both.
struct Material {
    cert: Zeroizing<Vec<u8>>,
    /// `None` when the key is in the certificate file.
    key: Option<Zeroizing<Vec<u8>>>,
    digest: [u8; 32],
}

impl Material {
    /// Reads both files (following symlinks afresh each time).
    fn read(paths: &Paths) -> Result<Material, (PathBuf, std::io::Error)> {
        let read = |p: &PathBuf| {
            std::fs::read(p)
                .map(Zeroizing::new)
                .map_err(|e| (p.clone(), e))
        };
        let cert = read(&paths.cert)?;
        let key = if paths.key == paths.cert {
            None
        } else {
            Some(read(&paths.key)?)
        };
        let mut hash = Sha256::new();
        hash.update((cert.len() as u64).to_be_bytes());
        hash.update(cert.as_slice());
        if let Some(key) = &key {
            hash.update(key.as_slice());
        }
        Ok(Material {
            cert,
            key,
            digest: hash.finalize().into(),
        })
    }

    fn load(&self, origin: String, provider: &CryptoProvider) -> Result<Loaded, String> {
        let key = self.key.as_ref().unwrap_or(&self.cert);
        Ok(Loaded {
            key: certified_key(&self.cert, key, provider)?,
            origin,
        })
    }
}

/// Reads the files, starts watching and spawns the task that follows them.
pub(super) fn start(
    paths: Paths,
    builder: CertResolverBuilder,
    runtime: &tokio::runtime::Handle,
) -> Result<CertResolver, TlsError> {
    let provider = builder.crypto();
    let origin = paths.origin();
    let material =
        Material::read(&paths).map_err(|(path, source)| TlsError::Read { path, source })?;
    let first = material
        .load(origin.clone(), &provider)
        .map_err(|reason| TlsError::Invalid { origin, reason })?;
    let inner = Arc::new(Inner::new(first));
    let wake = Arc::new(Notify::new());
    let watcher = if builder.notify {
        DirWatcher::start(&paths, wake.clone(), builder.recheck)
    } else {
        None
    };
    let stop = CancellationToken::new();
    let follower = Follower {
        inner: inner.clone(),
        paths,
        provider,
        wake: wake.clone(),
        watcher,
        served: material.digest,
        seen: Seen::Content(material.digest),
        recheck: builder.recheck,
        settle: builder.settle,
        stop: stop.clone(),
    };
    runtime.spawn(follower.run());
    Ok(CertResolver::new(inner, Some(wake), stop))
}

/// Watches directories and wakes the follower on any change in them.
struct DirWatcher {
    watcher: notify::RecommendedWatcher,
    dirs: HashSet<PathBuf>,
}

impl DirWatcher {
    /// `None` (with a warning) when the platform cannot watch: the
    /// periodic check then does the job alone.
    fn start(paths: &Paths, wake: Arc<Notify>, recheck: Duration) -> Option<DirWatcher> {
        let handler = move |event: notify::Result<notify::Event>| {
            if relevant(&event) {
                wake.notify_one();
            }
        };
        match notify::recommended_watcher(handler) {
            Ok(watcher) => {
                let mut w = DirWatcher {
                    watcher,
                    dirs: HashSet::new(),
                };
                w.watch(paths.dirs());
                Some(w)
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    recheck_s = recheck.as_secs_f64(),
                    "cannot watch the certificate files; re-reading them periodically only"
                );
                None
            }
        }
    }

    /// Watches the directories in `dirs` not watched yet, and forgets the
    /// watched ones that are gone (an old Kubernetes `..data` target).
    fn watch(&mut self, dirs: HashSet<PathBuf>) {
        let gone: Vec<PathBuf> = self
            .dirs
            .iter()
            .filter(|d| !dirs.contains(*d) && !d.exists())
            .cloned()
            .collect();
        for dir in gone {
            let _ = self.watcher.unwatch(&dir);
            self.dirs.remove(&dir);
        }
        for dir in dirs {
            if self.dirs.contains(&dir) {
                continue;
            }
            if let Err(e) = self.watcher.watch(&dir, RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch a certificate directory; relying on the periodic check");
            }
            // Not retried on failure: the periodic check covers it.
            self.dirs.insert(dir);
        }
    }
}

/// Whether a notification may mean new content: anything but reads (our
/// own reads show up as opens).
fn relevant(event: &notify::Result<notify::Event>) -> bool {
    match event {
        Err(_) => true,
        Ok(event) => match event.kind {
            EventKind::Access(kind) => kind == AccessKind::Close(AccessMode::Write),
            _ => true,
        },
    }
}

/// The last content the follower acted on, so it acts once per change.
#[derive(PartialEq, Eq)]
enum Seen {
    Content([u8; 32]),
    Failed(String),
}

struct Follower {
    inner: Arc<Inner>,
    paths: Paths,
    provider: Arc<CryptoProvider>,
    wake: Arc<Notify>,
    watcher: Option<DirWatcher>,
    /// Digest of the files as served now.
    served: [u8; 32],
    seen: Seen,
    recheck: Duration,
    settle: Duration,
    stop: CancellationToken,
}

impl Follower {
    async fn run(mut self) {
        let mut tick = tokio::time::interval_at(Instant::now() + self.recheck, self.recheck);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                () = self.wake.notified() => {
                    tokio::select! {
                        _ = self.stop.cancelled() => return,
                        () = tokio::time::sleep(self.settle) => {}
                    }
                }
                _ = tick.tick() => {}
            }
            self.reload().await;
        }
    }

    /// Reads the files; swaps if they hold a new, good certificate.
    async fn reload(&mut self) {
        let paths = self.paths.clone();
        let watching = self.watcher.is_some();
        let read = tokio::task::spawn_blocking(move || {
            let dirs = if watching {
                paths.dirs()
            } else {
                HashSet::new()
            };
            (Material::read(&paths), dirs)
        })
        .await;
        let (material, dirs) = match read {
            Ok(r) => r,
            Err(e) => return self.failed(format!("the file reader failed: {e}")),
        };
        if let Some(watcher) = &mut self.watcher {
            watcher.watch(dirs);
        }
        let material = match material {
            Ok(m) => m,
            Err((path, e)) => {
                return self.failed(format!("could not read {}: {e}", path.display()))
            }
        };
        if same(&material.digest, &self.served) {
            self.seen = Seen::Content(material.digest);
            self.inner.clear_error();
            return;
        }
        if matches!(&self.seen, Seen::Content(d) if same(d, &material.digest)) {
            return;
        }
        self.seen = Seen::Content(material.digest);
        let origin = self.paths.origin();
        match material.load(origin.clone(), &self.provider) {
            Ok(next) => {
                self.served = material.digest;
                self.inner.swap(next);
            }
            Err(why) => self.inner.refuse(&origin, why),
        }
    }

    /// Reports a read failure once (not again on every periodic check).
    fn failed(&mut self, why: String) {
        let seen = Seen::Failed(why);
        if self.seen == seen {
            return;
        }
        if let Seen::Failed(why) = &seen {
            self.inner.refuse(&self.paths.origin(), why.clone());
        }
        self.seen = seen;
    }
}

fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}
