//! [`Timestamp`]: an instant in UTC, as `metadata.json` stores it.

use std::ops::RangeInclusive;

use chrono::{DateTime, Datelike, NaiveDateTime, SecondsFormat, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The years Python's `datetime` can hold: a timestamp outside them, once written, could
/// not be read back by the original module (or by a bot that parses it).
pub const PYTHON_YEARS: RangeInclusive<i32> = 1..=9999;

/// Why a stored timestamp was refused; it names no part of the value.
pub const TIMESTAMP_RULE: &str = "must be an ISO-8601 timestamp with a year from 1 to 9999";

/// The compact form of a timestamp in file names, and its length.
const COMPACT_FORMAT: &str = "%Y%m%dT%H%M%S%.6fZ";
const COMPACT_LEN: usize = 23;

/// An instant in UTC. Written as RFC 3339 with microseconds and `+00:00`; read from
/// RFC 3339 with any offset, or from a naive ISO-8601 timestamp (taken as UTC), as
/// Python's `datetime.now().isoformat()` writes it.
///
/// Only instants Python's `datetime.fromisoformat` reads back are built: years 1 to
/// 9999 (in UTC, the form it is written in, and as written), and no leap second (`:60`,
/// which chrono reads and Python refuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    pub fn now() -> Self {
        // Microsecond precision, so what is written reads back equal.
        let now = Utc::now();
        Self::from_micros(now.timestamp_micros()).unwrap_or(Self(now))
    }

    /// The instant `micros` microseconds after the Unix epoch, if it is representable
    /// (years 1 to 9999).
    pub fn from_micros(micros: i64) -> Option<Self> {
        DateTime::from_timestamp_micros(micros).and_then(Self::checked)
    }

    /// Reads an ISO-8601 timestamp; `None` when it is not one, or names an instant
    /// Python cannot read back (see the type's documentation).
    pub fn parse(value: &str) -> Option<Self> {
        if let Ok(dt) = DateTime::parse_from_rfc3339(value) {
            // Python reads the local date as written, and this service writes the UTC one.
            return PYTHON_YEARS
                .contains(&dt.year())
                .then(|| Self::checked(dt.with_timezone(&Utc)))
                .flatten();
        }
        NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f")
            .ok()
            .and_then(|naive| Self::checked(naive.and_utc()))
    }

    fn checked(dt: DateTime<Utc>) -> Option<Self> {
        let leap_second = dt.nanosecond() >= 1_000_000_000;
        (PYTHON_YEARS.contains(&dt.year()) && !leap_second).then_some(Self(dt))
    }

    pub fn to_rfc3339(self) -> String {
        self.0
            .to_rfc3339_opts(SecondsFormat::Micros, false)
            .replace('Z', "+00:00")
    }

    /// The same instant as a [`std::time::SystemTime`].
    pub fn to_system_time(self) -> std::time::SystemTime {
        std::time::SystemTime::from(self.0)
    }

    /// A compact form for file names (archive entries): `20261124T212216.123456Z`.
    pub fn compact(self) -> String {
        self.0.format(COMPACT_FORMAT).to_string()
    }

    /// Reads [`compact`](Self::compact)'s form, and only that form: exactly the text
    /// `compact` would write for the instant it names.
    pub fn from_compact(text: &str) -> Option<Self> {
        let shape = text.len() == COMPACT_LEN
            && text.bytes().enumerate().all(|(i, b)| match i {
                8 => b == b'T',
                15 => b == b'.',
                22 => b == b'Z',
                _ => b.is_ascii_digit(),
            });
        if !shape {
            return None;
        }
        let at = NaiveDateTime::parse_from_str(text, "%Y%m%dT%H%M%S%.fZ")
            .ok()
            .and_then(|naive| Self::checked(naive.and_utc()))?;
        (at.compact() == text).then_some(at)
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
        // The rule, not the value: this message may reach /healthz about a planted file.
        Timestamp::parse(&raw).ok_or_else(|| serde::de::Error::custom(TIMESTAMP_RULE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn only_timestamps_python_reads_back_are_accepted() {
        for good in [
            "0001-01-01T00:00:00+00:00",
            "0001-01-01T00:00:00",
            "9999-12-31T23:59:59.999999+00:00",
            "9999-12-31T23:59:59.999999",
        ] {
            let ts = Timestamp::parse(good).unwrap_or_else(|| panic!("{good}"));
            assert_eq!(Timestamp::parse(&ts.to_rfc3339()), Some(ts), "{good}");
        }
        for bad in [
            "0000-06-01T00:00:00+00:00",
            "0000-06-01T00:00:00",
            "-0001-06-01T00:00:00",
            "+10000-06-01T00:00:00",
            "10000-06-01T00:00:00",
            // Fine as written, but year 0 once in UTC (the form it is written back in).
            "0001-01-01T00:30:00+01:00",
            // And the other way round: year 10000 in UTC.
            "9999-12-31T23:30:00-01:00",
            // A leap second: chrono reads it, Python's datetime has no second 60.
            "2016-12-31T23:59:60.5+00:00",
        ] {
            assert_eq!(Timestamp::parse(bad), None, "{bad}");
        }
        let year_one = -62_135_596_800_000_000;
        assert!(Timestamp::from_micros(year_one).is_some());
        assert!(Timestamp::from_micros(year_one - 1).is_none());
        assert!(Timestamp::from_micros(253_402_300_800_000_000).is_none());
    }

    #[test]
    fn the_compact_form_reads_back_and_nothing_else_does() {
        let at = Timestamp::parse("2026-11-24T21:22:16.000042+00:00").unwrap();
        assert_eq!(at.compact(), "20261124T212216.000042Z");
        assert_eq!(Timestamp::from_compact(&at.compact()), Some(at));
        for bad in [
            "",
            "20261124T212216.000042",
            "20261124T212216.000042z",
            "20261124T212216,000042Z",
            "20261124 212216.000042Z",
            "20261124T212216.0000420Z",
            "2026112T212216.0000420Z",
            "20261324T212216.000042Z",
            "20261124T246016.000042Z",
            "20261124T235960.000042Z",
            "00001124T212216.000042Z",
            "+0261124T212216.000042Z",
            "2026-1124T212216.000042Z",
        ] {
            assert_eq!(Timestamp::from_compact(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_refused_timestamp_is_not_quoted() {
        let err = serde_json::from_str::<Timestamp>("\"0000-01-01T00:00:00+00:00\"")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(TIMESTAMP_RULE), "{err}");
        assert!(!err.contains("0000"), "{err}");
    }
}
