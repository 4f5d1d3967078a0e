//! `/healthz`: liveness and readiness for the container runtime and the operator.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::http::error::ApiError;
use crate::http::extract::Json;
use crate::http::state::AppState;
use crate::model::SessionName;
use crate::store::Skipped;

/// What anyone may learn: enough for a container's probe. With a token configured, a
/// caller without it gets only this.
#[derive(Debug, Serialize)]
struct Public {
    /// `ok`, or `degraded` while entries are skipped or a problem stands.
    status: &'static str,
    version: &'static str,
}

/// The whole report, for callers with the token (or when no token is configured).
#[derive(Debug, Serialize)]
struct Health {
    #[serde(flatten)]
    public: Public,
    uptime_seconds: u64,
    sessions: Counts,
    current: Option<SessionName>,
    personas: usize,
    /// Entries of the sessions or personas directory that are not served, and why.
    skipped: Vec<Skipped>,
    /// The filesystem that holds the sessions directory.
    storage: Option<Storage>,
    /// Conditions that do not stop the service, such as the last write having failed.
    problems: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Storage {
    free_bytes: u64,
    total_bytes: u64,
}

/// Below this much free space (or 1% of the filesystem), the disk is "nearly full".
const LOW_SPACE_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Serialize)]
struct Counts {
    total: usize,
    idle: usize,
    active: usize,
    suspended: usize,
}

pub async fn healthz(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let store = state.store.health();
    let library = state.personas.library();
    let probe = state.store.probe_storage().await;
    let authorized = state.auth.allows(&headers);
    let mut fatal = Vec::new();
    if let Err(e) = probe.writable {
        fatal.push(if authorized {
            format!("the sessions directory is not writable: {e}")
        } else {
            "the sessions directory is not writable".to_owned()
        });
    }
    if let Some(why) = &store.fatal {
        fatal.push(if authorized {
            why.clone()
        } else {
            "the store takes no writes".to_owned()
        });
    }
    if library.personas.is_empty() {
        fatal.push(if authorized {
            format!(
                "no valid persona is loaded from {}",
                state.personas.dir().display()
            )
        } else {
            "no valid persona is loaded".to_owned()
        });
    }
    if !fatal.is_empty() {
        return ApiError::Unavailable(fatal.join("; ")).into_response();
    }
    let mut problems: Vec<String> = store
        .write_problem
        .map(|p| format!("the last write failed: {p}"))
        .into_iter()
        .collect();
    let store_handle = state.store.clone();
    let stale = tokio::task::spawn_blocking(move || store_handle.check_processes())
        .await
        .unwrap_or_default();
    if !stale.is_empty() {
        let names: Vec<&str> = stale.iter().map(|n| n.as_str()).collect();
        problems.push(format!(
            "{} session(s) are active or suspended but their process is gone: {}",
            stale.len(),
            names.join(", ")
        ));
    }
    let storage = probe.space.map(|(free_bytes, total_bytes)| Storage {
        free_bytes,
        total_bytes,
    });
    if let Some(s) = storage
        .as_ref()
        .filter(|s| s.free_bytes < LOW_SPACE_BYTES || s.free_bytes < s.total_bytes / 100)
    {
        problems.push(format!(
            "the disk that holds the sessions is nearly full ({} MiB free)",
            s.free_bytes / (1024 * 1024)
        ));
    }
    let [(_, idle), (_, active), (_, suspended)] = store.by_status;
    let mut skipped = store.skipped;
    skipped.extend(library.skipped.iter().cloned());
    let public = Public {
        status: if skipped.is_empty() && problems.is_empty() {
            "ok"
        } else {
            "degraded"
        },
        version: env!("CARGO_PKG_VERSION"),
    };
    if !authorized {
        return (StatusCode::OK, Json(public)).into_response();
    }
    let health = Health {
        public,
        uptime_seconds: state.started.elapsed().as_secs(),
        sessions: Counts {
            total: store.sessions,
            idle,
            active,
            suspended,
        },
        current: store.current,
        personas: library.personas.len(),
        skipped,
        storage,
        problems,
    };
    (StatusCode::OK, Json(health)).into_response()
}
