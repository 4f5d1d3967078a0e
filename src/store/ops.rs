//! The writes, each one transaction that keeps the rules of SPEC §3: create, update,
//! delete, switch, clear the current session, replace a session's persona, and the
//! settling of a switch that a crash interrupted.

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::error::StoreError;
use super::events::ChangeKind;
use super::failpoint;
use super::fsio;
use super::fsio::Refusal;
use super::index::Entry;
use super::index::IfMatch;
use super::layout::{self, ARCHIVE_DIR, PENDING_PERSONA_FILE, PERSONA_FILE, Pointer};
use super::tx::Tx;
use crate::model::{
    CUSTOM_PERSONA, Metadata, MetadataPatch, Persona, SessionName, Status, Timestamp,
};
use crate::process::Liveness;

/// The result of a switch, or of clearing the current session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Switched {
    pub previous: Option<SessionName>,
    pub active: Option<SessionName>,
    pub changed: bool,
}

impl Tx<'_> {
    /// Refuses the write when the session is not at a version `if_match` allows:
    /// checked inside the transaction, so no other write can come between.
    pub fn precondition(
        &self,
        name: &SessionName,
        if_match: Option<&IfMatch>,
    ) -> Result<(), StoreError> {
        let Some(if_match) = if_match else {
            return Ok(());
        };
        let current = self.get(name)?.version;
        if if_match.allows(current) {
            Ok(())
        } else {
            Err(StoreError::PreconditionFailed { current })
        }
    }

    /// [`precondition`](Self::precondition) for `/sessions/active`.
    pub fn precondition_current(&self, if_match: Option<&IfMatch>) -> Result<(), StoreError> {
        let Some(if_match) = if_match else {
            return Ok(());
        };
        let current = self.current_version();
        if if_match.allows(current) {
            Ok(())
        } else {
            Err(StoreError::PreconditionFailed { current })
        }
    }

    /// Sets a session's status (and `last_active`, when given) if it differs.
    pub fn set_status(
        &mut self,
        name: &SessionName,
        status: Status,
        last_active: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        let entry = self.get(name)?;
        let mut metadata = entry.metadata.clone();
        metadata.status = status;
        if let Some(at) = last_active {
            metadata.last_active = at;
        }
        if metadata != entry.metadata {
            self.write_metadata(metadata, ChangeKind::Updated)?;
        }
        Ok(())
    }

    /// Finishes a switch that was committed but not completed (a crash, or a failed
    /// write after the commit point), and drops a pointer to a session that is gone;
    /// first settles a rename whose write failed.
    pub fn settle(&mut self) -> Result<(), StoreError> {
        self.settle_rename()?;
        let pointer = self.pointer();
        let Some(target) = pointer.name.clone() else {
            return Ok(());
        };
        let Ok(entry) = self.get(&target) else {
            tracing::warn!(session = %target, "the current session is gone; none is current now");
            return self.write_pointer(Pointer::default());
        };
        let Some(since) = pointer.since else {
            return Ok(());
        };
        // Complete when the target carries the switch's time and the session it left is
        // no longer active: a batch writes the two at once, so either may be missing.
        let left_active = pointer
            .previous
            .as_ref()
            .filter(|p| **p != target)
            .is_some_and(|p| {
                self.get(p)
                    .is_ok_and(|e| e.metadata.status == Status::Active)
            });
        if entry.metadata.last_active == since && !left_active {
            return Ok(());
        }
        tracing::warn!(session = %target, previous = ?pointer.previous, "finishing an interrupted switch");
        self.apply_switch(&target, pointer.previous.as_ref(), since)
    }

    /// The two metadata writes of a switch, after its pointer is durable.
    fn apply_switch(
        &mut self,
        target: &SessionName,
        previous: Option<&SessionName>,
        since: Timestamp,
    ) -> Result<(), StoreError> {
        let was_active = |entry: Arc<Entry>| entry.metadata.status == Status::Active;
        if let Some(previous) = previous.filter(|p| *p != target)
            && self.get(previous).is_ok_and(was_active)
        {
            match self.set_status(previous, Status::Suspended, None) {
                // The previous session left the tree, or stopped being a real directory,
                // while it was current: it is not served any more, nothing to suspend.
                Err(StoreError::NotFound(_) | StoreError::Corrupt { .. }) => {}
                other => other?,
            }
        }
        if self.deferred.is_none() {
            failpoint::hit(failpoint::Step::SwitchHalfway)?;
        }
        self.set_status(target, Status::Active, Some(since))
    }

    /// Moves a session directory built by [`fsio::build_dir`] into place.
    pub fn create(
        &mut self,
        metadata: Metadata,
        staged: fsio::StagedDir,
    ) -> Result<Arc<Entry>, StoreError> {
        let name = metadata.name.clone();
        match self.get(&name) {
            Ok(_) => return Err(StoreError::Exists(name)),
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        match fsio::publish_dir(staged, name.as_str()) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StoreError::Exists(name));
            }
            other => other?,
        }
        Ok(self.stage(ChangeKind::Created, metadata))
    }

    pub fn update(
        &mut self,
        name: &SessionName,
        patch: &MetadataPatch,
    ) -> Result<Arc<Entry>, StoreError> {
        let entry = self.get(name)?;
        let is_current = self.pointer().name.as_ref() == Some(name);
        match patch.status() {
            Some(Status::Active) if !is_current => {
                return Err(StoreError::Conflict(format!(
                    "session '{name}' is not the current session, so it cannot be 'active'; \
                     make it current with PUT /sessions/active"
                )));
            }
            Some(Status::Suspended) if is_current => {
                return Err(StoreError::Conflict(format!(
                    "session '{name}' is the current session, so it cannot be 'suspended'; \
                     switch to another session first, or clear it with DELETE /sessions/active"
                )));
            }
            _ => {}
        }
        let recorded = &entry.metadata;
        if let (Some(new), Some(old)) = (patch.pid(), recorded.pid)
            && new != old
            && self.shared.probe.check(Some(old), recorded.pid_recorded) == Liveness::Alive
        {
            return Err(StoreError::ProcessAlive {
                name: name.clone(),
                pid: old,
            });
        }
        let mut metadata = entry.metadata.clone();
        patch.apply(&mut metadata, Timestamp::now());
        if metadata == entry.metadata {
            return Ok(entry);
        }
        self.write_metadata(metadata, ChangeKind::Updated)
    }

    pub fn delete(&mut self, name: &SessionName) -> Result<(), StoreError> {
        self.get(name)?;
        let archive = match fsio::ensure_dir_at(self.root().fd(), ARCHIVE_DIR) {
            Ok(fd) => fd,
            Err(refusal) if refusal.is_storage_failure() || matches!(refusal, Refusal::Missing) => {
                return Err(refusal.into_io().into());
            }
            Err(refusal) => {
                return Err(StoreError::Hostile(format!(
                    "the archive {ARCHIVE_DIR} in the sessions directory {refusal}, so no                      session can be archived; an operator must remove it"
                )));
            }
        };
        // Refuses (and stops serving) a session whose directory became a symlink.
        drop(self.open_session(name)?);
        let archived = layout::archive_name(name, Timestamp::now());
        fsio::move_entry_at(self.root().fd(), name.as_str(), archive.as_fd(), &archived)?;
        tracing::info!(session = %name, archived = %format!("{ARCHIVE_DIR}/{archived}"), "session archived");
        self.stage_removal(ChangeKind::Archived, name);
        if self.pointer().name.as_ref() == Some(name) {
            self.write_pointer(Pointer::default())?;
        }
        Ok(())
    }

    pub fn switch(&mut self, name: &SessionName) -> Result<Switched, StoreError> {
        self.get(name)?;
        // Before the commit point: a target that vanished or became a symlink is refused.
        drop(self.open_session(name)?);
        let previous = self.pointer().name;
        if previous.as_ref() == Some(name) {
            return Ok(Switched {
                previous: None,
                active: Some(name.clone()),
                changed: false,
            });
        }
        let since = Timestamp::now();
        self.write_pointer(Pointer {
            name: Some(name.clone()),
            since: Some(since),
            previous: previous.clone(),
        })?;
        self.apply_switch(name, previous.as_ref(), since)?;
        Ok(Switched {
            previous,
            active: Some(name.clone()),
            changed: true,
        })
    }

    pub fn clear_current(&mut self) -> Result<Switched, StoreError> {
        let Some(previous) = self.pointer().name else {
            return Ok(Switched {
                previous: None,
                active: None,
                changed: false,
            });
        };
        self.write_pointer(Pointer::default())?;
        if self.get(&previous)?.metadata.status == Status::Active {
            self.set_status(&previous, Status::Suspended, None)?;
        }
        Ok(Switched {
            previous: Some(previous),
            active: None,
            changed: true,
        })
    }

    /// Two files change, so the new persona is first staged beside the old one; the
    /// metadata that says "custom" is the commit point; then the persona moves into
    /// place. Start-up finishes a staged persona whose metadata says "custom" and drops
    /// any other, so a crash leaves the replacement whole or absent, never a custom
    /// persona under metadata that names a library key.
    pub fn replace_persona(
        &mut self,
        name: &SessionName,
        persona: &Persona,
    ) -> Result<(Value, Arc<Entry>), StoreError> {
        let entry = self.get(name)?;
        let stored =
            serde_json::to_value(persona).map_err(|e| StoreError::Internal(e.to_string()))?;
        let budget = crate::model::persona_budget(&stored);
        let dir = self.open_session(name)?;
        fsio::replace_at(
            dir.as_fd(),
            PENDING_PERSONA_FILE,
            &fsio::to_json_bytes(&stored)?,
        )?;
        let mut metadata = entry.metadata.clone();
        metadata.persona = Some(CUSTOM_PERSONA.to_owned());
        if budget.is_some() {
            metadata.budget_usd = budget;
        }
        let entry = self.write_metadata(metadata, ChangeKind::PersonaReplaced)?;
        fsio::move_at(dir.as_fd(), PENDING_PERSONA_FILE, PERSONA_FILE)?;
        Ok((stored, entry))
    }
}
