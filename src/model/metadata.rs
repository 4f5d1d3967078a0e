//! `metadata.json` (SPEC §1): the session's [`Status`] and its [`Metadata`], which keeps
//! every field it does not know.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::conversation::{Conversation, ConversationId, EndReason, Ended, MAX_CONVERSATIONS};
use super::labels::{Tags, Title};
use super::name::SessionName;
use super::time::Timestamp;
use super::usage::{Counted, Dollars, RECENT_RESULTS, ResultMessage, Usage};

/// A session's process status (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Idle,
    Active,
    Suspended,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Idle, Status::Active, Status::Suspended];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Idle => "idle",
            Status::Active => "active",
            Status::Suspended => "suspended",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

/// The `persona` value recorded for a session whose persona did not come from the library.
pub const CUSTOM_PERSONA: &str = "custom";

/// Why a stored `pid` was refused; it names no part of the value.
pub const PID_RULE: &str = "must be a positive integer or null";

/// How many earlier names a session's metadata keeps: enough to trace it, and few enough
/// that renames never grow the file towards its size cap.
pub const MAX_PREVIOUS_NAMES: usize = 100;

/// The content of `metadata.json` (SPEC §1). Field order matches the original module.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub name: SessionName,
    pub created: Timestamp,
    pub last_active: Timestamp,
    pub persona: Option<String>,
    #[serde(default, deserialize_with = "stored_pid")]
    pub pid: Option<i64>,
    pub status: Status,
    // The fields below are this service's own additions; the original module keeps
    // them as unknown fields. Each is left out of the file while it has no value.
    /// When `pid` was recorded: a process that started later is not the one recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_recorded: Option<Timestamp>,
    /// The conversation to resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<ConversationId>,
    /// The session's conversations, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conversations: Vec<Conversation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Boxed: most sessions in the index have none, and it is larger than the rest of
    /// the entry together.
    pub usage: Option<Box<Usage>>,
    /// The most the session may cost; a launch spec is refused once usage reaches it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<Dollars>,
    /// The last conversation report or usage post (idle time counts from it, or from
    /// the last switch to the session, whichever is later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_report: Option<Timestamp>,
    /// What the operator calls the session (set and cleared by `PATCH`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<Title>,
    /// The operator's tags, to filter the list by (set and cleared by `PATCH`).
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub tags: Tags,
    /// The names the session had before its renames, oldest first (at most
    /// [`MAX_PREVIOUS_NAMES`], the most recent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_names: Vec<SessionName>,
    /// Whatever else the file holds, kept as it is on every rewrite.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Metadata {
    pub fn new(name: SessionName, persona: Option<String>, now: Timestamp) -> Self {
        Self {
            name,
            created: now,
            last_active: now,
            persona,
            pid: None,
            status: Status::Idle,
            pid_recorded: None,
            conversation: None,
            conversations: Vec::new(),
            usage: None,
            budget_usd: None,
            last_report: None,
            title: None,
            tags: Tags::default(),
            previous_names: Vec::new(),
            extra: Map::new(),
        }
    }
}

impl Metadata {
    /// Makes `id` the session's conversation, recording it in the history when it is
    /// new (forked from `parent`, which must be one of the session's conversations) and
    /// ending the one it replaces. Returns whether anything changed; `Err` says why the
    /// parent is refused.
    pub fn set_conversation(
        &mut self,
        id: Option<ConversationId>,
        parent: Option<ConversationId>,
        model: Option<&str>,
        now: Timestamp,
    ) -> Result<bool, String> {
        if let Some(parent) = parent
            && !self.conversations.iter().any(|c| c.id == parent)
        {
            return Err(format!(
                "parent: {parent} is not one of this session's conversations"
            ));
        }
        if id == self.conversation {
            // The conversation resumed: only a model the CLI reports for the first time.
            let entry = id.and_then(|id| self.conversations.iter_mut().find(|c| c.id == id));
            return Ok(match (entry, model) {
                (Some(entry), Some(model)) if entry.model.as_deref() != Some(model) => {
                    entry.model = Some(model.to_owned());
                    true
                }
                _ => false,
            });
        }
        if let Some(previous) = self.conversation {
            let reason = match (id, parent) {
                (None, _) => EndReason::Cleared,
                (Some(_), Some(p)) if p == previous => EndReason::Forked,
                _ => EndReason::Replaced,
            };
            if let Some(entry) = self.conversations.iter_mut().find(|c| c.id == previous) {
                entry.ended = Some(Ended { at: now, reason });
            }
        }
        self.conversation = id;
        let Some(id) = id else {
            return Ok(true);
        };
        match self.conversations.iter().position(|c| c.id == id) {
            // An older conversation taken up again: it is the most recent one now.
            Some(i) => {
                let mut entry = self.conversations.remove(i);
                entry.ended = None;
                if let Some(model) = model {
                    entry.model = Some(model.to_owned());
                }
                self.conversations.push(entry);
            }
            None => self.conversations.push(Conversation {
                id,
                started: now,
                parent,
                model: model.map(str::to_owned),
                ended: None,
                extra: Map::new(),
            }),
        }
        let excess = self.conversations.len().saturating_sub(MAX_CONVERSATIONS);
        self.conversations.drain(..excess);
        Ok(true)
    }
}

impl Metadata {
    /// Adds a result message of `run` (when known) to the totals, once per message id.
    pub fn count_result(
        &mut self,
        result: &ResultMessage,
        run: Option<&str>,
        now: Timestamp,
    ) -> Counted {
        if self
            .usage
            .as_ref()
            .is_some_and(|u| u.recent.contains(&result.uuid))
        {
            return Counted::Duplicate;
        }
        let was_exhausted = self.budget_exhausted();
        let usage = self.usage.get_or_insert_with(|| {
            Box::new(Usage {
                cost_usd: Dollars::default(),
                turns: 0,
                input_tokens: 0,
                output_tokens: 0,
                cache_read_tokens: 0,
                cache_creation_tokens: 0,
                results: 0,
                updated: now,
                recent: Vec::new(),
                runs: Vec::new(),
                extra: Map::new(),
            })
        });
        let cost = match run {
            Some(run) => usage.spent_since(run, result.total_cost_usd),
            None => result.total_cost_usd,
        };
        usage.cost_usd = usage.cost_usd.saturating_add(cost);
        usage.turns = usage.turns.saturating_add(result.num_turns);
        let tokens = &result.usage;
        usage.input_tokens = usage.input_tokens.saturating_add(tokens.input_tokens);
        usage.output_tokens = usage.output_tokens.saturating_add(tokens.output_tokens);
        usage.cache_read_tokens = usage
            .cache_read_tokens
            .saturating_add(tokens.cache_read_input_tokens);
        usage.cache_creation_tokens = usage
            .cache_creation_tokens
            .saturating_add(tokens.cache_creation_input_tokens);
        usage.results += 1;
        usage.updated = now;
        usage.recent.push(result.uuid.clone());
        let excess = usage.recent.len().saturating_sub(RECENT_RESULTS);
        usage.recent.drain(..excess);
        Counted::Added {
            exhausted_now: !was_exhausted && self.budget_exhausted(),
        }
    }

    /// Whether the session's spending has reached its budget (nothing spent yet is
    /// nothing, which a budget of 0 has reached).
    pub fn budget_exhausted(&self) -> bool {
        let spent = self
            .usage
            .as_ref()
            .map_or(Dollars::default(), |u| u.cost_usd);
        self.budget_usd.is_some_and(|budget| spent >= budget)
    }
}

/// A stored `pid`: null, or an integer of at least 1. A bot that signals the process
/// with `kill(0)` or `kill(-n)` would signal a whole process group, so such an entry is
/// corrupt, not served. Only integers: the original module writes the bot's `int` and
/// this service writes a `PATCH`'s `4242.0` as `4242`, so `4242.0` on disk is foreign.
fn stored_pid<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::Null => Ok(None),
        Value::Number(n) if n.as_i64().is_some_and(|pid| pid >= 1) => Ok(n.as_i64()),
        _ => Err(serde::de::Error::custom(PID_RULE)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn json_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            ".{0,20}".prop_map(Value::from),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        json_leaf().prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn metadata_round_trips_with_unknown_fields(
            name in "[a-zA-Z0-9_-]{1,50}".prop_filter("reserved", |s| s != "active"),
            pid in proptest::option::of(prop_oneof![1i64..4_194_305, 1i64..=i64::MAX]),
            status in prop_oneof![Just("idle"), Just("active"), Just("suspended")],
            persona in proptest::option::of("[a-z]{1,10}"),
            // Years 1 to 9999, the ones Python reads.
            micros in -62_135_596_800_000_000i64..253_402_300_800_000_000,
            extra in prop::collection::btree_map("x_[a-z]{1,8}", json_value(), 0..5),
        ) {
            let ts = Timestamp::from_micros(micros).unwrap().to_rfc3339();
            let mut doc = serde_json::json!({
                "name": name, "created": ts, "last_active": ts,
                "persona": persona, "pid": pid, "status": status,
            });
            for (k, v) in &extra {
                doc[k] = v.clone();
            }
            let meta: Metadata = serde_json::from_value(doc.clone()).unwrap();
            let written = serde_json::to_value(&meta).unwrap();
            prop_assert_eq!(written, doc);
        }

        #[test]
        fn pids_below_one_are_refused(pid in i64::MIN..1) {
            let doc = stored_with_pid(Value::from(pid));
            prop_assert!(serde_json::from_value::<Metadata>(doc).is_err());
        }
    }

    fn stored_with_pid(pid: Value) -> Value {
        serde_json::json!({
            "name": "s", "created": "2026-11-24T21:22:16.123456+00:00",
            "last_active": "2026-11-24T21:22:16.123456+00:00",
            "persona": null, "pid": pid, "status": "idle",
        })
    }

    #[test]
    fn a_stored_pid_is_null_or_a_positive_integer() {
        let read = |pid: Value| {
            serde_json::from_value::<Metadata>(stored_with_pid(pid))
                .map(|m| m.pid)
                .map_err(|e| e.to_string())
        };
        assert_eq!(read(Value::Null), Ok(None));
        assert_eq!(read(1.into()), Ok(Some(1)));
        assert_eq!(read(i64::MAX.into()), Ok(Some(i64::MAX)));
        for bad in [
            Value::from(0),
            Value::from(-1),
            Value::from(4242.0),
            Value::from(u64::MAX),
            Value::from("4242"),
            Value::from(true),
            serde_json::json!([4242]),
        ] {
            assert_eq!(read(bad.clone()), Err(PID_RULE.to_owned()), "{bad}");
        }
        let mut missing = stored_with_pid(Value::Null);
        missing.as_object_mut().unwrap().remove("pid");
        let meta: Metadata = serde_json::from_value(missing).unwrap();
        assert_eq!(meta.pid, None);
        let written = serde_json::to_value(Metadata {
            pid: Some(7),
            ..meta
        })
        .unwrap();
        assert_eq!(written["pid"], serde_json::json!(7));
    }
}
