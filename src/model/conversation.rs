//! A session's Claude Code conversations: their ids (UUIDs, as the CLI's `--session-id`
//! and `--resume` take them), the history a session keeps of them, and the CLI's `init`
//! message, through which the bot reports the conversation a run is in.
//!
//! The CLI looks a conversation up under the working directory it was started in, so a
//! session's conversations are only ever resumed from the session's own directory.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::time::Timestamp;

/// How many conversations a session's history keeps (the most recent; the CLI keeps the
/// transcripts of the others).
pub const MAX_CONVERSATIONS: usize = 100;

/// A conversation id: a UUID, kept in its hyphenated lower-case form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConversationId(uuid::Uuid);

/// Why a conversation id was refused; it names no part of the value.
pub const CONVERSATION_ID_RULE: &str = "must be a conversation id: a UUID such as \
                                        0b7b4a8e-9c41-4f4e-9a43-3f5d2f8a1c20";

impl ConversationId {
    /// A new random id, for a conversation the launch spec starts.
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4())
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        // Only the hyphenated form the CLI prints and takes (the uuid crate would also
        // take braces, URNs and bare hex).
        let well_formed = text.len() == 36
            && text.char_indices().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => c == '-',
                _ => c.is_ascii_hexdigit(),
            });
        match uuid::Uuid::parse_str(text) {
            Ok(id) if well_formed => Ok(Self(id)),
            _ => Err(CONVERSATION_ID_RULE.to_owned()),
        }
    }
}

impl std::fmt::Display for ConversationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl std::str::FromStr for ConversationId {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Self::parse(text)
    }
}

impl Serialize for ConversationId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ConversationId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Why a conversation stopped being the session's conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndReason {
    /// Another conversation, not forked from it, became the session's.
    Replaced,
    /// A conversation forked from it became the session's.
    Forked,
    /// The session's conversation was cleared (`PATCH {"conversation": null}`).
    Cleared,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ended {
    pub at: Timestamp,
    pub reason: EndReason,
}

/// One conversation in a session's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: ConversationId,
    pub started: Timestamp,
    /// The conversation it was forked from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ConversationId>,
    /// The model the CLI reported in its `init` message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Ended>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The CLI's `system`/`init` stream-json message, as the bot posts it: only the fields
/// the service keeps are read; the rest of the message is ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct InitMessage {
    #[serde(rename = "type")]
    pub kind: String,
    pub subtype: String,
    pub session_id: ConversationId,
    #[serde(default)]
    pub model: Option<String>,
}

impl InitMessage {
    pub fn check(&self) -> Result<(), String> {
        if self.kind == "system" && self.subtype == "init" {
            Ok(())
        } else {
            Err("not the CLI's init message: type must be \"system\" and subtype \"init\"".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Metadata, SessionName};

    const A: &str = "0b7b4a8e-9c41-4f4e-9a43-3f5d2f8a1c20";
    const B: &str = "1c8c5b9f-ad52-4a5f-8b54-4a6e3a9b2d31";

    fn id(text: &str) -> ConversationId {
        text.parse().unwrap()
    }

    #[test]
    fn ids_are_hyphenated_uuids_and_nothing_else() {
        assert_eq!(id(&A.to_uppercase()).to_string(), A);
        for bad in [
            "",
            "../../etc/passwd",
            "0b7b4a8e9c414f4e9a433f5d2f8a1c20",
            "{0b7b4a8e-9c41-4f4e-9a43-3f5d2f8a1c20}",
            "0b7b4a8e-9c41-4f4e-9a43-3f5d2f8a1c2g",
        ] {
            assert_eq!(
                ConversationId::parse(bad).unwrap_err(),
                CONVERSATION_ID_RULE,
                "{bad}"
            );
        }
    }

    #[test]
    fn a_fork_ends_its_parent_as_forked_and_a_new_one_ends_it_as_replaced() {
        let t = |s: &str| Timestamp::parse(s).unwrap();
        let mut m = Metadata::new(
            SessionName::parse("s").unwrap(),
            None,
            t("2026-01-01T00:00:00Z"),
        );
        assert!(
            m.set_conversation(Some(id(A)), None, Some("m1"), t("2026-01-01T00:00:01Z"))
                .unwrap()
        );
        assert!(
            !m.set_conversation(Some(id(A)), None, Some("m1"), t("2026-01-01T00:00:02Z"))
                .unwrap()
        );
        assert!(
            m.set_conversation(Some(id(B)), Some(id(A)), None, t("2026-01-01T00:00:03Z"))
                .unwrap()
        );
        assert_eq!(m.conversation, Some(id(B)));
        assert_eq!(m.conversations[0].ended.unwrap().reason, EndReason::Forked);
        assert_eq!(m.conversations[1].parent, Some(id(A)));
        // Back to A: B is replaced, A is current and last again.
        assert!(
            m.set_conversation(Some(id(A)), None, None, t("2026-01-01T00:00:04Z"))
                .unwrap()
        );
        assert_eq!(
            m.conversations[0].ended.unwrap().reason,
            EndReason::Replaced
        );
        assert_eq!(m.conversations[1].id, id(A));
        assert_eq!(m.conversations[1].ended, None);
        assert!(
            m.set_conversation(None, None, None, t("2026-01-01T00:00:05Z"))
                .unwrap()
        );
        assert_eq!(m.conversations[1].ended.unwrap().reason, EndReason::Cleared);
        let unknown = ConversationId::generate();
        let err = m.set_conversation(Some(id(B)), Some(unknown), None, t("2026-01-01T00:00:06Z"));
        assert!(err.unwrap_err().starts_with("parent: "));
    }
}
