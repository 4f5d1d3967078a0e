//! The application state every handler receives: cheap to clone, no lock in sight.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::feed::Feed;
use super::list_cache::ListCache;
use super::security::{Auth, HostGuard};
use crate::launch::LaunchConfig;
use crate::personas::Personas;
use crate::store::Store;
use crate::transcript::Transcripts;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub personas: Arc<Personas>,
    /// The token check, also asked by `/healthz` whether a caller may see the details.
    pub auth: Arc<Auth>,
    /// The names a request may use for this service in `Host` and `Origin`.
    pub guard: Arc<HostGuard>,
    pub lists: Arc<ListCache>,
    /// How launch specs are made: the program, the live-process cap.
    pub launch: Arc<LaunchConfig>,
    /// The change feed (`GET /events`); `serve` runs it and closes it.
    pub feed: Arc<Feed>,
    /// Where the Claude Code CLI keeps the sessions' transcripts.
    pub transcripts: Arc<Transcripts>,
    /// How long archived sessions are kept (`--archive-keep-days`); `None`: for ever.
    pub archive_keep: Option<Duration>,
    /// Whether the operator's page (`/ui/`) is served: off with `--no-ui`.
    pub ui: bool,
    pub started: Instant,
}

impl AppState {
    pub fn new(
        store: Store,
        personas: Personas,
        auth: Auth,
        guard: HostGuard,
        launch: LaunchConfig,
        transcripts: Transcripts,
    ) -> Self {
        Self {
            launch: Arc::new(launch),
            feed: Arc::new(Feed::new(&store)),
            transcripts: Arc::new(transcripts),
            store,
            personas: Arc::new(personas),
            auth: Arc::new(auth),
            guard: Arc::new(guard),
            lists: Arc::default(),
            archive_keep: None,
            ui: true,
            started: Instant::now(),
        }
    }
}
