//! [`StoreError`]: what went wrong in the store, by cause. The HTTP layer maps each to
//! an answer; nothing here knows about status codes.

use std::io;
use std::path::PathBuf;

use crate::model::SessionName;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session '{0}' does not exist")]
    NotFound(SessionName),
    #[error("session '{0}' already exists")]
    Exists(SessionName),
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

impl From<tokio::task::JoinError> for StoreError {
    fn from(e: tokio::task::JoinError) -> Self {
        StoreError::Internal(e.to_string())
    }
}

impl StoreError {
    /// Whether this failure says the storage itself cannot take writes.
    pub fn is_storage_failure(&self) -> bool {
        matches!(
            self,
            StoreError::NoSpace(_) | StoreError::Unavailable(_) | StoreError::Io(_)
        )
    }
}
