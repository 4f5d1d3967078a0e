//! A session's runs of Claude Code, as the bot sees them: how to start one
//! (`GET /sessions/{name}/launch`), the conversation it is in (`POST
//! /sessions/{name}/conversations`, the CLI's `init` message) and what it cost (`POST
//! /sessions/{name}/usage`, its `result` message).

use axum::extract::{Query, State, rejection::QueryRejection};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::http::conditional::{IfMatchHeader, etag, tagged};
use crate::http::error::ApiError;
use crate::http::extract::{Json, Named, SessionPath};
use crate::http::state::AppState;
use crate::http::wire::{SessionJson, idle_seconds, last_used};
use crate::launch::{Launch, LaunchError, LaunchSpec, Mode};
use crate::model::{ConversationId, Counted, InitMessage, ResultMessage, SessionName};
use crate::process::Liveness;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    parent: Option<String>,
}

/// The CLI's `init` message, posted as it came: the session's conversation is now the
/// one it names (201 when new to the session, 200 when resumed).
pub async fn report_conversation(
    State(state): State<AppState>,
    Named(name): SessionPath,
    IfMatchHeader(if_match): IfMatchHeader,
    query: Result<Query<ReportQuery>, QueryRejection>,
    Json(init): Json<InitMessage>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadFilter(e.body_text()))?;
    let parent = match query.parent.as_deref() {
        None => None,
        Some(raw) => Some(
            ConversationId::parse(raw).map_err(|e| ApiError::BadFilter(format!("parent {e}")))?,
        ),
    };
    init.check().map_err(ApiError::InvalidBody)?;
    let (entry, new) = state
        .store
        .report_conversation(name, init, parent, if_match)
        .await?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let session = SessionJson::new(&state.store, entry);
    Ok((status, tagged(&session, session.clone())).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    run: Option<String>,
}

#[derive(Debug, Serialize)]
struct UsageAnswer {
    /// False when the message was counted before (same `uuid`).
    counted: bool,
    budget_exhausted: bool,
    session: SessionJson,
}

/// The CLI's `result` message, posted as it came: added to the session's usage once. With
/// the `run` the launch spec gave, only what the run spent since its last result counts.
pub async fn record_usage(
    State(state): State<AppState>,
    Named(name): SessionPath,
    query: Result<Query<UsageQuery>, QueryRejection>,
    Json(result): Json<ResultMessage>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadFilter(e.body_text()))?;
    let run = match query.run.as_deref() {
        None => None,
        Some(raw) => Some(
            ConversationId::parse(raw)
                .map_err(|_| {
                    ApiError::BadFilter("run must be the id a launch spec gave: a UUID".into())
                })?
                .to_string(),
        ),
    };
    result.check().map_err(ApiError::InvalidBody)?;
    let (entry, counted) = state.store.record_usage(name, result, run).await?;
    let session = SessionJson::new(&state.store, entry.clone());
    let answer = UsageAnswer {
        counted: counted != Counted::Duplicate,
        budget_exhausted: entry.metadata.budget_exhausted(),
        session: session.clone(),
    };
    Ok(tagged(&session, answer))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchQuery {
    mode: Option<String>,
    print: Option<bool>,
    takeover: Option<bool>,
}

#[derive(Debug, Serialize)]
struct LaunchAnswer {
    #[serde(flatten)]
    spec: LaunchSpec,
    /// Where to post what the run prints: its `init` message and each `result` (with the
    /// run's id, so that results restating the process's spending so far count once).
    report: Report,
}

#[derive(Debug, Serialize)]
struct Report {
    conversations: String,
    usage: String,
}

/// Exactly what to run for the session, or why not now: its process is alive (409
/// `process-alive`, unless `takeover=true`), its budget is spent (409
/// `budget-exhausted`), or `--max-live` sessions are live already (429).
pub async fn launch(
    State(state): State<AppState>,
    Named(name): SessionPath,
    query: Result<Query<LaunchQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadFilter(e.body_text()))?;
    let mode = match query.mode.as_deref() {
        None => None,
        Some("resume") => Some(Mode::Resume),
        Some("new") => Some(Mode::New),
        Some("fork") => Some(Mode::Fork),
        Some(_) => {
            return Err(ApiError::BadFilter(
                "mode must be one of 'resume', 'new' or 'fork'".to_owned(),
            ));
        }
    };
    let entry = state.store.get(&name)?;
    let live = state.store.liveness(&entry) == Liveness::Alive;
    if live && !query.takeover.unwrap_or(false) {
        let pid = entry.metadata.pid.unwrap_or_default();
        return Err(ApiError::ProcessAlive(
            format!(
                "session '{name}' has a live process, pid {pid}; stop it first, or ask with \
                 takeover=true to start another anyway"
            ),
            pid,
        ));
    }
    if entry.metadata.budget_exhausted() {
        return Err(ApiError::BudgetExhausted(format!(
            "session '{name}' has spent its budget; raise it with PATCH {{\"budget_usd\": ...}} \
             or clear it with null"
        )));
    }
    if !live {
        check_max_live(&state, &name)?;
    }
    let stored = state.store.persona(&name).await?;
    let persona = stored
        .persona
        .as_ref()
        .map_err(|e| ApiError::Corrupt(format!("the session's persona is not valid: {e}")))?;
    let conversation = entry.metadata.conversation.map(|c| c.to_string());
    let spec = Launch {
        claude_bin: &state.launch.claude_bin,
        name: &name,
        cwd: &state.store.session_dir(&name),
        persona,
        conversation: conversation.as_deref(),
        mode,
        print: query.print.unwrap_or(false),
    }
    .spec(|| ConversationId::generate().to_string())
    .map_err(|e| match e {
        LaunchError::NoConversation(..) => ApiError::NoConversation(e.to_string()),
        LaunchError::Settings(_) => ApiError::Corrupt(e.to_string()),
    })?;
    let base = format!("/sessions/{name}");
    let parent = match spec.mode {
        Mode::Fork => format!("?parent={}", conversation.unwrap_or_default()),
        _ => String::new(),
    };
    let report = Report {
        conversations: format!("{base}/conversations{parent}"),
        usage: format!("{base}/usage?run={}", ConversationId::generate()),
    };
    Ok((
        [(header::ETAG, etag(entry.version))],
        Json(LaunchAnswer { spec, report }),
    )
        .into_response())
}

/// 429 when starting `name` would make more than `--max-live` sessions live, naming the
/// live ones least recently used first.
fn check_max_live(state: &AppState, name: &SessionName) -> Result<(), ApiError> {
    let Some(max) = state.launch.max_live else {
        return Ok(());
    };
    let (_, entries) = state.store.list(None);
    let now = std::time::SystemTime::now();
    let mut live: Vec<_> = entries
        .iter()
        .filter(|e| e.metadata.name != *name && state.store.liveness(e) == Liveness::Alive)
        .collect();
    if live.len() < max {
        return Ok(());
    }
    // By the instant, not by the whole seconds idle: two sessions used within the
    // same second are still in order.
    live.sort_by(|a, b| {
        last_used(&a.metadata)
            .cmp(&last_used(&b.metadata))
            .then(a.metadata.name.cmp(&b.metadata.name))
    });
    let stop_first = live
        .iter()
        .map(|e| {
            let idle = idle_seconds(&e.metadata, now);
            json!({ "name": e.metadata.name, "pid": e.metadata.pid, "idle_seconds": idle })
        })
        .collect();
    Err(ApiError::TooManyLive(
        format!(
            "{} sessions are live already (--max-live {max}); stop one of those in stop_first \
             (least recently used first) before starting '{name}'",
            live.len()
        ),
        stop_first,
    ))
}
