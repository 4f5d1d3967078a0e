//! Renaming a session (`POST /sessions/{name}/rename`), and finishing or undoing a
//! rename that a crash or a failed write interrupted.
//!
//! A rename moves the session's directory. The Claude Code CLI finds a conversation by
//! the directory it was started in, so only a session that has never had one, and whose
//! process is not running, may be renamed; the others get a title instead.
//!
//! Two entries change (the directory's name and the `name` in its `metadata.json`, which
//! must be equal), and the pointer too when the session is current. So:
//! 1. `.rename.json` records the intent `{from, to}`;
//! 2. `from/metadata.json` is rewritten with the new name (and `from` appended to
//!    `previous_names`): `from` now holds metadata that names `to`;
//! 3. the directory is renamed `from` → `to`, refusing to replace anything: the
//!    commit point, after which the directory and its metadata agree again;
//! 4. `.current.json` follows, if it named `from`;
//! 5. the intent is removed.
//!
//! With an intent left over, start-up (before the scan, which would otherwise skip
//! `from` as naming another session) and the next write look at the tree: `from` holding
//! metadata that names `to` is undone (its metadata restored), `to` holding the renamed
//! metadata is finished (the pointer follows); then the intent goes.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use super::Store;
use super::error::StoreError;
use super::events::ChangeKind;
use super::fsio::{self, Refusal};
use super::index::{Entry, IfMatch};
use super::layout::{CURRENT_FILE, METADATA_FILE, Pointer, RENAME_FILE};
use super::lock::Root;
use super::tx::Tx;
use crate::limits::BODY_LIMIT;
use crate::model::{MAX_PREVIOUS_NAMES, Metadata, SessionName, Status};
use crate::process::Liveness;

/// `.rename.json`: a rename under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Intent {
    from: SessionName,
    to: SessionName,
}

impl Store {
    /// Renames a session that may be renamed (see the module's documentation): its
    /// directory moves, and `previous_names` records the name it had.
    pub async fn rename(
        &self,
        from: SessionName,
        to: SessionName,
        if_match: Option<IfMatch>,
    ) -> Result<Arc<Entry>, StoreError> {
        self.write("rename", move |tx| {
            tx.precondition(&from, if_match.as_ref())?;
            tx.rename(&from, &to)
        })
        .await
    }
}

/// Why a session may not be renamed, each reason in words; empty when it may.
fn refusals(metadata: &Metadata, process: Liveness) -> Vec<String> {
    let mut why = Vec::new();
    if metadata.status != Status::Idle {
        why.push(format!(
            "its status is '{}' (only an idle session can be renamed)",
            metadata.status.as_str()
        ));
    }
    let pid = metadata.pid.unwrap_or_default();
    match process {
        Liveness::Alive => why.push(format!("its process, pid {pid}, is running")),
        Liveness::Unknown => why.push(format!(
            "its process, pid {pid}, cannot be checked from here; clear the pid (PATCH \
             {{\"pid\": null}}) once the process has ended"
        )),
        Liveness::None | Liveness::Gone => {}
    }
    if metadata.conversation.is_some() || !metadata.conversations.is_empty() {
        why.push(
            "it has a Claude Code conversation, which the CLI finds by the session \
             directory's path, so it could not be resumed after a rename"
                .to_owned(),
        );
    }
    why
}

impl Tx<'_> {
    pub fn rename(
        &mut self,
        from: &SessionName,
        to: &SessionName,
    ) -> Result<Arc<Entry>, StoreError> {
        let entry = self.get(from)?;
        let metadata = &entry.metadata;
        let process = self.shared.probe.check(metadata.pid, metadata.pid_recorded);
        let why = refusals(metadata, process);
        if !why.is_empty() {
            return Err(StoreError::NotRenamable {
                name: from.clone(),
                reasons: why.join("; "),
            });
        }
        match self.get(to) {
            Ok(_) => return Err(StoreError::Exists(to.clone())),
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let dir = self.open_session(from)?;
        let intent = Intent {
            from: from.clone(),
            to: to.clone(),
        };
        let bytes = fsio::to_json_bytes(&intent)?;
        let result = fsio::replace_at(self.root().fd(), RENAME_FILE, &bytes)
            .map_err(StoreError::from)
            .and_then(|()| self.apply_rename(&intent, &entry.metadata, &dir));
        if result.is_err() {
            // Settled by the next write (or start-up), once the storage takes writes.
            self.shared.rename_pending.store(true, Ordering::Release);
        }
        result
    }

    /// Steps 2 to 5 of a rename, after its intent is durable.
    fn apply_rename(
        &mut self,
        intent: &Intent,
        metadata: &Metadata,
        dir: &OwnedFd,
    ) -> Result<Arc<Entry>, StoreError> {
        let renamed = renamed(metadata, &intent.to);
        fsio::replace_at(dir.as_fd(), METADATA_FILE, &fsio::to_json_bytes(&renamed)?)?;
        let root = self.root().fd();
        match fsio::move_entry_at(root, intent.from.as_str(), root, intent.to.as_str()) {
            // Taken on disk though not in the index (an entry someone else made).
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let restored = metadata.clone();
                if undo(dir.as_fd(), &restored).is_ok() {
                    let _ = remove_intent(self.root());
                }
                return Err(StoreError::Exists(intent.to.clone()));
            }
            other => other?,
        }
        tracing::info!(from = %intent.from, to = %intent.to, "session renamed");
        self.finish(intent, renamed)
    }

    /// Steps 4 and 5, after the commit point; stages the renamed session.
    fn finish(&mut self, intent: &Intent, renamed: Metadata) -> Result<Arc<Entry>, StoreError> {
        self.stage_removal(ChangeKind::RenamedAway, &intent.from);
        let entry = self.stage(ChangeKind::Created, renamed);
        let pointer = self.pointer();
        if pointer.name.as_ref() == Some(&intent.from) {
            self.write_pointer(Pointer {
                name: Some(intent.to.clone()),
                ..pointer
            })?;
        }
        remove_intent(self.root())?;
        Ok(entry)
    }

    /// Finishes or undoes a rename whose write failed, once the storage takes writes
    /// again (called before every write while one is pending).
    pub fn settle_rename(&mut self) -> Result<(), StoreError> {
        if !self.shared.rename_pending.load(Ordering::Acquire) {
            return Ok(());
        }
        if let Some(intent) = read_intent(self.root())? {
            match inspect(self.root().fd(), &intent) {
                Leftover::Undo { dir, restored } => {
                    undo(dir.as_fd(), &restored)?;
                    self.stage(ChangeKind::Updated, restored);
                }
                Leftover::Committed(renamed) => {
                    self.finish(&intent, renamed)?;
                }
                Leftover::Nothing => {}
            }
            remove_intent(self.root())?;
        }
        self.shared.rename_pending.store(false, Ordering::Release);
        Ok(())
    }
}

/// `metadata` under its new name, with the name it had recorded.
fn renamed(metadata: &Metadata, to: &SessionName) -> Metadata {
    let mut renamed = metadata.clone();
    renamed.previous_names.push(metadata.name.clone());
    let excess = renamed
        .previous_names
        .len()
        .saturating_sub(MAX_PREVIOUS_NAMES);
    renamed.previous_names.drain(..excess);
    renamed.name = to.clone();
    renamed
}

/// What an interrupted rename left in the tree.
enum Leftover {
    /// `from` holds the metadata that names `to`: the rename did not commit.
    Undo { dir: OwnedFd, restored: Metadata },
    /// `to` holds the renamed metadata and `from` is gone: it committed.
    Committed(Metadata),
    /// Neither: nothing written yet, or the tree changed since.
    Nothing,
}

fn inspect(root: BorrowedFd<'_>, intent: &Intent) -> Leftover {
    let read = |name: &SessionName| -> Option<(OwnedFd, Metadata)> {
        let dir = fsio::open_dir_at(root, name.as_str()).ok()?;
        let bytes = fsio::read_capped_at(&dir, METADATA_FILE, BODY_LIMIT).ok()?;
        let metadata = crate::model::metadata_from_disk(&bytes).ok()?;
        Some((dir, metadata))
    };
    let renamed_from =
        |m: &Metadata| m.name == intent.to && m.previous_names.last() == Some(&intent.from);
    match read(&intent.from) {
        Some((dir, metadata)) if renamed_from(&metadata) => {
            let mut restored = metadata;
            restored.previous_names.pop();
            restored.name = intent.from.clone();
            Leftover::Undo { dir, restored }
        }
        Some(_) => Leftover::Nothing,
        None => match read(&intent.to) {
            Some((_, metadata)) if renamed_from(&metadata) => Leftover::Committed(metadata),
            _ => Leftover::Nothing,
        },
    }
}

fn undo(dir: BorrowedFd<'_>, restored: &Metadata) -> std::io::Result<()> {
    tracing::warn!(session = %restored.name, "undoing a rename that did not complete");
    fsio::replace_at(dir, METADATA_FILE, &fsio::to_json_bytes(restored)?)
}

/// The intent left over, if any. One that is not ours (unreadable, or not an intent)
/// is removed: it names nothing to finish.
fn read_intent(root: &Root) -> Result<Option<Intent>, StoreError> {
    let bytes = match fsio::read_capped_at(root.fd(), RENAME_FILE, BODY_LIMIT) {
        Ok(bytes) => bytes,
        Err(Refusal::Missing) => return Ok(None),
        Err(e) if e.is_storage_failure() => return Err(e.into_io().into()),
        Err(e) => {
            tracing::warn!("{RENAME_FILE} {e}; removing it");
            remove_intent(root)?;
            return Ok(None);
        }
    };
    match crate::model::from_disk(&bytes) {
        Ok(intent) => Ok(Some(intent)),
        Err(e) => {
            tracing::warn!("{RENAME_FILE} does not parse ({e}); removing it");
            remove_intent(root)?;
            Ok(None)
        }
    }
}

fn remove_intent(root: &Root) -> Result<(), StoreError> {
    match rustix::fs::unlinkat(root.fd(), RENAME_FILE, rustix::fs::AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
        // A directory planted under the name: not ours to empty.
        Err(rustix::io::Errno::ISDIR) => return Ok(()),
        Err(e) => return Err(std::io::Error::from(e).into()),
    }
    Ok(fsio::sync(root.fd())?)
}

/// At start-up, before the scan: finishes or undoes a rename a crash interrupted, on
/// disk (the pointer included), so that the scan reads a tree where every directory and
/// its metadata agree.
pub(super) fn recover(root: &Root) -> Result<(), StoreError> {
    let Some(intent) = read_intent(root)? else {
        return Ok(());
    };
    match inspect(root.fd(), &intent) {
        Leftover::Undo { dir, restored } => undo(dir.as_fd(), &restored)?,
        Leftover::Committed(_) => {
            tracing::warn!(from = %intent.from, to = %intent.to, "finishing an interrupted rename");
            let pointer = fsio::read_capped_at(root.fd(), CURRENT_FILE, BODY_LIMIT)
                .ok()
                .and_then(|bytes| crate::model::from_disk::<Pointer>(&bytes).ok());
            if let Some(pointer) = pointer.filter(|p| p.name.as_ref() == Some(&intent.from)) {
                let moved = Pointer {
                    name: Some(intent.to.clone()),
                    ..pointer
                };
                fsio::replace_at(root.fd(), CURRENT_FILE, &fsio::to_json_bytes(&moved)?)?;
            }
        }
        Leftover::Nothing => {
            tracing::warn!(from = %intent.from, to = %intent.to, "dropping the record of a rename that wrote nothing");
        }
    }
    remove_intent(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ConversationId, Timestamp};

    fn idle(name: &str) -> Metadata {
        Metadata::new(SessionName::parse(name).unwrap(), None, Timestamp::now())
    }

    #[test]
    fn only_an_idle_session_without_process_or_conversation_may_be_renamed() {
        assert!(refusals(&idle("a"), Liveness::None).is_empty());
        assert!(refusals(&idle("a"), Liveness::Gone).is_empty());
        let mut m = idle("a");
        m.status = Status::Active;
        m.pid = Some(42);
        m.conversation = Some(ConversationId::generate());
        let why = refusals(&m, Liveness::Alive);
        assert_eq!(why.len(), 3, "{why:?}");
        assert_eq!(
            why[0],
            "its status is 'active' (only an idle session can be renamed)"
        );
        assert_eq!(why[1], "its process, pid 42, is running");
        assert!(why[2].starts_with("it has a Claude Code conversation"));
        assert!(refusals(&idle("a"), Liveness::Unknown)[0].contains("cannot be checked"));
    }

    #[test]
    fn a_renamed_session_records_at_most_100_previous_names() {
        let mut m = idle("a0");
        for i in 1..=105 {
            m = renamed(&m, &SessionName::parse(&format!("a{i}")).unwrap());
        }
        assert_eq!(m.name.as_str(), "a105");
        assert_eq!(m.previous_names.len(), MAX_PREVIOUS_NAMES);
        assert_eq!(m.previous_names[0].as_str(), "a5");
        assert_eq!(m.previous_names[99].as_str(), "a104");
    }
}
