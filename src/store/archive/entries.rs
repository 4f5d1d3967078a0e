//! Reading `.archive`: opening it, the names in it (and the foreign ones, for
//! `/healthz`), an archived session and its `metadata.json`, each without following a
//! symlink and with reasons that quote nothing.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::Archived;
use crate::limits::{ARCHIVE_SIZE_DEPTH, ARCHIVE_SIZE_ENTRIES, BODY_LIMIT};
use crate::model::{ArchiveId, Metadata, metadata_from_disk};
use crate::process::Liveness;
use crate::store::error::StoreError;
use crate::store::fsio::{self, Refusal, TreeSize};
use crate::store::index::Skipped;
use crate::store::layout::{ARCHIVE_DIR, METADATA_FILE};
use crate::store::tx::Shared;

pub(super) fn not_found(id: &ArchiveId) -> StoreError {
    StoreError::ArchiveNotFound(id.to_string())
}

pub(super) fn unfit(id: &ArchiveId, reason: String) -> StoreError {
    StoreError::ArchiveCorrupt {
        id: id.to_string(),
        reason,
    }
}

/// The recorded pid, when that process is alive.
pub(super) fn alive(shared: &Shared, metadata: &Metadata) -> Option<i64> {
    let liveness = shared.probe.check(metadata.pid, metadata.pid_recorded);
    metadata.pid.filter(|_| liveness == Liveness::Alive)
}

/// `.archive`, or `None` when there is none yet. One that is not a real directory is
/// reported by `/healthz` and refused: nothing in it is read.
pub(super) fn open_archive(shared: &Shared) -> Result<Option<OwnedFd>, StoreError> {
    match fsio::open_dir_at(shared.root.fd(), ARCHIVE_DIR) {
        Ok(archive) => Ok(Some(archive)),
        Err(Refusal::Missing) => {
            note_foreign(shared, BTreeMap::new());
            Ok(None)
        }
        Err(e) if e.is_storage_failure() => Err(e.into_io().into()),
        Err(e) => {
            let reason =
                format!("{e}; no session can be archived or restored until an operator removes it");
            let path = shared.root.path().join(ARCHIVE_DIR);
            note_foreign(
                shared,
                BTreeMap::from([(ARCHIVE_DIR.to_owned(), Skipped { path, reason })]),
            );
            Err(StoreError::Hostile(format!(
                "the archive {ARCHIVE_DIR} in the sessions directory {e}; an operator must remove it"
            )))
        }
    }
}

/// The archived sessions in `archive`, by name alone. Entries whose name is not an
/// archive id are noted for `/healthz`; temp names (removals under way) are left out.
pub(super) fn look(shared: &Shared, archive: BorrowedFd<'_>) -> Result<Vec<ArchiveId>, StoreError> {
    let names = fsio::entries(archive)?;
    let mut ids = Vec::with_capacity(names.len());
    let mut foreign = BTreeMap::new();
    for name in names {
        if name.starts_with(fsio::TEMP_PREFIX) {
            continue;
        }
        match ArchiveId::parse(&name) {
            Ok(id) => ids.push(id),
            Err(e) => {
                let skipped = Skipped {
                    path: shared.root.path().join(ARCHIVE_DIR).join(&name),
                    reason: format!("not an archived session: {e}"),
                };
                foreign.insert(format!("{ARCHIVE_DIR}/{name}"), skipped);
            }
        }
    }
    note_foreign(shared, foreign);
    Ok(ids)
}

/// Replaces what `/healthz` says about `.archive`'s foreign entries (removals that did
/// not finish stay reported); a new one is logged once.
pub(super) fn note_foreign(shared: &Shared, foreign: BTreeMap<String, Skipped>) {
    let mut index = shared.index.write().unwrap_or_else(|e| e.into_inner());
    let known = &mut index.archive_skipped;
    for (key, skipped) in &foreign {
        if !known.contains_key(key) {
            tracing::warn!(path = %skipped.path.display(), reason = %skipped.reason, "skipping an entry of the archive");
        }
    }
    known.retain(|key, _| is_unfinished(key));
    known.extend(foreign);
}

pub(super) fn is_unfinished(key: &str) -> bool {
    key.strip_prefix(ARCHIVE_DIR)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|name| name.starts_with(fsio::TEMP_PREFIX))
}

/// Logs and reports a removal that did not finish; `what` names what it removed.
pub(super) fn unfinished(shared: &Shared, temp: &str, what: &str, error: &io::Error) {
    let path = shared.root.path().join(ARCHIVE_DIR).join(temp);
    tracing::warn!(path = %path.display(), %error, "{what} could not be removed whole");
    let reason = format!(
        "the removal of {what} did not finish ({error}); it is tried again at the next start"
    );
    let mut index = shared.index.write().unwrap_or_else(|e| e.into_inner());
    let key = format!("{ARCHIVE_DIR}/{temp}");
    index.archive_skipped.insert(key, Skipped { path, reason });
}

/// Reads the archived session `id`, or `None` when it is gone.
pub(super) fn read(shared: &Shared, archive: BorrowedFd<'_>, id: ArchiveId) -> Option<Archived> {
    let nothing = TreeSize {
        bytes: 0,
        complete: true,
    };
    let dir = match fsio::open_dir_at(archive, id.as_str()) {
        Ok(dir) => dir,
        Err(Refusal::Missing) => return None,
        Err(e) => {
            return Some(Archived {
                id,
                metadata: None,
                size: nothing,
                process: Liveness::Unknown,
                problem: Some(format!("the archived entry {e}")),
            });
        }
    };
    let metadata = read_metadata(dir.as_fd(), &id);
    let size = fsio::tree_size(dir, ARCHIVE_SIZE_DEPTH, ARCHIVE_SIZE_ENTRIES);
    Some(match metadata {
        Ok(metadata) => Archived {
            process: shared.probe.check(metadata.pid, metadata.pid_recorded),
            id,
            metadata: Some(metadata),
            size,
            problem: None,
        },
        Err(problem) => Archived {
            id,
            metadata: None,
            size,
            process: Liveness::Unknown,
            problem: Some(problem),
        },
    })
}

/// An archived session's `metadata.json`, which must name the session its id does; why
/// not, in words that quote nothing from it.
pub(super) fn read_metadata(dir: BorrowedFd<'_>, id: &ArchiveId) -> Result<Metadata, String> {
    let bytes = fsio::read_capped_at(dir, METADATA_FILE, BODY_LIMIT)
        .map_err(|e| format!("{METADATA_FILE} {e}"))?;
    let metadata =
        metadata_from_disk(&bytes).map_err(|e| format!("{METADATA_FILE} does not parse: {e}"))?;
    if metadata.name != *id.name() {
        return Err(format!(
            "{METADATA_FILE} names another session than its archive id"
        ));
    }
    Ok(metadata)
}
