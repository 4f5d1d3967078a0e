//! Write transactions: [`Shared::begin`] takes the writer mutex, the transaction stages
//! what it made durable, and [`Tx::publish`] makes it visible to readers in one step and
//! announces it. Every change to the store's state passes through `publish`.
//!
//! Both locks are `std::sync` ones: they are never held across an `.await` (writes run
//! inside `spawn_blocking`; readers copy out `Arc`s and let go), so an async mutex would
//! only add cost. The writer mutex is held during fsync by design: writes to one
//! directory are serialised, and the index lock, which readers take, is not. Writes
//! queued meanwhile share the next transaction (see `batch`), in which each stages at a
//! version of its own ([`Tx::next_member`]) and the files are written at its end.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::Duration;

use tokio::sync::broadcast;

use super::error::StoreError;
use super::events::{Change, ChangeKind, Subject};
use super::fsio::{self, Refusal};
use super::index::{Entry, Index, Skipped, Version};
use super::layout::{self, CURRENT_FILE, METADATA_FILE, Pointer};
use super::lock::Root;
use crate::model::{Metadata, SessionName};

/// What every handle on one store shares.
pub(super) struct Shared {
    /// The sessions directory, held by descriptor and locked.
    pub root: Root,
    pub index: RwLock<Index>,
    pub writer: Mutex<()>,
    pub events: broadcast::Sender<Change>,
    /// How long a write may take before its caller is answered 503.
    pub write_timeout: Duration,
    /// Writes still running past `write_timeout`.
    pub overdue: AtomicUsize,
    /// Whether a recorded process is still running.
    pub probe: crate::process::Probe,
    /// The processes already announced as gone.
    pub announced: super::events::Announced,
    /// Whether a rename's write failed and may have left its intent to settle.
    pub rename_pending: std::sync::atomic::AtomicBool,
    /// The sessions' persona files read, kept while unchanged.
    pub personas: super::persona_file::PersonaCache,
}

impl Shared {
    pub fn index(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a write transaction: waits for the writer mutex.
    pub fn begin(&self) -> Tx<'_> {
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let index = self.index();
        let version = Version {
            epoch: index.epoch,
            seq: index.seq + 1,
        };
        drop(index);
        Tx {
            shared: self,
            _writer: writer,
            version,
            last_used: None,
            marked: 0,
            sessions: HashMap::new(),
            skipped: Vec::new(),
            pointer: None,
            pointer_version: version,
            changes: Vec::new(),
            deferred: None,
        }
    }

    /// Announces an observation that changes nothing on disk (a process found gone), at
    /// the store's current version.
    pub fn announce(&self, kind: ChangeKind, entry: Arc<Entry>) {
        let version = self.index().version();
        let _ = self.events.send(Change {
            version,
            kind,
            subject: Subject::Session(entry),
        });
    }

    /// Records a storage failure that happened outside a transaction, for `/healthz`.
    pub fn note_failure(&self, error: StoreError) -> StoreError {
        if error.is_storage_failure() {
            let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
            index.last_write_error = Some(error.to_string());
        }
        error
    }
}

/// What a batch writes at its end (see `batch`).
pub(super) struct Deferred {
    /// The current session on disk when the batch began.
    pub base: Option<SessionName>,
    /// Whether the pointer changed.
    pub pointer: bool,
    /// Each session's `metadata.json` in its final state, and its directory.
    pub files: HashMap<SessionName, (OwnedFd, Vec<u8>)>,
}

/// A write transaction. It holds the writer mutex, so nothing else changes the index
/// while it runs. What it writes durably is staged here and becomes visible to readers
/// all at once, in [`Tx::publish`]: a reader sees a switch, which writes three files,
/// either not at all or whole.
pub(super) struct Tx<'a> {
    pub shared: &'a Shared,
    _writer: MutexGuard<'a, ()>,
    /// The version of what this transaction writes now: one per member of a batch.
    version: Version,
    /// The last version a change was staged at, if any since the last publish.
    last_used: Option<Version>,
    /// How many changes were staged when the current member of a batch began.
    marked: usize,
    /// Sessions written (`Some`) or removed (`None`), not yet published.
    sessions: HashMap<SessionName, Option<Arc<Entry>>>,
    /// Sessions found unfit while writing, not yet published as skipped.
    skipped: Vec<(SessionName, Skipped)>,
    pointer: Option<Pointer>,
    /// The version `pointer` was staged at.
    pointer_version: Version,
    /// Changes staged, announced in this order by `publish`.
    changes: Vec<Change>,
    /// In a batch, the files to write at its end instead of at once (see `batch`).
    pub(super) deferred: Option<Deferred>,
}

impl Tx<'_> {
    pub fn index(&self) -> RwLockReadGuard<'_, Index> {
        self.shared.index()
    }

    /// A session as this transaction sees it: its own writes first, then the index.
    pub fn get(&self, name: &SessionName) -> Result<Arc<Entry>, StoreError> {
        match self.sessions.get(name) {
            Some(Some(entry)) => Ok(entry.clone()),
            Some(None) => Err(StoreError::NotFound(name.clone())),
            None => self.index().lookup(name),
        }
    }

    /// The current-session pointer as this transaction sees it.
    pub fn pointer(&self) -> Pointer {
        match &self.pointer {
            Some(pointer) => pointer.clone(),
            None => self.index().pointer.clone(),
        }
    }

    pub fn root(&self) -> &Root {
        &self.shared.root
    }

    pub fn session_dir(&self, name: &SessionName) -> PathBuf {
        layout::session_dir(self.shared.root.path(), name)
    }

    /// Opens a served session's directory for a write. One that has vanished is
    /// forgotten (`NotFound`); one that is no longer a real directory (a symlink planted
    /// in its place) stops being served and is reported (`Corrupt`).
    pub fn open_session(&mut self, name: &SessionName) -> Result<OwnedFd, StoreError> {
        match fsio::open_dir_at(self.shared.root.fd(), name.as_str()) {
            Ok(fd) => Ok(fd),
            Err(Refusal::Missing) => {
                tracing::warn!(session = %name, "the session's directory has vanished; forgetting the session");
                self.stage_removal(ChangeKind::Dropped, name);
                Err(StoreError::NotFound(name.clone()))
            }
            Err(refusal) if refusal.is_storage_failure() => Err(refusal.into_io().into()),
            Err(refusal) => {
                let reason = format!("the session directory {refusal}");
                Err(self.stage_corrupt(name, reason))
            }
        }
    }

    /// Stages a served session as skipped: it is not served any more, and `/healthz`
    /// reports why.
    pub fn stage_corrupt(&mut self, name: &SessionName, reason: String) -> StoreError {
        let path = self.session_dir(name);
        tracing::warn!(path = %path.display(), %reason, "a session is no longer served");
        self.stage_removal(ChangeKind::Dropped, name);
        self.skipped.push((
            name.clone(),
            Skipped {
                path,
                reason: reason.clone(),
            },
        ));
        StoreError::Corrupt {
            name: name.to_string(),
            reason,
        }
    }

    /// Stages a session's new state, after its files are durable.
    pub fn stage(&mut self, kind: ChangeKind, metadata: Metadata) -> Arc<Entry> {
        let entry = Arc::new(Entry::new(metadata, self.version));
        let name = entry.metadata.name.clone();
        self.sessions.insert(name, Some(entry.clone()));
        self.announce(kind, Subject::Session(entry.clone()));
        entry
    }

    /// Announces `kind` about `entry` (as this transaction leaves it) with this
    /// transaction's changes, once they are published.
    pub fn note(&mut self, kind: ChangeKind, entry: Arc<Entry>) {
        self.announce(kind, Subject::Session(entry));
    }

    /// Announces `kind` about `name`, which is not (or no longer) a served session, with
    /// this transaction's changes.
    pub fn note_gone(&mut self, kind: ChangeKind, name: &SessionName) {
        self.announce(kind, Subject::Gone(name.clone()));
    }

    /// Stages the removal of a session, after its directory has left the tree (or was
    /// found unfit): `kind` says which.
    pub fn stage_removal(&mut self, kind: ChangeKind, name: &SessionName) {
        if let Some(deferred) = &mut self.deferred {
            deferred.files.remove(name);
        }
        self.sessions.insert(name.clone(), None);
        self.announce(kind, Subject::Gone(name.clone()));
    }

    /// Stages a new current-session pointer, after `.current.json` is durable (or, on a
    /// resync, after it was read back).
    pub fn stage_pointer(&mut self, pointer: Pointer) {
        let subject = Subject::Current {
            previous: self.pointer().name,
            active: pointer.name.clone(),
        };
        self.announce(ChangeKind::CurrentChanged, subject);
        self.pointer = Some(pointer);
        self.pointer_version = self.version;
    }

    /// The version of `/sessions/active` as this transaction sees it (see
    /// [`Index::current`]).
    pub fn current_version(&self) -> Version {
        let pointer_version = match &self.pointer {
            Some(_) => self.pointer_version,
            None => self.index().pointer_version,
        };
        let entry = self.pointer().name.and_then(|name| self.get(&name).ok());
        entry.map_or(pointer_version, |e| e.version.max(pointer_version))
    }

    /// Starts the next member of a batch: what it stages gets a version of its own,
    /// unless the members before it staged nothing.
    pub fn next_member(&mut self) {
        if self.changes.len() > self.marked {
            self.version.seq += 1;
            self.marked = self.changes.len();
        }
    }

    /// Stages the announcement of a change, made at this transaction's version.
    fn announce(&mut self, kind: ChangeKind, subject: Subject) {
        self.last_used = Some(self.version);
        self.changes.push(Change {
            version: self.version,
            kind,
            subject,
        });
    }

    /// Makes what this transaction wrote visible to readers, in one step, and announces
    /// it: every change to the store's state passes through here, after its files are
    /// on disk.
    pub fn publish(&mut self) {
        let Some(last) = self.last_used.take().filter(|_| !self.changes.is_empty()) else {
            return;
        };
        let mut index = self.shared.index.write().unwrap_or_else(|e| e.into_inner());
        index.seq = last.seq;
        for (name, entry) in self.sessions.drain() {
            match entry {
                Some(entry) => index.put(entry),
                None => index.forget(&name),
            }
        }
        for (name, skipped) in self.skipped.drain(..) {
            index.skipped.insert(name.to_string(), skipped);
        }
        if let Some(pointer) = self.pointer.take() {
            index.pointer = pointer;
            index.pointer_version = self.pointer_version;
        }
        drop(index);
        for change in self.changes.drain(..) {
            let _ = self.shared.events.send(change);
        }
        self.version.seq = last.seq + 1;
        self.marked = 0;
    }

    /// Forgets what this transaction staged but did not make durable (the writes of a
    /// batch whose files could not all be written); what it found (sessions gone or
    /// unfit) stays.
    pub fn discard_staged(&mut self) {
        self.sessions.retain(|_, entry| entry.is_none());
        self.pointer = None;
        self.changes
            .retain(|change| matches!(change.subject, Subject::Gone(_)));
    }

    /// Replaces a session's `metadata.json` durably and stages the new state.
    pub fn write_metadata(
        &mut self,
        metadata: Metadata,
        kind: ChangeKind,
    ) -> Result<Arc<Entry>, StoreError> {
        let dir = self.open_session(&metadata.name)?;
        let bytes = fsio::to_json_bytes(&metadata)?;
        match &mut self.deferred {
            Some(deferred) => {
                deferred.files.insert(metadata.name.clone(), (dir, bytes));
            }
            None => fsio::replace_at(dir.as_fd(), METADATA_FILE, &bytes)?,
        }
        Ok(self.stage(kind, metadata))
    }

    /// Replaces `.current.json` durably and stages the new pointer. In a batch, the
    /// pointer a switch leaves names as `previous` the session that was current on disk
    /// when the batch began: the one a crash before the batch's end must suspend.
    pub fn write_pointer(&mut self, mut pointer: Pointer) -> Result<(), StoreError> {
        match &mut self.deferred {
            Some(deferred) => {
                if pointer.since.is_some() {
                    pointer.previous = deferred.base.clone();
                }
                deferred.pointer = true;
            }
            None => fsio::replace_at(
                self.shared.root.fd(),
                CURRENT_FILE,
                &fsio::to_json_bytes(&pointer)?,
            )?,
        }
        self.stage_pointer(pointer);
        Ok(())
    }

    /// Remembers whether the storage took the last write, for `/healthz`.
    pub fn record_outcome<T>(&mut self, result: &Result<T, StoreError>) {
        match result {
            Err(e) if e.is_storage_failure() => self.record_problem(Some(e.to_string())),
            Err(_) => {}
            Ok(_) => self.record_problem(None),
        }
    }

    /// Remembers the storage's last problem (`None`: the last write went through).
    pub fn record_problem(&mut self, problem: Option<String>) {
        let mut index = self.shared.index.write().unwrap_or_else(|e| e.into_inner());
        if index.last_write_error != problem {
            index.last_write_error = problem;
        }
    }
}
