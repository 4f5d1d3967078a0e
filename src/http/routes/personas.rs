//! `/personas`: the library, read-only, and its reload.

use axum::extract::State;
use serde::Serialize;
use serde_json::Value;

use crate::http::error::ApiError;
use crate::http::extract::{Json, Named, PersonaPath};
use crate::http::state::AppState;
use crate::model::PersonaKey;
use crate::store::Skipped;

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
    one(&state, &key)
}

/// `GET /personas/reload`: `reload` is a valid key, and the path of the reload (which is
/// a POST) must not hide a persona of that name.
pub async fn get_reload(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    one(&state, &PersonaKey::parse("reload")?)
}

fn one(state: &AppState, key: &PersonaKey) -> Result<Json<Value>, ApiError> {
    state.personas.get(key).map(Json).ok_or_else(|| {
        ApiError::NotFound(format!(
            "persona '{key}' is not in the library; GET /personas lists the keys"
        ))
    })
}

#[derive(Debug, Serialize)]
pub struct Reloaded {
    /// The keys served now, sorted.
    personas: Vec<PersonaKey>,
    /// The files that are not served as they are now, and why (as `/healthz` lists them).
    skipped: Vec<Skipped>,
}

/// Reads the persona directory again, validates every file, and swaps the library in at
/// once. A persona whose file broke keeps its previous version (its reason says so).
pub async fn reload(State(state): State<AppState>) -> Result<Json<Reloaded>, ApiError> {
    let personas = state.personas.clone();
    let library = tokio::task::spawn_blocking(move || personas.reload())
        .await
        .map_err(|e| ApiError::Internal(format!("the reload task failed: {e}")))?
        .map_err(|e| {
            ApiError::Unavailable(format!(
                "the persona directory {} cannot be read ({e}); the library loaded before is \
                 still served",
                state.personas.dir().display()
            ))
        })?;
    tracing::info!(
        personas = library.personas.len(),
        skipped = library.skipped.len(),
        "persona library reloaded on request"
    );
    Ok(Json(Reloaded {
        personas: library.personas.keys().cloned().collect(),
        skipped: library.skipped.clone(),
    }))
}
