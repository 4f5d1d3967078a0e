//! The in-memory index: every served session's entry and version, the current-session
//! pointer, the entries that are skipped, the list order and the paging order. Readers
//! take its lock briefly and copy out `Arc`s; only `Tx::publish` changes it.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use serde::Serialize;

use super::error::StoreError;
use super::layout::Pointer;
use crate::model::{Metadata, SessionName, Status, Timestamp};

/// The version of a state of the store: the boot epoch of the process that wrote it and
/// the sequence number of the write. The epoch differs at every start, so a version seen
/// before a restart never names a different state after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub epoch: u64,
    pub seq: u64,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}-{}", self.epoch, self.seq)
    }
}

impl Version {
    /// Reads a version as [`Display`](fmt::Display) writes it (`<epoch hex>-<seq>`).
    pub fn parse(text: &str) -> Option<Self> {
        let (epoch, seq) = text.split_once('-')?;
        Some(Self {
            epoch: u64::from_str_radix(epoch, 16).ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

/// A write's precondition (`If-Match`): the resource must be at one of these versions,
/// or, for `Any`, exist at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    Any,
    Versions(Vec<Version>),
}

impl IfMatch {
    pub fn allows(&self, version: Version) -> bool {
        match self {
            IfMatch::Any => true,
            IfMatch::Versions(versions) => versions.contains(&version),
        }
    }
}

/// A session's index entry: its metadata as on disk, and its version.
#[derive(Debug)]
pub struct Entry {
    pub metadata: Metadata,
    /// The version of the write that gave the session this state.
    pub version: Version,
    /// The stored part of the session's answer, serialised by the HTTP layer the first
    /// time it answers with this state: an entry never changes, so neither does this.
    pub rendered: OnceLock<Box<[u8]>>,
}

impl Entry {
    pub fn new(metadata: Metadata, version: Version) -> Self {
        Self {
            metadata,
            version,
            rendered: OnceLock::new(),
        }
    }
}

/// An entry of a store directory that is not served, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// A session's place in the paging order ([`Store::page`](super::Store::page)): newest
/// created first, ties by name. Neither changes while the session exists (a rename
/// gives it a new place), so a walk through the pages neither skips nor repeats a
/// session however often the sessions are switched.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageKey(Reverse<Timestamp>, SessionName);

impl PageKey {
    pub fn new(created: Timestamp, name: SessionName) -> Self {
        Self(Reverse(created), name)
    }

    pub fn of(metadata: &Metadata) -> Self {
        Self::new(metadata.created, metadata.name.clone())
    }

    pub fn created(&self) -> Timestamp {
        self.0.0
    }

    pub fn name(&self) -> &SessionName {
        &self.1
    }
}

#[derive(Debug)]
pub(super) struct Index {
    pub epoch: u64,
    /// Change only through [`Index::put`] and [`Index::forget`], which keep `order`.
    pub sessions: HashMap<SessionName, Arc<Entry>>,
    /// Every session's [`PageKey`].
    pub order: BTreeSet<PageKey>,
    pub pointer: Pointer,
    /// The version of the write that last changed the pointer.
    pub pointer_version: Version,
    /// Entries of the sessions directory that are not served, by entry name.
    pub skipped: BTreeMap<String, Skipped>,
    /// Entries of `.archive` that are not archived sessions, and removals that did not
    /// finish, by path under the sessions directory (see `archive`).
    pub archive_skipped: BTreeMap<String, Skipped>,
    /// The sequence number of the last published write.
    pub seq: u64,
    pub last_write_error: Option<String>,
}

/// What `/healthz` needs to know about the store.
#[derive(Debug, Clone)]
pub struct StoreHealth {
    pub sessions: usize,
    pub by_status: [(Status, usize); 3],
    pub current: Option<SessionName>,
    pub skipped: Vec<Skipped>,
    /// Why the last write failed, if it did.
    pub write_problem: Option<String>,
    /// Why no write is taken at all until the service is restarted or the storage
    /// answers again (the directory was replaced, a write hangs): unhealthy.
    pub fatal: Option<String>,
}

impl Index {
    pub fn version(&self) -> Version {
        Version {
            epoch: self.epoch,
            seq: self.seq,
        }
    }

    /// Adds or replaces a session's entry.
    pub fn put(&mut self, entry: Arc<Entry>) {
        let name = entry.metadata.name.clone();
        // A directory is served or skipped, not both: one that was skipped and reads
        // well again (an interrupted write settled) is served.
        self.skipped.remove(name.as_str());
        self.order.insert(PageKey::of(&entry.metadata));
        if let Some(old) = self.sessions.insert(name, entry.clone()) {
            let old = PageKey::of(&old.metadata);
            if old != PageKey::of(&entry.metadata) {
                self.order.remove(&old);
            }
        }
    }

    /// Removes a session's entry, if it has one.
    pub fn forget(&mut self, name: &SessionName) {
        if let Some(old) = self.sessions.remove(name) {
            self.order.remove(&PageKey::of(&old.metadata));
        }
    }

    /// Up to `limit` sessions that `keep` keeps, in paging order, from just after
    /// `after` (from the first without it).
    pub fn page(
        &self,
        after: Option<&PageKey>,
        limit: usize,
        keep: impl Fn(&Entry) -> bool,
    ) -> Vec<Arc<Entry>> {
        use std::ops::Bound::{Excluded, Unbounded};
        let start = after.map_or(Unbounded, Excluded);
        self.order
            .range((start, Unbounded))
            .filter_map(|key| self.sessions.get(key.name()))
            .filter(|entry| keep(entry))
            .take(limit)
            .cloned()
            .collect()
    }

    /// A session by name; a skipped entry of that name is reported as corrupt, so that
    /// nothing can shadow or hide it.
    pub fn lookup(&self, name: &SessionName) -> Result<Arc<Entry>, StoreError> {
        if let Some(entry) = self.sessions.get(name) {
            return Ok(entry.clone());
        }
        match self.skipped.get(name.as_str()) {
            Some(skipped) => Err(StoreError::Corrupt {
                name: name.to_string(),
                reason: skipped.reason.clone(),
            }),
            None => Err(StoreError::NotFound(name.clone())),
        }
    }

    /// The current session and the version of the pair (pointer, current session).
    pub fn current(&self) -> (Option<Arc<Entry>>, Version) {
        let entry = self
            .pointer
            .name
            .as_ref()
            .and_then(|name| self.sessions.get(name).cloned());
        let version = entry.as_ref().map_or(self.pointer_version, |e| {
            e.version.max(self.pointer_version)
        });
        (entry, version)
    }

    pub fn health(&self) -> StoreHealth {
        let mut by_status = Status::ALL.map(|s| (s, 0));
        for entry in self.sessions.values() {
            by_status[entry.metadata.status as usize].1 += 1;
        }
        StoreHealth {
            sessions: self.sessions.len(),
            by_status,
            current: self.pointer.name.clone(),
            skipped: (self.skipped.values())
                .chain(self.archive_skipped.values())
                .cloned()
                .collect(),
            write_problem: self.last_write_error.clone(),
            fatal: None,
        }
    }
}

/// The list order: most recently active first (timestamps as instants), ties by name.
pub fn most_recent_first(a: &Entry, b: &Entry) -> std::cmp::Ordering {
    b.metadata
        .last_active
        .cmp(&a.metadata.last_active)
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, created_micros: i64) -> Arc<Entry> {
        let created = Timestamp::from_micros(created_micros).unwrap();
        let metadata = Metadata::new(SessionName::parse(name).unwrap(), None, created);
        Arc::new(Entry::new(metadata, Version { epoch: 1, seq: 1 }))
    }

    fn names(entries: &[Arc<Entry>]) -> Vec<&str> {
        entries.iter().map(|e| e.metadata.name.as_str()).collect()
    }

    #[test]
    fn pages_go_newest_created_first_from_just_after_the_cursor() {
        let mut index = Index {
            epoch: 1,
            sessions: HashMap::new(),
            order: BTreeSet::new(),
            pointer: Pointer::default(),
            pointer_version: Version { epoch: 1, seq: 0 },
            skipped: BTreeMap::new(),
            archive_skipped: BTreeMap::new(),
            seq: 0,
            last_write_error: None,
        };
        for (name, created) in [("a", 1), ("b", 2), ("c", 2), ("d", 3)] {
            index.put(entry(name, created));
        }
        let all = index.page(None, 10, |_| true);
        assert_eq!(names(&all), ["d", "b", "c", "a"]);
        let after_b = PageKey::of(&all[1].metadata);
        assert_eq!(names(&index.page(Some(&after_b), 10, |_| true)), ["c", "a"]);
        assert_eq!(names(&index.page(Some(&after_b), 1, |_| true)), ["c"]);
        let odd = |e: &Entry| e.metadata.name.as_str() != "c";
        assert_eq!(names(&index.page(None, 2, odd)), ["d", "b"]);
        // A cursor whose session is gone is still a position.
        index.forget(&SessionName::parse("b").unwrap());
        assert_eq!(names(&index.page(Some(&after_b), 10, |_| true)), ["c", "a"]);
        // A new state of a session keeps one place; a new name moves it.
        let mut later = entry("a", 1).metadata.clone();
        later.last_active = Timestamp::from_micros(9).unwrap();
        index.put(Arc::new(Entry::new(later, Version { epoch: 1, seq: 2 })));
        assert_eq!(index.order.len(), index.sessions.len());
        assert_eq!(names(&index.page(None, 10, |_| true)), ["d", "c", "a"]);
    }
}
