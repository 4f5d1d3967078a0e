//! The change type: what a write transaction announces to subscribers once it is
//! durable and visible. Each kind has its name here, and only here: the change feed
//! (`GET /events`) sends it as the event's type.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use super::index::{Entry, Version};
use crate::model::SessionName;

/// One change, announced after it is durable.
#[derive(Debug, Clone)]
pub struct Change {
    /// The version of the transaction that made it.
    pub version: Version,
    pub kind: ChangeKind,
    pub subject: Subject,
}

impl Change {
    /// The session the change is about: for a switch, the new current one (none when
    /// the current session was cleared).
    pub fn name(&self) -> Option<&SessionName> {
        match &self.subject {
            Subject::Session(entry) => Some(&entry.metadata.name),
            Subject::Gone(name) => Some(name),
            Subject::Current { active, .. } => active.as_ref(),
        }
    }
}

/// What a change is about, which also decides what the feed says of it.
#[derive(Debug, Clone)]
pub enum Subject {
    /// A session's new state, as staged.
    Session(Arc<Entry>),
    /// A session that is no longer served.
    Gone(SessionName),
    /// The current session moved from `previous` to `active`.
    Current {
        previous: Option<SessionName>,
        active: Option<SessionName>,
    },
}

/// The kinds of change. To add one: a variant and its name in [`ChangeKind::name`],
/// then publish it from the store (`Tx::stage` for a kind that gives a session a new
/// state); the feed needs nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    Updated,
    PersonaReplaced,
    /// Deleted through the API: its directory moved under `.archive/`.
    Archived,
    /// No longer served although nobody deleted it: its directory vanished, or turned
    /// out unfit (a symlink, unreadable) and is listed as skipped by `/healthz`.
    Dropped,
    CurrentChanged,
    /// The session's recorded process was found gone (no write: an observation).
    ProcessGone,
    /// A usage report brought the session's spending to its budget.
    BudgetExhausted,
    /// An archived session came back as this session (`POST /archive/{id}/restore`).
    Restored,
    /// An archived session of this name was removed for good (`DELETE /archive/{id}`,
    /// or the purge of old ones).
    ArchiveRemoved,
}

impl ChangeKind {
    /// The kind's name, as the change feed sends it in `event:`.
    pub const fn name(self) -> &'static str {
        match self {
            ChangeKind::Created => "session.created",
            ChangeKind::Updated => "session.updated",
            ChangeKind::PersonaReplaced => "persona.updated",
            ChangeKind::Archived => "session.archived",
            ChangeKind::Dropped => "session.removed",
            ChangeKind::CurrentChanged => "session.switched",
            ChangeKind::ProcessGone => "session.process_gone",
            ChangeKind::BudgetExhausted => "session.budget_exhausted",
            ChangeKind::Restored => "session.restored",
            ChangeKind::ArchiveRemoved => "archive.removed",
        }
    }
}

/// The processes already announced as gone ([`ChangeKind::ProcessGone`]), by session and
/// pid: each is announced once.
#[derive(Debug, Default)]
pub struct Announced(pub Mutex<HashSet<(SessionName, i64)>>);
