//! `/sessions/active`: which session is current, and switching.

use axum::extract::State;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::extract::Json;
use crate::model::Name;
use crate::state::AppState;
use crate::store::{Session, Switched};

#[derive(Debug, Serialize)]
pub struct Current {
    active: Option<Name>,
    session: Option<Session>,
}

pub async fn get(State(state): State<AppState>) -> Json<Current> {
    let session = state.store.current();
    Json(Current {
        active: session.as_ref().map(|s| s.metadata().name.clone()),
        session,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchBody {
    name: String,
}

pub async fn switch(
    State(state): State<AppState>,
    Json(body): Json<SwitchBody>,
) -> Result<Json<Switched>, ApiError> {
    let name = Name::session(&body.name).map_err(|e| ApiError::invalid_body(e.to_string()))?;
    Ok(Json(state.store.switch(name).await?))
}

pub async fn clear(State(state): State<AppState>) -> Result<Json<Switched>, ApiError> {
    Ok(Json(state.store.clear_current().await?))
}
