//! `GET /sessions`'s query: the filters it turns into a [`Filter`] and, with `limit` or
//! `after`, a page of the list ([`page`]) whose `Link` names the next one.
//!
//! A page follows the paging order ([`PageKey`]: newest created first, ties by name)
//! rather than the list's most-recently-active order. A switch moves a session in the
//! list, so a walk through pages of that order would skip a session switched to while
//! the walk is under way, or show it twice; `created` never changes. A walk therefore
//! shows every session that exists from its first page to its last exactly once, in
//! the state it has when its page is read; sessions created during the walk come before
//! its cursor and are not in it.
//!
//! The cursor is opaque to clients: the base64url form of the last item's key.

use std::time::SystemTime;

use axum::http::HeaderValue;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::error::ApiError;
use super::wire::{Filter, SessionJson};
use crate::model::{MAX_TITLE_CHARS, PersonaKey, SessionName, Status, Tag, Timestamp};
use crate::process::Liveness;
use crate::store::{PageKey, Store};

/// The largest page.
pub const MAX_LIMIT: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    process: Option<String>,
    idle_for: Option<String>,
    tag: Option<String>,
    persona: Option<String>,
    q: Option<String>,
    limit: Option<String>,
    after: Option<String>,
}

/// Where a page starts and how long it is at most (`None`: to the end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paging {
    pub after: Option<PageKey>,
    pub limit: Option<usize>,
}

fn bad(detail: impl Into<String>) -> ApiError {
    ApiError::BadFilter(detail.into())
}

impl ListQuery {
    pub fn filter(&self) -> Result<Filter, ApiError> {
        let status = match self.status.as_deref() {
            None => None,
            Some(raw) => Some(
                Status::parse(raw)
                    .ok_or_else(|| bad("status must be one of 'idle', 'active' or 'suspended'"))?,
            ),
        };
        let process = match self.process.as_deref() {
            None => None,
            Some(raw) => Some(Liveness::parse(raw).ok_or_else(|| {
                bad("process must be one of 'none', 'alive', 'gone' or 'unknown'")
            })?),
        };
        let idle_for = match self.idle_for.as_deref() {
            None => None,
            Some(raw) => Some(
                crate::config::parse_duration(raw)
                    .map_err(|e| bad(format!("idle_for: {e}")))?
                    .as_secs(),
            ),
        };
        let tag = match self.tag.as_deref() {
            None => None,
            Some(raw) => Some(Tag::parse(raw).map_err(|e| bad(e.to_string()))?),
        };
        let persona = match self.persona.as_deref() {
            None => None,
            Some(raw) => Some(
                PersonaKey::parse(raw)
                    .map_err(|e| bad(format!("persona: {e}; 'custom' selects custom personas")))?,
            ),
        };
        let text = match self.q.as_deref() {
            None => None,
            Some(raw) if (1..=MAX_TITLE_CHARS).contains(&raw.chars().count()) => {
                Some(raw.to_lowercase())
            }
            Some(_) => {
                return Err(bad(format!(
                    "q must be 1 to {MAX_TITLE_CHARS} characters of text to look for in names \
                     and titles"
                )));
            }
        };
        Ok(Filter {
            status,
            process,
            idle_for,
            tag,
            persona,
            text,
        })
    }

    /// The page asked for, or `None` for the whole list.
    pub fn paging(&self) -> Result<Option<Paging>, ApiError> {
        if self.limit.is_none() && self.after.is_none() {
            return Ok(None);
        }
        let limit = match self.limit.as_deref() {
            None => None,
            Some(raw) => Some(
                raw.parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        bad(format!(
                            "limit must be a whole number from 1 to {MAX_LIMIT}"
                        ))
                    })?,
            ),
        };
        let after = match self.after.as_deref() {
            None => None,
            Some(raw) => Some(parse_cursor(raw).ok_or_else(|| {
                bad(
                    "after is not a cursor this service gave; take it from the Link header of \
                     the previous page, or leave it out to start at the first page",
                )
            })?),
        };
        Ok(Some(Paging { after, limit }))
    }

    /// The `Link` to the page after `last`, with the same filters and limit.
    pub fn next_link(&self, last: &PageKey) -> HeaderValue {
        let params = [
            ("limit", &self.limit),
            ("status", &self.status),
            ("process", &self.process),
            ("idle_for", &self.idle_for),
            ("tag", &self.tag),
            ("persona", &self.persona),
            ("q", &self.q),
        ];
        let mut query = String::new();
        for (name, value) in params {
            if let Some(value) = value {
                query.push_str(&format!("{name}={}&", percent_encode(value)));
            }
        }
        query.push_str(&format!("after={}", cursor(last)));
        HeaderValue::from_str(&format!("</sessions?{query}>; rel=\"next\""))
            .expect("a percent-encoded link is a valid header value")
    }
}

/// The sessions of one page and, when more follow, the key of its last one (the next
/// page's cursor). Only the sessions of the page are looked at beyond the cheap
/// in-memory filters: the `process` filter reads `/proc`, so it runs outside the index
/// lock, over batches taken until the page is full.
pub fn page(
    store: &Store,
    filter: &Filter,
    paging: &Paging,
) -> (Vec<SessionJson>, Option<PageKey>) {
    let now = SystemTime::now();
    let limit = paging.limit.unwrap_or(usize::MAX);
    let mut sessions = Vec::new();
    let mut from = paging.after.clone();
    loop {
        // One more than the page: whether it exists says whether a next page does.
        let want = limit.saturating_add(1) - sessions.len();
        let batch = store.page(from.as_ref(), want, |e| filter.keeps(&e.metadata, now));
        let exhausted = batch.len() < want;
        from = batch.last().map(|e| PageKey::of(&e.metadata)).or(from);
        sessions.extend(
            batch
                .into_iter()
                .map(|e| SessionJson::at(store, e, now))
                .filter(|s| filter.process.is_none_or(|p| s.process == p)),
        );
        if exhausted || sessions.len() > limit {
            break;
        }
    }
    let more = sessions.len() > limit;
    sessions.truncate(limit);
    let next = sessions
        .last()
        .filter(|_| more)
        .map(|s| PageKey::of(s.metadata()));
    (sessions, next)
}

/// The cursor of `key`: base64url (no padding) of the JSON `[created, name]`.
pub fn cursor(key: &PageKey) -> String {
    let json = serde_json::json!([key.created(), key.name()]).to_string();
    URL_SAFE_NO_PAD.encode(json)
}

/// The key a [`cursor`] stands for; `None` for anything else.
fn parse_cursor(text: &str) -> Option<PageKey> {
    // A cursor is short; a long one is not ours (and is not decoded).
    if text.len() > 200 {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
    let (created, name): (Timestamp, SessionName) = serde_json::from_slice(&bytes).ok()?;
    Some(PageKey::new(created, name))
}

/// `value` with every byte but RFC 3986's unreserved ones percent-encoded, so that a
/// filter value can go back into a URL (and a header) whatever it holds.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(created: &str, name: &str) -> PageKey {
        PageKey::new(
            Timestamp::parse(created).unwrap(),
            SessionName::parse(name).unwrap(),
        )
    }

    #[test]
    fn a_cursor_reads_back_as_its_key_and_nothing_else_reads_at_all() {
        let k = key("2026-11-24T21:22:16.123456+00:00", "work-1");
        let text = cursor(&k);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        );
        assert_eq!(parse_cursor(&text), Some(k));
        let encode = |s: &str| URL_SAFE_NO_PAD.encode(s);
        for bad in [
            String::new(),
            "not base64!".to_owned(),
            encode("[\"2026-11-24T21:22:16+00:00\", \"../x\"]"),
            encode("[\"yesterday\", \"a\"]"),
            encode("[\"2026-11-24T21:22:16+00:00\"]"),
            encode("{}"),
            "A".repeat(201),
        ] {
            assert_eq!(parse_cursor(&bad), None, "{bad}");
        }
    }

    #[test]
    fn the_next_link_keeps_the_filters_encoded() {
        let query: ListQuery = serde_json::from_value(serde_json::json!({
            "limit": "2", "tag": "dns", "q": "a b>\"é", "after": "old"
        }))
        .unwrap();
        let k = key("2026-11-24T21:22:16.123456+00:00", "s");
        let link = query.next_link(&k);
        assert_eq!(
            link.to_str().unwrap(),
            format!(
                "</sessions?limit=2&tag=dns&q=a%20b%3E%22%C3%A9&after={}>; rel=\"next\"",
                cursor(&k)
            )
        );
    }
}
