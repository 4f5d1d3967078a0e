//! The routes, one file per resource. [`table`] is the single list the router is built
//! from, so the contract test can compare it with `openapi.yaml`.

pub mod active;
pub mod archive;
pub mod events;
pub mod health;
pub mod metrics;
pub mod personas;
pub mod runs;
pub mod schemas;
pub mod sessions;
pub mod transcript;

use axum::routing::{MethodRouter, get, post};

use super::state::AppState;

/// Whether a route needs the bearer token (when one is configured).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    Token,
}

/// Every method some path of [`table`] serves (`HEAD` with each `GET`): what `OPTIONS *`
/// answers in `Allow`. A test keeps it equal to the union of the routes' own lists.
pub const METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE";

/// Every path the service serves, with its methods and access.
pub fn table() -> Vec<(&'static str, Access, MethodRouter<AppState>)> {
    use Access::*;
    vec![
        ("/healthz", Public, get(health::healthz)),
        ("/events", Token, get(events::follow)),
        ("/metrics", Token, get(metrics::scrape)),
        ("/personas", Token, get(personas::list)),
        ("/personas/{key}", Token, get(personas::get)),
        (
            "/personas/reload",
            Token,
            get(personas::get_reload).post(personas::reload),
        ),
        ("/schemas/persona.json", Token, get(schemas::persona)),
        (
            "/sessions",
            Token,
            get(sessions::list).post(sessions::create),
        ),
        (
            "/sessions/active",
            Token,
            get(active::get).put(active::switch).delete(active::clear),
        ),
        (
            "/sessions/{name}",
            Token,
            get(sessions::get)
                .patch(sessions::update)
                .delete(sessions::delete),
        ),
        (
            "/sessions/{name}/persona",
            Token,
            get(sessions::persona).put(sessions::replace_persona),
        ),
        ("/sessions/{name}/launch", Token, get(runs::launch)),
        (
            "/sessions/{name}/conversations",
            Token,
            post(runs::report_conversation),
        ),
        ("/sessions/{name}/usage", Token, post(runs::record_usage)),
        ("/sessions/{name}/transcript", Token, get(transcript::tail)),
        ("/archive", Token, get(archive::list)),
        (
            "/archive/{id}",
            Token,
            get(archive::get).delete(archive::remove),
        ),
        ("/archive/{id}/restore", Token, post(archive::restore)),
    ]
}
