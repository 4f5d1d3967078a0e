//! Where things are in `<sessions_dir>`: the file names, how an archived session is
//! named, and `.current.json`, the pointer to the current session.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{ArchiveId, SessionName, Timestamp};

pub const METADATA_FILE: &str = "metadata.json";
pub const PERSONA_FILE: &str = "persona.json";
/// A replacement `persona.json`, durable but not in effect until the metadata that says
/// "custom" is (see `Tx::replace_persona`).
pub const PENDING_PERSONA_FILE: &str = ".pending-persona.json";
/// Where deleted sessions are moved, whole.
pub const ARCHIVE_DIR: &str = ".archive";
/// A restore's new `metadata.json`, written in the archived directory before it moves
/// back; moved over `metadata.json` once it has (see `Tx::restore`).
pub const RESTORE_FILE: &str = ".restore-metadata.json";
/// Which session is current, and the intent of the last switch (see [`Pointer`]).
pub const CURRENT_FILE: &str = ".current.json";
/// The file whose lock says which process owns the directory.
pub const LOCK_FILE: &str = ".lock";
/// A rename under way (see `store::rename`): present only until it completes.
pub const RENAME_FILE: &str = ".rename.json";
/// Entries of the sessions directory that belong to the store itself.
pub const OWN_ENTRIES: [&str; 4] = [LOCK_FILE, CURRENT_FILE, ARCHIVE_DIR, RENAME_FILE];

/// A session's directory.
pub fn session_dir(root: &Path, name: &SessionName) -> PathBuf {
    root.join(name)
}

/// The name a session deleted at `at` gets in [`ARCHIVE_DIR`]: `<name>.<UTC timestamp>`,
/// so the same name can be archived many times.
pub fn archive_name(name: &SessionName, at: Timestamp) -> String {
    ArchiveId::new(name.clone(), at).to_string()
}

/// `.current.json`: which session is current, and, for the last switch, when it
/// happened and from where. The switch is committed once this file is durable; if the
/// process dies before the two metadata files follow, the next write or start-up
/// finishes it (a switch is complete when the target's `last_active` equals `since` and
/// `previous` is no longer active: a group commit writes the two files at once).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pointer {
    pub name: Option<SessionName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<SessionName>,
}
