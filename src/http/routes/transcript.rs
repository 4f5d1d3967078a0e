//! `/sessions/{name}/transcript`: the last messages of the session's current
//! conversation, from the transcript the Claude Code CLI keeps (read only).

use axum::extract::{Query, State, rejection::QueryRejection};
use serde::{Deserialize, Serialize};

use crate::http::error::ApiError;
use crate::http::extract::{Json, Named, SessionPath};
use crate::http::state::AppState;
use crate::model::{ConversationId, SessionName};
use crate::transcript::{DEFAULT_TAIL, MAX_TAIL, Tail};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailQuery {
    tail: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Answer {
    session: SessionName,
    conversation: ConversationId,
    #[serde(flatten)]
    tail: Tail,
}

/// The last `tail` user and assistant messages of the session's current conversation:
/// 404 `no-current-conversation` when it has none, 404 `transcript-missing` when the
/// CLI's file is not there, 409 `transcript-refused` when its path is not a regular file.
pub async fn tail(
    State(state): State<AppState>,
    Named(name): SessionPath,
    query: Result<Query<TailQuery>, QueryRejection>,
) -> Result<Json<Answer>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadFilter(e.body_text()))?;
    let count = tail_count(query.tail.as_deref())?;
    let entry = state.store.get(&name)?;
    let conversation = entry.metadata.conversation.ok_or_else(|| {
        ApiError::NoCurrentConversation(format!(
            "session '{name}' has no current conversation: the bot reports one (POST \
             /sessions/{name}/conversations) when a run of Claude Code starts"
        ))
    })?;
    let dir = state.store.session_dir(&name);
    let transcripts = state.transcripts.clone();
    let tail = tokio::task::spawn_blocking(move || transcripts.tail(&dir, conversation, count))
        .await
        .map_err(|e| ApiError::Internal(format!("the transcript task failed: {e}")))??;
    Ok(Json(Answer {
        session: name,
        conversation,
        tail,
    }))
}

fn tail_count(raw: Option<&str>) -> Result<usize, ApiError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_TAIL);
    };
    raw.parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_TAIL).contains(n))
        .ok_or_else(|| {
            ApiError::BadFilter(format!(
                "tail must be a whole number from 1 to {MAX_TAIL} (the default is {DEFAULT_TAIL})"
            ))
        })
}
