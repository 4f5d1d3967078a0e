//! Extractors whose rejections are our own problem answers: a JSON body, a validated
//! session name and a validated persona key from the path. A name is checked here,
//! before any handler, so no unchecked text ever reaches the store or a path.

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::ApiError;
use crate::model::Name;

/// `axum::Json` with problem+json rejections (400, 413, 415, 422 as axum decides).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    axum::Json<T>: FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Json(value))
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// The `{name}` of a session route, validated.
#[derive(Debug, Clone)]
pub struct SessionName(pub Name);

impl<S: Send + Sync> FromRequestParts<S> for SessionName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state).await?;
        Ok(SessionName(Name::session(&raw)?))
    }
}

/// The `{key}` of a persona route, validated.
#[derive(Debug, Clone)]
pub struct PersonaKey(pub Name);

impl<S: Send + Sync> FromRequestParts<S> for PersonaKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state).await?;
        Ok(PersonaKey(Name::persona_key(&raw)?))
    }
}
