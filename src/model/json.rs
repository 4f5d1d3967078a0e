//! Strict JSON: [`parse_strict`] reads a document into a [`Value`] and refuses an object
//! that repeats a key, at any depth. serde_json has no option for it and keeps the last
//! of the repeated values silently, so a body or a file could say two things at once
//! and be read as one of them.
//!
//! Request bodies and the files read from disk both go through it; what each says about
//! a refusal is up to its caller ([`StrictError`] keeps the key apart from the message).

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The most characters of a repeated key that [`StrictError::DuplicateKey`] keeps.
pub const MAX_KEY_CHARS: usize = 50;

/// Why a document was refused by [`parse_strict`]. Positions are 1-based lines and
/// columns of the text parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrictError {
    /// Nothing but whitespace.
    Empty,
    /// Not well-formed JSON (or it ends early).
    NotJson { line: usize, column: usize },
    /// Arrays and objects nested deeper than serde_json's limit (128).
    TooDeep { line: usize, column: usize },
    /// An object has `key` twice; the position is just after its second occurrence.
    DuplicateKey {
        /// The key's first [`MAX_KEY_CHARS`] characters: content of the document, so
        /// for its sender's eyes only.
        key: String,
        /// Whether `key` was cut short.
        truncated: bool,
        line: usize,
        column: usize,
    },
}

/// Says what went wrong and where, never what the document holds: the key of a
/// [`StrictError::DuplicateKey`] is left out.
impl fmt::Display for StrictError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StrictError::Empty => f.write_str("empty, not JSON"),
            StrictError::NotJson { line, column } => {
                write!(f, "not JSON at line {line} column {column}")
            }
            StrictError::TooDeep { line, column } => write!(
                f,
                "nested more than 128 levels deep at line {line} column {column}"
            ),
            StrictError::DuplicateKey { line, column, .. } => {
                write!(f, "duplicate key at line {line} column {column}")
            }
        }
    }
}

impl std::error::Error for StrictError {}

/// Reads a whole JSON document (trailing whitespace only) into a [`Value`], refusing an
/// object that repeats a key anywhere in it.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, StrictError> {
    let repeated = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = StrictSeed {
        repeated: &repeated,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value));
    parsed.map_err(|e| {
        let (line, column) = (e.line(), e.column());
        match repeated.into_inner() {
            Some((key, truncated)) if e.is_data() => StrictError::DuplicateKey {
                key,
                truncated,
                line,
                column,
            },
            _ if e.is_eof() && bytes.iter().all(u8::is_ascii_whitespace) => StrictError::Empty,
            // serde_json's own words, a fixed text that quotes nothing.
            _ if e.to_string().starts_with("recursion limit exceeded") => {
                StrictError::TooDeep { line, column }
            }
            _ => StrictError::NotJson { line, column },
        }
    })
}

/// Builds a [`Value`] as serde_json's own does, but stops at a repeated key and leaves
/// it in `repeated` (the error itself can only carry a message).
#[derive(Clone, Copy)]
struct StrictSeed<'a> {
    repeated: &'a RefCell<Option<(String, bool)>>,
}

impl<'de> DeserializeSeed<'de> for StrictSeed<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                let truncated = key.chars().nth(MAX_KEY_CHARS).is_some();
                let kept = key.chars().take(MAX_KEY_CHARS).collect();
                *self.repeated.borrow_mut() = Some((kept, truncated));
                return Err(de::Error::custom("duplicate key"));
            }
            let value = map.next_value_seed(self)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn duplicate(text: &str) -> (String, bool, usize, usize) {
        match parse_strict(text.as_bytes()) {
            Err(StrictError::DuplicateKey {
                key,
                truncated,
                line,
                column,
            }) => (key, truncated, line, column),
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn a_repeated_key_is_refused_at_any_depth() {
        assert_eq!(duplicate(r#"{"a": 1, "a": 1}"#), ("a".into(), false, 1, 12));
        assert_eq!(
            duplicate("{\"s\": {\"model\": \"m\",\n  \"model\": \"n\"}}"),
            ("model".into(), false, 2, 9)
        );
        assert_eq!(duplicate(r#"[{"x": [{"k": 1, "k": 2}]}]"#).0, "k");
        let long = "é".repeat(60);
        let (key, truncated, ..) = duplicate(&format!(r#"{{"{long}": 1, "{long}": 2}}"#));
        assert_eq!((key.chars().count(), truncated), (MAX_KEY_CHARS, true));
        // The same key in two objects is not a repeat.
        assert!(parse_strict(br#"{"a": {"a": 1}, "b": [{"a": 2}, {"a": 3}]}"#).is_ok());
    }

    #[test]
    fn other_refusals_say_what_and_where() {
        let refused = |text: &str| parse_strict(text.as_bytes()).unwrap_err().to_string();
        assert_eq!(refused(""), "empty, not JSON");
        assert_eq!(refused(" \n"), "empty, not JSON");
        assert_eq!(refused("{\n  \"a\": tru"), "not JSON at line 2 column 10");
        assert_eq!(refused("{} {}"), "not JSON at line 1 column 4");
        assert_eq!(refused("\"\u{0}\""), "not JSON at line 1 column 2");
        assert_eq!(
            refused(&"[".repeat(200)),
            "nested more than 128 levels deep at line 1 column 128"
        );
        assert_eq!(
            refused(r#"{"k": 1, "k": 2}"#),
            "duplicate key at line 1 column 12"
        );
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any::<String>().prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
                prop::collection::vec((any::<String>(), inner), 0..5)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Without a repeated key, the result is serde_json's own.
        #[test]
        fn reads_what_serde_json_reads(value in json_value(), pretty in any::<bool>()) {
            let text = if pretty {
                serde_json::to_string_pretty(&value)
            } else {
                serde_json::to_string(&value)
            }
            .unwrap();
            let ours = parse_strict(text.as_bytes()).unwrap();
            let theirs: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(ours, theirs);
        }
    }
}
