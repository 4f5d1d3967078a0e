//! `/schemas`: the JSON Schemas of the files an operator writes by hand, to check one
//! before the service reads it (`/schemas/persona.json`).

use std::sync::LazyLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::model::persona_schema;

/// The persona's schema, serialised once: it is built from constants.
static PERSONA: LazyLock<Bytes> = LazyLock::new(|| {
    let mut text = serde_json::to_vec_pretty(&persona_schema()).unwrap_or_default();
    text.push(b'\n');
    Bytes::from(text)
});

/// The media type of a JSON Schema document.
pub const SCHEMA_JSON: &str = "application/schema+json";

/// The persona's JSON Schema (draft 2020-12).
pub async fn persona() -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(SCHEMA_JSON))],
        PERSONA.clone(),
    )
        .into_response()
}
