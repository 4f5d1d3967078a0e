//! The session store: the single owner of `<sessions_dir>`. This file is the handle,
//! [`Store`]; what it is made of:
//!
//! - [`layout`]: file names, archive naming, the current-session pointer;
//! - `index`: the in-memory entries, their versions, the list order, the counts;
//! - `tx`: write transactions, whose `Tx::publish` is the one funnel every change
//!   passes through: it makes a transaction's writes visible at once, stamps them with
//!   their [`Version`], and announces them as [`Change`]s;
//! - `ops`: the writes and the SPEC §3 rules each keeps;
//! - `recover`: the start-up scan and repair, and the resync after a failed write;
//! - [`events`]: the change type;
//! - [`fsio`]: every durable file operation; `lock`: one writer per directory;
//!   [`failpoint`]: named crash points for the tests.
//!
//! Reads are served from the index; they never touch the disk (except a session's
//! `persona.json`, read on demand) and never wait for a write's fsync. Writes run on the
//! blocking pool, one at a time, and publish only what is durable, so the index always
//! equals what is on disk.

mod error;
pub mod events;
pub mod failpoint;
pub mod fsio;
mod index;
pub mod layout;
mod lock;
mod ops;
mod recover;
mod tx;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::sync::broadcast;

pub use error::StoreError;
pub use events::{Change, ChangeKind};
pub use index::{Entry, Skipped, StoreHealth, Version};
pub use ops::Switched;

use crate::metrics::metrics;
use crate::model::{Metadata, MetadataPatch, Persona, SessionName, Status, Timestamp};
use index::{Index, most_recent_first};
use layout::{METADATA_FILE, PERSONA_FILE};
use lock::DirLock;
use tx::{Shared, Tx};

/// A cheap, cloneable handle to the store.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

/// What the store can say about its storage, measured off the async workers.
#[derive(Debug)]
pub struct StorageProbe {
    /// Whether a file can be created in the sessions directory right now.
    pub writable: Result<(), StoreError>,
    /// Free and total bytes of the filesystem that holds it.
    pub space: Option<(u64, u64)>,
    /// The thread the probe ran on (the tests check it is not an async worker).
    #[cfg(test)]
    thread: std::thread::ThreadId,
}

impl Store {
    /// Opens (creating if needed) and locks `dir`, scans it, and repairs what an
    /// interrupted run left behind. Every repair is logged.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let start = std::time::Instant::now();
        fsio::ensure_dir(dir)?;
        let dir = std::fs::canonicalize(dir)?;
        let lock = DirLock::acquire(&dir)?;
        let scan = recover::scan(&dir, true)?;
        tracing::info!(
            dir = %dir.display(),
            sessions = scan.sessions.len(),
            skipped = scan.skipped.len(),
            elapsed_ms = start.elapsed().as_millis() as u64,
            "sessions directory scanned"
        );
        // Versions of this run: a new epoch, and a sequence number per scanned session.
        let epoch = boot_epoch();
        let sessions = scan
            .sessions
            .into_values()
            .zip(1..)
            .map(|(metadata, seq)| {
                let version = Version { epoch, seq };
                (metadata.name.clone(), Arc::new(Entry { metadata, version }))
            })
            .collect::<std::collections::HashMap<_, _>>();
        let (events, _) = broadcast::channel(256);
        let store = Store {
            shared: Arc::new(Shared {
                dir,
                index: RwLock::new(Index {
                    epoch,
                    pointer: scan.pointer.clone().unwrap_or_default(),
                    seq: sessions.len() as u64,
                    sessions,
                    skipped: scan.skipped,
                    last_write_error: None,
                }),
                writer: Mutex::new(()),
                events,
                _lock: lock,
            }),
        };
        let mut tx = store.shared.begin();
        let repaired = recover::repair(&mut tx, scan.pointer.is_some());
        tx.publish();
        drop(tx);
        repaired?;
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The directory of a session (which the bot starts Claude Code in).
    pub fn session_dir(&self, name: &SessionName) -> PathBuf {
        layout::session_dir(&self.shared.dir, name)
    }

    /// Changes, in order, as they become durable.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.shared.events.subscribe()
    }

    /// The version of the store's latest state: it moves with every change.
    pub fn version(&self) -> Version {
        self.shared.index().version()
    }

    pub fn get(&self, name: &SessionName) -> Result<Arc<Entry>, StoreError> {
        self.shared.index().lookup(name)
    }

    /// The sessions, most recently active first (ties by name), optionally filtered by
    /// status, with the version they are current at.
    pub fn list(&self, status: Option<Status>) -> (Version, Vec<Arc<Entry>>) {
        let index = self.shared.index();
        let version = index.version();
        let mut entries: Vec<Arc<Entry>> = index
            .sessions
            .values()
            .filter(|e| status.is_none_or(|s| e.metadata.status == s))
            .cloned()
            .collect();
        drop(index);
        entries.sort_unstable_by(|a, b| most_recent_first(a, b));
        (version, entries)
    }

    /// The current session, if any.
    pub fn current(&self) -> Option<Arc<Entry>> {
        let index = self.shared.index();
        let name = index.pointer.name.as_ref()?;
        index.sessions.get(name).cloned()
    }

    /// The session's own persona, as stored.
    pub async fn persona(&self, name: &SessionName) -> Result<Value, StoreError> {
        self.get(name)?;
        let path = self.session_dir(name).join(PERSONA_FILE);
        let corrupt = |reason: String| StoreError::Corrupt {
            name: format!("{name}/{PERSONA_FILE}"),
            reason,
        };
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            // A session being deleted has left the tree before the index forgets it:
            // without its directory it is gone, not corrupt.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let dir = path.parent().unwrap_or(&path);
                if std::fs::symlink_metadata(dir).is_err() {
                    return Err(StoreError::NotFound(name.clone()));
                }
                self.get(name)?;
                return Err(corrupt("the file is missing".into()));
            }
            Err(e) => return Err(e.into()),
        };
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        Persona::from_value(value.clone())
            .map_err(|e| corrupt(format!("not a valid persona: {e}")))?;
        Ok(value)
    }

    pub fn health(&self) -> StoreHealth {
        self.shared.index().health()
    }

    /// Whether the sessions directory can be written and how much room its filesystem
    /// has: both system calls can block on a failing disk, so they run on the blocking
    /// pool, never on an async worker.
    pub async fn probe_storage(&self) -> StorageProbe {
        let dir = self.shared.dir.clone();
        let probed = tokio::task::spawn_blocking(move || StorageProbe {
            writable: write_probe(&dir),
            space: disk_space(&dir),
            #[cfg(test)]
            thread: std::thread::current().id(),
        })
        .await;
        probed.unwrap_or_else(|e| StorageProbe {
            writable: Err(e.into()),
            space: None,
            #[cfg(test)]
            thread: std::thread::current().id(),
        })
    }

    /// Creates a session with the given persona, recorded in metadata as `recorded`
    /// (a library key, `"custom"`, or null for the default).
    pub async fn create(
        &self,
        name: SessionName,
        recorded: Option<String>,
        persona: Value,
    ) -> Result<Arc<Entry>, StoreError> {
        // Fail fast, before any fsync, on a name that is taken.
        match self.get(&name) {
            Ok(_) => return Err(StoreError::Exists(name)),
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        // The new directory is built and made durable before the writer lock is taken,
        // so concurrent creates overlap their fsyncs; only the move into place (and the
        // fsync that makes it durable) is serialised with other writes.
        let metadata = Metadata::new(name, recorded, Timestamp::now());
        let dir = self.shared.dir.clone();
        let built = {
            let metadata = metadata.clone();
            tokio::task::spawn_blocking(move || {
                fsio::build_dir(
                    &dir,
                    &[
                        (PERSONA_FILE, &fsio::to_json_bytes(&persona)?),
                        (METADATA_FILE, &fsio::to_json_bytes(&metadata)?),
                    ],
                )
            })
            .await?
        };
        let staged = built.map_err(|e| self.shared.note_failure(e.into()))?;
        self.write("create", move |tx| tx.create(metadata, staged))
            .await
    }

    pub async fn update(
        &self,
        name: SessionName,
        patch: MetadataPatch,
    ) -> Result<Arc<Entry>, StoreError> {
        self.write("update", move |tx| tx.update(&name, &patch))
            .await
    }

    pub async fn delete(&self, name: SessionName) -> Result<(), StoreError> {
        self.write("delete", move |tx| tx.delete(&name)).await
    }

    pub async fn switch(&self, name: SessionName) -> Result<Switched, StoreError> {
        self.write("switch", move |tx| tx.switch(&name)).await
    }

    pub async fn clear_current(&self) -> Result<Switched, StoreError> {
        self.write("clear_current", |tx| tx.clear_current()).await
    }

    /// Replaces the session's persona with a custom one; returns it as stored.
    pub async fn replace_persona(
        &self,
        name: SessionName,
        persona: Persona,
    ) -> Result<Value, StoreError> {
        self.write("replace_persona", move |tx| {
            tx.replace_persona(&name, &persona)
        })
        .await
    }

    /// Runs one write transaction on the blocking pool. It completes even if the caller
    /// stops waiting (a client that hangs up), so no write is left half done.
    async fn write<T, F>(&self, operation: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let mut tx = shared.begin();
            let start = std::time::Instant::now();
            let result = tx.settle().and_then(|()| f(&mut tx));
            // Published even on failure: what did reach the disk must be in the index,
            // so that the next write settles it.
            tx.publish();
            if result.as_ref().is_err_and(StoreError::is_storage_failure) {
                recover::resync(&mut tx);
            }
            metrics().observe_store(operation, start.elapsed());
            tx.record_outcome(&result);
            result
        })
        .await?
    }
}

/// This run's epoch: microseconds since the Unix epoch at start-up, which no earlier
/// run of the service on this machine had (a start takes longer than a microsecond).
fn boot_epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as u64)
}

/// Creates, writes and removes a temp file in `dir`.
fn write_probe(dir: &Path) -> Result<(), StoreError> {
    use std::io::Write;
    fsio::temp_file(dir)?.write_all(b"probe")?;
    Ok(())
}

/// Free and total bytes of the filesystem that holds `dir`.
fn disk_space(dir: &Path) -> Option<(u64, u64)> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    let total = stat.f_blocks.saturating_mul(stat.f_frsize);
    Some((free, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `statvfs` and the write probe can block for as long as a failing disk makes
    /// them: they must never run on an async worker, which would stall every request
    /// that worker serves.
    #[test]
    fn the_storage_probe_runs_off_the_async_workers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let probe = runtime.block_on(store.probe_storage());
        assert!(probe.writable.is_ok());
        assert!(
            probe
                .space
                .is_some_and(|(free, total)| free <= total && total > 0)
        );
        assert_ne!(probe.thread, std::thread::current().id());
    }
}
