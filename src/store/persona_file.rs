//! A session's own `persona.json`: read without following a symlink and capped (the file
//! lives where the CLI's shell can replace it), checked, and kept in memory with the
//! identity of the file it came from ([`FileId`]), so that while the file is unchanged
//! an answer costs two `stat`s, not a read, a parse and a serialisation. The session
//! directory it was read in is held open (at most [`KEPT`] of them): a kept file is
//! checked by a `stat` in that directory, and another of the directory's own name, since
//! a directory moved away and replaced is not the same one.
//!
//! A file that changed within the last [`SETTLED`] is not kept: its change time comes
//! from a coarse clock, so a second write in the same tick could leave the same identity
//! behind (the "racily clean" case); past that, any write moves it.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::error::StoreError;
use super::fsio::{self, FileId, Refusal};
use super::layout::PERSONA_FILE;
use crate::limits::BODY_LIMIT;
use crate::model::{Persona, SessionName};

/// How long after its last change a file is kept (see the module's comment).
const SETTLED: i128 = 1_000_000_000;

/// The most sessions whose persona is kept; past that, the cache starts over.
const KEPT: usize = 256;

/// A session's persona as read: the JSON its answer gives, and the persona it
/// describes (or why that is not valid, for the launch spec to say).
#[derive(Debug)]
pub struct SessionPersona {
    pub json: Bytes,
    pub persona: Result<Persona, String>,
}

/// The personas read, by session, each with the directory it was read in (held open)
/// and the identity of its file.
#[derive(Debug, Default)]
pub struct PersonaCache {
    kept: Mutex<HashMap<SessionName, Arc<Kept>>>,
}

#[derive(Debug)]
struct Kept {
    /// The session directory the file was read in, and its device and inode.
    dir: OwnedFd,
    dir_id: (u64, u64),
    file: FileId,
    persona: Arc<SessionPersona>,
}

impl PersonaCache {
    /// The kept persona of `name`, if the session's directory is still the one it was
    /// read in, and its file still the one read: two `stat`s, neither following a
    /// symlink.
    pub(super) fn get(
        &self,
        root: BorrowedFd<'_>,
        name: &SessionName,
    ) -> Option<Arc<SessionPersona>> {
        let kept = self.lock().get(name).cloned()?;
        (fsio::dir_id_at(root, name.as_str()) == Some(kept.dir_id)
            && fsio::file_id_at(kept.dir.as_fd(), PERSONA_FILE) == Some(kept.file))
        .then(|| kept.persona.clone())
    }

    fn keep(&self, name: &SessionName, kept: Kept) {
        let mut all = self.lock();
        if all.len() >= KEPT && !all.contains_key(name) {
            all.clear();
        }
        all.insert(name.clone(), Arc::new(kept));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionName, Arc<Kept>>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Reads the session's `persona.json` in the sessions directory `root` (on the blocking
/// pool: the caller's job), and keeps it in `cache` when the file was the same before
/// and after the read and has settled. A file that is not a regular file within the
/// cap, or not a valid persona, is a corrupt entry whose reason names the kind of
/// problem, unless `listed` says the session is gone meanwhile.
pub(super) fn read(
    root: BorrowedFd<'_>,
    cache: &PersonaCache,
    name: &SessionName,
    listed: impl FnOnce() -> Result<(), StoreError>,
) -> Result<Arc<SessionPersona>, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        name: format!("{name}/{PERSONA_FILE}"),
        reason,
    };
    let dir = match fsio::open_dir_at(root, name.as_str()) {
        Ok(dir) => dir,
        // A session being deleted has left the tree before the index forgets it:
        // without its directory it is gone, not corrupt.
        Err(Refusal::Missing) => return Err(StoreError::NotFound(name.clone())),
        Err(e) if e.is_storage_failure() => return Err(e.into_io().into()),
        Err(e) => return Err(corrupt(format!("the session directory {e}"))),
    };
    let before = fsio::file_id_at(dir.as_fd(), PERSONA_FILE);
    let bytes = match fsio::read_capped_at(dir.as_fd(), PERSONA_FILE, BODY_LIMIT) {
        Ok(bytes) => bytes,
        Err(e) if e.is_storage_failure() => return Err(e.into_io().into()),
        Err(e) => {
            listed()?;
            return Err(corrupt(format!("{PERSONA_FILE} {e}")));
        }
    };
    let value = crate::model::persona_from_disk(&bytes)
        .map_err(|e| corrupt(format!("{PERSONA_FILE} is not a valid persona: {e}")))?;
    let json = serde_json::to_vec(&value).expect("a JSON value serialises");
    let persona = Arc::new(SessionPersona {
        json: Bytes::from(json),
        persona: Persona::from_value(value),
    });
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    if let Some(file) = before
        && fsio::file_id_at(dir.as_fd(), PERSONA_FILE) == Some(file)
        && now - file.changed_nanos() >= SETTLED
        && let Some(dir_id) = fsio::dir_id(&dir)
    {
        let persona = persona.clone();
        cache.keep(
            name,
            Kept {
                dir,
                dir_id,
                file,
                persona,
            },
        );
    }
    Ok(persona)
}
