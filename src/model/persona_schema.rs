//! The persona's JSON Schema (draft 2020-12), built from the constants the validation
//! itself reads (the invisible characters, the permission modes, the reserved flags), so
//! the schema the service publishes cannot drift from the rules it applies.
//!
//! What a schema cannot say is left out, and checked only by the service: an object
//! that repeats a key (the service refuses it; JSON Schema sees one value).

use serde_json::{Value, json};

use super::launch_settings::{PERMISSION_MODES, RESERVED_FLAGS};
use super::persona::{char_class, visible_text_pattern};

/// The dialect the schema is written in.
pub const PERSONA_SCHEMA_DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// The characters `str::trim` removes (Unicode's White_Space): a launch argument made
/// only of these is empty.
fn whitespace_ranges() -> Vec<(char, char)> {
    let mut ranges: Vec<(char, char)> = Vec::new();
    for c in (0..=0x10ffff).filter_map(char::from_u32) {
        if !c.is_whitespace() {
            continue;
        }
        match ranges.last_mut() {
            Some((_, high)) if u32::from(*high) + 1 == u32::from(c) => *high = c,
            _ => ranges.push((c, c)),
        }
    }
    ranges
}

/// The persona's JSON Schema.
pub fn persona_schema() -> Value {
    let text =
        |description: &str| json!({ "$ref": "#/$defs/visible_text", "description": description });
    let arguments =
        |description: &str| json!({ "$ref": "#/$defs/arguments", "description": description });
    let dollars =
        |description: &str| json!({ "$ref": "#/$defs/dollars", "description": description });
    // A flag of the launch spec, alone or as `--flag=value` (see `LaunchSettings`).
    let reserved_with_value = format!("^(?:{})=", RESERVED_FLAGS.join("|"));
    // A short reserved flag with its value or other short flags run on (`-r<id>`, `-pc`),
    // as the CLI reads them.
    let short: String = RESERVED_FLAGS
        .iter()
        .filter(|f| f.len() == 2)
        .filter_map(|f| f.chars().nth(1))
        .collect();
    let reserved_short = format!("^-[{short}]");
    json!({
        "$schema": PERSONA_SCHEMA_DIALECT,
        "title": "A session-manager persona",
        "description": "A persona of the library (<personas_dir>/<key>.json) or a session's \
            persona.json. Fields not named here, in the persona and in settings, are allowed \
            and kept. The service also refuses a file in which an object repeats a key.",
        "type": "object",
        "required": ["name", "description", "system_prompt", "settings"],
        "properties": {
            "name": text("The display name."),
            "description": text("One line on what the persona is for."),
            "system_prompt": text("The system prompt that shapes Claude's behaviour in the session."),
            "settings": {
                "type": "object",
                "description": "How the Claude Code CLI is started for a session.",
                "required": ["model", "max_turns"],
                "properties": {
                    "model": text("The model (--model)."),
                    "max_turns": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": u64::MAX,
                        "description": "The most agentic turns of one run (--max-turns)."
                    },
                    "system_prompt_mode": {
                        "enum": ["append", "replace"],
                        "description": "append (the default): the prompt is added to the CLI's own \
                            (--append-system-prompt); replace: it is the whole prompt (--system-prompt)."
                    },
                    "permission_mode": {
                        "enum": PERMISSION_MODES,
                        "description": "The CLI's --permission-mode."
                    },
                    "allowed_tools": arguments("Tools allowed without asking (--allowedTools)."),
                    "disallowed_tools": arguments("Tools refused (--disallowedTools)."),
                    "add_dirs": arguments("More directories the CLI may use (--add-dir)."),
                    "extra_args": {
                        "allOf": [{ "$ref": "#/$defs/arguments" }],
                        "items": {
                            "not": {
                                "anyOf": [
                                    { "enum": RESERVED_FLAGS },
                                    { "type": "string", "pattern": reserved_with_value },
                                    { "type": "string", "pattern": reserved_short }
                                ]
                            }
                        },
                        "description": "More arguments for the CLI, each one argument; none may set \
                            a flag the launch spec sets itself."
                    },
                    "max_budget_usd": dollars("The CLI's cap for one run (--max-budget-usd)."),
                    "budget_usd": dollars("The session's total budget, kept by the service.")
                },
                "additionalProperties": true
            }
        },
        "additionalProperties": true,
        "$defs": {
            "visible_text": {
                "type": "string",
                "minLength": 1,
                "pattern": visible_text_pattern(),
                "description": "Text with at least one visible character: not only whitespace, \
                    control characters and invisible format characters."
            },
            "argument": {
                "type": "string",
                "pattern": char_class(&whitespace_ranges(), true),
                "not": { "pattern": "\\x00" },
                "description": "One command-line argument: not only whitespace, and no NUL."
            },
            "arguments": {
                "type": "array",
                "items": { "$ref": "#/$defs/argument" }
            },
            "dollars": {
                "type": "number",
                "exclusiveMinimum": 0,
                "description": "A positive amount of US dollars."
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lists_come_from_the_rules() {
        let schema = persona_schema();
        let settings = &schema["properties"]["settings"]["properties"];
        assert_eq!(settings["permission_mode"]["enum"], json!(PERMISSION_MODES));
        assert_eq!(
            settings["extra_args"]["items"]["not"]["anyOf"][0]["enum"],
            json!(RESERVED_FLAGS)
        );
        // Flags are written into a pattern unescaped: only letters and '-' may be in one.
        for flag in RESERVED_FLAGS {
            assert!(
                flag.chars().all(|c| c.is_ascii_alphabetic() || c == '-'),
                "{flag}"
            );
        }
        assert!(
            whitespace_ranges()
                .iter()
                .all(|(_, high)| u32::from(*high) <= 0xffff)
        );
        let pattern = schema["$defs"]["argument"]["pattern"].as_str().unwrap();
        assert!(
            pattern.starts_with("[^\\x09-\\x0d\\x20\\x85\\xa0"),
            "{pattern}"
        );
    }
}
