//! The lines of a transcript, read from the end: which are messages, and what of them
//! an answer shows.
//!
//! A line is a JSON object with a `type`. Those of type `user` and `assistant` carry a
//! `message` (`role`, and `content`: a string, or a list of blocks: `text`, `tool_use`,
//! `tool_result`, `thinking`, `image`, ...) and a `timestamp`; the other types (summary,
//! system, file-history-snapshot, ...) are skipped. So are lines the CLI marks as not the
//! conversation's own: a sub-agent's (`isSidechain`), its own notes (`isMeta`) and the
//! summary that replaces older turns (`isCompactSummary`); and user lines with no text,
//! which carry only tool results back to the model. The CLI writes each content block
//! of one assistant reply as a line of its own, with the reply's `message.id`: such
//! lines are one message here.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::model::Timestamp;

/// The most lines of a transcript's end looked at, from the end.
pub const MAX_LINES: usize = 100_000;

/// The last messages of a transcript.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tail {
    /// Oldest first.
    pub messages: Vec<Message>,
    /// Lines read that are not JSON, or are a user or assistant line of another shape.
    pub skipped_lines: usize,
    /// Fewer messages than asked for, and the read stopped at its bound (the window or
    /// the line cap) before the transcript's start: older messages may exist.
    pub truncated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// One message, plainly: its text blocks joined, and the names of the tools it called
/// (not their input, nor what they answered).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub role: Role,
    /// When the CLI wrote it; `None` when the line has no timestamp it can read.
    pub time: Option<Timestamp>,
    pub text: String,
    pub tools: Vec<String>,
}

/// A line, with only what is needed read, and its `message` left raw until the line is
/// known to be a message.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    timestamp: Option<&'a RawValue>,
    #[serde(default, rename = "isSidechain")]
    sidechain: Option<serde_json::Value>,
    #[serde(default, rename = "isMeta")]
    meta: Option<serde_json::Value>,
    #[serde(default, rename = "isCompactSummary")]
    compact_summary: Option<serde_json::Value>,
    #[serde(default, borrow)]
    message: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    content: &'a RawValue,
}

#[derive(Deserialize)]
struct Block<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
}

/// What a line is, once read.
enum Read {
    /// Not a message of the conversation.
    Other,
    /// Not JSON, or a user or assistant line of another shape.
    Malformed,
    Message {
        message: Message,
        id: Option<String>,
    },
}

fn read_line(bytes: &[u8]) -> Read {
    let Ok(line) = serde_json::from_slice::<Line<'_>>(bytes) else {
        return Read::Malformed;
    };
    let role = match line.kind.as_deref() {
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        _ => return Read::Other,
    };
    let flagged = |v: &Option<serde_json::Value>| v.as_ref().is_some_and(|v| v == true);
    if flagged(&line.sidechain) || flagged(&line.meta) || flagged(&line.compact_summary) {
        return Read::Other;
    }
    let Some(body) = line
        .message
        .and_then(|raw| serde_json::from_str::<Body<'_>>(raw.get()).ok())
    else {
        return Read::Malformed;
    };
    let (text, tools) = match content(body.content) {
        Some(parts) => parts,
        None => return Read::Malformed,
    };
    let time = line
        .timestamp
        .and_then(|raw| serde_json::from_str::<&str>(raw.get()).ok())
        .and_then(Timestamp::parse);
    Read::Message {
        message: Message {
            role,
            time,
            text,
            tools,
        },
        id: body.id.map(Cow::into_owned),
    }
}

/// The text (blocks joined by a blank line) and the tools called, of a `content`.
fn content(raw: &RawValue) -> Option<(String, Vec<String>)> {
    if let Ok(text) = serde_json::from_str::<String>(raw.get()) {
        return Some((text, Vec::new()));
    }
    let blocks: Vec<Block<'_>> = serde_json::from_str(raw.get()).ok()?;
    let mut texts = Vec::new();
    let mut tools = Vec::new();
    for block in blocks {
        match (block.kind.as_ref(), block.text, block.name) {
            ("text", Some(text), _) if !text.trim().is_empty() => texts.push(text),
            ("tool_use", _, Some(name)) => tools.push(name.into_owned()),
            _ => {}
        }
    }
    Some((texts.join("\n\n"), tools))
}

/// The last `count` messages of `window` (whole lines; `whole` when it is the whole
/// file), oldest first, reading at most [`MAX_LINES`] lines from the end.
pub(super) fn tail(window: &[u8], whole: bool, count: usize) -> Tail {
    // Newest first while reading; one more than asked, so the oldest one kept is known
    // to be complete (a reply's lines end where another message starts).
    let mut newest_first: Vec<(Message, Option<String>)> = Vec::new();
    let mut skipped_lines = 0;
    let mut looked_at = 0;
    let mut reached_start = true;
    let unfinished = !window.is_empty() && !window.ends_with(b"\n");
    for (i, line) in window.split(|b| *b == b'\n').rev().enumerate() {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        if looked_at == MAX_LINES || newest_first.len() > count {
            reached_start = false;
            break;
        }
        looked_at += 1;
        match read_line(line) {
            Read::Other => {}
            // The last line may be one the CLI is still writing.
            Read::Malformed if i == 0 && unfinished => {}
            Read::Malformed => skipped_lines += 1,
            Read::Message { message, id } => match newest_first.last_mut() {
                Some((later, later_id))
                    if message.role == Role::Assistant
                        && later.role == Role::Assistant
                        && id.is_some()
                        && id == *later_id =>
                {
                    merge_into(later, message);
                }
                _ if message.text.is_empty() && message.tools.is_empty() => {}
                _ => newest_first.push((message, id)),
            },
        }
    }
    newest_first.truncate(count);
    let mut messages: Vec<Message> = newest_first.into_iter().map(|(m, _)| m).collect();
    messages.reverse();
    let truncated = messages.len() < count && !(whole && reached_start);
    Tail {
        messages,
        skipped_lines,
        truncated,
    }
}

/// Puts an earlier line of the same reply before what was read of it.
fn merge_into(later: &mut Message, earlier: Message) {
    if !earlier.text.is_empty() {
        later.text = if later.text.is_empty() {
            earlier.text
        } else {
            format!("{}\n\n{}", earlier.text, later.text)
        };
    }
    let mut tools = earlier.tools;
    tools.append(&mut later.tools);
    later.tools = tools;
    later.time = earlier.time.or(later.time);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn jsonl(lines: &[serde_json::Value]) -> Vec<u8> {
        lines
            .iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            .into_bytes()
    }

    fn user(text: &str, at: &str) -> serde_json::Value {
        json!({"type": "user", "timestamp": at, "message": {"role": "user", "content": text}})
    }

    fn reply(id: &str, blocks: serde_json::Value, at: &str) -> serde_json::Value {
        json!({"type": "assistant", "timestamp": at,
               "message": {"id": id, "role": "assistant", "content": blocks}})
    }

    #[test]
    fn the_lines_of_one_reply_are_one_message() {
        let window = jsonl(&[
            user("list the files", "2026-01-01T00:00:00.000Z"),
            reply(
                "m1",
                json!([{"type": "thinking", "thinking": "hmm"}]),
                "2026-01-01T00:00:01Z",
            ),
            reply(
                "m1",
                json!([{"type": "text", "text": "Looking."}]),
                "2026-01-01T00:00:02Z",
            ),
            reply(
                "m1",
                json!([{"type": "tool_use", "id": "t", "name": "Bash", "input": {"command": "ls"}}]),
                "2026-01-01T00:00:03Z",
            ),
            json!({"type": "user", "message": {"role": "user",
                   "content": [{"type": "tool_result", "tool_use_id": "t", "content": "a b"}]}}),
            reply(
                "m2",
                json!([{"type": "text", "text": "Two files."}]),
                "2026-01-01T00:00:04Z",
            ),
        ]);
        let tail = tail(&window, true, 20);
        let summary: Vec<_> = tail
            .messages
            .iter()
            .map(|m| (m.role, m.text.as_str(), m.tools.clone()))
            .collect();
        assert_eq!(
            summary,
            [
                (Role::User, "list the files", vec![]),
                (Role::Assistant, "Looking.", vec!["Bash".to_owned()]),
                (Role::Assistant, "Two files.", vec![]),
            ]
        );
        assert_eq!(
            tail.messages[1].time.unwrap().to_rfc3339(),
            "2026-01-01T00:00:01.000000+00:00"
        );
        assert_eq!((tail.skipped_lines, tail.truncated), (0, false));
    }

    #[test]
    fn a_tail_keeps_the_last_messages_whole() {
        let window = jsonl(&[
            user("one", "2026-01-01T00:00:00Z"),
            reply(
                "a",
                json!([{"type": "text", "text": "first half"}]),
                "2026-01-01T00:00:01Z",
            ),
            reply(
                "a",
                json!([{"type": "text", "text": "second half"}]),
                "2026-01-01T00:00:02Z",
            ),
            user("two", "2026-01-01T00:00:03Z"),
        ]);
        let tail = tail(&window, false, 2);
        assert_eq!(tail.messages[0].text, "first half\n\nsecond half");
        assert_eq!(tail.messages[1].text, "two");
        assert!(!tail.truncated, "as many as asked");
        let all = super::tail(&window, false, 5);
        assert_eq!((all.messages.len(), all.truncated), (3, true));
    }

    #[test]
    fn other_lines_are_skipped_and_broken_ones_counted() {
        let mut window = jsonl(&[
            json!({"type": "summary", "summary": "S", "leafUuid": "x"}),
            json!({"type": "user", "isMeta": true, "message": {"role": "user", "content": "meta"}}),
            json!({"type": "assistant", "isSidechain": true,
                   "message": {"role": "assistant", "content": [{"type": "text", "text": "side"}]}}),
            json!({"type": "user", "message": {"role": "user", "content": 42}}),
            json!([1, 2]),
            user("kept", "not a time"),
        ]);
        window.extend_from_slice(b"{\"type\": \"user\", \"mess\n");
        window.extend_from_slice(b"{\"type\": \"assistant\", \"mes");
        let tail = tail(&window, true, 20);
        assert_eq!(tail.messages.len(), 1);
        assert_eq!(
            (tail.messages[0].text.as_str(), tail.messages[0].time),
            ("kept", None)
        );
        // The number, the array and the cut line; not the unfinished last one.
        assert_eq!(tail.skipped_lines, 3);
    }
}
