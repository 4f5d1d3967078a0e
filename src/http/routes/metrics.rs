//! `/metrics`: the Prometheus scrape endpoint (OpenMetrics text).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::http::state::AppState;
use crate::metrics::metrics;

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub async fn scrape(State(state): State<AppState>) -> impl IntoResponse {
    let body = metrics().render(&state.store.health().by_status);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body)
}
