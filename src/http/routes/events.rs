//! `/events`: the change feed, as server-sent events (the logic is in `http::feed`).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, header};
use axum::response::{IntoResponse, Response};

use crate::http::error::ApiError;
use crate::http::feed::Refused;
use crate::http::state::AppState;

const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// Follows the store's changes from now on, or from the client's `Last-Event-ID`.
pub async fn follow(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // An id that is not even text is as unknown as any other: the client resyncs.
    let last_event_id = headers
        .get(LAST_EVENT_ID)
        .map(|id| id.to_str().unwrap_or_default());
    let subscription = state
        .feed
        .subscribe(last_event_id)
        .map_err(|refused| match refused {
            Refused::Full(_) => ApiError::TooManySubscribers(refused.to_string()),
            Refused::Closing => ApiError::Unavailable(refused.to_string()),
        })?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(subscription.into_stream()),
    )
        .into_response())
}
