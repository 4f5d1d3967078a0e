//! Assertions on answers read with reqwest: a JSON success, a problem document, and the
//! service's timestamps.

use reqwest::{Response, StatusCode};
use serde_json::Value;

/// Asserts a problem answer: status, content type, and the `status`/`title` members;
/// returns the body for further checks on `detail`.
pub async fn assert_problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status, "status of {}", response.url());
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "content type of a {status} answer"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(body["type"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(body["detail"].as_str().is_some_and(|t| !t.is_empty()));
    body
}

/// Asserts a JSON success answer (status and `content-type: application/json`) and
/// returns its body.
pub async fn assert_json(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status, "status of {}", response.url());
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "content type of a {status} answer from {}",
        response.url()
    );
    response.json().await.unwrap()
}

/// Asserts that `value` is a timestamp as the service writes it: RFC 3339 in UTC with
/// `+00:00` and exactly six fractional digits. Returns the instant.
pub fn assert_timestamp(value: &Value) -> chrono::DateTime<chrono::Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is not a string"));
    let parsed = chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}"));
    assert!(text.ends_with("+00:00"), "{text:?} is not written in UTC");
    let fraction = text
        .split_once('.')
        .map(|(_, rest)| rest.trim_end_matches("+00:00"))
        .unwrap_or_default();
    assert!(
        fraction.len() == 6 && fraction.bytes().all(|b| b.is_ascii_digit()),
        "{text:?} does not have microseconds"
    );
    parsed.with_timezone(&chrono::Utc)
}
