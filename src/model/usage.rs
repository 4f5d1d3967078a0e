//! What a session has cost: the totals of the CLI's `result` messages that the bot
//! reports, each counted once, and the session's budget.
//!
//! A `result` message's `total_cost_usd` is what the CLI process has spent so far: the
//! cost of its one prompt when it answers one, a running total when it answers several
//! (stream-json input). So a result posted with the id of its run (the process the
//! launch spec that named the id started) adds only what that run spent since the last
//! result counted of it, and one posted without a run id adds its whole cost. Each
//! message has a `uuid`: a message posted twice (a bot retrying after a lost answer)
//! counts once, for as long as its id is among the last [`RECENT_RESULTS`] counted.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::time::Timestamp;

/// How many result ids a session remembers to count each message once.
pub const RECENT_RESULTS: usize = 64;

/// How many runs a session remembers the spending of.
pub const RECENT_RUNS: usize = 16;

/// An amount of US dollars, kept as a whole number of nano-dollars so that totals add up
/// exactly whatever the order of the additions; written and read as a JSON number of
/// dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dollars(u64);

impl Dollars {
    const PER_DOLLAR: f64 = 1e9;

    /// The most an amount may be: the most [`from_f64`](Self::from_f64) gives, 2^64 - 2048
    /// nano-dollars (written 18446744073.70955). A total saturates here rather than at
    /// `u64::MAX`, which is written as a number of dollars that would not be read back.
    pub const MAX: Self = Self(u64::MAX - 2047);

    /// A finite, non-negative amount, at most [`MAX`](Self::MAX); `None` otherwise.
    pub fn from_f64(dollars: f64) -> Option<Self> {
        (dollars.is_finite() && dollars >= 0.0 && dollars * Self::PER_DOLLAR < u64::MAX as f64)
            .then(|| Self((dollars * Self::PER_DOLLAR).round() as u64))
    }

    pub fn as_f64(self) -> f64 {
        self.0 as f64 / Self::PER_DOLLAR
    }

    /// The sum, or [`MAX`](Self::MAX) if it would be more.
    pub fn saturating_add(self, other: Self) -> Self {
        Self(self.0.saturating_add(other.0).min(Self::MAX.0))
    }

    pub fn saturating_sub(self, other: Self) -> Self {
        Self(self.0.saturating_sub(other.0))
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl Serialize for Dollars {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.as_f64())
    }
}

/// Why an amount was refused; it names no part of the value.
pub const DOLLARS_RULE: &str = "must be a number of US dollars, 0 or more";

impl<'de> Deserialize<'de> for Dollars {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = f64::deserialize(deserializer)?;
        Self::from_f64(value).ok_or_else(|| serde::de::Error::custom(DOLLARS_RULE))
    }
}

/// A session's usage totals, as `metadata.json` keeps them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub cost_usd: Dollars,
    pub turns: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_creation_tokens: u64,
    /// How many result messages were counted.
    pub results: u64,
    pub updated: Timestamp,
    /// The ids of the last result messages counted, oldest first.
    #[serde(default)]
    pub recent: Vec<String>,
    /// What was counted of the last runs, least recently reported first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<RunSpending>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The spending counted of one run: the most its results have restated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpending {
    pub run: String,
    pub cost_usd: Dollars,
}

impl Usage {
    /// What a run that has spent `total` so far spent since it was last counted; `total`
    /// is remembered as the run's, unless one of its later results was counted first.
    pub(super) fn spent_since(&mut self, run: &str, total: Dollars) -> Dollars {
        let counted = match self.runs.iter().position(|r| r.run == run) {
            Some(i) => self.runs.remove(i).cost_usd,
            None => Dollars::default(),
        };
        self.runs.push(RunSpending {
            run: run.to_owned(),
            cost_usd: counted.max(total),
        });
        let excess = self.runs.len().saturating_sub(RECENT_RUNS);
        self.runs.drain(..excess);
        total.saturating_sub(counted)
    }
}

/// Why a count was refused; it names no part of the value.
pub const COUNT_RULE: &str = "must be a whole number, 0 or more";

/// A count of a `result` message: an integer as JSON Schema has it, so `10.0` is 10
/// (as a `pid` or a persona's `max_turns` is read), over the whole `u64` range.
fn count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    // 2^64, exactly: an integral float below it fits in a u64.
    const LIMIT: f64 = 18_446_744_073_709_551_616.0;
    let value = Value::deserialize(deserializer)?;
    value
        .as_u64()
        .or_else(|| {
            value
                .as_f64()
                .filter(|f| f.fract() == 0.0 && (0.0..LIMIT).contains(f))
                .map(|f| f as u64)
        })
        .ok_or_else(|| serde::de::Error::custom(COUNT_RULE))
}

/// The token counts of a `result` message.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct TokenCounts {
    #[serde(default, deserialize_with = "count")]
    pub input_tokens: u64,
    #[serde(default, deserialize_with = "count")]
    pub output_tokens: u64,
    #[serde(default, deserialize_with = "count")]
    pub cache_read_input_tokens: u64,
    #[serde(default, deserialize_with = "count")]
    pub cache_creation_input_tokens: u64,
}

/// The CLI's `result` stream-json message, as the bot posts it; the fields the service
/// does not count are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ResultMessage {
    #[serde(rename = "type")]
    pub kind: String,
    pub uuid: String,
    #[serde(default, deserialize_with = "count")]
    pub num_turns: u64,
    #[serde(default)]
    pub total_cost_usd: Dollars,
    #[serde(default)]
    pub usage: TokenCounts,
}

impl ResultMessage {
    pub fn check(&self) -> Result<(), String> {
        if self.kind != "result" {
            return Err("not the CLI's result message: type must be \"result\"".into());
        }
        if self.uuid.is_empty()
            || self.uuid.len() > 64
            || !self.uuid.chars().all(|c| c.is_ascii_graphic())
        {
            return Err("uuid must be the message's id: 1 to 64 printable characters".into());
        }
        Ok(())
    }
}

/// Whether a usage post changed the totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Added to the totals.
    Added {
        /// The total reached the budget with this message.
        exhausted_now: bool,
    },
    /// Its id was counted before: nothing changed.
    Duplicate,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Metadata, SessionName};

    fn result(uuid: &str, cost: f64) -> ResultMessage {
        serde_json::from_value(serde_json::json!({
            "type": "result", "subtype": "success", "uuid": uuid, "session_id": "x",
            "num_turns": 2, "total_cost_usd": cost, "is_error": false,
            "usage": { "input_tokens": 10, "output_tokens": 20,
                       "cache_read_input_tokens": 30, "cache_creation_input_tokens": 40 }
        }))
        .unwrap()
    }

    #[test]
    fn each_message_counts_once_and_the_budget_is_reached_once() {
        let now = Timestamp::now();
        let mut m = Metadata::new(SessionName::parse("s").unwrap(), None, now);
        m.budget_usd = Dollars::from_f64(0.5);
        assert_eq!(
            m.count_result(&result("a", 0.25), None, now),
            Counted::Added {
                exhausted_now: false
            }
        );
        assert_eq!(
            m.count_result(&result("a", 0.25), None, now),
            Counted::Duplicate
        );
        assert_eq!(
            m.count_result(&result("b", 0.25), None, now),
            Counted::Added {
                exhausted_now: true
            }
        );
        assert_eq!(
            m.count_result(&result("c", 0.25), None, now),
            Counted::Added {
                exhausted_now: false
            }
        );
        let usage = m.usage.as_ref().unwrap();
        assert_eq!((usage.results, usage.turns, usage.input_tokens), (3, 6, 30));
        // A budget of nothing is spent before anything is counted.
        let mut frozen = Metadata::new(SessionName::parse("f").unwrap(), None, now);
        assert!(!frozen.budget_exhausted());
        frozen.budget_usd = Dollars::from_f64(0.0);
        assert!(frozen.budget_exhausted());
        assert_eq!(
            (
                usage.output_tokens,
                usage.cache_read_tokens,
                usage.cache_creation_tokens
            ),
            (60, 90, 120)
        );
        assert_eq!(usage.cost_usd, Dollars::from_f64(0.75).unwrap());
        assert!(m.budget_exhausted());
    }

    #[test]
    fn a_run_adds_what_it_spent_since_its_last_result() {
        let now = Timestamp::now();
        let mut m = Metadata::new(SessionName::parse("s").unwrap(), None, now);
        let cost = |m: &Metadata| m.usage.as_ref().unwrap().cost_usd;
        // One process, three prompts: each result restates the process's total.
        m.count_result(&result("1", 0.25), Some("run-a"), now);
        m.count_result(&result("2", 0.5), Some("run-a"), now);
        assert_eq!(cost(&m), Dollars::from_f64(0.5).unwrap());
        // Another process starts from nothing.
        m.count_result(&result("3", 0.125), Some("run-b"), now);
        assert_eq!(cost(&m), Dollars::from_f64(0.625).unwrap());
        // A result posted late, after a later one of its run: nothing more was spent.
        m.count_result(&result("4", 0.75), Some("run-a"), now);
        m.count_result(&result("5", 0.625), Some("run-a"), now);
        assert_eq!(cost(&m), Dollars::from_f64(0.875).unwrap());
        // Without a run, a result's cost is its own.
        m.count_result(&result("6", 0.125), None, now);
        let usage = m.usage.as_ref().unwrap();
        assert_eq!(usage.cost_usd, Dollars::from_f64(1.0).unwrap());
        assert_eq!(
            (usage.results, usage.turns, usage.input_tokens),
            (6, 12, 60)
        );
        for i in 0..RECENT_RUNS + 1 {
            m.count_result(&result(&format!("r{i}"), 0.0), Some(&i.to_string()), now);
        }
        let runs = &m.usage.as_ref().unwrap().runs;
        assert_eq!(runs.len(), RECENT_RUNS);
        assert_eq!(runs[0].run, "1");
    }

    #[test]
    fn only_the_last_ids_are_remembered() {
        let now = Timestamp::now();
        let mut m = Metadata::new(SessionName::parse("s").unwrap(), None, now);
        for i in 0..RECENT_RESULTS + 5 {
            m.count_result(&result(&i.to_string(), 0.0), None, now);
        }
        let recent = &m.usage.as_ref().unwrap().recent;
        assert_eq!(recent.len(), RECENT_RESULTS);
        assert_eq!(recent[0], "5");
    }
}

#[cfg(test)]
mod dollars {
    use super::Dollars;

    #[test]
    fn sums_are_exact_in_any_order() {
        let amounts: Vec<Dollars> = (1..=100)
            .map(|i| Dollars::from_f64(f64::from(i) * 0.0123).unwrap())
            .collect();
        let forward = amounts
            .iter()
            .fold(Dollars::default(), |a, b| a.saturating_add(*b));
        let backward = amounts
            .iter()
            .rev()
            .fold(Dollars::default(), |a, b| a.saturating_add(*b));
        assert_eq!(forward, backward);
        assert_eq!(forward.as_f64(), 62.115);
        assert_eq!(
            serde_json::to_string(&Dollars::from_f64(0.3).unwrap()).unwrap(),
            "0.3"
        );
        assert!(Dollars::from_f64(-1.0).is_none() && Dollars::from_f64(f64::NAN).is_none());
    }

    #[test]
    fn the_most_an_amount_may_be_is_read_back_as_written() {
        let most = Dollars::from_f64(18_446_744_073.709_55).unwrap();
        assert_eq!(most, Dollars::MAX);
        assert_eq!(
            Dollars::from_f64(f64::from_bits(most.as_f64().to_bits() + 1)),
            None
        );
        let written = serde_json::to_string(&Dollars::MAX).unwrap();
        assert_eq!(written, "18446744073.70955");
        let read: Dollars = serde_json::from_str(&written).unwrap();
        assert_eq!(read, Dollars::MAX);
        assert_eq!(Dollars::MAX.saturating_add(Dollars::MAX), Dollars::MAX);
    }
}
