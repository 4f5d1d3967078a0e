//! The application state every handler receives: one `Arc`, so that the clone every
//! request makes of it is one reference count, and no lock in sight.

use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::feed::Feed;
use super::list_cache::ListCache;
use super::security::{Auth, HostGuard};
use crate::launch::LaunchConfig;
use crate::personas::Personas;
use crate::store::Store;
use crate::transcript::Transcripts;

/// The state, shared: what each request clones.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What every handler may read: the store, the library, the security checks, the feed.
pub struct Shared {
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
    /// The state of a service that keeps archived sessions for ever and serves the page.
    pub fn new(
        store: Store,
        personas: Personas,
        auth: Auth,
        guard: HostGuard,
        launch: LaunchConfig,
        transcripts: Transcripts,
    ) -> Self {
        Self::with(Shared {
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
        })
    }

    /// The state made of `shared`, for a caller that sets what [`AppState::new`] leaves
    /// at its default.
    pub fn with(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }

    /// What [`AppState::new`] made, to be changed and passed to [`AppState::with`];
    /// `None` once the state has been cloned.
    pub fn into_shared(self) -> Option<Shared> {
        Arc::into_inner(self.0)
    }
}
