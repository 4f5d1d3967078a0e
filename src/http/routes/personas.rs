//! `/personas`: the library, read-only.

use axum::extract::State;
use serde_json::Value;

use crate::http::error::ApiError;
use crate::http::extract::{Json, Named, PersonaPath};
use crate::http::state::AppState;

/// The library sorted by key; each item is the persona plus its `key`.
pub async fn list(State(state): State<AppState>) -> Json<Vec<Value>> {
    let library = state.personas.library();
    let items = library
        .personas
        .iter()
        .map(|(key, persona)| {
            let mut item = persona.clone();
            if let Value::Object(map) = &mut item {
                map.insert("key".to_owned(), Value::from(key.as_str()));
            }
            item
        })
        .collect();
    Json(items)
}

pub async fn get(
    State(state): State<AppState>,
    Named(key): PersonaPath,
) -> Result<Json<Value>, ApiError> {
    state.personas.get(&key).map(Json).ok_or_else(|| {
        ApiError::NotFound(format!(
            "persona '{key}' is not in the library; GET /personas lists the keys"
        ))
    })
}
