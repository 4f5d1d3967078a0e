//! Conditional requests (RFC 9110 §13), so that writers do not overwrite each other: a
//! strong `ETag` on every single-resource `GET` (the store version of what it shows,
//! and for a session the state of its process, so that a client polling with
//! `If-None-Match` hears of a process that ended), `If-Match` on writes (412 when the
//! stored state is stale, checked inside the write's transaction), and `If-None-Match`
//! on reads (304 when unchanged). `idle_seconds`, computed from the clock, is not
//! covered by the tag.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::ApiError;
use super::extract::Json;
use crate::process::Liveness;
use crate::store::{IfMatch, Version};

/// An entity tag: the store version of what an answer shows, and, for an answer that
/// shows a session's process, its state (`"<version>"` or `"<version>.<state>"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    pub version: Version,
    pub process: Option<Liveness>,
}

impl From<Version> for Tag {
    fn from(version: Version) -> Self {
        Self {
            version,
            process: None,
        }
    }
}

impl Tag {
    pub fn with_process(version: Version, process: Liveness) -> Self {
        Self {
            version,
            process: Some(process),
        }
    }

    fn parse(text: &str) -> Option<Self> {
        let (version, process) = match text.split_once('.') {
            Some((version, process)) => (version, Some(Liveness::parse(process)?)),
            None => (text, None),
        };
        Some(Self {
            version: Version::parse(version)?,
            process,
        })
    }
}

/// The `ETag` header of `tag`.
pub fn etag(tag: impl Into<Tag>) -> HeaderValue {
    use std::io::Write as _;
    let tag = tag.into();
    // Written on the stack: a version is two numbers, a process one of four words.
    let mut text = [0u8; 64];
    let len = {
        let mut rest = &mut text[..];
        let written = match tag.process {
            Some(process) => write!(rest, "\"{}.{}\"", tag.version, process.as_str()),
            None => write!(rest, "\"{}\"", tag.version),
        };
        written.expect("a tag fits in 64 bytes");
        64 - rest.len()
    };
    HeaderValue::from_bytes(&text[..len]).expect("a tag is a valid header value")
}

/// The entity tags a header lists, or `None` for `*`. `weak` says whether weak tags
/// (`W/"…"`) count: they do in the weak comparison of `If-None-Match`, and never in the
/// strong one of `If-Match`. A tag that is not one of ours matches nothing; one that is
/// not an entity tag at all (unquoted, weak or not) is a bad request.
fn tags(
    headers: &HeaderMap,
    name: header::HeaderName,
    weak: bool,
) -> Result<Option<Option<Vec<Tag>>>, ApiError> {
    let mut found = false;
    let mut versions = Vec::new();
    for value in headers.get_all(&name) {
        found = true;
        let text = value.to_str().map_err(|_| bad(&name))?;
        for tag in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if tag == "*" {
                return Ok(Some(None));
            }
            let (is_weak, opaque) = match tag.strip_prefix("W/") {
                Some(opaque) => (true, opaque),
                None => (false, tag),
            };
            let inner = opaque
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .ok_or_else(|| bad(&name))?;
            if is_weak && !weak {
                continue;
            }
            versions.extend(Tag::parse(inner));
        }
    }
    Ok(found.then_some(Some(versions)))
}

fn bad(name: &header::HeaderName) -> ApiError {
    ApiError::BadRequest(format!(
        "{name} must be * or a list of quoted entity tags, as an ETag header gives them"
    ))
}

/// A write's `If-Match`, for the store to check inside its transaction.
#[derive(Debug, Clone, Default)]
pub struct IfMatchHeader(pub Option<IfMatch>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatchHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(Self(tags(&parts.headers, header::IF_MATCH, false)?.map(
            |tags| match tags {
                None => IfMatch::Any,
                // A write is about the stored state: the process part does not count.
                Some(tags) => IfMatch::Versions(tags.into_iter().map(|t| t.version).collect()),
            },
        )))
    }
}

/// A read's `If-None-Match`.
#[derive(Debug, Clone, Default)]
pub struct IfNoneMatch(Option<Option<Vec<Tag>>>);

impl<S: Send + Sync> FromRequestParts<S> for IfNoneMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(Self(tags(&parts.headers, header::IF_NONE_MATCH, true)?))
    }
}

impl IfNoneMatch {
    /// Whether the client already has the resource at `tag` (a `*` matches any).
    /// Weak comparison, as RFC 9110 asks for `If-None-Match`; our tags are all strong.
    pub fn has(&self, tag: impl Into<Tag>) -> bool {
        let tag = tag.into();
        match &self.0 {
            None => false,
            Some(None) => true,
            Some(Some(tags)) => tags.contains(&tag),
        }
    }

    /// The answer to a read of `body` at `tag`: 304 with the tag when the client has
    /// it, otherwise 200 with the tag and the body.
    pub fn answer<T: Serialize>(&self, tag: impl Into<Tag>, body: T) -> Response {
        let tag = tag.into();
        let header = [(header::ETAG, etag(tag))];
        if self.has(tag) {
            (StatusCode::NOT_MODIFIED, header).into_response()
        } else {
            (header, Json(body)).into_response()
        }
    }
}

impl IfNoneMatch {
    /// [`answer`](Self::answer) with a body already serialised to JSON.
    pub fn answer_json(&self, tag: impl Into<Tag>, json: impl Into<axum::body::Body>) -> Response {
        let tag = tag.into();
        let etag = (header::ETAG, etag(tag));
        if self.has(tag) {
            (StatusCode::NOT_MODIFIED, [etag]).into_response()
        } else {
            let json_type = (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            ([etag, json_type], json.into()).into_response()
        }
    }
}

/// `body` with the `ETag` of `tag`: the answer to a write, so the writer can make its
/// next conditional request without reading again.
pub fn tagged<T: Serialize>(tag: impl Into<Tag>, body: T) -> Response {
    ([(header::ETAG, etag(tag))], Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: header::HeaderName, value: &str) -> Result<Option<Option<Vec<Tag>>>, ()> {
        let mut headers = HeaderMap::new();
        headers.insert(name.clone(), HeaderValue::from_str(value).unwrap());
        tags(&headers, name.clone(), name == header::IF_NONE_MATCH).map_err(drop)
    }

    #[test]
    fn entity_tags_are_read_as_rfc_9110_writes_them() {
        let v = Version {
            epoch: 0x1a,
            seq: 7,
        };
        let if_match = |value| parse(header::IF_MATCH, value);
        let if_none_match = |value| parse(header::IF_NONE_MATCH, value);
        let v = Tag::from(v);
        assert_eq!(etag(v), "\"1a-7\"");
        let alive = Tag::with_process(v.version, Liveness::Alive);
        assert_eq!(etag(alive), "\"1a-7.alive\"");
        assert_eq!(if_match("\"1a-7.alive\""), Ok(Some(Some(vec![alive]))));
        assert_eq!(if_match("\"1a-7.dead\""), Ok(Some(Some(vec![]))));
        assert_eq!(if_match("\"1a-7\""), Ok(Some(Some(vec![v]))));
        assert_eq!(if_match("\"x\", \"1a-7\""), Ok(Some(Some(vec![v]))));
        assert_eq!(if_match("*"), Ok(Some(None)));
        assert_eq!(
            tags(&HeaderMap::new(), header::IF_MATCH, false).unwrap(),
            None
        );
        // A weak tag never matches strongly (If-Match), and does weakly (If-None-Match).
        assert_eq!(if_match("W/\"1a-7\""), Ok(Some(Some(vec![]))));
        assert_eq!(if_none_match("W/\"1a-7\""), Ok(Some(Some(vec![v]))));
        for malformed in ["1a-7", "W/1a-7", "\"1a-7", "W/", "\""] {
            assert_eq!(if_match(malformed), Err(()), "{malformed}");
            assert_eq!(if_none_match(malformed), Err(()), "{malformed}");
        }
    }
}
