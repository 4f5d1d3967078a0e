//! `ApiError`: what went wrong, by meaning, and the one table that gives each variant
//! its HTTP status and title. Every error leaves as `application/problem+json`
//! (RFC 9457) with `type`, `title`, `status` and a `detail` the caller can act on.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::limits::BODY_LIMIT;
use crate::model::{ArchiveIdError, NameError, StrictError};
use crate::store::StoreError;
use crate::transcript::TranscriptError;

pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request breaks HTTP itself (a missing or repeated `Host`, a target the
    /// method cannot take).
    #[error("{0}")]
    BadRequest(String),
    /// A name or key in the path breaks the naming rules.
    #[error("{0}")]
    BadName(NameError),
    /// An archive id in the path is not one (`<session name>.<UTC timestamp>`).
    #[error("{0}")]
    BadArchiveId(ArchiveIdError),
    #[error("{0}")]
    MalformedJson(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The body is well-formed JSON but not what the route takes.
    #[error("{0}")]
    InvalidBody(String),
    #[error("{0}")]
    BadFilter(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Exists(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Corrupt(String),
    /// A session's recorded process is still alive; carries its pid.
    #[error("{0}")]
    ProcessAlive(String, i64),
    #[error("{0}")]
    BudgetExhausted(String),
    /// Resume or fork asked of a session without a conversation.
    #[error("{0}")]
    NoConversation(String),
    /// A transcript asked of a session without a conversation.
    #[error("{0}")]
    NoCurrentConversation(String),
    /// The conversation's transcript file is not there.
    #[error("{0}")]
    TranscriptMissing(String),
    /// The transcript's path holds something that is not read (a symlink, a FIFO, ...).
    #[error("{0}")]
    TranscriptRefused(String),
    /// A restore under another name asked of a session with a conversation, which
    /// Claude Code could then not resume.
    #[error("{0}")]
    ConversationBound(String),
    #[error("{0}")]
    PreconditionFailed(String),
    /// More live sessions than `--max-live`; carries the live sessions, least recently
    /// used first, that the bot may stop.
    #[error("{0}")]
    TooManyLive(String, Vec<serde_json::Value>),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    ForbiddenOrigin(String),
    #[error("{0}")]
    MisdirectedRequest(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    InsufficientStorage(String),
    #[error("{0}")]
    Unavailable(String),
    /// Every slot of the change feed is taken.
    #[error("{0}")]
    TooManySubscribers(String),
    /// A fault of ours: the cause is logged, the client hears only that it happened.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The error table: status, the `type` slug, and the title.
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use ApiError::*;
        match self {
            BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request", "Bad request"),
            BadName(_) => (StatusCode::BAD_REQUEST, "invalid-name", "Invalid name"),
            BadArchiveId(_) => (
                StatusCode::BAD_REQUEST,
                "invalid-archive-id",
                "Invalid archive id",
            ),
            MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed-json", "Malformed JSON"),
            UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            PayloadTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Request body too large",
            ),
            InvalidBody(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-body",
                "Invalid request body",
            ),
            BadFilter(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-filter",
                "Invalid filter",
            ),
            NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            MethodNotAllowed(_) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            Exists(_) => (StatusCode::CONFLICT, "exists", "Session already exists"),
            Conflict(_) => (StatusCode::CONFLICT, "status-conflict", "Status conflict"),
            Corrupt(_) => (StatusCode::CONFLICT, "corrupt-entry", "Corrupt entry"),
            ProcessAlive(..) => (StatusCode::CONFLICT, "process-alive", "Process alive"),
            BudgetExhausted(_) => (StatusCode::CONFLICT, "budget-exhausted", "Budget exhausted"),
            NoConversation(_) => (StatusCode::CONFLICT, "no-conversation", "No conversation"),
            NoCurrentConversation(_) => (
                StatusCode::NOT_FOUND,
                "no-current-conversation",
                "No current conversation",
            ),
            TranscriptMissing(_) => (
                StatusCode::NOT_FOUND,
                "transcript-missing",
                "Transcript missing",
            ),
            TranscriptRefused(_) => (
                StatusCode::CONFLICT,
                "transcript-refused",
                "Transcript refused",
            ),
            ConversationBound(_) => (
                StatusCode::CONFLICT,
                "conversation-bound",
                "Conversation bound to its directory",
            ),
            PreconditionFailed(_) => (
                StatusCode::PRECONDITION_FAILED,
                "precondition-failed",
                "Precondition failed",
            ),
            TooManyLive(..) => (
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-live",
                "Too many live sessions",
            ),
            Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            ForbiddenOrigin(_) => (
                StatusCode::FORBIDDEN,
                "forbidden-origin",
                "Forbidden origin",
            ),
            MisdirectedRequest(_) => (
                StatusCode::MISDIRECTED_REQUEST,
                "misdirected-request",
                "Misdirected request",
            ),
            Timeout(_) => (
                StatusCode::REQUEST_TIMEOUT,
                "request-timeout",
                "Request timeout",
            ),
            InsufficientStorage(_) => (
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient-storage",
                "Insufficient storage",
            ),
            Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
            ),
            TooManySubscribers(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "too-many-subscribers",
                "Too many subscribers",
            ),
            Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal server error",
            ),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    pub fn invalid_body(detail: impl Into<String>) -> Self {
        ApiError::InvalidBody(detail.into())
    }
}

/// The problem document (RFC 9457).
#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// Extension members (RFC 9457 §3.2) of the problem types that carry data.
    #[serde(flatten)]
    pub extensions: serde_json::Map<String, serde_json::Value>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, slug, title) = self.parts();
        crate::metrics::metrics().count_error(slug);
        let detail = if let ApiError::Internal(cause) = &self {
            tracing::error!(%cause, "internal error");
            "an internal error occurred; the service's log has the cause".to_owned()
        } else {
            self.to_string()
        };
        let mut extensions = serde_json::Map::new();
        match &self {
            ApiError::ProcessAlive(_, pid) => {
                extensions.insert("pid".into(), (*pid).into());
            }
            ApiError::TooManyLive(_, live) => {
                extensions.insert("stop_first".into(), live.clone().into());
            }
            _ => {}
        }
        let problem = Problem {
            kind: format!("tag:session-manager,2026:{slug}"),
            title,
            status: status.as_u16(),
            detail,
            extensions,
        };
        let mut response = (status, axum::Json(problem)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) | StoreError::ArchiveNotFound(_) => {
                ApiError::NotFound(e.to_string())
            }
            StoreError::ArchiveCorrupt { ref id, .. } => ApiError::Corrupt(format!(
                "{e}; it can only be removed (DELETE /archive/{id}), or repaired on disk"
            )),
            StoreError::ConversationBound { .. } => ApiError::ConversationBound(e.to_string()),
            StoreError::ArchivedProcessAlive { pid, .. } => {
                ApiError::ProcessAlive(e.to_string(), pid)
            }
            StoreError::Exists(_) => ApiError::Exists(format!(
                "{e}; delete it first (DELETE /sessions/{{name}}) or choose another name"
            )),
            StoreError::Conflict(detail) => ApiError::Conflict(detail),
            StoreError::Invalid(detail) => ApiError::InvalidBody(detail),
            StoreError::ProcessAlive { pid, .. } => ApiError::ProcessAlive(e.to_string(), pid),
            StoreError::PreconditionFailed { .. } => ApiError::PreconditionFailed(e.to_string()),
            StoreError::Corrupt { .. } => ApiError::Corrupt(format!(
                "{e}; it is not served until an operator repairs or removes it on disk"
            )),
            StoreError::NoSpace(_) => ApiError::InsufficientStorage(format!(
                "{e}; the write was not completed. Free some space and retry"
            )),
            StoreError::Unavailable(_) => {
                tracing::error!(error = %e, "storage failure");
                ApiError::Unavailable(
                    "the sessions directory cannot be written right now (read-only or failing \
                     storage); the write was not completed. Check the disk, then retry"
                        .to_owned(),
                )
            }
            StoreError::Replaced(_)
            | StoreError::Hostile(_)
            | StoreError::Stalled { .. }
            | StoreError::Hung(_) => ApiError::Unavailable(e.to_string()),
            StoreError::Open { .. } | StoreError::Locked { .. } | StoreError::Internal(_) => {
                ApiError::Internal(e.to_string())
            }
        }
    }
}

impl From<TranscriptError> for ApiError {
    fn from(e: TranscriptError) -> Self {
        match e {
            TranscriptError::Missing(_) => ApiError::TranscriptMissing(e.to_string()),
            TranscriptError::Refused { .. } => ApiError::TranscriptRefused(e.to_string()),
            TranscriptError::NoConfigDir | TranscriptError::Io { .. } => {
                tracing::warn!(error = %e, "a transcript cannot be read");
                ApiError::Unavailable(e.to_string())
            }
        }
    }
}

impl From<NameError> for ApiError {
    fn from(e: NameError) -> Self {
        ApiError::BadName(e)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let detail = rejection.body_text();
        match rejection.status() {
            StatusCode::BAD_REQUEST => ApiError::MalformedJson(detail),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(
                "send the body as JSON with 'Content-Type: application/json'".to_owned(),
            ),
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(format!(
                "the request body is larger than the limit of {BODY_LIMIT} bytes"
            )),
            StatusCode::UNPROCESSABLE_ENTITY => ApiError::InvalidBody(detail),
            _ => ApiError::MalformedJson(detail),
        }
    }
}

/// A body that axum read as JSON but [`crate::model::parse_strict`] refused.
impl From<StrictError> for ApiError {
    fn from(e: StrictError) -> Self {
        match e {
            // The key is the client's own text, cut short and escaped.
            StrictError::DuplicateKey { key, truncated, .. } => ApiError::InvalidBody(format!(
                "the key {key:?}{} appears twice in one object; send each key once",
                if truncated { " (cut short)" } else { "" }
            )),
            // Positions are left out: they count from the body's first non-blank character.
            StrictError::TooDeep { .. } => ApiError::MalformedJson(
                "the body nests arrays and objects more than 128 levels deep".to_owned(),
            ),
            StrictError::Empty | StrictError::NotJson { .. } => {
                ApiError::MalformedJson("the body is not well-formed JSON".to_owned())
            }
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        tracing::debug!(cause = %rejection.body_text(), "path rejected");
        ApiError::BadName(NameError::Encoding)
    }
}
