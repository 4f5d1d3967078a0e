//! The session store: the single owner of `<sessions_dir>`.
//!
//! Reads are served from an in-memory index; they never touch the disk (except a
//! session's `persona.json`, read on demand) and never wait for a write's fsync.
//! Writes run on the blocking pool, one at a time, under the writer mutex: each one does
//! its durable file operations ([`fsio`]) and then publishes the result to the index in
//! [`Tx::commit`], the one place every change passes through. It bumps the store-wide
//! sequence number, gives the session its new version and announces the change to
//! subscribers. The index therefore always equals what is durable on disk.
//!
//! Both locks are `std::sync` ones: they are never held across an `.await` (writes run
//! inside `spawn_blocking`; reads copy out `Arc`s and let go), so an async mutex would
//! only add cost. The writer mutex is held during fsync by design: writes to one
//! directory are serialised, and the index lock, which readers take, is not.

pub mod failpoint;
pub mod fsio;
mod lock;
mod recover;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast;

use crate::metrics::metrics;
use crate::model::{CUSTOM_PERSONA, Metadata, Name, Persona, Status, Timestamp};
use lock::DirLock;

pub const METADATA_FILE: &str = "metadata.json";
pub const PERSONA_FILE: &str = "persona.json";
/// A replacement `persona.json`, durable but not in effect until the metadata that says
/// "custom" is (see [`Tx::replace_persona`]).
pub const PENDING_PERSONA_FILE: &str = ".pending-persona.json";
/// Where deleted sessions are moved, whole.
pub const ARCHIVE_DIR: &str = ".archive";
/// Which session is current, and the intent of the last switch (see [`Pointer`]).
pub const CURRENT_FILE: &str = ".current.json";

/// What went wrong in the store, by cause. `error.rs` maps each to an HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session '{0}' does not exist")]
    NotFound(Name),
    #[error("session '{0}' already exists")]
    Exists(Name),
    #[error("{0}")]
    Conflict(String),
    #[error("the entry '{name}' in the sessions directory is corrupt ({reason})")]
    Corrupt { name: String, reason: String },
    #[error(
        "the sessions directory {} is locked by another session-manager ({holder}); \
         stop it first, or give this one another --sessions-dir",
        dir.display()
    )]
    Locked { dir: PathBuf, holder: String },
    #[error("no space left on the device that holds the sessions directory")]
    NoSpace(#[source] io::Error),
    #[error("the storage cannot be written ({0})")]
    Unavailable(#[source] io::Error),
    #[error("I/O error: {0}")]
    Io(#[source] io::Error),
    #[error("a store task failed: {0}")]
    Internal(String),
}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        const EIO: i32 = 5;
        match e.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => StoreError::NoSpace(e),
            io::ErrorKind::ReadOnlyFilesystem => StoreError::Unavailable(e),
            _ if e.raw_os_error() == Some(EIO) => StoreError::Unavailable(e),
            _ => StoreError::Io(e),
        }
    }
}

impl StoreError {
    /// Whether this failure says the storage itself cannot take writes.
    fn is_storage_failure(&self) -> bool {
        matches!(
            self,
            StoreError::NoSpace(_) | StoreError::Unavailable(_) | StoreError::Io(_)
        )
    }
}

/// A session's index entry: its metadata as on disk, and its version.
#[derive(Debug)]
pub struct Entry {
    pub metadata: Metadata,
    /// The store-wide sequence number of the change that wrote this state.
    pub version: u64,
}

/// A session as answered: its metadata plus `dir`, which is computed, never stored.
#[derive(Debug, Clone)]
pub struct Session {
    pub entry: Arc<Entry>,
    pub dir: PathBuf,
}

impl Session {
    pub fn metadata(&self) -> &Metadata {
        &self.entry.metadata
    }
}

impl Serialize for Session {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            #[serde(flatten)]
            metadata: &'a Metadata,
            dir: &'a Path,
        }
        let metadata = &self.entry.metadata;
        if metadata.extra.contains_key("dir") {
            // A stored `dir` (someone else's field) would shadow the computed one.
            let mut shown = metadata.clone();
            shown.extra.remove("dir");
            return View {
                metadata: &shown,
                dir: &self.dir,
            }
            .serialize(serializer);
        }
        View {
            metadata,
            dir: &self.dir,
        }
        .serialize(serializer)
    }
}

/// The result of a switch, or of clearing the current session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Switched {
    pub previous: Option<Name>,
    pub active: Option<Name>,
    pub changed: bool,
}

/// An update of the bot's process bookkeeping. `pid: Some(None)` clears the pid.
#[derive(Debug, Clone, Default)]
pub struct Patch {
    pub pid: Option<Option<i64>>,
    pub status: Option<Status>,
}

/// What changed, announced to subscribers after it is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub seq: u64,
    pub kind: ChangeKind,
    pub name: Option<Name>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    Updated,
    PersonaReplaced,
    Deleted,
    CurrentChanged,
}

/// `.current.json`: which session is current, and, for the last switch, when it
/// happened and from where. The switch is committed once this file is durable; if the
/// process dies before the two metadata files follow, the next write or start-up
/// finishes it (a switch is complete when the target's `last_active` equals `since`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Pointer {
    name: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    since: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous: Option<Name>,
}

/// An entry of a store directory that is not served, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Debug, Default)]
struct Index {
    sessions: HashMap<Name, Arc<Entry>>,
    pointer: Pointer,
    /// Entries of the sessions directory that are not served, by entry name.
    skipped: BTreeMap<String, Skipped>,
    seq: u64,
    last_write_error: Option<String>,
}

/// What `/healthz` needs to know about the store.
#[derive(Debug, Clone)]
pub struct StoreHealth {
    pub sessions: usize,
    pub by_status: [(Status, usize); 3],
    pub current: Option<Name>,
    pub skipped: Vec<Skipped>,
    /// Why the store cannot take writes right now, if it cannot.
    pub write_problem: Option<String>,
}

struct Shared {
    dir: PathBuf,
    index: RwLock<Index>,
    /// `GET /sessions` in its JSON form, one slot per filter, each tagged with the
    /// sequence number it was built at: rebuilt on the first list after a change.
    list_cache: Mutex<[Option<(u64, Bytes)>; 4]>,
    writer: Mutex<()>,
    events: broadcast::Sender<Change>,
    _lock: DirLock,
}

/// A cheap, cloneable handle to the store.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
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
        let (events, _) = broadcast::channel(256);
        let store = Store {
            shared: Arc::new(Shared {
                dir,
                index: RwLock::new(Index {
                    pointer: scan.pointer.clone().unwrap_or_default(),
                    seq: scan.sessions.len() as u64,
                    sessions: scan.sessions,
                    skipped: scan.skipped,
                    last_write_error: None,
                }),
                list_cache: Mutex::default(),
                writer: Mutex::new(()),
                events,
                _lock: lock,
            }),
        };
        let mut tx = store.begin();
        let repaired = recover::repair(&mut tx, scan.pointer.is_some());
        tx.publish();
        drop(tx);
        repaired?;
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Changes, in order, as they become durable.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.shared.events.subscribe()
    }

    fn index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.shared.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn session(&self, entry: Arc<Entry>) -> Session {
        let dir = self.shared.dir.join(&entry.metadata.name);
        Session { entry, dir }
    }

    pub fn get(&self, name: &Name) -> Result<Session, StoreError> {
        let entry = lookup(&self.index(), name)?;
        Ok(self.session(entry))
    }

    /// All sessions, most recently active first (ties by name), optionally filtered, as
    /// a JSON array. Served from a cache that every change invalidates (the sequence number moves), so a list never shows less than what
    /// was acknowledged before it was asked for.
    pub fn list_json(&self, status: Option<Status>) -> Bytes {
        let slot = status.map_or(0, |s| s as usize + 1);
        let seq = self.index().seq;
        let cached = self.list_cache()[slot].clone();
        if let Some((_, body)) = cached.filter(|(at, _)| *at == seq) {
            return body;
        }
        let (seq, sessions) = self.snapshot(status);
        let body = Bytes::from(serde_json::to_vec(&sessions).expect("sessions serialise"));
        let mut cache = self.list_cache();
        if cache[slot].as_ref().is_none_or(|(at, _)| *at < seq) {
            cache[slot] = Some((seq, body.clone()));
        }
        body
    }

    fn list_cache(&self) -> MutexGuard<'_, [Option<(u64, Bytes)>; 4]> {
        self.shared
            .list_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The sorted, filtered sessions and the sequence number they are current at.
    fn snapshot(&self, status: Option<Status>) -> (u64, Vec<Session>) {
        let index = self.index();
        let seq = index.seq;
        let mut entries: Vec<Arc<Entry>> = index
            .sessions
            .values()
            .filter(|e| status.is_none_or(|s| e.metadata.status == s))
            .cloned()
            .collect();
        drop(index);
        entries.sort_unstable_by(|a, b| most_recent_first(a, b));
        (seq, entries.into_iter().map(|e| self.session(e)).collect())
    }

    /// The current session, if any.
    pub fn current(&self) -> Option<Session> {
        let index = self.index();
        let name = index.pointer.name.as_ref()?;
        let entry = index.sessions.get(name)?.clone();
        drop(index);
        Some(self.session(entry))
    }

    /// The session's own persona, as stored.
    pub async fn persona(&self, name: &Name) -> Result<Value, StoreError> {
        let path = self.get(name)?.dir.join(PERSONA_FILE);
        let corrupt = |reason: String| StoreError::Corrupt {
            name: format!("{name}/{PERSONA_FILE}"),
            reason,
        };
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
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
        let index = self.index();
        let mut by_status = Status::ALL.map(|s| (s, 0));
        for entry in index.sessions.values() {
            by_status[entry.metadata.status as usize].1 += 1;
        }
        StoreHealth {
            sessions: index.sessions.len(),
            by_status,
            current: index.pointer.name.clone(),
            skipped: index.skipped.values().cloned().collect(),
            write_problem: index.last_write_error.clone(),
        }
    }

    /// Free and total bytes of the filesystem that holds the sessions directory.
    pub fn disk_space(&self) -> Option<(u64, u64)> {
        let stat = rustix::fs::statvfs(&self.shared.dir).ok()?;
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        let total = stat.f_blocks.saturating_mul(stat.f_frsize);
        Some((free, total))
    }

    /// Checks that a file can be created in the sessions directory right now.
    pub async fn probe_writable(&self) -> Result<(), StoreError> {
        let dir = self.shared.dir.clone();
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            fsio::temp_file(&dir)?.write_all(b"probe")?;
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))?
    }

    /// Creates a session with the given persona, recorded in metadata as `recorded`
    /// (a library key, `"custom"`, or null for the default).
    pub async fn create(
        &self,
        name: Name,
        recorded: Option<String>,
        persona: Value,
    ) -> Result<Session, StoreError> {
        // Fail fast, before any fsync, on a name that is taken.
        match self.get(&name) {
            Ok(_) => return Err(StoreError::Exists(name)),
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        // The new directory is built and made durable before the writer lock is taken,
        // so concurrent creates overlap their fsyncs; only the move into place (and the
        // fsync that makes it durable) is serialised with other writes.
        let metadata = Metadata::new(name.clone(), recorded, Timestamp::now());
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
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))?
        };
        let staged = built.map_err(|e| self.note_failure(StoreError::from(e)))?;
        self.write("create", move |tx| tx.create(metadata, staged))
            .await
            .map(|e| self.session(e))
    }

    /// Records a storage failure that happened outside a transaction, for `/healthz`.
    fn note_failure(&self, error: StoreError) -> StoreError {
        if error.is_storage_failure() {
            let mut index = self.shared.index.write().unwrap_or_else(|e| e.into_inner());
            index.last_write_error = Some(error.to_string());
        }
        error
    }

    pub async fn update(&self, name: Name, patch: Patch) -> Result<Session, StoreError> {
        self.write("update", move |tx| tx.update(&name, patch))
            .await
            .map(|e| self.session(e))
    }

    pub async fn delete(&self, name: Name) -> Result<(), StoreError> {
        self.write("delete", move |tx| tx.delete(&name)).await
    }

    pub async fn switch(&self, name: Name) -> Result<Switched, StoreError> {
        self.write("switch", move |tx| tx.switch(&name)).await
    }

    pub async fn clear_current(&self) -> Result<Switched, StoreError> {
        self.write("clear_current", |tx| tx.clear_current()).await
    }

    /// Replaces the session's persona with a custom one; returns it as stored.
    pub async fn replace_persona(&self, name: Name, persona: Persona) -> Result<Value, StoreError> {
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
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut tx = store.begin();
            let start = std::time::Instant::now();
            let result = tx.settle().and_then(|()| f(&mut tx));
            // Published even on failure: what did reach the disk must be in the index,
            // so that the next write settles it.
            tx.publish();
            if result.as_ref().is_err_and(StoreError::is_storage_failure) {
                tx.resync();
            }
            metrics().observe_store(operation, start.elapsed());
            tx.record_outcome(&result);
            result
        })
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))?
    }

    fn begin(&self) -> Tx<'_> {
        let writer = self.shared.writer.lock().unwrap_or_else(|e| e.into_inner());
        Tx {
            shared: &self.shared,
            seq: self.index().seq + 1,
            _writer: writer,
            sessions: HashMap::new(),
            pointer: None,
            changes: Vec::new(),
        }
    }
}

/// The list order: most recently active first (timestamps as instants), ties by name.
fn most_recent_first(a: &Entry, b: &Entry) -> std::cmp::Ordering {
    b.metadata
        .last_active
        .cmp(&a.metadata.last_active)
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

fn lookup(index: &Index, name: &Name) -> Result<Arc<Entry>, StoreError> {
    if let Some(entry) = index.sessions.get(name) {
        return Ok(entry.clone());
    }
    match index.skipped.get(name.as_str()) {
        Some(skipped) => Err(StoreError::Corrupt {
            name: name.to_string(),
            reason: skipped.reason.clone(),
        }),
        None => Err(StoreError::NotFound(name.clone())),
    }
}

/// A write transaction. It holds the writer mutex, so nothing else changes the index
/// while it runs. What it writes durably is staged here and becomes visible to readers
/// all at once, in [`Tx::publish`]: a reader sees a switch, which writes three files,
/// either not at all or whole.
struct Tx<'a> {
    shared: &'a Shared,
    _writer: MutexGuard<'a, ()>,
    /// The sequence number this transaction publishes at (the version of what it writes).
    seq: u64,
    /// Sessions written (`Some`) or removed (`None`), not yet published.
    sessions: HashMap<Name, Option<Arc<Entry>>>,
    pointer: Option<Pointer>,
    changes: Vec<(ChangeKind, Option<Name>)>,
}

impl Tx<'_> {
    fn index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.shared.index.read().unwrap_or_else(|e| e.into_inner())
    }

    /// A session as this transaction sees it: its own writes first, then the index.
    fn get(&self, name: &Name) -> Result<Arc<Entry>, StoreError> {
        match self.sessions.get(name) {
            Some(Some(entry)) => Ok(entry.clone()),
            Some(None) => Err(StoreError::NotFound(name.clone())),
            None => lookup(&self.index(), name),
        }
    }

    fn pointer(&self) -> Pointer {
        match &self.pointer {
            Some(pointer) => pointer.clone(),
            None => self.index().pointer.clone(),
        }
    }

    fn session_dir(&self, name: &Name) -> PathBuf {
        self.shared.dir.join(name)
    }

    /// Stages a session's new state, after its files are durable.
    fn stage(&mut self, kind: ChangeKind, metadata: Metadata) -> Arc<Entry> {
        let entry = Arc::new(Entry {
            metadata,
            version: self.seq,
        });
        let name = entry.metadata.name.clone();
        self.sessions.insert(name.clone(), Some(entry.clone()));
        self.changes.push((kind, Some(name)));
        entry
    }

    /// Makes what this transaction wrote visible to readers, in one step, and announces
    /// it: every change to the store's state passes through here, after its files are
    /// on disk.
    fn publish(&mut self) {
        if self.changes.is_empty() {
            return;
        }
        let mut index = self.shared.index.write().unwrap_or_else(|e| e.into_inner());
        index.seq = self.seq;
        for (name, entry) in self.sessions.drain() {
            match entry {
                Some(entry) => index.sessions.insert(name, entry),
                None => index.sessions.remove(&name),
            };
        }
        if let Some(pointer) = self.pointer.take() {
            index.pointer = pointer;
        }
        drop(index);
        for (kind, name) in self.changes.drain(..) {
            let _ = self.shared.events.send(Change {
                seq: self.seq,
                kind,
                name,
            });
        }
        self.seq += 1;
    }

    fn write_metadata(
        &mut self,
        metadata: Metadata,
        kind: ChangeKind,
    ) -> Result<Arc<Entry>, StoreError> {
        let dir = self.session_dir(&metadata.name);
        fsio::replace_file(&dir, METADATA_FILE, &fsio::to_json_bytes(&metadata)?)?;
        Ok(self.stage(kind, metadata))
    }

    fn write_pointer(&mut self, pointer: Pointer) -> Result<(), StoreError> {
        fsio::replace_file(
            &self.shared.dir,
            CURRENT_FILE,
            &fsio::to_json_bytes(&pointer)?,
        )?;
        self.changes
            .push((ChangeKind::CurrentChanged, pointer.name.clone()));
        self.pointer = Some(pointer);
        Ok(())
    }

    /// Sets a session's status (and `last_active`, when given) if it differs.
    fn set_status(
        &mut self,
        name: &Name,
        status: Status,
        last_active: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        let entry = self.get(name)?;
        let mut metadata = entry.metadata.clone();
        metadata.status = status;
        if let Some(at) = last_active {
            metadata.last_active = at;
        }
        if metadata != entry.metadata {
            self.write_metadata(metadata, ChangeKind::Updated)?;
        }
        Ok(())
    }

    /// Finishes a switch that was committed but not completed (a crash, or a failed
    /// write after the commit point), and drops a pointer to a session that is gone.
    fn settle(&mut self) -> Result<(), StoreError> {
        let pointer = self.pointer();
        let Some(target) = pointer.name.clone() else {
            return Ok(());
        };
        let Ok(entry) = self.get(&target) else {
            tracing::warn!(session = %target, "the current session is gone; none is current now");
            return self.write_pointer(Pointer::default());
        };
        let Some(since) = pointer.since else {
            return Ok(());
        };
        if entry.metadata.last_active == since {
            return Ok(());
        }
        tracing::warn!(session = %target, previous = ?pointer.previous, "finishing an interrupted switch");
        self.apply_switch(&target, pointer.previous.as_ref(), since)
    }

    /// The two metadata writes of a switch, after its pointer is durable.
    fn apply_switch(
        &mut self,
        target: &Name,
        previous: Option<&Name>,
        since: Timestamp,
    ) -> Result<(), StoreError> {
        let was_active = |entry: Arc<Entry>| entry.metadata.status == Status::Active;
        if let Some(previous) = previous.filter(|p| *p != target)
            && self.get(previous).is_ok_and(was_active)
        {
            self.set_status(previous, Status::Suspended, None)?;
        }
        failpoint::hit(failpoint::Step::SwitchHalfway)?;
        self.set_status(target, Status::Active, Some(since))
    }

    /// Moves a session directory built by [`fsio::build_dir`] into place.
    fn create(
        &mut self,
        metadata: Metadata,
        staged: tempfile::TempDir,
    ) -> Result<Arc<Entry>, StoreError> {
        let name = metadata.name.clone();
        match self.get(&name) {
            Ok(_) => return Err(StoreError::Exists(name)),
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        match fsio::publish_dir(staged, &self.session_dir(&name)) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StoreError::Exists(name));
            }
            other => other?,
        }
        Ok(self.stage(ChangeKind::Created, metadata))
    }

    fn update(&mut self, name: &Name, patch: Patch) -> Result<Arc<Entry>, StoreError> {
        let entry = self.get(name)?;
        let is_current = self.pointer().name.as_ref() == Some(name);
        match patch.status {
            Some(Status::Active) if !is_current => {
                return Err(StoreError::Conflict(format!(
                    "session '{name}' is not the current session, so it cannot be 'active'; \
                     make it current with PUT /sessions/active"
                )));
            }
            Some(Status::Suspended) if is_current => {
                return Err(StoreError::Conflict(format!(
                    "session '{name}' is the current session, so it cannot be 'suspended'; \
                     switch to another session first, or clear it with DELETE /sessions/active"
                )));
            }
            _ => {}
        }
        let mut metadata = entry.metadata.clone();
        if let Some(pid) = patch.pid {
            metadata.pid = pid;
        }
        if let Some(status) = patch.status {
            metadata.status = status;
        }
        if metadata == entry.metadata {
            return Ok(entry);
        }
        self.write_metadata(metadata, ChangeKind::Updated)
    }

    fn delete(&mut self, name: &Name) -> Result<(), StoreError> {
        self.get(name)?;
        let archive = self.shared.dir.join(ARCHIVE_DIR);
        fsio::ensure_dir(&archive)?;
        let archived = archive.join(format!("{name}.{}", Timestamp::now().compact()));
        fsio::move_dir(&self.session_dir(name), &archived)?;
        tracing::info!(session = %name, archived = %archived.display(), "session archived");
        self.sessions.insert(name.clone(), None);
        self.changes.push((ChangeKind::Deleted, Some(name.clone())));
        if self.pointer().name.as_ref() == Some(name) {
            self.write_pointer(Pointer::default())?;
        }
        Ok(())
    }

    fn switch(&mut self, name: &Name) -> Result<Switched, StoreError> {
        self.get(name)?;
        let previous = self.pointer().name;
        if previous.as_ref() == Some(name) {
            return Ok(Switched {
                previous: None,
                active: Some(name.clone()),
                changed: false,
            });
        }
        let since = Timestamp::now();
        self.write_pointer(Pointer {
            name: Some(name.clone()),
            since: Some(since),
            previous: previous.clone(),
        })?;
        self.apply_switch(name, previous.as_ref(), since)?;
        Ok(Switched {
            previous,
            active: Some(name.clone()),
            changed: true,
        })
    }

    fn clear_current(&mut self) -> Result<Switched, StoreError> {
        let Some(previous) = self.pointer().name else {
            return Ok(Switched {
                previous: None,
                active: None,
                changed: false,
            });
        };
        self.write_pointer(Pointer::default())?;
        if self.get(&previous)?.metadata.status == Status::Active {
            self.set_status(&previous, Status::Suspended, None)?;
        }
        Ok(Switched {
            previous: Some(previous),
            active: None,
            changed: true,
        })
    }

    /// Two files change, so the new persona is first staged beside the old one; the
    /// metadata that says "custom" is the commit point; then the persona moves into
    /// place. Start-up finishes a staged persona whose metadata says "custom" and drops
    /// any other, so a crash leaves the replacement whole or absent, never a custom
    /// persona under metadata that names a library key.
    fn replace_persona(&mut self, name: &Name, persona: &Persona) -> Result<Value, StoreError> {
        let entry = self.get(name)?;
        let stored =
            serde_json::to_value(persona).map_err(|e| StoreError::Internal(e.to_string()))?;
        let dir = self.session_dir(name);
        fsio::replace_file(&dir, PENDING_PERSONA_FILE, &fsio::to_json_bytes(&stored)?)?;
        let mut metadata = entry.metadata.clone();
        metadata.persona = Some(CUSTOM_PERSONA.to_owned());
        self.write_metadata(metadata, ChangeKind::PersonaReplaced)?;
        fsio::move_file(&dir, PENDING_PERSONA_FILE, PERSONA_FILE)?;
        Ok(stored)
    }

    /// After a storage failure the disk can hold more than the transaction published:
    /// a step that fails after its rename (the fsync of the directory, or the next file
    /// of a switch) leaves the renamed file in place. Reads must still say what is on
    /// disk, and a switch committed there must not stay half done, so read the
    /// directory again and settle it, both at best: the storage is failing.
    fn resync(&mut self) {
        let scan = match recover::scan(&self.shared.dir, false) {
            Ok(scan) => scan,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the sessions directory again after a failed write");
                return;
            }
        };
        let index = self.index();
        let gone: Vec<Name> = index
            .sessions
            .keys()
            .filter(|n| !scan.sessions.contains_key(*n) && !scan.skipped.contains_key(n.as_str()))
            .cloned()
            .collect();
        let changed: Vec<(ChangeKind, Metadata)> = scan
            .sessions
            .values()
            .filter_map(|e| match index.sessions.get(&e.metadata.name) {
                None => Some((ChangeKind::Created, e.metadata.clone())),
                Some(old) if old.metadata != e.metadata => {
                    Some((ChangeKind::Updated, e.metadata.clone()))
                }
                Some(_) => None,
            })
            .collect();
        let pointer = scan.pointer.filter(|p| *p != index.pointer);
        drop(index);
        for name in gone {
            self.sessions.insert(name.clone(), None);
            self.changes.push((ChangeKind::Deleted, Some(name)));
        }
        for (kind, metadata) in changed {
            self.stage(kind, metadata);
        }
        if let Some(pointer) = pointer {
            self.changes
                .push((ChangeKind::CurrentChanged, pointer.name.clone()));
            self.pointer = Some(pointer);
        }
        if let Err(e) = self.settle() {
            tracing::warn!(error = %e, "cannot settle the store after a failed write");
        }
        self.publish();
    }

    /// Remembers whether the storage took the last write, for `/healthz`.
    fn record_outcome<T>(&mut self, result: &Result<T, StoreError>) {
        let problem = match result {
            Err(e) if e.is_storage_failure() => Some(e.to_string()),
            Err(_) => return,
            Ok(_) => None,
        };
        let mut index = self.shared.index.write().unwrap_or_else(|e| e.into_inner());
        if index.last_write_error != problem {
            index.last_write_error = problem;
        }
    }
}
