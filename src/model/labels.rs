//! A session's labels, which the operator sets to tell sessions apart without renaming
//! them: a [`Title`] (free text) and [`Tags`] (names to filter by). Renaming moves the
//! session's directory, and the Claude Code CLI finds a conversation by that path, so a
//! label is the way to rename a session that has one.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::name::Tag;
use super::persona::{is_visible, visible_text_pattern};

/// The longest title, in characters (Unicode scalar values).
pub const MAX_TITLE_CHARS: usize = 200;
/// The most tags a session has.
pub const MAX_TAGS: usize = 20;

/// A session's title: 1 to [`MAX_TITLE_CHARS`] characters, at least one of them visible,
/// none a control character (a title is one line: no line breaks, no tabs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Title(String);

impl Title {
    /// Checks `text` against the rules; `Err` says which one it breaks.
    pub fn parse(text: &str) -> Result<Self, String> {
        let len = text.chars().count();
        if !(1..=MAX_TITLE_CHARS).contains(&len) {
            return Err(format!(
                "must be 1 to {MAX_TITLE_CHARS} characters long (got {len})"
            ));
        }
        if let Some((position, c)) = text.chars().enumerate().find(|(_, c)| c.is_control()) {
            return Err(format!(
                "must be one line without control characters (found U+{:04X} at position \
                 {position})",
                u32::from(c)
            ));
        }
        if !text.chars().any(is_visible) {
            return Err("must contain visible text".to_owned());
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Title {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The JSON Schema `pattern` (ECMA-262, and Python's `re`) a title matches: no control
/// character anywhere, and at least one visible one (`visible_text_pattern`).
pub fn title_pattern() -> String {
    let not_control = "[^\\x00-\\x1f\\x7f-\\x9f]";
    format!("^{not_control}*{}{not_control}*$", visible_text_pattern())
}

/// A session's tags: at most [`MAX_TAGS`], each a [`Tag`], in the order they were
/// given. A list that names a tag twice is refused rather than silently deduplicated:
/// it is most likely a mistake, and the contract says `uniqueItems`. An empty list is
/// no tags (and is not stored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Tags(Vec<Tag>);

impl Tags {
    /// Checks a list of tags; `Err` names the item at fault (counted from 1) and its rule.
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<Self, String> {
        if items.len() > MAX_TAGS {
            return Err(format!("at most {MAX_TAGS} tags (got {})", items.len()));
        }
        let mut tags: Vec<Tag> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let tag = Tag::parse(item.as_ref()).map_err(|e| format!("item {}: {e}", i + 1))?;
            if tags.contains(&tag) {
                return Err(format!(
                    "item {}: the tag '{tag}' is given twice; give each tag once",
                    i + 1
                ));
            }
            tags.push(tag);
        }
        Ok(Self(tags))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, tag: &Tag) -> bool {
        self.0.contains(tag)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Tag> {
        self.0.iter()
    }
}

impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let items = Vec::<String>::deserialize(deserializer)?;
        Self::parse(&items).map_err(serde::de::Error::custom)
    }
}

/// The labels' names in `metadata.json`. Another tool may have stored a field of either
/// name before this service had them; this service reads one as its own only in the
/// shape it writes (a title; a non-empty list of tags), and keeps any other value as
/// that tool's, unknown field, as it is and where it is.
const LABELS: [&str; 2] = ["title", "tags"];

/// Where another tool's label goes through the parser: under this prefix, a name no
/// field of `Metadata` has, so it lands among the unknown fields, in its place.
const SET_ASIDE: &str = "\u{0}set-aside:";

fn is_ours(label: &str, value: &Value) -> bool {
    match (label, value) {
        ("title", Value::String(text)) => Title::parse(text).is_ok(),
        ("tags", Value::Array(items)) => {
            let names: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
            names.is_some_and(|names| !names.is_empty() && Tags::parse(&names).is_ok())
        }
        _ => false,
    }
}

/// Renames the labels of `document` (a `metadata.json`) that are not this service's
/// (see `LABELS`) so that they parse as unknown fields; whether it renamed any.
pub(super) fn set_aside_foreign(document: &mut Value) -> bool {
    let Value::Object(fields) = document else {
        return false;
    };
    let foreign: Vec<&str> = LABELS
        .into_iter()
        .filter(|label| fields.get(*label).is_some_and(|v| !is_ours(label, v)))
        .collect();
    // A stand-in name already there was not put there by this service: no renaming.
    if foreign.is_empty() || fields.keys().any(|k| k.starts_with(SET_ASIDE)) {
        return false;
    }
    *fields = std::mem::take(fields)
        .into_iter()
        .map(|(key, value)| match foreign.contains(&key.as_str()) {
            true => (format!("{SET_ASIDE}{key}"), value),
            false => (key, value),
        })
        .collect();
    true
}

/// Gives the labels [`set_aside_foreign`] renamed their names back, in their places
/// among the unknown fields.
pub(super) fn restore_foreign(extra: &mut Map<String, Value>) {
    *extra = std::mem::take(extra)
        .into_iter()
        .map(|(key, value)| match key.strip_prefix(SET_ASIDE) {
            Some(label) => (label.to_owned(), value),
            None => (key, value),
        })
        .collect();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_title_is_one_line_of_visible_text_of_at_most_200_characters() {
        assert_eq!(
            Title::parse("Homelab — DNS").unwrap().as_str(),
            "Homelab — DNS"
        );
        assert!(Title::parse(&"é".repeat(200)).is_ok());
        assert!(Title::parse(" x ").is_ok());
        assert_eq!(
            Title::parse("").unwrap_err(),
            "must be 1 to 200 characters long (got 0)"
        );
        assert_eq!(
            Title::parse(&"é".repeat(201)).unwrap_err(),
            "must be 1 to 200 characters long (got 201)"
        );
        assert_eq!(
            Title::parse("a\nb").unwrap_err(),
            "must be one line without control characters (found U+000A at position 1)"
        );
        assert!(Title::parse("a\u{85}").is_err(), "C1 control");
        for invisible in [" ", "\u{200b}", "\u{3000}\u{a0}"] {
            assert_eq!(
                Title::parse(invisible).unwrap_err(),
                "must contain visible text"
            );
        }
    }

    #[test]
    fn the_title_pattern_says_what_parse_does() {
        let pattern = title_pattern();
        assert!(pattern.starts_with("^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\x00-\\x20"));
        assert!(pattern.ends_with("\\ufff0-\\ufff8][^\\x00-\\x1f\\x7f-\\x9f]*$"));
        // Every control character is also invisible, so the middle class never lets
        // one through.
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            if c.is_control() {
                assert!(!is_visible(c), "{c:?}");
            }
        }
    }

    #[test]
    fn tags_are_names_given_once_at_most_20() {
        let tags = Tags::parse(&["dns", "homelab", "B-2_x"]).unwrap();
        let names: Vec<&str> = tags.iter().map(Tag::as_str).collect();
        assert_eq!(names, ["dns", "homelab", "B-2_x"]);
        assert!(Tags::parse::<&str>(&[]).unwrap().is_empty());
        let many: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
        assert_eq!(Tags::parse(&many).unwrap_err(), "at most 20 tags (got 21)");
        assert!(Tags::parse(&many[..20]).is_ok());
        assert_eq!(
            Tags::parse(&["a", "b", "a"]).unwrap_err(),
            "item 3: the tag 'a' is given twice; give each tag once"
        );
        assert!(Tags::parse(&["a", "A"]).is_ok(), "tags are case-sensitive");
        assert_eq!(
            Tags::parse(&["ok", "no way"]).unwrap_err(),
            "item 2: tag may only contain letters, digits, '-' and '_' (found ' ' at position 2)"
        );
        assert_eq!(
            Tags::parse(&[""]).unwrap_err(),
            "item 1: tag must not be empty"
        );
        assert!(Tags::parse(&["a".repeat(51)]).is_err());
        assert!(
            Tags::parse(&["active"]).is_ok(),
            "only session names reserve it"
        );
    }
}
