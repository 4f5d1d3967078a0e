//! [`ArchiveId`]: the name of an archived session under `.archive`, as a delete names
//! it: `<session name>.<UTC timestamp, compact>` (`work.20261124T212216.123456Z`). Built
//! only by its `parse` or from its two parts, so a value is always safe to look up in
//! the archive's directory: it is never a path.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use super::name::{MAX_NAME_LEN, NameError, SessionName};
use super::time::Timestamp;

/// The archive id's rule as a regular expression, for `openapi.yaml` (a test keeps the
/// two equal); the timestamp must also be a real instant.
pub const ARCHIVE_ID_PATTERN: &str = r"^[a-zA-Z0-9_-]{1,50}\.[0-9]{8}T[0-9]{6}\.[0-9]{6}Z$";
/// The shortest and the longest archive id.
pub const ARCHIVE_ID_LEN: (usize, usize) = (1 + 1 + 23, MAX_NAME_LEN + 1 + 23);

/// Why an archive id was refused; each message says which part broke the form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveIdError {
    #[error(
        "an archive id is '<session name>.<UTC timestamp>', as GET /archive lists it (such \
         as 'work.20261124T212216.123456Z'); this one has no '.'"
    )]
    NoTimestamp,
    #[error("the session name of an archive id is not valid: {0}")]
    Name(NameError),
    #[error(
        "the timestamp of an archive id must be a UTC instant written \
         YYYYMMDDTHHMMSS.ffffffZ, as GET /archive lists it (such as \
         'work.20261124T212216.123456Z')"
    )]
    Timestamp,
    /// The timestamp has the form, but no calendar has that instant (month 00, say): no
    /// archived session can have this id.
    #[error("no archived session can have this id: its timestamp names no instant")]
    NoSuchInstant,
    #[error("an archive id in the path must be UTF-8 text, as GET /archive lists it")]
    Encoding,
}

/// Whether `at` is `<8 digits>T<6 digits>.<6 digits>Z`, the form `Timestamp::compact`
/// writes, whatever the instant.
fn has_compact_form(at: &str) -> bool {
    let bytes = at.as_bytes();
    bytes.len() == 23
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 => *b == b'T',
            15 => *b == b'.',
            22 => *b == b'Z',
            _ => b.is_ascii_digit(),
        })
}

/// An archived session's id: the session's name and when it was archived.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ArchiveId {
    name: SessionName,
    at: Timestamp,
    text: String,
}

impl ArchiveId {
    /// The id a session archived at `at` gets.
    pub fn new(name: SessionName, at: Timestamp) -> Self {
        let text = format!("{name}.{}", at.compact());
        Self { name, at, text }
    }

    /// Reads an id in exactly the form [`new`](Self::new) writes.
    pub fn parse(text: &str) -> Result<Self, ArchiveIdError> {
        let (name, at) = text.split_once('.').ok_or(ArchiveIdError::NoTimestamp)?;
        let name = SessionName::parse(name).map_err(ArchiveIdError::Name)?;
        let at = match Timestamp::from_compact(at) {
            Some(at) => at,
            None if has_compact_form(at) => return Err(ArchiveIdError::NoSuchInstant),
            None => return Err(ArchiveIdError::Timestamp),
        };
        Ok(Self::new(name, at))
    }

    /// The name the session had (and is restored under, unless another is asked for).
    pub fn name(&self) -> &SessionName {
        &self.name
    }

    /// When it was archived.
    pub fn archived(&self) -> Timestamp {
        self.at
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// The archive's order: by the time of archiving, then by id, so that two ids archived
/// in the same microsecond still have a fixed order.
impl Ord for ArchiveId {
    fn cmp(&self, other: &Self) -> Ordering {
        self.at
            .cmp(&other.at)
            .then_with(|| self.text.cmp(&other.text))
    }
}

impl PartialOrd for ArchiveId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for ArchiveId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for ArchiveId {
    type Err = ArchiveIdError;
    fn from_str(text: &str) -> Result<Self, ArchiveIdError> {
        Self::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_a_name_and_a_compact_timestamp() {
        let id = ArchiveId::parse("work-1.20261124T212216.123456Z").unwrap();
        assert_eq!(id.name().as_str(), "work-1");
        assert_eq!(
            id.archived(),
            Timestamp::parse("2026-11-24T21:22:16.123456+00:00").unwrap()
        );
        assert_eq!(id.to_string(), "work-1.20261124T212216.123456Z");
        let again = ArchiveId::new(id.name().clone(), id.archived());
        assert_eq!(again, id);
        let shortest = "a.20261124T212216.123456Z";
        assert_eq!(
            ArchiveId::parse(shortest).unwrap().as_str().len(),
            ARCHIVE_ID_LEN.0
        );
        let longest = format!("{}.20261124T212216.123456Z", "a".repeat(50));
        assert_eq!(
            ArchiveId::parse(&longest).unwrap().as_str().len(),
            ARCHIVE_ID_LEN.1
        );
    }

    #[test]
    fn anything_else_is_refused_with_the_part_it_breaks() {
        use ArchiveIdError::*;
        let refused = |text: &str| ArchiveId::parse(text).unwrap_err();
        assert_eq!(refused("work"), NoTimestamp);
        assert_eq!(refused(""), NoTimestamp);
        for bad in [
            "../x.20261124T212216.123456Z",
            ".20261124T212216.123456Z",
            "a/b.20261124T212216.123456Z",
            "active.20261124T212216.123456Z",
            "a\0.20261124T212216.123456Z",
        ] {
            assert!(matches!(refused(bad), Name(_)), "{bad}");
        }
        for bad in [
            "work.",
            "work..",
            "work.20261124T212216.123456Z/..",
            "work.20261124T212216.123456Z.json",
            "work.20261124T212216.123456",
            "work.2026-11-24T21:22:16.123456+00:00",
            "work.20261124T212216.123456Z\0",
            "work..20261124T212216.123456Z",
        ] {
            assert_eq!(refused(bad), Timestamp, "{bad}");
        }
        // The form, but no instant: no archived session can have the id.
        for bad in [
            "work.20261324T212216.123456Z",
            "work.20260001T000000.000000Z",
        ] {
            assert_eq!(refused(bad), NoSuchInstant, "{bad}");
        }
    }

    #[test]
    fn ids_order_by_time_then_by_id() {
        let id = |text: &str| ArchiveId::parse(text).unwrap();
        let mut ids = [
            id("b.20261124T212216.000002Z"),
            id("a.20261124T212216.000002Z"),
            id("z.20261124T212216.000001Z"),
            id("a-b.20261124T212216.000002Z"),
        ];
        ids.sort();
        let texts: Vec<&str> = ids.iter().map(ArchiveId::as_str).collect();
        assert_eq!(
            texts,
            [
                "z.20261124T212216.000001Z",
                "a-b.20261124T212216.000002Z",
                "a.20261124T212216.000002Z",
                "b.20261124T212216.000002Z",
            ]
        );
    }
}
