//! The domain types: validated names, session status, `metadata.json` and personas.
//!
//! No HTTP and no I/O here. Everything that crosses the disk keeps the fields it does not
//! know (`extra`), so a rewrite never loses what the original Python module or another
//! tool stored.

use std::fmt;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use validator::{Validate, ValidationErrors, ValidationErrorsKind};

/// The longest session name or persona key, in characters.
pub const MAX_NAME_LEN: usize = 50;
/// `active` is a route (`/sessions/active`), so no session may take it as a name.
pub const RESERVED_SESSION_NAME: &str = "active";

/// Why a name was refused; each variant's message says which rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("{what} must be at most {MAX_NAME_LEN} characters long (got {len})")]
    TooLong { what: &'static str, len: usize },
    #[error(
        "{what} may only contain letters, digits, '-' and '_' (found {found:?} at position {position})"
    )]
    BadCharacter {
        what: &'static str,
        found: char,
        position: usize,
    },
    #[error("a name in the path must be UTF-8 text made of letters, digits, '-' and '_'")]
    Encoding,
    #[error("'active' is reserved (it is the route /sessions/active); choose another session name")]
    Reserved,
}

/// A validated session name or persona key: `^[a-zA-Z0-9_-]{1,50}$`.
///
/// The only way to build one is [`Name::session`] or [`Name::persona_key`], so a value
/// of this type is always safe to join onto a directory path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Name(String);

#[derive(Validate)]
struct NameRules<'a> {
    #[validate(length(min = 1, max = 50), custom(function = "name_charset"))]
    value: &'a str,
}

fn name_charset(value: &str) -> Result<(), validator::ValidationError> {
    if value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(())
    } else {
        Err(validator::ValidationError::new("charset"))
    }
}

impl Name {
    /// A session name: the common rules, and not the reserved `active`.
    pub fn session(value: &str) -> Result<Self, NameError> {
        let name = Self::check(value, "session name")?;
        if name.0 == RESERVED_SESSION_NAME {
            return Err(NameError::Reserved);
        }
        Ok(name)
    }

    /// A persona key (the file stem of `<personas_dir>/<key>.json`).
    pub fn persona_key(value: &str) -> Result<Self, NameError> {
        Self::check(value, "persona key")
    }

    fn check(value: &str, what: &'static str) -> Result<Self, NameError> {
        match (NameRules { value }).validate() {
            Ok(()) => Ok(Self(value.to_owned())),
            Err(errors) => Err(describe_name_error(value, what, &errors)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Turns validator's report into the one rule a person needs to hear about.
fn describe_name_error(value: &str, what: &'static str, errors: &ValidationErrors) -> NameError {
    let codes: Vec<&str> = match errors.errors().get("value") {
        Some(ValidationErrorsKind::Field(list)) => list.iter().map(|e| e.code.as_ref()).collect(),
        _ => Vec::new(),
    };
    let len = value.chars().count();
    if len == 0 {
        NameError::Empty { what }
    } else if codes.contains(&"length") {
        NameError::TooLong { what, len }
    } else {
        let (position, found) = value
            .chars()
            .enumerate()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
            .unwrap_or((0, '?'));
        NameError::BadCharacter {
            what,
            found,
            position,
        }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<std::path::Path> for Name {
    fn as_ref(&self) -> &std::path::Path {
        self.0.as_ref()
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Name::session(&raw).map_err(serde::de::Error::custom)
    }
}

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

/// An instant in UTC. Written as RFC 3339 with microseconds and `+00:00`; read from
/// RFC 3339 with any offset, or from a naive ISO-8601 timestamp (taken as UTC), as
/// Python's `datetime.now().isoformat()` writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    pub fn now() -> Self {
        // Microsecond precision, so what is written reads back equal.
        let now = Utc::now();
        let micros = now.timestamp_micros();
        Self(DateTime::from_timestamp_micros(micros).unwrap_or(now))
    }

    pub fn parse(value: &str) -> Option<Self> {
        if let Ok(dt) = DateTime::parse_from_rfc3339(value) {
            return Some(Self(dt.with_timezone(&Utc)));
        }
        NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f")
            .ok()
            .map(|naive| Self(naive.and_utc()))
    }

    pub fn to_rfc3339(self) -> String {
        self.0
            .to_rfc3339_opts(SecondsFormat::Micros, false)
            .replace('Z', "+00:00")
    }

    /// A compact form for file names (archive entries).
    pub fn compact(self) -> String {
        self.0.format("%Y%m%dT%H%M%S%.6fZ").to_string()
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Timestamp::parse(&raw).ok_or_else(|| {
            serde::de::Error::custom(format!("{raw:?} is not an ISO-8601 timestamp"))
        })
    }
}

/// The content of `metadata.json` (SPEC §1). Field order matches the original module.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub name: Name,
    pub created: Timestamp,
    pub last_active: Timestamp,
    pub persona: Option<String>,
    pub pid: Option<i64>,
    pub status: Status,
    /// Whatever else the file holds, kept as it is on every rewrite.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `persona` value recorded for a session whose persona did not come from the library.
pub const CUSTOM_PERSONA: &str = "custom";

impl Metadata {
    pub fn new(name: Name, persona: Option<String>, now: Timestamp) -> Self {
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

/// A persona: the fields the spec requires, checked, and everything else kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[serde(expecting = "a persona object")]
pub struct Persona {
    #[validate(length(min = 1, message = "must be a non-empty string"))]
    pub name: String,
    #[validate(length(min = 1, message = "must be a non-empty string"))]
    pub description: String,
    #[validate(length(min = 1, message = "must be a non-empty string"))]
    pub system_prompt: String,
    #[validate(nested)]
    pub settings: Settings,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A persona's `settings`: it grows into the Claude Code CLI's flags, so extras are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[serde(expecting = "an object")]
pub struct Settings {
    #[validate(length(min = 1, message = "must be a non-empty string"))]
    pub model: String,
    #[serde(deserialize_with = "whole_number")]
    #[validate(range(min = 1, message = "must be a positive integer"))]
    pub max_turns: u64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Reads `T` from JSON, with an error that names the field at fault.
pub fn from_json_value<T: DeserializeOwned>(value: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.into_inner().to_string()
        } else {
            format!("{path}: {}", e.into_inner())
        }
    })
}

/// A non-negative integer, with a message that speaks of the value, not of Rust types.
/// The whole `u64` range is read (the contract's `maximum` for `max_turns`), not only
/// the part an `i64` holds.
fn whole_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let value = Value::deserialize(deserializer)?;
    value
        .as_u64()
        .or_else(|| as_integer(&value).and_then(|n| u64::try_from(n).ok()))
        .ok_or_else(|| {
            serde::de::Error::custom(format!("must be a positive integer (got {value})"))
        })
}

/// The integer a JSON number stands for, accepting `25.0` as JSON Schema does (an
/// integer is a number with no fractional part, however it is written).
pub fn as_integer(value: &Value) -> Option<i64> {
    if let Some(n) = value.as_i64() {
        return Some(n);
    }
    let f = value.as_f64()?;
    // The bounds keep the cast exact: i64::MAX itself is not representable as f64.
    (f.fract() == 0.0 && (-9.0e18..=9.0e18).contains(&f)).then_some(f as i64)
}

impl Persona {
    /// Reads and checks a persona from JSON, with a message naming each broken rule.
    pub fn from_value(value: Value) -> Result<Self, String> {
        let persona: Persona = from_json_value(value)?;
        persona.check()?;
        Ok(persona)
    }

    pub fn check(&self) -> Result<(), String> {
        self.validate().map_err(|errors| {
            let mut out = Vec::new();
            flatten_errors("", &errors, &mut out);
            out.join("; ")
        })
    }
}

fn flatten_errors(prefix: &str, errors: &ValidationErrors, out: &mut Vec<String>) {
    let mut fields: Vec<_> = errors.errors().iter().collect();
    fields.sort_by_key(|(field, _)| field.to_string());
    for (field, kind) in fields {
        let path = format!("{prefix}{field}");
        match kind {
            ValidationErrorsKind::Field(list) => {
                for e in list {
                    let message = e.message.as_deref().unwrap_or("is invalid");
                    out.push(format!("{path} {message}"));
                }
            }
            ValidationErrorsKind::Struct(nested) => {
                flatten_errors(&format!("{path}."), nested, out);
            }
            ValidationErrorsKind::List(items) => {
                for (i, nested) in items {
                    flatten_errors(&format!("{path}[{i}]."), nested, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_follow_the_rules() {
        assert!(Name::session("work-1_a").is_ok());
        assert_eq!(
            Name::session(""),
            Err(NameError::Empty {
                what: "session name"
            })
        );
        assert_eq!(Name::session("active"), Err(NameError::Reserved));
        assert!(Name::persona_key("active").is_ok());
        assert_eq!(
            Name::session(&"a".repeat(51)),
            Err(NameError::TooLong {
                what: "session name",
                len: 51
            })
        );
        assert_eq!(
            Name::session("../etc"),
            Err(NameError::BadCharacter {
                what: "session name",
                found: '.',
                position: 0
            })
        );
        assert_eq!(
            Name::session("a\0b").unwrap_err().to_string(),
            "session name may only contain letters, digits, '-' and '_' (found '\\0' at position 1)"
        );
        assert!(Name::session("é").is_err());
        assert!(Name::session("ａ").is_err(), "full-width look-alike");
    }

    #[test]
    fn timestamps_read_with_and_without_offset() {
        let with = Timestamp::parse("2026-11-24T21:22:16.123456+00:00").unwrap();
        let naive = Timestamp::parse("2026-11-24T21:22:16.123456").unwrap();
        let shifted = Timestamp::parse("2026-11-24T22:22:16.123456+01:00").unwrap();
        assert_eq!(with, naive);
        assert_eq!(with, shifted);
        assert_eq!(with.to_rfc3339(), "2026-11-24T21:22:16.123456+00:00");
        assert_eq!(
            Timestamp::parse("2026-11-24T21:22:16")
                .unwrap()
                .to_rfc3339(),
            "2026-11-24T21:22:16.000000+00:00"
        );
        assert!(Timestamp::parse("yesterday").is_none());
    }

    #[test]
    fn persona_errors_name_each_field() {
        let value = serde_json::json!({
            "name": "", "description": "d", "system_prompt": "p",
            "settings": {"model": "", "max_turns": 0}
        });
        assert_eq!(
            Persona::from_value(value).unwrap_err(),
            "name must be a non-empty string; settings.max_turns must be a positive integer; \
             settings.model must be a non-empty string"
        );
    }

    fn valid_name() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_-]{1,50}".prop_filter("reserved", |s| s != RESERVED_SESSION_NAME)
    }

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
        fn valid_names_are_accepted(name in valid_name()) {
            let parsed = Name::session(&name).unwrap();
            prop_assert_eq!(parsed.as_str(), name.as_str());
        }

        #[test]
        fn names_with_any_other_character_are_refused(
            prefix in "[a-z]{0,5}",
            bad in any::<char>().prop_filter("allowed", |c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')),
            suffix in "[a-z]{0,5}",
        ) {
            let name = format!("{prefix}{bad}{suffix}");
            let refused = matches!(Name::session(&name), Err(NameError::BadCharacter { .. }) | Err(NameError::TooLong { .. }));
            prop_assert!(refused);
        }

        #[test]
        fn metadata_round_trips_with_unknown_fields(
            name in valid_name(),
            pid in proptest::option::of(1i64..4_000_000),
            status in prop_oneof![Just("idle"), Just("active"), Just("suspended")],
            persona in proptest::option::of("[a-z]{1,10}"),
            micros in 0i64..4_000_000_000_000_000,
            extra in prop::collection::btree_map("x_[a-z]{1,8}", json_value(), 0..5),
        ) {
            let ts = Timestamp(DateTime::from_timestamp_micros(micros).unwrap()).to_rfc3339();
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
