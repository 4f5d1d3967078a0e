//! The change type: what a write transaction announces to subscribers once it is
//! durable and visible.

use super::index::Version;
use crate::model::SessionName;

/// One change, announced after it is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The version of the transaction that made it.
    pub version: Version,
    pub kind: ChangeKind,
    pub name: Option<SessionName>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    Updated,
    PersonaReplaced,
    Deleted,
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
