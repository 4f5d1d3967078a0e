//! The session's wire format: its metadata plus the computed `dir` ([`SessionJson`]),
//! and the body of `GET /sessions`, cached until the store's version moves
//! ([`ListCache`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use serde::Serialize;

use crate::model::{Metadata, Status};
use crate::store::{Entry, Store, Version, layout};

/// A session as answered: its metadata plus `dir`, the absolute path of its directory,
/// which is computed, never stored.
#[derive(Debug, Clone)]
pub struct SessionJson {
    pub entry: Arc<Entry>,
    pub dir: PathBuf,
}

impl SessionJson {
    pub fn new(store: &Store, entry: Arc<Entry>) -> Self {
        let dir = store.session_dir(&entry.metadata.name);
        Self { entry, dir }
    }

    /// The session as answered by the store in `sessions_dir`, for a caller that holds
    /// no handle on the store (the change feed's task).
    pub fn under(sessions_dir: &Path, entry: Arc<Entry>) -> Self {
        let dir = layout::session_dir(sessions_dir, &entry.metadata.name);
        Self { entry, dir }
    }

    pub fn metadata(&self) -> &Metadata {
        &self.entry.metadata
    }
}

impl Serialize for SessionJson {
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

/// `GET /sessions` in its JSON form, one slot per filter, each tagged with the store
/// version it was built at: rebuilt on the first list after a change, shared by every
/// list until the next one.
#[derive(Debug, Default)]
pub struct ListCache {
    slots: Mutex<[Option<(Version, Bytes)>; 4]>,
}

impl ListCache {
    /// All sessions (or those with `status`), most recently active first, as a JSON
    /// array. A list never shows less than what was acknowledged before it was asked
    /// for: every change moves the store's version.
    pub fn list_json(&self, store: &Store, status: Option<Status>) -> Bytes {
        let slot = status.map_or(0, |s| s as usize + 1);
        let current = store.version();
        let cached = self.slots()[slot].clone();
        if let Some((_, body)) = cached.filter(|(at, _)| *at == current) {
            return body;
        }
        let (version, entries) = store.list(status);
        let sessions: Vec<SessionJson> = entries
            .into_iter()
            .map(|e| SessionJson::new(store, e))
            .collect();
        let body = Bytes::from(serde_json::to_vec(&sessions).expect("sessions serialise"));
        let mut slots = self.slots();
        if slots[slot].as_ref().is_none_or(|(at, _)| *at < version) {
            slots[slot] = Some((version, body.clone()));
        }
        body
    }

    fn slots(&self) -> MutexGuard<'_, [Option<(Version, Bytes)>; 4]> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}
