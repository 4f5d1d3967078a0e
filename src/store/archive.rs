//! The archive: deleted sessions under `.archive`, each moved there whole by a delete and
//! named by its [`ArchiveId`]. Read on demand, on the blocking pool (nothing in it is
//! served, so it is not indexed); restored as a session; removed for good; purged by age.
//!
//! `.archive` is read as the rest of the tree is: relative to its descriptor, never
//! through a symlink, files capped and checked to be regular files, reasons that name a
//! kind and never quote a file. An entry whose name is not an archive id is not listed,
//! but reported by `/healthz`; an archived session that is unfit (a symlink, a FIFO, a
//! `metadata.json` that is missing, too large, does not parse or names another session)
//! is listed with its `problem`: it can be removed, never restored.
//!
//! A restore is one write transaction: the new `metadata.json` is written beside the old
//! one ([`RESTORE_FILE`]), the directory moves back with a rename that replaces nothing
//! (both directories fsynced), then the new metadata moves over the old. A start-up (or
//! resync) scan finishes a restore interrupted between the two moves
//! ([`finish_restore`]), so the name in `metadata.json` always ends up equal to the
//! directory's. A removal renames the entry to a temp name inside a transaction and
//! removes the tree after it, so a large tree holds up no other write; what an
//! interrupted removal leaves is removed at the next start.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustix::fs::{AtFlags, FileType};

mod entries;

use entries::{alive, look, not_found, open_archive, read, read_metadata, unfinished, unfit};

use super::Store;
use super::error::StoreError;
use super::events::ChangeKind;
use super::fsio::{self, Refusal, TreeSize};
use super::index::Entry;
use super::layout::{ARCHIVE_DIR, METADATA_FILE, RESTORE_FILE};
use super::tx::Tx;
use crate::limits::{ARCHIVE_REMOVE_DEPTH, BODY_LIMIT};
use crate::model::{ArchiveId, Metadata, SessionName, Status, Timestamp, metadata_from_disk};
use crate::process::Liveness;

/// The base of the temp name an archived session is renamed to for its removal.
const REMOVING: &str = "removing";

/// A page of the archive, newest first.
#[derive(Debug, Default)]
pub struct ArchivePage {
    pub items: Vec<Archived>,
    /// The last id of the page, when more entries follow it.
    pub next: Option<ArchiveId>,
}

/// An archived session, as read just now.
#[derive(Debug)]
pub struct Archived {
    pub id: ArchiveId,
    /// Its `metadata.json`, when it is fit to restore.
    pub metadata: Option<Metadata>,
    pub size: TreeSize,
    /// Whether its recorded process still runs (`unknown` without readable metadata).
    pub process: Liveness,
    /// Why it is not fit to restore, if it is not.
    pub problem: Option<String>,
}

/// An archived session moved to a temp name, for its tree to be removed.
struct Detached {
    archive: OwnedFd,
    temp: String,
    id: ArchiveId,
}

impl Store {
    /// The archived sessions after `after` (in the archive's order, newest first), at
    /// most `limit` of them (all without one).
    pub async fn archive(
        &self,
        after: Option<ArchiveId>,
        limit: Option<usize>,
    ) -> Result<ArchivePage, StoreError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let Some(archive) = open_archive(&shared)? else {
                return Ok(ArchivePage::default());
            };
            let mut ids = look(&shared, archive.as_fd())?;
            ids.sort_unstable_by(|a, b| b.cmp(a));
            if let Some(after) = &after {
                ids.retain(|id| id < after);
            }
            let next = match limit {
                Some(limit) if ids.len() > limit => {
                    ids.truncate(limit);
                    ids.last().cloned()
                }
                _ => None,
            };
            let items = ids
                .into_iter()
                .filter_map(|id| read(&shared, archive.as_fd(), id))
                .collect();
            Ok(ArchivePage { items, next })
        })
        .await?
    }

    /// One archived session.
    pub async fn archived(&self, id: ArchiveId) -> Result<Archived, StoreError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let archive = open_archive(&shared)?.ok_or_else(|| not_found(&id))?;
            read(&shared, archive.as_fd(), id.clone()).ok_or_else(|| not_found(&id))
        })
        .await?
    }

    /// Moves an archived session back into the store, as `name` or under its own name,
    /// as a session no process runs in (`status` idle, `pid` and `pid_recorded` cleared,
    /// `last_active` now). Refused when the name is taken, when another name is asked
    /// for a session with a conversation, and while its recorded process is alive.
    pub async fn restore(
        &self,
        id: ArchiveId,
        name: Option<SessionName>,
    ) -> Result<Arc<Entry>, StoreError> {
        self.write("restore", move |tx| tx.restore(&id, name)).await
    }

    /// Removes an archived session for good, unless its recorded process is alive.
    pub async fn remove_archived(&self, id: ArchiveId) -> Result<(), StoreError> {
        let detached = self
            .write("remove_archived", move |tx| tx.detach_archived(&id))
            .await?;
        self.finish_removal(detached).await;
        Ok(())
    }

    /// Removes the archived sessions archived more than `keep` ago (those whose process
    /// is alive excepted), oldest first, each logged; returns their ids.
    pub async fn purge_archive(&self, keep: Duration) -> Result<Vec<ArchiveId>, StoreError> {
        let shared = self.shared.clone();
        let ids = tokio::task::spawn_blocking(move || match open_archive(&shared)? {
            Some(archive) => look(&shared, archive.as_fd()),
            None => Ok(Vec::new()),
        })
        .await??;
        let cutoff = SystemTime::now()
            .checked_sub(keep)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut expired: Vec<ArchiveId> = ids
            .into_iter()
            .filter(|id| id.archived().to_system_time() < cutoff)
            .collect();
        expired.sort_unstable();
        let keep_days = keep.as_secs() / (24 * 60 * 60);
        let mut purged = Vec::new();
        for id in expired {
            let detach = {
                let id = id.clone();
                move |tx: &mut Tx<'_>| tx.detach_archived(&id)
            };
            match self.write("purge_archive", detach).await {
                Ok(detached) => {
                    tracing::info!(archived = %id, keep_days, "purging an archived session older than the archive keeps");
                    self.finish_removal(detached).await;
                    purged.push(id);
                }
                Err(StoreError::ArchivedProcessAlive { pid, .. }) => {
                    tracing::info!(archived = %id, pid, "keeping an expired archived session: its process is alive");
                }
                // Restored or removed meanwhile.
                Err(StoreError::ArchiveNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(purged)
    }

    /// Removes the tree of a detached archived session, after its transaction: a failure
    /// is logged and reported by `/healthz`, and the removal is tried again at the next
    /// start.
    async fn finish_removal(&self, detached: Detached) {
        let shared = self.shared.clone();
        let removed = tokio::task::spawn_blocking(move || {
            let Detached { archive, temp, id } = detached;
            match fsio::remove_tree_at(archive.as_fd(), &temp, ARCHIVE_REMOVE_DEPTH) {
                Ok(()) => tracing::info!(archived = %id, "archived session removed"),
                Err(e) => unfinished(&shared, &temp, &format!("archived session '{id}'"), &e),
            }
        })
        .await;
        if let Err(e) = removed {
            tracing::error!(error = %e, "the removal of an archived session failed");
        }
    }

    /// At start-up: removes what interrupted removals left in `.archive`, and notes what
    /// in it is not an archived session.
    pub(super) fn sweep_archive(&self) {
        let shared = &self.shared;
        let Ok(Some(archive)) = open_archive(shared) else {
            return;
        };
        let names = fsio::entries(archive.as_fd()).unwrap_or_default();
        for temp in names.iter().filter(|n| n.starts_with(fsio::TEMP_PREFIX)) {
            match fsio::remove_tree_at(archive.as_fd(), temp, ARCHIVE_REMOVE_DEPTH) {
                Ok(()) => {
                    tracing::warn!(path = %format!("{ARCHIVE_DIR}/{temp}"), "removed what an interrupted removal of an archived session left")
                }
                Err(e) => unfinished(shared, temp, "an interrupted removal", &e),
            }
        }
        let _ = look(shared, archive.as_fd());
    }
}

impl Tx<'_> {
    /// Moves the archived session `id` back to `<sessions_dir>/<name>` (its own name by
    /// default), as a session no process runs in: `status` idle, `pid` and
    /// `pid_recorded` cleared, `last_active` now; every other field kept. Refused when
    /// the name is taken, when another name is asked for a session with a conversation,
    /// and while its recorded process is alive.
    pub fn restore(
        &mut self,
        id: &ArchiveId,
        name: Option<SessionName>,
    ) -> Result<Arc<Entry>, StoreError> {
        let archive = open_archive(self.shared)?.ok_or_else(|| not_found(id))?;
        let dir = match fsio::open_dir_at(&archive, id.as_str()) {
            Ok(dir) => dir,
            Err(Refusal::Missing) => return Err(not_found(id)),
            Err(e) if e.is_storage_failure() => return Err(e.into_io().into()),
            Err(e) => return Err(unfit(id, format!("the archived entry {e}"))),
        };
        let mut metadata = read_metadata(dir.as_fd(), id).map_err(|reason| unfit(id, reason))?;
        let name = name.unwrap_or_else(|| id.name().clone());
        match self.get(&name) {
            Err(StoreError::NotFound(_)) => {}
            Ok(_) | Err(StoreError::Corrupt { .. }) => return Err(StoreError::Exists(name)),
            Err(e) => return Err(e),
        }
        if name != metadata.name
            && let Some(conversation) = metadata.conversation
        {
            return Err(StoreError::ConversationBound {
                id: id.to_string(),
                name: metadata.name,
                conversation,
            });
        }
        if let Some(pid) = alive(self.shared, &metadata) {
            return Err(StoreError::ArchivedProcessAlive {
                id: id.to_string(),
                pid,
            });
        }
        metadata.name = name.clone();
        metadata.status = Status::Idle;
        metadata.pid = None;
        metadata.pid_recorded = None;
        metadata.last_active = Timestamp::now();
        fsio::replace_at(dir.as_fd(), RESTORE_FILE, &fsio::to_json_bytes(&metadata)?)?;
        let root = self.root().fd();
        match fsio::move_entry_at(archive.as_fd(), id.as_str(), root, name.as_str()) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let _ = rustix::fs::unlinkat(&dir, RESTORE_FILE, AtFlags::empty());
                return Err(StoreError::Exists(name));
            }
            other => other?,
        }
        fsio::move_at(dir.as_fd(), RESTORE_FILE, METADATA_FILE)?;
        tracing::info!(archived = %id, session = %name, "archived session restored");
        Ok(self.stage(ChangeKind::Restored, metadata))
    }

    /// Takes an archived session out of the archive, to a temp name in `.archive` whose
    /// tree is removed after the transaction; refused while its recorded process is
    /// alive (when its metadata can say).
    fn detach_archived(&mut self, id: &ArchiveId) -> Result<Detached, StoreError> {
        let archive = open_archive(self.shared)?.ok_or_else(|| not_found(id))?;
        let kind = match rustix::fs::statat(&archive, id.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => FileType::from_raw_mode(stat.st_mode),
            Err(rustix::io::Errno::NOENT) => return Err(not_found(id)),
            Err(e) => return Err(io::Error::from(e).into()),
        };
        if kind == FileType::Directory
            && let Ok(dir) = fsio::open_dir_at(&archive, id.as_str())
            && let Ok(metadata) = read_metadata(dir.as_fd(), id)
            && let Some(pid) = alive(self.shared, &metadata)
        {
            return Err(StoreError::ArchivedProcessAlive {
                id: id.to_string(),
                pid,
            });
        }
        let temp = fsio::temp_name(REMOVING);
        fsio::move_entry_at(archive.as_fd(), id.as_str(), archive.as_fd(), &temp)?;
        self.note_gone(ChangeKind::ArchiveRemoved, id.name());
        Ok(Detached {
            archive,
            temp,
            id: id.clone(),
        })
    }
}

/// Before a scan reads a session's `metadata.json`: a restore interrupted after its
/// directory moved back left its new metadata beside the old. It is moved into place
/// when it is a valid `metadata.json` naming this directory, removed otherwise.
pub(super) fn finish_restore(dir: BorrowedFd<'_>, file_name: &str) {
    let read = match fsio::read_capped_at(dir, RESTORE_FILE, BODY_LIMIT) {
        Err(Refusal::Missing) => return,
        read => read,
    };
    let path = format!("{file_name}/{RESTORE_FILE}");
    let fit = read
        .ok()
        .and_then(|bytes| metadata_from_disk(&bytes).ok())
        .is_some_and(|metadata| metadata.name.as_str() == file_name);
    let done = if fit {
        tracing::warn!(%path, "finishing an interrupted restore");
        fsio::move_at(dir, RESTORE_FILE, METADATA_FILE)
    } else {
        tracing::warn!(%path, "dropping a restore's metadata that does not fit the session");
        fsio::remove_tree_at(dir, RESTORE_FILE, 0)
    };
    if let Err(e) = done {
        tracing::warn!(%path, error = %e, "cannot settle an interrupted restore");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The changes announced so far, as (kind, name).
    fn drain(changes: &mut tokio::sync::broadcast::Receiver<super::super::Change>) -> Vec<String> {
        std::iter::from_fn(|| changes.try_recv().ok())
            .map(|c| {
                format!(
                    "{:?} {}",
                    c.kind,
                    c.name().map(|n| n.to_string()).unwrap_or_default()
                )
            })
            .collect()
    }

    #[test]
    fn a_restore_and_a_removal_are_announced_once_they_are_durable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let name = SessionName::parse("work").unwrap();
        runtime.block_on(async {
            store
                .create(name.clone(), None, serde_json::json!({}))
                .await
                .unwrap();
            store.delete(name.clone(), None).await.unwrap();
            let mut changes = store.subscribe();
            let id = store.archive(None, None).await.unwrap().items[0].id.clone();
            let restored = store.restore(id.clone(), None).await.unwrap();
            assert_eq!(restored.metadata.name, name);
            assert_eq!(store.version(), restored.version);
            assert_eq!(drain(&mut changes), ["Restored work"]);
            assert!(matches!(
                store.archived(id).await,
                Err(StoreError::ArchiveNotFound(_))
            ));

            store.delete(name.clone(), None).await.unwrap();
            let id = store.archive(None, Some(1)).await.unwrap().items[0]
                .id
                .clone();
            let before = store.version();
            store.remove_archived(id.clone()).await.unwrap();
            assert!(store.version() > before);
            assert_eq!(
                drain(&mut changes),
                ["Archived work", "ArchiveRemoved work"]
            );
            assert!(store.archive(None, None).await.unwrap().items.is_empty());
            let archive = dir.path().join(ARCHIVE_DIR);
            assert_eq!(std::fs::read_dir(archive).unwrap().count(), 0);
        });
    }
}
