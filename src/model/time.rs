//! [`Timestamp`]: an instant in UTC, as `metadata.json` stores it.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An instant in UTC. Written as RFC 3339 with microseconds and `+00:00`; read from
/// RFC 3339 with any offset, or from a naive ISO-8601 timestamp (taken as UTC), as
/// Python's `datetime.now().isoformat()` writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    pub fn now() -> Self {
        // Microsecond precision, so what is written reads back equal.
        let now = Utc::now();
        Self::from_micros(now.timestamp_micros()).unwrap_or(Self(now))
    }

    /// The instant `micros` microseconds after the Unix epoch, if it is representable.
    pub fn from_micros(micros: i64) -> Option<Self> {
        DateTime::from_timestamp_micros(micros).map(Self)
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

    /// The same instant as a [`std::time::SystemTime`].
    pub fn to_system_time(self) -> std::time::SystemTime {
        std::time::SystemTime::from(self.0)
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
}
