//! `/sessions` and `/sessions/{name}`: create, list, inspect, update, delete, and the
//! session's own persona.

use axum::extract::{Query, State, rejection::QueryRejection};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use crate::http::error::ApiError;
use crate::http::extract::{Json, Named, SessionPath};
use crate::http::state::AppState;
use crate::http::wire::SessionJson;
use crate::model::{CUSTOM_PERSONA, MetadataPatch, Persona, PersonaKey, SessionName, Status};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    name: SessionName,
    /// A library key, a whole persona object, or null/absent for the default.
    #[serde(default)]
    persona: Option<Value>,
}

pub async fn create(
    State(state): State<AppState>,
    Json(body): Json<CreateBody>,
) -> Result<Response, ApiError> {
    let (recorded, persona) = resolve_persona(&state, body.persona)?;
    let entry = state.store.create(body.name, recorded, persona).await?;
    let location = format!("/sessions/{}", entry.metadata.name);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(SessionJson::new(&state.store, entry)),
    )
        .into_response())
}

/// Which persona a new session gets, and what its metadata records about it.
fn resolve_persona(
    state: &AppState,
    requested: Option<Value>,
) -> Result<(Option<String>, Value), ApiError> {
    let from_library = |key: &PersonaKey| {
        state.personas.get(key).ok_or_else(|| {
            ApiError::invalid_body(format!(
                "persona '{key}' is not in the library; GET /personas lists the keys"
            ))
        })
    };
    match requested {
        None | Some(Value::Null) => Ok((None, from_library(&PersonaKey::default_key())?)),
        Some(Value::String(raw)) => {
            let key = PersonaKey::parse(&raw).map_err(|e| ApiError::invalid_body(e.to_string()))?;
            Ok((Some(raw), from_library(&key)?))
        }
        Some(value @ Value::Object(_)) => {
            let persona = Persona::from_value(value)
                .map_err(|e| ApiError::invalid_body(format!("invalid custom persona: {e}")))?;
            let stored =
                serde_json::to_value(persona).map_err(|e| ApiError::Internal(e.to_string()))?;
            Ok((Some(CUSTOM_PERSONA.to_owned()), stored))
        }
        Some(_) => Err(ApiError::invalid_body(
            "persona must be a library key (a string), a persona object, or null",
        )),
    }
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let bad_filter =
        || ApiError::BadFilter("status must be one of 'idle', 'active' or 'suspended'".to_owned());
    let Query(query) = query.map_err(|_| bad_filter())?;
    let status = match query.status.as_deref() {
        None => None,
        Some(raw) => Some(Status::parse(raw).ok_or_else(bad_filter)?),
    };
    let body = state.lists.list_json(&state.store, status);
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

pub async fn get(
    State(state): State<AppState>,
    Named(name): SessionPath,
) -> Result<Json<SessionJson>, ApiError> {
    let entry = state.store.get(&name)?;
    Ok(Json(SessionJson::new(&state.store, entry)))
}

pub async fn update(
    State(state): State<AppState>,
    Named(name): SessionPath,
    Json(patch): Json<MetadataPatch>,
) -> Result<Json<SessionJson>, ApiError> {
    patch.check().map_err(ApiError::InvalidBody)?;
    let entry = state.store.update(name, patch).await?;
    Ok(Json(SessionJson::new(&state.store, entry)))
}

pub async fn delete(
    State(state): State<AppState>,
    Named(name): SessionPath,
) -> Result<StatusCode, ApiError> {
    state.store.delete(name).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn persona(
    State(state): State<AppState>,
    Named(name): SessionPath,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.store.persona(&name).await?))
}

pub async fn replace_persona(
    State(state): State<AppState>,
    Named(name): SessionPath,
    Json(body): Json<Value>,
) -> Result<Json<Value>, ApiError> {
    if !body.is_object() {
        return Err(ApiError::invalid_body("the body must be a persona object"));
    }
    let persona = Persona::from_value(body)
        .map_err(|e| ApiError::invalid_body(format!("invalid persona: {e}")))?;
    Ok(Json(state.store.replace_persona(name, persona).await?))
}
