//! Extractors whose rejections are our own problem answers: a JSON body, a validated
//! session name and a validated persona key from the path. A name is checked here,
//! before any handler, so no unchecked text ever reaches the store or a path.

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;
use crate::model::{Name, from_json_value};

/// A JSON object body, with problem+json rejections: 415 without a JSON content type,
/// 413 over the body limit, 400 when it is not JSON at all, 422 when it is JSON but not
/// an object of the expected shape (the detail names the field).
///
/// Parsing is two steps on purpose: syntax first, then shape. A single serde pass
/// reports whichever problem it meets first, so a truncated body could answer 422 and
/// a wrong type 400.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<Value>::from_request(req, state).await?;
        if !value.is_object() {
            return Err(ApiError::invalid_body("the body must be a JSON object"));
        }
        from_json_value(value)
            .map(Json)
            .map_err(ApiError::InvalidBody)
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
