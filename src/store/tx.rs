//! Write transactions: [`Shared::begin`] takes the writer mutex, the transaction stages
//! what it made durable, and [`Tx::publish`] makes it visible to readers in one step and
//! announces it. Every change to the store's state passes through `publish`.
//!
//! Both locks are `std::sync` ones: they are never held across an `.await` (writes run
//! inside `spawn_blocking`; readers copy out `Arc`s and let go), so an async mutex would
//! only add cost. The writer mutex is held during fsync by design: writes to one
//! directory are serialised, and the index lock, which readers take, is not.

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
            sessions: HashMap::new(),
            skipped: Vec::new(),
            pointer: None,
            changes: Vec::new(),
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

/// A write transaction. It holds the writer mutex, so nothing else changes the index
/// while it runs. What it writes durably is staged here and becomes visible to readers
/// all at once, in [`Tx::publish`]: a reader sees a switch, which writes three files,
/// either not at all or whole.
pub(super) struct Tx<'a> {
    pub shared: &'a Shared,
    _writer: MutexGuard<'a, ()>,
    /// The version this transaction publishes at (the version of what it writes).
    version: Version,
    /// Sessions written (`Some`) or removed (`None`), not yet published.
    sessions: HashMap<SessionName, Option<Arc<Entry>>>,
    /// Sessions found unfit while writing, not yet published as skipped.
    skipped: Vec<(SessionName, Skipped)>,
    pointer: Option<Pointer>,
    /// Changes staged, announced in this order by `publish`.
    changes: Vec<Change>,
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
    }

    /// Stages the announcement of a change, made at this transaction's version.
    fn announce(&mut self, kind: ChangeKind, subject: Subject) {
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
        if self.changes.is_empty() {
            return;
        }
        let mut index = self.shared.index.write().unwrap_or_else(|e| e.into_inner());
        index.seq = self.version.seq;
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
            index.pointer_version = self.version;
        }
        drop(index);
        for change in self.changes.drain(..) {
            let _ = self.shared.events.send(change);
        }
        self.version.seq += 1;
    }

    /// Replaces a session's `metadata.json` durably and stages the new state.
    pub fn write_metadata(
        &mut self,
        metadata: Metadata,
        kind: ChangeKind,
    ) -> Result<Arc<Entry>, StoreError> {
        let dir = self.open_session(&metadata.name)?;
        fsio::replace_at(dir.as_fd(), METADATA_FILE, &fsio::to_json_bytes(&metadata)?)?;
        Ok(self.stage(kind, metadata))
    }

    /// Replaces `.current.json` durably and stages the new pointer.
    pub fn write_pointer(&mut self, pointer: Pointer) -> Result<(), StoreError> {
        fsio::replace_at(
            self.shared.root.fd(),
            CURRENT_FILE,
            &fsio::to_json_bytes(&pointer)?,
        )?;
        self.stage_pointer(pointer);
        Ok(())
    }

    /// Remembers whether the storage took the last write, for `/healthz`.
    pub fn record_outcome<T>(&mut self, result: &Result<T, StoreError>) {
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
