//! The two validated names of SPEC §2: a [`SessionName`] (which may not be the reserved
//! `active`) and a [`PersonaKey`]. Each is built only by its `parse` (or its
//! `Deserialize`, which calls it), so a value of either type is always safe to join onto
//! a directory path.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};
use validator::{Validate, ValidationErrors, ValidationErrorsKind};

/// The longest session name or persona key, in characters.
pub const MAX_NAME_LEN: usize = 50;
/// The library key of the persona a session gets when none is asked for.
pub const DEFAULT_PERSONA: &str = "default";
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

#[derive(Validate)]
struct NameRules<'a> {
    #[validate(length(min = 1, max = 50), custom(function = "name_charset"))]
    value: &'a str,
}

fn name_charset(value: &str) -> Result<(), validator::ValidationError> {
    if value.bytes().all(is_name_byte) {
        Ok(())
    } else {
        Err(validator::ValidationError::new("charset"))
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// The rules both kinds of name share: `^[a-zA-Z0-9_-]{1,50}$`.
fn check(value: &str, what: &'static str) -> Result<(), NameError> {
    (NameRules { value })
        .validate()
        .map_err(|errors| describe(value, what, &errors))
}

/// Turns validator's report into the one rule a person needs to hear about.
fn describe(value: &str, what: &'static str, errors: &ValidationErrors) -> NameError {
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
            .find(|(_, c)| !c.is_ascii() || !is_name_byte(*c as u8))
            .unwrap_or((0, '?'));
        NameError::BadCharacter {
            what,
            found,
            position,
        }
    }
}

/// Defines a validated name type: its `parse`, and the traits every name has.
macro_rules! name_type {
    ($(#[$doc:meta])* $type:ident, $what:literal, $extra:expr) => {
        $(#[$doc])*
        // A clone shares the text rather than copying it: the index holds each
        // session's name three times (its metadata, its map key, its paging place).
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $type(Arc<str>);

        impl Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl $type {
            /// Checks `value` against the rules, saying which one it breaks.
            pub fn parse(value: &str) -> Result<Self, NameError> {
                check(value, $what)?;
                let extra: fn(&str) -> Result<(), NameError> = $extra;
                extra(value)?;
                Ok(Self(Arc::from(value)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $type {
            type Err = NameError;
            fn from_str(value: &str) -> Result<Self, NameError> {
                Self::parse(value)
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<std::path::Path> for $type {
            fn as_ref(&self) -> &std::path::Path {
                std::path::Path::new(&*self.0)
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// A session's name, which is also its directory's name.
    SessionName,
    "session name",
    |value| match value {
        RESERVED_SESSION_NAME => Err(NameError::Reserved),
        _ => Ok(()),
    }
);

name_type!(
    /// A persona key: the file stem of `<personas_dir>/<key>.json`.
    PersonaKey,
    "persona key",
    |_| Ok(())
);

name_type!(
    /// A session's tag (see `Tags`): the same rules as a name.
    Tag,
    "tag",
    |_| Ok(())
);

impl PersonaKey {
    /// The key used when a session is created without a persona.
    pub fn default_key() -> Self {
        Self(Arc::from(DEFAULT_PERSONA))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_follow_the_rules() {
        assert!(SessionName::parse("work-1_a").is_ok());
        assert_eq!(
            SessionName::parse(""),
            Err(NameError::Empty {
                what: "session name"
            })
        );
        assert_eq!(SessionName::parse("active"), Err(NameError::Reserved));
        assert!(PersonaKey::parse("active").is_ok());
        assert_eq!(
            SessionName::parse(&"a".repeat(51)),
            Err(NameError::TooLong {
                what: "session name",
                len: 51
            })
        );
        assert_eq!(
            SessionName::parse("../etc"),
            Err(NameError::BadCharacter {
                what: "session name",
                found: '.',
                position: 0
            })
        );
        assert_eq!(
            SessionName::parse("a\0b").unwrap_err().to_string(),
            "session name may only contain letters, digits, '-' and '_' (found '\\0' at position 1)"
        );
        assert!(SessionName::parse("é").is_err());
        assert!(SessionName::parse("ａ").is_err(), "full-width look-alike");
        assert_eq!(
            PersonaKey::parse("a b").unwrap_err().to_string(),
            "persona key may only contain letters, digits, '-' and '_' (found ' ' at position 1)"
        );
    }

    #[test]
    fn each_name_refuses_bad_input_in_its_own_deserialize() {
        let refused = serde_json::from_value::<SessionName>("active".into()).unwrap_err();
        assert!(refused.to_string().contains("reserved"), "{refused}");
        let key: PersonaKey = serde_json::from_value("active".into()).unwrap();
        assert_eq!(key.as_str(), "active");
        assert!(serde_json::from_value::<PersonaKey>("../x".into()).is_err());
        assert!(serde_json::from_value::<SessionName>(7.into()).is_err());
    }

    fn valid_name() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_-]{1,50}".prop_filter("reserved", |s| s != RESERVED_SESSION_NAME)
    }

    proptest! {
        #[test]
        fn valid_names_are_accepted(name in valid_name()) {
            let parsed = SessionName::parse(&name).unwrap();
            prop_assert_eq!(parsed.as_str(), name.as_str());
        }

        #[test]
        fn names_with_any_other_character_are_refused(
            prefix in "[a-z]{0,5}",
            bad in any::<char>().prop_filter("allowed", |c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')),
            suffix in "[a-z]{0,5}",
        ) {
            let name = format!("{prefix}{bad}{suffix}");
            let refused = matches!(SessionName::parse(&name), Err(NameError::BadCharacter { .. }) | Err(NameError::TooLong { .. }));
            prop_assert!(refused);
        }
    }
}
