//! The connections a listener serves: each on a task of its own, owned here, and at most
//! a cap of them at once (see [`crate::limits::max_connections`]).
//!
//! At the cap, a new connection waits while the oldest open one is asked to close
//! gracefully: hyper closes an idle connection at once, and a busy one after its answer.
//! So a flood of idle connections can neither use up the process's descriptors (when
//! `accept` would fail, again and again) nor lock out a new client such as a health
//! check; the client that loses its idle connection reconnects, as HTTP clients do for
//! a keep-alive connection the server closed. Shutdown asks every connection to close
//! the same way; a connection answering the change feed whose client reads nothing
//! cannot send the feed's end, so it is closed outright after a short grace.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Display;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::HttpBody;
use axum::http::header;
use axum::response::Response;
use hyper_util::server::graceful::GracefulConnection;
use tokio::sync::{oneshot, watch};
use tokio::task::{AbortHandle, JoinSet};
use tower::util::MapResponse;

/// How often, at most, reaching the cap is logged: a flood must not flood the log.
const CAP_WARNING_INTERVAL: Duration = Duration::from_secs(60);

pub struct Connections {
    cap: usize,
    /// Every connection's task; each returns its id when the connection ends.
    tasks: JoinSet<u64>,
    /// How to ask each connection not yet asked to close, by id: the first is the oldest.
    open: BTreeMap<u64, oneshot::Sender<()>>,
    next_id: u64,
    stopping: watch::Sender<bool>,
    warned: Option<Instant>,
    /// Each connection's task, to close one outright.
    handles: HashMap<u64, AbortHandle>,
    /// The connections that answered an event stream.
    streams: Streams,
}

/// The ids of the connections that answered an event stream.
#[derive(Clone, Default)]
struct Streams(Arc<Mutex<HashSet<u64>>>);

impl Streams {
    fn lock(&self) -> MutexGuard<'_, HashSet<u64>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Connections {
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            tasks: JoinSet::new(),
            open: BTreeMap::new(),
            next_id: 0,
            stopping: watch::Sender::new(false),
            warned: None,
            handles: HashMap::new(),
            streams: Streams::default(),
        }
    }

    /// The id the next connection is spawned with.
    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// `router` for connection `id`, noting the connection when it answers an event
    /// stream (so that shutdown can close it if its client reads nothing).
    pub fn watching(
        &self,
        router: Router,
        id: u64,
    ) -> MapResponse<Router, impl FnOnce(Response) -> Response + Clone + use<>> {
        let streams = self.streams.clone();
        MapResponse::new(router, move |response: Response| {
            // A stream's answer to HEAD has no body: that connection is like any other.
            let is_stream = !response.body().is_end_stream()
                && (response.headers().get(header::CONTENT_TYPE))
                    .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"));
            if is_stream {
                streams.lock().insert(id);
            }
            response
        })
    }

    /// Returns once one more connection fits under the cap: at the cap, asks the oldest
    /// open connection to close, and waits for a connection to end. Cancel-safe.
    pub async fn make_room(&mut self) {
        while let Some(done) = self.tasks.try_join_next() {
            self.forget(done);
        }
        while self.tasks.len() >= self.cap {
            self.warn_at_cap();
            // A connection whose task ended unnoticed dropped its receiver: skip it.
            while let Some((_, close)) = self.open.pop_first() {
                if close.send(()).is_ok() {
                    break;
                }
            }
            if let Some(done) = self.tasks.join_next().await {
                self.forget(done);
            }
        }
    }

    /// Serves `conn` on a task of its own until it ends, or until it is asked to close
    /// (to make room, or at shutdown) and has closed gracefully.
    pub fn spawn<C>(&mut self, id: u64, conn: C)
    where
        C: GracefulConnection + Send + 'static,
        C::Error: Display + Send,
    {
        let (close, asked) = oneshot::channel();
        self.open.insert(id, close);
        let mut stopping = self.stopping.subscribe();
        let handle = self.tasks.spawn(async move {
            tokio::pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => Some(ended),
                _ = asked => None,
                _ = stopping.wait_for(|stop| *stop) => None,
            };
            let ended = match ended {
                Some(ended) => ended,
                None => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            id
        });
        self.handles.insert(id, handle);
    }

    /// Asks every connection to close gracefully and waits for them, at most `grace`;
    /// a connection still answering an event stream after `stream_grace` is held by a
    /// client that reads nothing, and is closed then; at the end of `grace`, so is any
    /// other.
    pub async fn shut_down(mut self, stream_grace: Duration, grace: Duration) {
        self.stopping.send_replace(true);
        let started = Instant::now();
        if self.drain(stream_grace).await {
            return;
        }
        let streams: Vec<u64> = self.streams.lock().iter().copied().collect();
        for id in streams {
            if let Some(handle) = self.handles.get(&id) {
                tracing::warn!("closing a change-feed connection whose client reads nothing");
                handle.abort();
            }
        }
        if !self.drain(grace.saturating_sub(started.elapsed())).await {
            tracing::warn!("shutdown grace period over; closing the remaining connections");
            self.tasks.shutdown().await;
        }
    }

    /// Waits for the connections to end, at most `time`; whether they all did.
    async fn drain(&mut self, time: Duration) -> bool {
        let drained = async {
            while let Some(done) = self.tasks.join_next().await {
                self.forget(done);
            }
        };
        tokio::time::timeout(time, drained).await.is_ok()
    }

    fn forget(&mut self, done: Result<u64, tokio::task::JoinError>) {
        if let Ok(id) = done {
            self.open.remove(&id);
            self.handles.remove(&id);
            self.streams.lock().remove(&id);
        }
    }

    fn warn_at_cap(&mut self) {
        if self
            .warned
            .is_none_or(|at| at.elapsed() >= CAP_WARNING_INTERVAL)
        {
            self.warned = Some(Instant::now());
            tracing::warn!(
                max_connections = self.cap,
                "at the connection cap: closing the oldest connections to make room for new ones"
            );
        }
    }
}
