//! Partial updates of a session: [`MetadataPatch`], the one type that `PATCH
//! /sessions/{name}` parses and the store applies, and [`Field`], the tri-state each of
//! its fields is (left out, set to null, set to a value). A new patchable field is one
//! line in the struct and one in [`MetadataPatch::apply`].

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::conversation::ConversationId;
use super::labels::{Tags, Title};
use super::metadata::{Metadata, Status};
use super::persona::as_integer;
use super::time::Timestamp;
use super::usage::Dollars;

/// One field of a partial update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Field<T> {
    /// Left out: the stored value stays.
    #[default]
    Absent,
    /// `null`: the stored value is cleared.
    Null,
    Value(T),
}

impl<T> Field<T> {
    pub fn value(&self) -> Option<&T> {
        match self {
            Field::Value(v) => Some(v),
            _ => None,
        }
    }

    /// Applies this field to an optional stored value, converting what it sets.
    pub fn apply_to<U>(&self, slot: &mut Option<U>, convert: impl FnOnce(&T) -> U) {
        match self {
            Field::Absent => {}
            Field::Null => *slot = None,
            Field::Value(v) => *slot = Some(convert(v)),
        }
    }

    /// Applies this field to a stored value whose empty (default) value is "none":
    /// `null` empties it.
    pub fn apply_or_clear(&self, slot: &mut T)
    where
        T: Clone + Default,
    {
        match self {
            Field::Absent => {}
            Field::Null => *slot = T::default(),
            Field::Value(v) => *slot = v.clone(),
        }
    }

    /// Applies this field to a stored value that cannot be null.
    pub fn apply_required(&self, slot: &mut T)
    where
        T: Clone,
    {
        if let Field::Value(v) = self {
            *slot = v.clone();
        }
    }
}

/// With `#[serde(default)]`, a field left out stays [`Field::Absent`]; one that is
/// present is read as `Option<T>`: `null` or a value.
impl<'de, T: Deserialize<'de>> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Option::<T>::deserialize(deserializer).map(|v| v.map_or(Field::Null, Field::Value))
    }
}

/// A process id as the bot reports it: a positive integer (written `4242` or `4242.0`).
/// Zero and negative numbers are refused: `kill(0)` or `kill(-n)` would signal a whole
/// process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pid(i64);

impl Pid {
    pub fn get(self) -> i64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Pid {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        as_integer(&value)
            .filter(|pid| *pid >= 1)
            .map(Pid)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "must be a positive integer or null (got {value})"
                ))
            })
    }
}

/// The fields `PATCH /sessions/{name}` may change: the bot's process bookkeeping, the
/// conversation to resume, the budget, and the operator's title and tags.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataPatch {
    #[serde(default)]
    pub pid: Field<Pid>,
    #[serde(default)]
    pub status: Field<Status>,
    #[serde(default)]
    pub conversation: Field<ConversationId>,
    #[serde(default)]
    pub budget_usd: Field<Dollars>,
    #[serde(default)]
    pub title: Field<Title>,
    #[serde(default)]
    pub tags: Field<Tags>,
}

impl MetadataPatch {
    /// The fields a patch may name, for the message that says a patch is empty.
    const FIELDS: &[&str] = &[
        "pid",
        "status",
        "conversation",
        "budget_usd",
        "title",
        "tags",
    ];

    /// Refuses a patch that changes nothing, or clears a field that cannot be null.
    pub fn check(&self) -> Result<(), String> {
        if *self == Self::default() {
            return Err(format!(
                "nothing to update: give one or more of {}",
                Self::FIELDS.join(", ")
            ));
        }
        if self.status == Field::Null {
            return Err("status cannot be null".to_owned());
        }
        Ok(())
    }

    /// The status this patch asks for, which the store checks against SPEC §3.
    pub fn status(&self) -> Option<Status> {
        self.status.value().copied()
    }

    /// The pid this patch records, if it records one.
    pub fn pid(&self) -> Option<i64> {
        self.pid.value().map(|pid| pid.get())
    }

    /// Writes the patch into `metadata`, at `now`: a newly recorded pid notes when, and
    /// a new conversation enters the history.
    pub fn apply(&self, metadata: &mut Metadata, now: Timestamp) {
        match self.pid {
            Field::Absent => {}
            Field::Null => {
                metadata.pid = None;
                metadata.pid_recorded = None;
            }
            // Recorded now even when it is the pid recorded before: the bot gives the pid
            // of the process it runs now, which may have the old one's pid by reuse.
            Field::Value(pid) => {
                metadata.pid = Some(pid.get());
                metadata.pid_recorded = Some(now);
            }
        }
        self.status.apply_required(&mut metadata.status);
        match self.conversation {
            Field::Absent => {}
            // Without a parent, setting a conversation cannot be refused.
            Field::Null => {
                let _ = metadata.set_conversation(None, None, None, now);
            }
            Field::Value(id) => {
                let _ = metadata.set_conversation(Some(id), None, None, now);
            }
        }
        self.budget_usd.apply_to(&mut metadata.budget_usd, |d| *d);
        self.title.apply_to(&mut metadata.title, Title::clone);
        self.tags.apply_or_clear(&mut metadata.tags);
        // The operator's own label replaces one another tool stored under the name.
        for (label, touched) in [
            ("title", self.title != Field::Absent),
            ("tags", self.tags != Field::Absent),
        ] {
            if touched {
                metadata.extra.shift_remove(label);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SessionName, Timestamp};

    fn patch(value: Value) -> Result<MetadataPatch, String> {
        crate::model::from_json_value(value)
    }

    #[test]
    fn absent_null_and_value_are_told_apart() {
        let p = patch(serde_json::json!({"pid": null})).unwrap();
        assert_eq!((p.pid, p.status), (Field::Null, Field::Absent));
        let p = patch(serde_json::json!({"pid": 4242.0, "status": "idle"})).unwrap();
        assert_eq!(p.pid, Field::Value(Pid(4242)));
        assert_eq!(p.status(), Some(Status::Idle));
        assert_eq!(
            patch(serde_json::json!({})).unwrap().check().unwrap_err(),
            "nothing to update: give one or more of pid, status, conversation, budget_usd, title, tags"
        );
        let null_status = patch(serde_json::json!({"status": null})).unwrap();
        assert_eq!(null_status.check().unwrap_err(), "status cannot be null");
    }

    #[test]
    fn bad_pids_and_unknown_fields_are_refused() {
        for bad in [
            serde_json::json!(0),
            serde_json::json!(-3),
            serde_json::json!(1.5),
        ] {
            let err = patch(serde_json::json!({ "pid": bad })).unwrap_err();
            assert!(err.starts_with("pid: must be a positive integer"), "{err}");
        }
        let err = patch(serde_json::json!({"name": "x"})).unwrap_err();
        assert!(err.contains("unknown field `name`"), "{err}");
    }

    #[test]
    fn title_and_tags_are_set_checked_and_cleared() {
        let mut m = Metadata::new(SessionName::parse("s").unwrap(), None, Timestamp::now());
        patch(serde_json::json!({"title": "DNS work", "tags": ["dns", "homelab"]}))
            .unwrap()
            .apply(&mut m, Timestamp::now());
        assert_eq!(m.title.as_ref().map(Title::as_str), Some("DNS work"));
        assert_eq!(m.tags, Tags::parse(&["dns", "homelab"]).unwrap());
        patch(serde_json::json!({"title": null, "tags": null}))
            .unwrap()
            .apply(&mut m, Timestamp::now());
        assert_eq!((m.title.clone(), m.tags.is_empty()), (None, true));
        patch(serde_json::json!({"tags": []}))
            .unwrap()
            .apply(&mut m, Timestamp::now());
        assert!(m.tags.is_empty());
        assert_eq!(
            patch(serde_json::json!({"title": "a\tb"})).unwrap_err(),
            "title: must be one line without control characters (found U+0009 at position 1)"
        );
        assert_eq!(
            patch(serde_json::json!({"tags": ["a", "a"]})).unwrap_err(),
            "tags: item 2: the tag 'a' is given twice; give each tag once"
        );
        assert!(patch(serde_json::json!({"tags": "a"})).is_err());
    }

    #[test]
    fn apply_sets_and_clears() {
        let mut m = Metadata::new(SessionName::parse("s").unwrap(), None, Timestamp::now());
        patch(serde_json::json!({"pid": 7, "status": "suspended"}))
            .unwrap()
            .apply(&mut m, Timestamp::now());
        assert_eq!((m.pid, m.status), (Some(7), Status::Suspended));
        assert!(m.pid_recorded.is_some());
        // The same pid again is recorded again.
        let later = Timestamp::parse("2100-01-01T00:00:00+00:00").unwrap();
        patch(serde_json::json!({"pid": 7}))
            .unwrap()
            .apply(&mut m, later);
        assert_eq!((m.pid, m.pid_recorded), (Some(7), Some(later)));
        patch(serde_json::json!({"pid": null}))
            .unwrap()
            .apply(&mut m, Timestamp::now());
        assert_eq!((m.pid, m.status), (None, Status::Suspended));
        assert_eq!(m.pid_recorded, None);
    }
}
