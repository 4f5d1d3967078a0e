//! Assertions on answers read with reqwest: a JSON success, a problem document, and the
//! service's timestamps.

use reqwest::{Method, Response, StatusCode};
use serde_json::Value;

use super::app::TestApp;

/// The `type` of the problem with `slug`, a slug of the error table (src/error.rs,
/// `ApiError::parts`).
pub fn problem_type(slug: &str) -> String {
    format!("tag:session-manager,2026:{slug}")
}

/// The error table's slugs by status: the problems an answer with that status may be.
const SLUGS_BY_STATUS: [(u16, &[&str]); 16] = [
    (
        400,
        &[
            "bad-request",
            "invalid-name",
            "invalid-archive-id",
            "malformed-json",
        ],
    ),
    (401, &["unauthorized"]),
    (403, &["forbidden-origin"]),
    (
        404,
        &["not-found", "no-current-conversation", "transcript-missing"],
    ),
    (405, &["method-not-allowed"]),
    (408, &["request-timeout"]),
    (
        409,
        &[
            "exists",
            "status-conflict",
            "corrupt-entry",
            "transcript-refused",
            "conversation-bound",
            "process-alive",
            "not-renamable",
            "budget-exhausted",
            "no-conversation",
        ],
    ),
    (412, &["precondition-failed"]),
    (413, &["payload-too-large"]),
    (415, &["unsupported-media-type"]),
    (421, &["misdirected-request"]),
    (422, &["invalid-body", "invalid-filter"]),
    (429, &["too-many-live"]),
    (500, &["internal"]),
    (503, &["unavailable", "too-many-subscribers"]),
    (507, &["insufficient-storage"]),
];

/// Asserts a problem answer, however it was read: the status, the content type
/// `application/problem+json`, and the members `type` (that of one of `slugs`), `status`,
/// and a non-empty `title` and `detail`. `context` names the request in the messages.
pub fn assert_problem_parts(
    context: &str,
    (got, content_type, body): (u16, Option<&str>, &Value),
    status: u16,
    slugs: &[&str],
) {
    assert_eq!(got, status, "status of {context}: {body}");
    assert_eq!(
        content_type,
        Some("application/problem+json"),
        "content type of {context}, a {status} answer"
    );
    let types: Vec<String> = slugs.iter().map(|slug| problem_type(slug)).collect();
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| types.iter().any(|x| x == t)),
        "problem type of {context}: {body}; expected {}",
        types.join(" or ")
    );
    assert_eq!(
        body["status"], status,
        "problem status of {context}: {body}"
    );
    for member in ["title", "detail"] {
        assert!(
            body[member].as_str().is_some_and(|t| !t.is_empty()),
            "problem {member} of {context}: {body}"
        );
    }
}

/// A body as JSON, or as a JSON string when it is not JSON (so a failed assertion shows it).
pub fn lenient_json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// Asserts a problem answer with `status` whose `type` has `slug` (see
/// [`assert_problem_parts`]); returns the body for further checks on `detail`.
pub async fn assert_problem(response: Response, status: StatusCode, slug: &str) -> Value {
    problem_of(response, status, &[slug]).await
}

/// [`assert_problem`] for an answer that may be any problem the error table gives
/// `status`, as for probes whose cause is not known in advance.
pub async fn assert_problem_with_status(response: Response, status: StatusCode) -> Value {
    let slugs = SLUGS_BY_STATUS
        .iter()
        .find(|(code, _)| *code == status.as_u16())
        .map(|(_, slugs)| *slugs)
        .unwrap_or_else(|| panic!("the error table has no problem with status {status}"));
    problem_of(response, status, slugs).await
}

async fn problem_of(response: Response, status: StatusCode, slugs: &[&str]) -> Value {
    let context = response.url().to_string();
    let got = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    let body = lenient_json(&response.bytes().await.unwrap());
    let answer = (got, content_type.as_deref(), &body);
    assert_problem_parts(&context, answer, status.as_u16(), slugs);
    body
}

/// Asserts a problem answer with `status` and `slug` whose detail mentions `needle`;
/// `sent` says what was sent, for the failure message.
pub async fn assert_problem_mentioning(
    response: Response,
    status: StatusCode,
    slug: &str,
    needle: &str,
    sent: impl std::fmt::Display,
) {
    let problem = assert_problem(response, status, slug).await;
    assert!(
        problem["detail"].as_str().unwrap().contains(needle),
        "{sent}: {problem}"
    );
}

/// Sends each body with `method` to `path`; asserts that the answers with 422 are
/// `invalid-body` problems and returns the others, each as "body -> status".
pub async fn not_refused_with_422(
    app: &TestApp,
    method: Method,
    path: &str,
    bodies: impl IntoIterator<Item = Value>,
) -> Vec<String> {
    let mut wrong = Vec::new();
    for body in bodies {
        let response = app.send_json(method.clone(), path, &body).await;
        if response.status() == StatusCode::UNPROCESSABLE_ENTITY {
            assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body").await;
        } else {
            wrong.push(format!("{body} -> {}", response.status()));
        }
    }
    wrong
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
