//! `/sessions/active`: which session is current, and switching.

use axum::extract::State;
use serde::{Deserialize, Serialize};

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

pub async fn get(State(state): State<AppState>) -> Json<Current> {
    let session = state
        .store
        .current()
        .map(|entry| SessionJson::new(&state.store, entry));
    Json(Current {
        active: session.as_ref().map(|s| s.metadata().name.clone()),
        session,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchBody {
    name: SessionName,
}

pub async fn switch(
    State(state): State<AppState>,
    Json(body): Json<SwitchBody>,
) -> Result<Json<Switched>, ApiError> {
    Ok(Json(state.store.switch(body.name).await?))
}

pub async fn clear(State(state): State<AppState>) -> Result<Json<Switched>, ApiError> {
    Ok(Json(state.store.clear_current().await?))
}
