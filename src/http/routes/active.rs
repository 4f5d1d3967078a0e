//! `/sessions/active`: which session is current, and switching.

use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use crate::http::conditional::{IfMatchHeader, IfNoneMatch, Tag, tagged};
use crate::http::error::ApiError;
use crate::http::extract::Json;
use crate::http::state::AppState;
use crate::http::wire::SessionJson;
use crate::model::SessionName;

#[derive(Debug, Serialize)]
pub struct Current {
    active: Option<SessionName>,
    session: Option<SessionJson>,
}

/// The current session; its `ETag` moves when another session becomes current or the
/// current one changes, so `If-Match` on a switch says "if nobody switched meanwhile".
pub async fn get(State(state): State<AppState>, if_none_match: IfNoneMatch) -> Response {
    let (current, tag) = current(&state);
    if_none_match.answer_json(tag, current.to_json())
}

impl Current {
    /// The serialised form, the session's part copied from its cached bytes
    /// ([`SessionJson::to_json`]).
    fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(b"{\"active\":");
        serde_json::to_writer(&mut out, &self.active).expect("a name serialises");
        out.extend_from_slice(b",\"session\":");
        match &self.session {
            Some(session) => session.write_json(&mut out),
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
        out
    }
}

/// `/sessions/active` now, and its tag: the version of the pair (pointer, current
/// session) and the current session's process.
fn current(state: &AppState) -> (Current, Tag) {
    let (entry, version) = state.store.current_with_version();
    let session = entry.map(|entry| SessionJson::new(&state.store, entry));
    let tag = match &session {
        Some(session) => Tag::with_process(version, session.process),
        None => Tag::from(version),
    };
    let current = Current {
        active: session.as_ref().map(|s| s.metadata().name.clone()),
        session,
    };
    (current, tag)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchBody {
    name: SessionName,
}

pub async fn switch(
    State(state): State<AppState>,
    IfMatchHeader(if_match): IfMatchHeader,
    Json(body): Json<SwitchBody>,
) -> Result<Response, ApiError> {
    let switched = state.store.switch(body.name, if_match).await?;
    Ok(tagged(current(&state).1, switched))
}

pub async fn clear(
    State(state): State<AppState>,
    IfMatchHeader(if_match): IfMatchHeader,
) -> Result<Response, ApiError> {
    let switched = state.store.clear_current(if_match).await?;
    Ok(tagged(current(&state).1, switched))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::model::{Metadata, Timestamp};
    use crate::process::Probe;
    use crate::store::{Entry, Version};

    /// The bytes `GET /sessions/active` copies are the ones serde writes, with a current
    /// session and without.
    #[test]
    fn the_copied_form_is_the_serialised_form() {
        let name = SessionName::parse("homelab").unwrap();
        let created = Timestamp::from_micros(1_700_000_000_000_000).unwrap();
        let entry = Arc::new(Entry::new(
            Metadata::new(name.clone(), None, created),
            Version { epoch: 1, seq: 2 },
        ));
        let session = SessionJson::under(Path::new("/srv/sessions"), &Probe::new(true), entry);
        for current in [
            Current {
                active: Some(name),
                session: Some(session),
            },
            Current {
                active: None,
                session: None,
            },
        ] {
            assert_eq!(current.to_json(), serde_json::to_vec(&current).unwrap());
        }
    }
}
