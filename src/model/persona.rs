//! Personas (SPEC §1): the fields the spec requires, checked with a message that names
//! each broken rule, and every other field kept; and the JSON helpers that read a value
//! into a type with the field at fault named.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use validator::{Validate, ValidationErrors, ValidationErrorsKind};

/// A persona: the fields the spec requires, checked, and everything else kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[serde(expecting = "a persona object")]
pub struct Persona {
    #[validate(
        length(min = 1, message = "must be a non-empty string"),
        custom(function = "visible_text", message = "must contain visible text")
    )]
    pub name: String,
    #[validate(
        length(min = 1, message = "must be a non-empty string"),
        custom(function = "visible_text", message = "must contain visible text")
    )]
    pub description: String,
    #[validate(
        length(min = 1, message = "must be a non-empty string"),
        custom(function = "visible_text", message = "must contain visible text")
    )]
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
    #[validate(
        length(min = 1, message = "must be a non-empty string"),
        custom(function = "visible_text", message = "must contain visible text")
    )]
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
        // The rule, not the value: this message may reach /healthz about a planted file.
        .ok_or_else(|| serde::de::Error::custom(MAX_TURNS_RULE))
}

/// Why a `max_turns` was refused; it names no part of the value.
pub const MAX_TURNS_RULE: &str = "must be a positive integer";

/// The characters that show nothing: whitespace, control characters, and the
/// default-ignorable code points of Unicode's Basic Multilingual Plane (zero-width
/// spaces and joiners, direction marks, variation selectors, the byte order mark, Hangul
/// fillers, ...). A persona's name or prompt made only of these is empty to a reader.
/// Ranges, inclusive; `openapi.yaml` has the same set as a `pattern`.
const INVISIBLE: [(char, char); 18] = [
    ('\u{0}', '\u{20}'),
    ('\u{7f}', '\u{a0}'),
    ('\u{ad}', '\u{ad}'),
    ('\u{34f}', '\u{34f}'),
    ('\u{61c}', '\u{61c}'),
    ('\u{115f}', '\u{1160}'),
    ('\u{1680}', '\u{1680}'),
    ('\u{17b4}', '\u{17b5}'),
    ('\u{180b}', '\u{180f}'),
    ('\u{2000}', '\u{200f}'),
    ('\u{2028}', '\u{202f}'),
    ('\u{205f}', '\u{206f}'),
    ('\u{3000}', '\u{3000}'),
    ('\u{3164}', '\u{3164}'),
    ('\u{fe00}', '\u{fe0f}'),
    ('\u{feff}', '\u{feff}'),
    ('\u{ffa0}', '\u{ffa0}'),
    ('\u{fff0}', '\u{fff8}'),
];

fn is_visible(c: char) -> bool {
    !INVISIBLE
        .iter()
        .any(|(low, high)| (*low..=*high).contains(&c))
}

/// An empty text is left to the `length` rule, so it gets one message, not two.
fn visible_text(text: &str) -> Result<(), validator::ValidationError> {
    if text.is_empty() || text.chars().any(is_visible) {
        Ok(())
    } else {
        Err(validator::ValidationError::new("visible_text"))
    }
}

/// The JSON Schema `pattern` (ECMA-262, and Python's `re`) a persona's text fields
/// match: at least one character that is not invisible (see `INVISIBLE`).
pub fn visible_text_pattern() -> String {
    char_class(&INVISIBLE, true)
}

/// A regular-expression class of the inclusive `ranges` (`[^...]` when `negated`), with
/// every character escaped (`\xhh`, `\uhhhh`) the way ECMA-262, Python's `re` and Rust's
/// `regex` all read. Characters of the Basic Multilingual Plane only (four hex digits).
pub(super) fn char_class(ranges: &[(char, char)], negated: bool) -> String {
    let escape = |c: char| match u32::from(c) {
        code @ 0..=0xff => format!("\\x{code:02x}"),
        code => format!("\\u{code:04x}"),
    };
    let ranges: String = ranges
        .iter()
        .map(|&(low, high)| {
            if low == high {
                escape(low)
            } else {
                format!("{}-{}", escape(low), escape(high))
            }
        })
        .collect();
    format!("[{}{ranges}]", if negated { "^" } else { "" })
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
        let mut out = Vec::new();
        if let Err(errors) = self.validate() {
            flatten_errors("", &errors, &mut out);
        }
        if let Err(launch) = self.launch_settings() {
            out.push(launch);
        }
        if out.is_empty() {
            Ok(())
        } else {
            Err(out.join("; "))
        }
    }

    /// The settings that shape how the CLI is started (`crate::launch`), checked.
    pub fn launch_settings(&self) -> Result<super::LaunchSettings, String> {
        super::LaunchSettings::from_settings(&self.settings.extra)
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

/// The budget a persona gives the sessions made from it (`settings.budget_usd`), if any.
pub fn persona_budget(persona: &Value) -> Option<super::Dollars> {
    persona["settings"]["budget_usd"]
        .as_f64()
        .filter(|d| *d > 0.0)
        .and_then(super::Dollars::from_f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn persona_with(field: &str, text: &str) -> Value {
        let mut value = serde_json::json!({
            "name": "n", "description": "d", "system_prompt": "p",
            "settings": {"model": "m", "max_turns": 1}
        });
        match field {
            "model" => value["settings"]["model"] = text.into(),
            _ => value[field] = text.into(),
        }
        value
    }

    #[test]
    fn text_fields_must_contain_visible_text() {
        let invisible = [
            " ",
            "\t\n\r ",
            "\u{0}",
            "\u{7f}\u{85}",
            "\u{a0}\u{3000}",
            "\u{200b}\u{feff}",
        ];
        for (field, path) in [
            ("name", "name"),
            ("description", "description"),
            ("system_prompt", "system_prompt"),
            ("model", "settings.model"),
        ] {
            for text in invisible {
                assert_eq!(
                    Persona::from_value(persona_with(field, text)),
                    Err(format!("{path} must contain visible text")),
                    "{field}: {text:?}"
                );
            }
            for text in [" x ", "é", "\u{200b}a", "日本", "🙂"] {
                assert!(
                    Persona::from_value(persona_with(field, text)).is_ok(),
                    "{text:?}"
                );
            }
        }
    }

    #[test]
    fn whitespace_and_control_characters_are_invisible() {
        let chars = (0..=0x10ffff).filter_map(char::from_u32);
        for c in chars.filter(|c| c.is_whitespace() || c.is_control()) {
            assert!(!is_visible(c), "{c:?}");
        }
        let pattern = visible_text_pattern();
        assert!(
            pattern.starts_with("[^\\x00-\\x20\\x7f-\\xa0\\xad\\u034f"),
            "{pattern}"
        );
        assert!(pattern.ends_with("\\ufff0-\\ufff8]"), "{pattern}");
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
}
