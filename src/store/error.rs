//! [`StoreError`]: what went wrong in the store, by cause. The HTTP layer maps each to
//! an answer; nothing here knows about status codes.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::model::{ConversationId, SessionName};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session '{0}' does not exist")]
    NotFound(SessionName),
    #[error("session '{0}' already exists")]
    Exists(SessionName),
    #[error("{0}")]
    Conflict(String),
    /// A report the store cannot take as it is (the caller's to fix).
    #[error("{0}")]
    Invalid(String),
    #[error(
        "session '{name}' has a live process, pid {pid}; stop it first, or clear its pid \
         (PATCH {{\"pid\": null}}) once it has ended"
    )]
    ProcessAlive { name: SessionName, pid: i64 },
    #[error(
        "the resource has changed: its version is now {current}, not the one in If-Match; \
         GET it again and retry with the new ETag"
    )]
    PreconditionFailed { current: super::Version },
    #[error("archived session '{0}' does not exist; GET /archive lists the archived sessions")]
    ArchiveNotFound(String),
    #[error("the archived session '{id}' is not fit to restore ({reason})")]
    ArchiveCorrupt { id: String, reason: String },
    #[error(
        "archived session '{id}' has a conversation ({conversation}), and Claude Code finds \
         a conversation by the path of the directory it ran in: under another name than \
         '{name}' it could not be resumed. Restore it under its own name"
    )]
    ConversationBound {
        id: String,
        name: SessionName,
        conversation: ConversationId,
    },
    #[error(
        "the process recorded for archived session '{id}', pid {pid}, is still alive and \
         runs in its directory; stop it first"
    )]
    ArchivedProcessAlive { id: String, pid: i64 },
    #[error("the entry '{name}' in the sessions directory is corrupt ({reason})")]
    Corrupt { name: String, reason: String },
    #[error("cannot open the sessions directory {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the sessions directory {} is locked by another session-manager ({holder}); \
         stop it first, or give this one another --sessions-dir",
        dir.display()
    )]
    Locked { dir: PathBuf, holder: String },
    /// The sessions directory is not the one this process locked any more.
    #[error("{0}")]
    Replaced(String),
    /// An entry of the store's own (such as `.archive`) is not what the store made.
    #[error("{0}")]
    Hostile(String),
    /// A write did not finish within its bound, or one that did not is still running.
    #[error("{}", stalled_detail(*.started, *.bound))]
    Stalled {
        /// Whether the write had started (and so may still be applied).
        started: bool,
        bound: Duration,
    },
    /// A write was refused at once because an earlier one is still running past its
    /// bound.
    #[error(
        "a write has been running for more than {} s, so the storage is not responding; \
         no write is taken until it finishes",
        .0.as_secs()
    )]
    Hung(Duration),
    #[error("no space left on the device that holds the sessions directory")]
    NoSpace(#[source] io::Error),
    #[error("the storage cannot be written ({0})")]
    Unavailable(#[source] io::Error),
    #[error("a store task failed: {0}")]
    Internal(String),
}

fn stalled_detail(started: bool, bound: Duration) -> String {
    let secs = bound.as_secs();
    if started {
        format!(
            "the write did not finish within {secs} s: the storage is not responding. It may \
             still be applied: GET the resource before you send it again"
        )
    } else {
        format!(
            "the write did not start within {secs} s because the storage is not responding; \
             it was not applied"
        )
    }
}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => StoreError::NoSpace(e),
            // Whatever else a write meets (a read-only or vanished directory, EIO, a
            // permission taken away) says the storage cannot take writes now.
            _ => StoreError::Unavailable(e),
        }
    }
}

impl From<tokio::task::JoinError> for StoreError {
    fn from(e: tokio::task::JoinError) -> Self {
        StoreError::Internal(e.to_string())
    }
}

impl StoreError {
    /// Whether this failure says the storage itself cannot take writes (and so is
    /// reported by `/healthz` until a write succeeds again).
    pub fn is_storage_failure(&self) -> bool {
        matches!(
            self,
            StoreError::NoSpace(_) | StoreError::Unavailable(_) | StoreError::Hostile(_)
        )
    }
}
