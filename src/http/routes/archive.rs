//! `/archive`: the deleted sessions, each under `.archive` as its delete left it. List
//! them (newest first, in pages with an opaque cursor), read one, restore one as a
//! session, or remove one for good: the service's only hard delete.

use axum::extract::{FromRequestParts, Path, Query, State, rejection::QueryRejection};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::http::conditional::etag;
use crate::http::error::ApiError;
use crate::http::extract::{Json, MaybeJson};
use crate::http::state::AppState;
use crate::http::wire::SessionJson;
use crate::limits::ARCHIVE_PAGE_MAX;
use crate::model::{ArchiveId, ArchiveIdError, ConversationId, SessionName, Timestamp};
use crate::process::Liveness;
use crate::store::layout::ARCHIVE_DIR;
use crate::store::{Archived, StoreError};

/// A route's `{id}`, validated: a bad one is a 400 whose detail says which part broke
/// the form.
#[derive(Debug, Clone)]
pub struct ArchivePath(pub ArchiveId);

impl<S: Send + Sync> FromRequestParts<S> for ArchivePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::BadArchiveId(ArchiveIdError::Encoding))?;
        match raw.parse() {
            Ok(id) => Ok(Self(id)),
            // As for an id that is merely unknown: no archived session has it.
            Err(ArchiveIdError::NoSuchInstant) => Err(ApiError::NotFound(format!(
                "no archived session has the id {raw:?}; GET /archive lists them"
            ))),
            Err(e) => Err(ApiError::BadArchiveId(e)),
        }
    }
}

/// An archived session as answered.
#[derive(Debug, Serialize)]
pub struct ArchivedJson<'a> {
    id: &'a str,
    /// The session's name when it was deleted.
    name: &'a SessionName,
    archived: Timestamp,
    /// Where it lies, under `<sessions_dir>/.archive`.
    dir: std::path::PathBuf,
    size_bytes: u64,
    size_complete: bool,
    conversation: Option<ConversationId>,
    persona: Option<&'a str>,
    pid: Option<i64>,
    process: Liveness,
    problem: Option<&'a str>,
}

impl<'a> ArchivedJson<'a> {
    fn new(state: &AppState, archived: &'a Archived) -> Self {
        let metadata = archived.metadata.as_ref();
        let id = &archived.id;
        Self {
            id: id.as_str(),
            name: id.name(),
            archived: id.archived(),
            dir: state.store.dir().join(ARCHIVE_DIR).join(id.as_str()),
            size_bytes: archived.size.bytes,
            size_complete: archived.size.complete,
            conversation: metadata.and_then(|m| m.conversation),
            persona: metadata.and_then(|m| m.persona.as_deref()),
            pid: metadata.and_then(|m| m.pid),
            process: archived.process,
            problem: archived.problem.as_deref(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<String>,
    after: Option<String>,
}

/// The archived sessions, newest first: all of them, or a page of `limit` with a
/// `Link: <…>; rel="next"` header when more follow.
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadFilter(e.body_text()))?;
    let limit = query.limit.as_deref().map(parse_limit).transpose()?;
    let after = query.after.as_deref().map(cursor::decode).transpose()?;
    let page = state.store.archive(after, limit).await?;
    let items: Vec<ArchivedJson> = page
        .items
        .iter()
        .map(|a| ArchivedJson::new(&state, a))
        .collect();
    let mut response = Json(items).into_response();
    if let (Some(next), Some(limit)) = (page.next, limit) {
        let link = format!(
            "</archive?limit={limit}&after={}>; rel=\"next\"",
            cursor::encode(&next)
        );
        let link = HeaderValue::from_str(&link).expect("a cursor is hex");
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}

fn parse_limit(raw: &str) -> Result<usize, ApiError> {
    raw.parse()
        .ok()
        .filter(|n| (1..=ARCHIVE_PAGE_MAX).contains(n))
        .ok_or_else(|| {
            ApiError::BadFilter(format!(
                "limit must be a whole number from 1 to {ARCHIVE_PAGE_MAX}"
            ))
        })
}

/// The `after` cursor: the last id of a page, which alone fixes where the next page
/// starts in the archive's order (archived time, then id), so a page is the same
/// whatever was archived, restored or removed since. Given as hex: a client takes it
/// from the `Link` header and does not build it.
mod cursor {
    use super::{ApiError, ArchiveId};

    pub fn encode(id: &ArchiveId) -> String {
        id.as_str().bytes().map(|b| format!("{b:02x}")).collect()
    }

    pub fn decode(raw: &str) -> Result<ArchiveId, ApiError> {
        let bytes: Option<Vec<u8>> = raw
            .len()
            .is_multiple_of(2)
            .then(|| {
                (0..raw.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(raw.get(i..i + 2)?, 16).ok())
                    .collect()
            })
            .flatten();
        bytes
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|text| ArchiveId::parse(&text).ok())
            .ok_or_else(|| {
                ApiError::BadFilter(
                    "after must be a cursor as the Link header of GET /archive gives it".to_owned(),
                )
            })
    }
}

pub async fn get(
    State(state): State<AppState>,
    ArchivePath(id): ArchivePath,
) -> Result<Response, ApiError> {
    let archived = state.store.archived(id).await?;
    Ok(Json(ArchivedJson::new(&state, &archived)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreBody {
    /// Another name to restore it under (only for a session without a conversation).
    #[serde(rename = "as")]
    rename: Option<SessionName>,
}

/// Brings an archived session back as a session (201, like a create).
pub async fn restore(
    State(state): State<AppState>,
    ArchivePath(id): ArchivePath,
    MaybeJson(body): MaybeJson<RestoreBody>,
) -> Result<Response, ApiError> {
    let rename = body.and_then(|b| b.rename);
    let entry = state.store.restore(id, rename).await.map_err(|e| match e {
        StoreError::Exists(name) => ApiError::Exists(format!(
            "session '{name}' exists; restore this one under another name with \
             {{\"as\": \"<name>\"}} (only a session without a conversation can take one), \
             or archive the existing one first (DELETE /sessions/{name})"
        )),
        other => other.into(),
    })?;
    let location = format!("/sessions/{}", entry.metadata.name);
    Ok((
        StatusCode::CREATED,
        [
            (
                header::LOCATION,
                location.parse().expect("a name is a valid path"),
            ),
            (header::ETAG, etag(entry.version)),
        ],
        Json(SessionJson::new(&state.store, entry)),
    )
        .into_response())
}

/// Removes an archived session for good (204), unless its process is alive (409).
pub async fn remove(
    State(state): State<AppState>,
    ArchivePath(id): ArchivePath,
) -> Result<StatusCode, ApiError> {
    state.store.remove_archived(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_and_nothing_else_does() {
        let id = ArchiveId::parse("work.20261124T212216.123456Z").unwrap();
        let encoded = cursor::encode(&id);
        assert!(encoded.bytes().all(|b| b.is_ascii_hexdigit()), "{encoded}");
        assert_eq!(cursor::decode(&encoded).unwrap(), id);
        for bad in [
            "",
            "a",
            "zz",
            &encoded[1..],
            &encoded.to_uppercase().replace('5', "G"),
            "2e2e2f6574632f706173737764",
        ] {
            assert!(cursor::decode(bad).is_err(), "{bad}");
        }
    }
}
