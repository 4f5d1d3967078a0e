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
