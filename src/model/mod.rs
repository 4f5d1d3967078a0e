//! The domain types: validated names, archive ids, session status, `metadata.json`, its
//! patch type, and personas (with their JSON Schema, `persona_schema`); strict JSON
//! (`json`: no key twice in an object) and the parsers of the files read back from disk
//! (`disk`), whose reasons never quote the file.
//!
//! No HTTP and no I/O here. Everything that crosses the disk keeps the fields it does not
//! know (`extra`), so a rewrite never loses what the original Python module or another
//! tool stored.

mod archive_id;
mod conversation;
mod disk;
mod json;
mod launch_settings;
mod metadata;
mod name;
mod patch;
mod persona;
mod persona_schema;
mod time;
mod usage;

pub use archive_id::{ARCHIVE_ID_LEN, ARCHIVE_ID_PATTERN, ArchiveId, ArchiveIdError};
pub use conversation::{
    CONVERSATION_ID_RULE, Conversation, ConversationId, EndReason, Ended, InitMessage,
    MAX_CONVERSATIONS,
};
pub use disk::{from_disk, metadata_from_disk, persona_from_disk};
pub use json::{MAX_KEY_CHARS, StrictError, parse_strict};
pub use launch_settings::{LaunchSettings, PERMISSION_MODES, PromptMode, RESERVED_FLAGS};
pub use metadata::{CUSTOM_PERSONA, Metadata, Status};
pub use name::{
    DEFAULT_PERSONA, MAX_NAME_LEN, NameError, PersonaKey, RESERVED_SESSION_NAME, SessionName,
};
pub use patch::{Field, MetadataPatch, Pid};
pub use persona::{
    MAX_TURNS_RULE, Persona, Settings, as_integer, from_json_value, persona_budget,
    visible_text_pattern,
};
pub use persona_schema::{PERSONA_SCHEMA_DIALECT, persona_schema};
pub use time::Timestamp;
pub use usage::{
    Counted, DOLLARS_RULE, Dollars, RECENT_RESULTS, RECENT_RUNS, ResultMessage, RunSpending,
    TokenCounts, Usage,
};
