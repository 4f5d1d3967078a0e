//! `metadata.json` (SPEC §1): the session's [`Status`] and its [`Metadata`], which keeps
//! every field it does not know.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::name::SessionName;
use super::time::Timestamp;

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

/// The content of `metadata.json` (SPEC §1). Field order matches the original module.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub name: SessionName,
    pub created: Timestamp,
    pub last_active: Timestamp,
    pub persona: Option<String>,
    pub pid: Option<i64>,
    pub status: Status,
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
            extra: Map::new(),
        }
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
            pid in proptest::option::of(1i64..4_000_000),
            status in prop_oneof![Just("idle"), Just("active"), Just("suspended")],
            persona in proptest::option::of("[a-z]{1,10}"),
            micros in 0i64..4_000_000_000_000_000,
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
    }
}
