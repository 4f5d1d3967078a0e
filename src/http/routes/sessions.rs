//! `/sessions` and `/sessions/{name}`: create, list, inspect, update, delete, rename,
//! and the session's own persona.

use axum::extract::{Query, State, rejection::QueryRejection};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use crate::http::conditional::{IfMatchHeader, IfNoneMatch, Tag, etag, tagged};
use crate::http::error::ApiError;
use crate::http::extract::{Json, Named, SessionPath};
use crate::http::listing::{self, ListQuery};
use crate::http::state::AppState;
use crate::http::wire::SessionJson;
use crate::model::{CUSTOM_PERSONA, MetadataPatch, Persona, PersonaKey, SessionName};
use crate::store::StoreError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    name: SessionName,
    /// A library key, a whole persona object, or null/absent for the default.
    #[serde(default)]
    persona: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateQuery {
    if_exists: Option<String>,
}

pub async fn create(
    State(state): State<AppState>,
    query: Result<Query<CreateQuery>, QueryRejection>,
    Json(body): Json<CreateBody>,
) -> Result<Response, ApiError> {
    let bad = || ApiError::BadFilter("if_exists must be 'return' (or left out)".to_owned());
    let Query(query) = query.map_err(|_| bad())?;
    let return_existing = match query.if_exists.as_deref() {
        None => false,
        Some("return") => true,
        Some(_) => return Err(bad()),
    };
    let (recorded, persona) = resolve_persona(&state, body.persona)?;
    let name = body.name.clone();
    let entry = match state
        .store
        .create(body.name, recorded.clone(), persona.clone())
        .await
    {
        Err(StoreError::Exists(_)) if return_existing => {
            return existing_if_same(&state, name, recorded, persona).await;
        }
        created => created?,
    };
    let location = format!("/sessions/{}", entry.metadata.name);
    let session = SessionJson::new(&state.store, entry);
    Ok((
        StatusCode::CREATED,
        [
            (
                header::LOCATION,
                location.parse().expect("a name is a valid path"),
            ),
            (header::ETAG, etag(Tag::from(&session))),
        ],
        Json(session),
    )
        .into_response())
}

/// A retried create (`?if_exists=return`): the session that exists, when it was
/// created with the same persona; a conflict otherwise.
async fn existing_if_same(
    state: &AppState,
    name: SessionName,
    recorded: Option<String>,
    persona: Value,
) -> Result<Response, ApiError> {
    let entry = state.store.get(&name)?;
    let same = entry.metadata.persona == recorded
        && (recorded.as_deref() != Some(CUSTOM_PERSONA)
            || serde_json::from_slice::<Value>(&state.store.persona(&name).await?.json).ok()
                == Some(persona));
    if !same {
        return Err(ApiError::Exists(format!(
            "session '{name}' already exists with another persona; choose another name, or \
             delete it first"
        )));
    }
    let session = SessionJson::new(&state.store, entry);
    Ok(tagged(&session, session.clone()))
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

/// The list, or with `limit` or `after` one page of it (see [`listing`]).
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadFilter(e.body_text()))?;
    let filter = query.filter()?;
    let Some(paging) = query.paging()? else {
        let body = state.lists.list_json(&state.store, &filter).await;
        return Ok((
            [(header::CONTENT_TYPE, "application/json")],
            body.into_body(),
        )
            .into_response());
    };
    let (sessions, next) = listing::page(&state.store, &filter, &paging);
    let mut response = Json(sessions).into_response();
    if let Some(last) = next {
        response
            .headers_mut()
            .insert(header::LINK, query.next_link(&last));
    }
    Ok(response)
}

pub async fn get(
    State(state): State<AppState>,
    Named(name): SessionPath,
    if_none_match: IfNoneMatch,
) -> Result<Response, ApiError> {
    let session = SessionJson::new(&state.store, state.store.get(&name)?);
    Ok(if_none_match.answer_json(&session, session.to_json()))
}

pub async fn update(
    State(state): State<AppState>,
    Named(name): SessionPath,
    IfMatchHeader(if_match): IfMatchHeader,
    Json(patch): Json<MetadataPatch>,
) -> Result<Response, ApiError> {
    patch.check().map_err(ApiError::InvalidBody)?;
    let entry = state.store.update(name, patch, if_match).await?;
    let session = SessionJson::new(&state.store, entry);
    Ok(tagged(&session, session.clone()))
}

pub async fn delete(
    State(state): State<AppState>,
    Named(name): SessionPath,
    IfMatchHeader(if_match): IfMatchHeader,
) -> Result<StatusCode, ApiError> {
    state.store.delete(name, if_match).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The session's persona; its `ETag` is the session's version, which every persona
/// replacement moves.
pub async fn persona(
    State(state): State<AppState>,
    Named(name): SessionPath,
    if_none_match: IfNoneMatch,
) -> Result<Response, ApiError> {
    let version = state.store.get(&name)?.version;
    if if_none_match.has(version) {
        return Ok(if_none_match.answer(version, ()));
    }
    let persona = state.store.persona(&name).await?;
    Ok(if_none_match.answer_json(version, persona.json.clone()))
}

pub async fn replace_persona(
    State(state): State<AppState>,
    Named(name): SessionPath,
    IfMatchHeader(if_match): IfMatchHeader,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    if !body.is_object() {
        return Err(ApiError::invalid_body("the body must be a persona object"));
    }
    let persona = Persona::from_value(body)
        .map_err(|e| ApiError::invalid_body(format!("invalid persona: {e}")))?;
    let (stored, entry) = state.store.replace_persona(name, persona, if_match).await?;
    Ok(tagged(entry.version, stored))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameBody {
    to: SessionName,
}

/// Renames a session that has never had a conversation and runs no process (409
/// `not-renamable` otherwise, with the reasons and the title to set instead).
pub async fn rename(
    State(state): State<AppState>,
    Named(name): SessionPath,
    IfMatchHeader(if_match): IfMatchHeader,
    Json(body): Json<RenameBody>,
) -> Result<Response, ApiError> {
    let entry = state.store.rename(name, body.to, if_match).await?;
    Ok(tagged(entry.version, SessionJson::new(&state.store, entry)))
}
