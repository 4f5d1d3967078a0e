//! The files the store reads back from disk, parsed strictly: [`metadata_from_disk`],
//! [`persona_from_disk`], and [`from_disk`] for the store's own small files.
//!
//! A file that is refused is skipped, and its reason is published (in `/healthz`, and in
//! the 409 answer to a request that names the entry). Whatever is in the tree may have
//! been planted by a process with a shell in a session directory, including a copy of a
//! secret, so a reason never quotes the file: it gives a category, a position, a field
//! name only when it is one of the schema's own, and the rule a value broke in words
//! that name no content.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::conversation::CONVERSATION_ID_RULE;
use super::json::parse_strict;
use super::labels::{restore_foreign, set_aside_foreign};
use super::metadata::{Metadata, PID_RULE};
use super::persona::{MAX_TURNS_RULE, Persona};
use super::time::TIMESTAMP_RULE;
use super::usage::DOLLARS_RULE;

/// The fields of `metadata.json` a reason may name.
const METADATA_FIELDS: [&str; 15] = [
    "name",
    "created",
    "last_active",
    "persona",
    "pid",
    "status",
    "pid_recorded",
    "conversation",
    "conversations",
    "usage",
    "budget_usd",
    "last_report",
    "title",
    "tags",
    "previous_names",
];

/// The fields of a persona a reason may name.
const PERSONA_FIELDS: [&str; 6] = [
    "name",
    "description",
    "system_prompt",
    "settings",
    "settings.model",
    "settings.max_turns",
];

/// The messages of the model's own refusals that a reason may repeat: each is fixed
/// text. Anything else a type says (serde's "invalid type: string \"...\"", a name's
/// "found 'x'") may quote the value and is replaced by its category.
const RULES: [&str; 5] = [
    PID_RULE,
    TIMESTAMP_RULE,
    MAX_TURNS_RULE,
    CONVERSATION_ID_RULE,
    DOLLARS_RULE,
];

/// Parses a metadata.json read from disk; Err is a reason safe to publish. A `title` or
/// `tags` of another shape than this service writes is another tool's, kept as an
/// unknown field (see `labels::set_aside_foreign`).
pub fn metadata_from_disk(bytes: &[u8]) -> Result<Metadata, String> {
    let mut value = object(bytes)?;
    if !set_aside_foreign(&mut value) {
        return typed(Some(bytes), value, &METADATA_FIELDS);
    }
    // The renamed keys would make positions read from `bytes` point elsewhere.
    let mut metadata: Metadata = typed(None, value, &METADATA_FIELDS)?;
    restore_foreign(&mut metadata.extra);
    Ok(metadata)
}

/// Parses and validates a persona file read from disk (a library `<key>.json` or a
/// session's `persona.json`); Ok is the JSON value as stored; Err is a reason safe to
/// publish.
pub fn persona_from_disk(bytes: &[u8]) -> Result<Value, String> {
    let value = object(bytes)?;
    let persona: Persona = typed(Some(bytes), value.clone(), &PERSONA_FIELDS)?;
    // Validation names a field of the schema and a rule; never the value.
    persona.check()?;
    Ok(value)
}

/// Parses a small JSON file of the store's own (e.g. .current.json) strictly.
pub fn from_disk<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let value = parse_strict(bytes).map_err(|e| e.to_string())?;
    typed(Some(bytes), value, &[])
}

/// The document, which must be an object.
fn object(bytes: &[u8]) -> Result<Value, String> {
    let value = parse_strict(bytes).map_err(|e| e.to_string())?;
    if value.is_object() {
        Ok(value)
    } else {
        Err("not a JSON object".to_owned())
    }
}

/// Reads `T` from `value`, parsed from `bytes`. On failure, `bytes` (when given) are
/// read again for the position (a [`Value`] has none); only a refusal pays for that.
fn typed<T: DeserializeOwned>(
    bytes: Option<&[u8]>,
    value: Value,
    fields: &[&str],
) -> Result<T, String> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|from_value| {
        let Some(bytes) = bytes else {
            return reason(&from_value, fields);
        };
        let mut reread = serde_json::Deserializer::from_slice(bytes);
        match serde_path_to_error::deserialize::<_, T>(&mut reread) {
            Err(located) => reason(&located, fields),
            // Not expected; the reason is the same, without its position.
            Ok(_) => reason(&from_value, fields),
        }
    })
}

/// A reason for `error` that names nothing from the file; see the module's documentation.
fn reason(error: &serde_path_to_error::Error<serde_json::Error>, fields: &[&str]) -> String {
    let inner = error.inner();
    let position = match inner.line() {
        0 => String::new(),
        line => format!(" at line {line} column {}", inner.column()),
    };
    let message = inner.to_string();
    let message = message.strip_suffix(&position).unwrap_or(&message);
    let path = error.path().to_string();
    let field = fields.contains(&path.as_str()).then_some(path.as_str());

    if let (Some(field), Some(rule)) = (field, RULES.iter().find(|r| **r == message)) {
        return format!("{field} {rule}{position}");
    }
    if let Some(missing) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        let full = match path.as_str() {
            "." => missing.to_owned(),
            parent => format!("{parent}.{missing}"),
        };
        return if fields.contains(&full.as_str()) {
            format!("missing field `{full}`{position}")
        } else {
            format!("a required field is missing{position}")
        };
    }
    let category = if message.starts_with("invalid type:") {
        "wrong type"
    } else {
        "invalid value"
    };
    match field {
        Some(field) => format!("{category}{position} in field `{field}`"),
        None => format!("{category}{position}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SessionName, Status, Timestamp};
    use proptest::prelude::*;

    const PYTHON_METADATA: &str = r#"{
  "name": "work",
  "created": "2026-11-24T21:22:16.123456",
  "last_active": "2026-11-24T21:22:16.123456+00:00",
  "persona": null,
  "pid": 4242,
  "status": "active",
  "notes": {"kept": [1, 2.5, "x"]}
}"#;

    /// `PYTHON_METADATA` with the line of `field` replaced by `line`.
    fn metadata_with(field: &str, line: &str) -> String {
        let key = format!("  \"{field}\"");
        let indented = format!("  {line}");
        let lines: Vec<&str> = PYTHON_METADATA
            .lines()
            .map(|l| if l.starts_with(&key) { &indented } else { l })
            .collect();
        lines.join("\n")
    }

    #[test]
    fn metadata_as_the_original_module_writes_it_is_read() {
        let metadata = metadata_from_disk(PYTHON_METADATA.as_bytes()).unwrap();
        assert_eq!(metadata.name, SessionName::parse("work").unwrap());
        assert_eq!(metadata.created, metadata.last_active);
        assert_eq!(
            (metadata.pid, metadata.status),
            (Some(4242), Status::Active)
        );
        assert_eq!(
            metadata.extra["notes"],
            serde_json::json!({"kept": [1, 2.5, "x"]})
        );
    }

    #[test]
    fn a_refused_metadata_file_gets_a_category_a_position_and_a_schema_field() {
        let refused = |text: &str| metadata_from_disk(text.as_bytes()).unwrap_err();
        let cases = [
            ("987654321\n".to_owned(), "not a JSON object"),
            (String::new(), "empty, not JSON"),
            (
                PYTHON_METADATA[..40].to_owned(),
                "not JSON at line 3 column 20",
            ),
            (
                metadata_with("pid", r#""pid": 1, "pid": 2,"#),
                "duplicate key at line 6 column 17",
            ),
            (
                metadata_with("name", r#""name": 123456789,"#),
                "wrong type at line 2 column 19 in field `name`",
            ),
            (
                metadata_with("name", r#""name": "a/b","#),
                "invalid value at line 2 column 15 in field `name`",
            ),
            (
                metadata_with("pid", r#""pid": 0,"#),
                "pid must be a positive integer or null at line 6 column 10",
            ),
            (
                metadata_with("pid", r#""pid": "4242","#),
                "pid must be a positive integer or null at line 6 column 15",
            ),
            (
                metadata_with("created", r#""created": "0000-01-01T00:00:00","#),
                "created must be an ISO-8601 timestamp with a year from 1 to 9999 \
                 at line 3 column 34",
            ),
            (
                metadata_with("status", r#""status": "running","#),
                "invalid value at line 7 column 21 in field `status`",
            ),
            (
                metadata_with("status", ""),
                "missing field `status` at line 9 column 1",
            ),
            (
                metadata_with("persona", r#""persona": 55555,"#),
                "wrong type at line 5 column 18 in field `persona`",
            ),
        ];
        for (text, reason) in cases {
            assert_eq!(refused(&text), reason, "{text}");
        }
    }

    #[test]
    fn labels_of_another_shape_are_another_tools_and_kept_where_they_are() {
        let with = |extra: &str| {
            format!(
                r#"{{"name": "work", "created": "2026-11-24T21:22:16.000000+00:00",
"last_active": "2026-11-24T21:22:16.000000+00:00", "persona": null, "pid": null,
"status": "idle", {extra}}}"#
            )
        };
        let read = metadata_from_disk(
            with(r#""title": "DNS", "tags": ["a", "b"], "previous_names": ["old"]"#).as_bytes(),
        )
        .unwrap();
        assert_eq!(
            read.title.map(|t| t.as_str().to_owned()),
            Some("DNS".into())
        );
        assert_eq!(read.tags.iter().count(), 2);
        assert_eq!(read.previous_names[0].as_str(), "old");
        assert!(read.extra.is_empty());

        for (extra, keys) in [
            (
                r#""x": 1, "tags": ["a", {"pinned": null}], "y": 2"#,
                ["x", "tags", "y"],
            ),
            (
                r#""x": 1, "tags": ["a", "a"], "title": "one\ntwo""#,
                ["x", "tags", "title"],
            ),
            (r#""title": 5, "x": 1, "tags": []"#, ["title", "x", "tags"]),
            (
                r#""title": null, "tags": "dns", "x": 1"#,
                ["title", "tags", "x"],
            ),
        ] {
            let text = with(extra);
            let read = metadata_from_disk(text.as_bytes()).unwrap();
            assert!(read.title.is_none() && read.tags.is_empty(), "{extra}");
            assert_eq!(read.extra.keys().collect::<Vec<_>>(), keys, "{extra}");
            // Written back as they were, in their places.
            let written = serde_json::to_value(&read).unwrap();
            let original: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(written, original, "{extra}");
            let order: Vec<&String> = written.as_object().unwrap().keys().collect();
            assert_eq!(
                order,
                original.as_object().unwrap().keys().collect::<Vec<_>>()
            );
        }
        // A stand-in name planted in the file is not trusted to be one.
        let planted = with(r#""\u0000set-aside:tags": 1, "tags": 5"#);
        assert_eq!(
            metadata_from_disk(planted.as_bytes()).unwrap_err(),
            "wrong type at line 3 column 54 in field `tags`"
        );
        // Previous names are this service's own: no other shape is taken.
        assert_eq!(
            metadata_from_disk(with(r#""previous_names": ["secret/token"]"#).as_bytes())
                .unwrap_err(),
            "invalid value at line 3 column 52"
        );
    }

    fn persona_text() -> String {
        r#"{"name": "N", "description": "D", "system_prompt": "P",
            "settings": {"model": "m", "max_turns": 25.0, "effort": "high"}, "x": [1]}"#
            .to_owned()
    }

    #[test]
    fn a_persona_is_served_as_stored_once_it_is_valid() {
        let value = persona_from_disk(persona_text().as_bytes()).unwrap();
        assert_eq!(
            value,
            serde_json::from_str::<Value>(&persona_text()).unwrap()
        );
        assert_eq!(value["settings"]["max_turns"], serde_json::json!(25.0));

        let refused = |from: &str, to: &str| {
            persona_from_disk(persona_text().replacen(from, to, 1).as_bytes()).unwrap_err()
        };
        assert_eq!(
            refused(r#""N""#, r#"" \t""#),
            "name must contain visible text"
        );
        assert_eq!(
            refused(r#""m""#, r#""""#),
            "settings.model must be a non-empty string"
        );
        assert_eq!(
            refused("25.0", "-25"),
            "settings.max_turns must be a positive integer at line 2 column 55"
        );
        assert_eq!(
            refused(r#""x": [1]"#, r#""x": 1, "x": 2"#),
            "duplicate key at line 2 column 88"
        );
        assert_eq!(
            refused(r#""name": "N", "#, ""),
            "missing field `name` at line 2 column 86"
        );
        assert_eq!(
            refused(r#""model": "m""#, r#""model": 31337"#),
            "wrong type at line 2 column 39 in field `settings.model`"
        );
        assert_eq!(
            persona_from_disk(b"[1, 2]").unwrap_err(),
            "not a JSON object"
        );
    }

    #[derive(Debug, serde::Deserialize)]
    struct Pointer {
        name: Option<SessionName>,
        #[serde(default)]
        since: Option<Timestamp>,
    }

    #[test]
    fn a_store_file_is_read_strictly_and_named_by_position_only() {
        let pointer: Pointer = from_disk(br#"{"name": "work"}"#).unwrap();
        assert_eq!(pointer.name.unwrap().as_str(), "work");
        assert!(pointer.since.is_none());
        let refused = |text: &str| from_disk::<Pointer>(text.as_bytes()).unwrap_err();
        assert_eq!(
            refused(r#"{"name": "a", "name": "b"}"#),
            "duplicate key at line 1 column 20"
        );
        // No list of fields for an arbitrary type: none is named.
        assert_eq!(refused(r#"{"name": 7}"#), "wrong type at line 1 column 10");
        assert_eq!(
            refused(r#"{"name": null, "since": "x"}"#),
            "invalid value at line 1 column 28"
        );
        assert_eq!(
            from_disk::<Metadata>(b"{}").unwrap_err(),
            "a required field is missing at line 1 column 2"
        );
    }

    /// Files with `secret` planted where a parser might quote it.
    fn planted(secret: &str) -> Vec<String> {
        let mut files = vec![
            secret.to_owned(),
            format!("{secret}\n"),
            format!("\"{secret}\""),
            format!("[{secret}]"),
            format!("{{\"{secret}\": 1, \"{secret}\": 2}}"),
            format!("{{\"{secret}\": "),
            format!("{{\"a\": {secret}"),
            format!("{{\"a\": \"{secret}"),
            format!("{{\"{secret}\": 1}} {secret}"),
        ];
        for field in METADATA_FIELDS {
            for value in [
                secret.to_owned(),
                format!("\"{secret}\""),
                format!("-{secret}"),
            ] {
                files.push(metadata_with(field, &format!("\"{field}\": {value},")));
                files.push(metadata_with(field, &format!("\"{field}\": [{value}],")));
            }
        }
        let persona = persona_text();
        for target in [
            r#""N""#,
            r#""D""#,
            r#""P""#,
            r#""m""#,
            "25.0",
            r#"{"model""#,
        ] {
            for value in [
                secret.to_owned(),
                format!("\"{secret}\""),
                format!("{{\"{secret}\": 1}}"),
            ] {
                files.push(persona.replacen(target, &value, 1));
            }
        }
        files
    }

    fn assert_no_leak(secret: &str) -> Result<(), TestCaseError> {
        for file in planted(secret) {
            let reasons = [
                metadata_from_disk(file.as_bytes()).err(),
                persona_from_disk(file.as_bytes()).err(),
                from_disk::<Pointer>(file.as_bytes()).err(),
                from_disk::<Metadata>(file.as_bytes()).err(),
            ];
            for reason in reasons.into_iter().flatten() {
                prop_assert!(!reason.contains(secret), "{reason:?} quotes {file:?}");
            }
        }
        Ok(())
    }

    #[test]
    fn the_digits_of_a_planted_token_never_appear_in_a_reason() {
        assert_no_leak("987654321").unwrap();
        assert_no_leak("123456789").unwrap();
        let reason = metadata_from_disk(br#"{"name": 123456789}"#).unwrap_err();
        assert_eq!(reason, "wrong type at line 1 column 18 in field `name`");
    }

    proptest! {
        #[test]
        fn no_reason_quotes_the_file(
            secret in prop_oneof!["[1-9][0-9]{8,19}", "[a-zA-Z_][a-zA-Z0-9_]{11,30}"],
        ) {
            assert_no_leak(&secret)?;
        }
    }
}
