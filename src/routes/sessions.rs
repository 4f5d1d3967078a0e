//! `/sessions` and `/sessions/{name}`: create, list, inspect, update, delete, and the
//! session's own persona.

use axum::extract::{Query, State, rejection::QueryRejection};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::error::ApiError;
use crate::extract::{Json, SessionName};
use crate::model::{CUSTOM_PERSONA, Name, Persona, Status, as_integer};
use crate::personas::DEFAULT_KEY;
use crate::state::AppState;
use crate::store::{Patch, Session};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    name: String,
    /// A library key, a whole persona object, or null/absent for the default.
    #[serde(default)]
    persona: Option<Value>,
}

pub async fn create(
    State(state): State<AppState>,
    Json(body): Json<CreateBody>,
) -> Result<Response, ApiError> {
    let name = Name::session(&body.name).map_err(|e| ApiError::invalid_body(e.to_string()))?;
    let (recorded, persona) = resolve_persona(&state, body.persona)?;
    let session = state.store.create(name, recorded, persona).await?;
    let location = format!("/sessions/{}", session.metadata().name);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(session),
    )
        .into_response())
}

/// Which persona a new session gets, and what its metadata records about it.
fn resolve_persona(
    state: &AppState,
    requested: Option<Value>,
) -> Result<(Option<String>, Value), ApiError> {
    let from_library = |key: &Name| {
        state.personas.get(key).ok_or_else(|| {
            ApiError::invalid_body(format!(
                "persona '{key}' is not in the library; GET /personas lists the keys"
            ))
        })
    };
    match requested {
        None | Some(Value::Null) => {
            let key = Name::persona_key(DEFAULT_KEY).expect("the default key is valid");
            Ok((None, from_library(&key)?))
        }
        Some(Value::String(raw)) => {
            let key = Name::persona_key(&raw).map_err(|e| ApiError::invalid_body(e.to_string()))?;
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
    let body = state.store.list_json(status);
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

pub async fn get(
    State(state): State<AppState>,
    SessionName(name): SessionName,
) -> Result<Json<Session>, ApiError> {
    Ok(Json(state.store.get(&name)?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    #[serde(default, deserialize_with = "present_pid")]
    pid: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    status: Option<Option<Status>>,
}

/// Like [`present`], for an integer that may be written `4242.0`.
fn present_pid<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None => Ok(Some(None)),
        Some(value) => as_integer(&value)
            .map(|pid| Some(Some(pid)))
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "must be a positive integer or null (got {value})"
                ))
            }),
    }
}

/// Tells a field set to null (`Some(None)`) from a field left out (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

pub async fn update(
    State(state): State<AppState>,
    SessionName(name): SessionName,
    Json(body): Json<PatchBody>,
) -> Result<Json<Session>, ApiError> {
    if body.pid.is_none() && body.status.is_none() {
        return Err(ApiError::invalid_body(
            "nothing to update: give pid and/or status",
        ));
    }
    if let Some(Some(pid)) = body.pid.filter(|p| p.is_some_and(|p| p < 1)) {
        return Err(ApiError::invalid_body(format!(
            "pid must be a positive integer or null (got {pid})"
        )));
    }
    let status = match body.status {
        Some(None) => return Err(ApiError::invalid_body("status cannot be null")),
        other => other.flatten(),
    };
    let patch = Patch {
        pid: body.pid,
        status,
    };
    Ok(Json(state.store.update(name, patch).await?))
}

pub async fn delete(
    State(state): State<AppState>,
    SessionName(name): SessionName,
) -> Result<StatusCode, ApiError> {
    state.store.delete(name).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn persona(
    State(state): State<AppState>,
    SessionName(name): SessionName,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.store.persona(&name).await?))
}

pub async fn replace_persona(
    State(state): State<AppState>,
    SessionName(name): SessionName,
    Json(body): Json<Value>,
) -> Result<Json<Value>, ApiError> {
    if !body.is_object() {
        return Err(ApiError::invalid_body("the body must be a persona object"));
    }
    let persona = Persona::from_value(body)
        .map_err(|e| ApiError::invalid_body(format!("invalid persona: {e}")))?;
    Ok(Json(state.store.replace_persona(name, persona).await?))
}
