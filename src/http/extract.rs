//! Extractors whose rejections are our own problem answers: a JSON body (required or
//! optional), and a validated session name or persona key from the path. A name is
//! checked here, before any handler, so no unchecked text ever reaches the store or a
//! path.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::error::ApiError;
use crate::limits::BODY_LIMIT;
use crate::model::{PersonaKey, SessionName, from_json_value, parse_strict};

/// A JSON object body, with problem+json rejections: 413 when the declared length is
/// over the body limit, 415 without a JSON content type, 413 when a body of no declared
/// length runs over the limit, 400 when it is not JSON at all, 422 when it is JSON but
/// not an object of the expected shape (the detail names the field) or an object in it
/// repeats a key.
///
/// Parsing is two steps on purpose: syntax first, then shape. A single serde pass
/// reports whichever problem it meets first, so a truncated body could answer 422 and
/// a wrong type 400. The first step (axum's, into a `RawValue`) checks the whole body
/// is JSON; the second reads it strictly (`model::parse_strict`: serde_json would keep
/// the last of a repeated key silently) and then into `T`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        refuse_declared_excess(&req)?;
        let axum::Json(raw) = axum::Json::<Box<RawValue>>::from_request(req, state).await?;
        let value = parse_strict(raw.get().as_bytes())?;
        if !value.is_object() {
            return Err(ApiError::invalid_body("the body must be a JSON object"));
        }
        from_json_value(value)
            .map(Json)
            .map_err(ApiError::InvalidBody)
    }
}

/// An optional JSON object body: none at all (an empty body, with or without a content
/// type) is `None`; any other body is read as [`Json`] reads it, with its answers.
#[derive(Debug, Clone, Default)]
pub struct MaybeJson<T>(pub Option<T>);

impl<S, T> FromRequest<S> for MaybeJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        refuse_declared_excess(&req)?;
        let (parts, body) = req.into_parts();
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(|rejection| match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(format!(
                    "the request body is larger than the limit of {BODY_LIMIT} bytes"
                )),
                _ => ApiError::BadRequest(rejection.body_text()),
            })?;
        if bytes.is_empty() {
            return Ok(Self(None));
        }
        let req = Request::from_parts(parts, Body::from(bytes));
        let Json(value) = Json::from_request(req, state).await?;
        Ok(Self(Some(value)))
    }
}

/// A `Content-Length` over the limit is refused before any of the body is read: reading
/// would wait for bytes that may never come, until the request timeout (30 s) answered
/// 408. Checked here rather than in a layer (tower-http's `RequestBodyLimitLayer` also
/// looks at the header up front) so that only a route that reads a body refuses one,
/// after the Host, token and name checks, with a detail of our own; `DefaultBodyLimit`
/// still counts a body without a declared length as it arrives.
fn refuse_declared_excess(req: &Request) -> Result<(), ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > BODY_LIMIT as u64 => Err(ApiError::PayloadTooLarge(format!(
            "the request declares a body of {length} bytes; the limit is {BODY_LIMIT} bytes"
        ))),
        _ => Ok(()),
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// The one name in a route's path (a [`SessionName`] or a [`PersonaKey`]), validated:
/// a bad one is a 400 whose detail names the broken rule.
#[derive(Debug, Clone)]
pub struct Named<T>(pub T);

impl<S, T> FromRequestParts<S> for Named<T>
where
    S: Send + Sync,
    T: std::str::FromStr<Err = crate::model::NameError>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // The raw parameters: percent-decoded already, without serde's String on the way.
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|rejection| {
                tracing::debug!(cause = %rejection.body_text(), "path rejected");
                ApiError::BadName(crate::model::NameError::Encoding)
            })?;
        let (_, raw) = params
            .iter()
            .next()
            .ok_or(ApiError::BadName(crate::model::NameError::Encoding))?;
        Ok(Named(raw.parse()?))
    }
}

/// A session route's `{name}`.
pub type SessionPath = Named<SessionName>;
/// A persona route's `{key}`.
pub type PersonaPath = Named<PersonaKey>;
