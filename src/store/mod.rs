//! The session store: the single owner of `<sessions_dir>`. This file is the handle,
//! [`Store`]; what it is made of:
//!
//! - [`layout`]: file names, archive naming, the current-session pointer;
//! - `index`: the in-memory entries, their versions, the list order, the counts;
//! - `tx`: write transactions, whose `Tx::publish` is the one funnel every change
//!   passes through: it makes a transaction's writes visible at once, stamps them with
//!   their [`Version`], and announces them as [`Change`]s;
//! - `ops`: the writes and the SPEC §3 rules each keeps; `reports`: what the bot
//!   reports about a session's runs; `rename`: renaming a session, and finishing or
//!   undoing an interrupted rename;
//! - `recover`: the start-up scan and repair, and the resync after a failed write;
//!   `sweep`: the removal of temp files inside session directories after start-up;
//! - `archive`: the archived sessions: listed, restored, removed, purged;
//! - [`events`]: the change type;
//! - [`fsio`]: every durable file operation; `lock`: one writer per directory;
//!   [`failpoint`]: named crash points for the tests; `batch`: group commit.
//!
//! Reads are served from the index; they never touch the disk (except a session's
//! `persona.json` and the archive, read on demand on the blocking pool) and never wait
//! for a write's fsync. Writes run on the blocking pool, one transaction at a time, and
//! publish only what is durable, so the index always equals what is on disk. Writes
//! that only replace `metadata.json` files and the pointer (switches, patches, reports)
//! are committed in batches (`batch`): one transaction runs every such write queued
//! while the one before it was fsyncing, and writes each file once.

mod archive;
mod batch;
mod bounded;
mod error;
pub mod events;
pub mod failpoint;
pub mod fsio;
mod index;
pub mod layout;
mod lock;
mod ops;
mod persona_file;
mod recover;
mod rename;
mod reports;
mod sweep;
mod tx;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::sync::broadcast;

pub use archive::{ArchivePage, Archived};
pub use error::StoreError;
pub use events::{Change, ChangeKind, Subject};
pub use index::{Entry, IfMatch, PageKey, Skipped, StoreHealth, Version};
pub use ops::Switched;
pub use persona_file::SessionPersona;

use crate::limits::WRITE_TIMEOUT;
use crate::metrics::metrics;
use crate::model::{Metadata, MetadataPatch, Persona, SessionName, Status, Timestamp};
use crate::process::Probe;
use index::{Index, most_recent_first};
use layout::{METADATA_FILE, PERSONA_FILE};
use lock::Root;
use tx::{Shared, Tx};

/// How a store runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long a write may take before its caller is answered 503.
    pub write_timeout: Duration,
    /// Whether recorded processes are checked in `/proc` (off when the bot runs in
    /// another PID namespace: every process is then `unknown`).
    pub process_check: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            write_timeout: WRITE_TIMEOUT,
            process_check: true,
        }
    }
}

/// A cheap, cloneable handle to the store.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
    /// Writes waiting to be committed together (see `batch`).
    batches: Arc<batch::Batches>,
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
    /// interrupted run left behind. Every repair is logged. Writes taking longer than
    /// [`WRITE_TIMEOUT`] are answered 503.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, Options::default())
    }

    /// [`open`](Self::open) with other [`Options`].
    pub fn open_with(dir: &Path, options: Options) -> Result<Self, StoreError> {
        let start = std::time::Instant::now();
        let open_error = |source| StoreError::Open {
            path: dir.to_path_buf(),
            source,
        };
        fsio::ensure_dir(dir).map_err(open_error)?;
        let path = std::fs::canonicalize(dir).map_err(open_error)?;
        let root = Root::lock(&path)?;
        rename::recover(&root)?;
        let scan = recover::scan(&root, recover::Pass::Start)?;
        tracing::info!(
            dir = %path.display(),
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
                (
                    metadata.name.clone(),
                    Arc::new(Entry::new(metadata, version)),
                )
            })
            .collect::<std::collections::HashMap<_, _>>();
        let (events, _) = broadcast::channel(256);
        let store = Store {
            batches: Default::default(),
            shared: Arc::new(Shared {
                root,
                index: RwLock::new(Index {
                    epoch,
                    pointer: scan.pointer.clone().unwrap_or_default(),
                    pointer_version: Version { epoch, seq: 0 },
                    seq: sessions.len() as u64,
                    order: sessions
                        .values()
                        .map(|e| PageKey::of(&e.metadata))
                        .collect(),
                    sessions,
                    skipped: scan.skipped,
                    archive_skipped: Default::default(),
                    last_write_error: None,
                }),
                writer: Mutex::new(()),
                events,
                write_timeout: options.write_timeout,
                overdue: AtomicUsize::new(0),
                probe: Probe::new(options.process_check),
                announced: Default::default(),
                rename_pending: Default::default(),
                personas: Default::default(),
            }),
        };
        let mut tx = store.shared.begin();
        let repaired = recover::repair(&mut tx, scan.pointer.is_some());
        tx.publish();
        drop(tx);
        repaired?;
        store.sweep_archive();
        sweep::start(&store.shared);
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        self.shared.root.path()
    }

    /// The directory of a session (which the bot starts Claude Code in).
    pub fn session_dir(&self, name: &SessionName) -> PathBuf {
        layout::session_dir(self.dir(), name)
    }

    /// How this store tells whether a recorded process runs.
    pub fn probe(&self) -> &Probe {
        &self.shared.probe
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

    /// Up to `limit` sessions that `keep` keeps, from just after `after`, in the paging
    /// order ([`PageKey`]: newest created first, ties by name), which a switch does not
    /// change. `keep` runs under the index's read lock: it must be quick and do no I/O.
    pub fn page(
        &self,
        after: Option<&PageKey>,
        limit: usize,
        keep: impl Fn(&Entry) -> bool,
    ) -> Vec<Arc<Entry>> {
        self.shared.index().page(after, limit, keep)
    }

    /// The current session, if any.
    pub fn current(&self) -> Option<Arc<Entry>> {
        self.current_with_version().0
    }

    /// The current session, if any, and the version of `/sessions/active`: it moves when
    /// the current session changes, or the current session does.
    pub fn current_with_version(&self) -> (Option<Arc<Entry>>, Version) {
        self.shared.index().current()
    }

    /// The session's own persona, as stored: kept in memory while its file is unchanged
    /// (one `stat` tells), read otherwise on the blocking pool, without following a
    /// symlink, and capped: the file lives where the CLI's shell can replace it.
    pub async fn persona(&self, name: &SessionName) -> Result<Arc<SessionPersona>, StoreError> {
        self.get(name)?;
        if let Some(kept) = self.shared.personas.get(self.shared.root.fd(), name) {
            return Ok(kept);
        }
        let shared = self.shared.clone();
        let name = name.clone();
        tokio::task::spawn_blocking(move || {
            let listed = || shared.index().lookup(&name).map(drop);
            persona_file::read(shared.root.fd(), &shared.personas, &name, listed)
        })
        .await?
    }

    pub fn health(&self) -> StoreHealth {
        let mut health = self.shared.index().health();
        health.fatal = self.refusal().map(|e| e.to_string());
        health
    }

    /// Why no write is taken now, if none is: the directory was replaced, or a write is
    /// still running past its bound.
    fn refusal(&self) -> Option<StoreError> {
        if let Some(why) = self.shared.root.replaced() {
            return Some(StoreError::Replaced(why.to_owned()));
        }
        (self.shared.overdue.load(Ordering::Acquire) > 0)
            .then(|| StoreError::Hung(self.shared.write_timeout))
    }

    /// Whether the sessions directory can be written and how much room its filesystem
    /// has: both system calls can block on a failing disk, so they run on the blocking
    /// pool, never on an async worker.
    pub async fn probe_storage(&self) -> StorageProbe {
        let shared = self.shared.clone();
        let probed = tokio::task::spawn_blocking(move || StorageProbe {
            writable: fsio::write_probe(shared.root.fd()).map_err(StoreError::from),
            space: disk_space(shared.root.fd()),
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
        let mut metadata = Metadata::new(name, recorded, Timestamp::now());
        metadata.budget_usd = crate::model::persona_budget(&persona);
        let built = {
            let metadata = metadata.clone();
            let shared = self.shared.clone();
            self.bounded(move |gate| {
                gate.enter()?;
                fsio::build_dir(
                    shared.root.fd(),
                    &[
                        (PERSONA_FILE, &fsio::to_json_bytes(&persona)?),
                        (METADATA_FILE, &fsio::to_json_bytes(&metadata)?),
                    ],
                )
                .map_err(|e| shared.note_failure(e.into()))
            })
            .await?
        };
        self.write("create", move |tx| tx.create(metadata, built))
            .await
    }

    pub async fn update(
        &self,
        name: SessionName,
        patch: MetadataPatch,
        if_match: Option<IfMatch>,
    ) -> Result<Arc<Entry>, StoreError> {
        self.write_batched("update", move |tx| {
            tx.precondition(&name, if_match.as_ref())?;
            tx.update(&name, &patch)
        })
        .await
    }

    pub async fn delete(
        &self,
        name: SessionName,
        if_match: Option<IfMatch>,
    ) -> Result<(), StoreError> {
        self.write("delete", move |tx| {
            tx.precondition(&name, if_match.as_ref())?;
            tx.delete(&name)
        })
        .await
    }

    /// Makes `name` the current session; `if_match` is checked against the version of
    /// `/sessions/active` ([`Store::current_with_version`]).
    pub async fn switch(
        &self,
        name: SessionName,
        if_match: Option<IfMatch>,
    ) -> Result<Switched, StoreError> {
        self.write_batched("switch", move |tx| {
            tx.precondition_current(if_match.as_ref())?;
            tx.switch(&name)
        })
        .await
    }

    pub async fn clear_current(&self, if_match: Option<IfMatch>) -> Result<Switched, StoreError> {
        self.write_batched("clear_current", move |tx| {
            tx.precondition_current(if_match.as_ref())?;
            tx.clear_current()
        })
        .await
    }

    /// Replaces the session's persona with a custom one; returns it as stored.
    pub async fn replace_persona(
        &self,
        name: SessionName,
        persona: Persona,
        if_match: Option<IfMatch>,
    ) -> Result<(Value, Arc<Entry>), StoreError> {
        self.write("replace_persona", move |tx| {
            tx.precondition(&name, if_match.as_ref())?;
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
        self.bounded(move |gate| {
            let mut tx = shared.begin();
            // Holding the writer lock: from here on the write runs to its end.
            gate.enter()?;
            let start = std::time::Instant::now();
            let result = shared
                .root
                .check()
                .and_then(|()| tx.settle())
                .and_then(|()| f(&mut tx));
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
        .await
    }
}

/// This run's epoch: microseconds since the Unix epoch at start-up, which no earlier
/// run of the service on this machine had (a start takes longer than a microsecond).
fn boot_epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as u64)
}

/// Free and total bytes of the filesystem that holds `dir`.
fn disk_space(dir: std::os::fd::BorrowedFd<'_>) -> Option<(u64, u64)> {
    let stat = rustix::fs::fstatvfs(dir).ok()?;
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
