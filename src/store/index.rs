//! The in-memory index: every served session's entry and version, the current-session
//! pointer, the entries that are skipped, and the list order. Readers take its lock
//! briefly and copy out `Arc`s; only `Tx::publish` changes it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use super::error::StoreError;
use super::layout::Pointer;
use crate::model::{Metadata, SessionName, Status};

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
}

/// An entry of a store directory that is not served, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Debug)]
pub(super) struct Index {
    pub epoch: u64,
    pub sessions: HashMap<SessionName, Arc<Entry>>,
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
