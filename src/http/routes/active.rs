//! `/sessions/active`: which session is current, and switching.

use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use crate::http::conditional::{IfMatchHeader, IfNoneMatch};
use crate::http::error::ApiError;
use crate::http::extract::Json;
use crate::http::state::AppState;
use crate::http::wire::SessionJson;
use crate::model::SessionName;
use crate::store::Switched;

#[derive(Debug, Serialize)]
pub struct Current {
    active: Option<SessionName>,
    session: Option<SessionJson>,
}

/// The current session; its `ETag` moves when another session becomes current or the
/// current one changes, so `If-Match` on a switch says "if nobody switched meanwhile".
pub async fn get(State(state): State<AppState>, if_none_match: IfNoneMatch) -> Response {
    let (entry, version) = state.store.current_with_version();
    let session = entry.map(|entry| SessionJson::new(&state.store, entry));
    let current = Current {
        active: session.as_ref().map(|s| s.metadata().name.clone()),
        session,
    };
    if_none_match.answer(version, current)
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
) -> Result<Json<Switched>, ApiError> {
    Ok(Json(state.store.switch(body.name, if_match).await?))
}

pub async fn clear(
    State(state): State<AppState>,
    IfMatchHeader(if_match): IfMatchHeader,
) -> Result<Json<Switched>, ApiError> {
    Ok(Json(state.store.clear_current(if_match).await?))
}
