//! The connections a listener serves: each on a task of its own, owned here, and at most
//! a cap of them at once (see [`crate::limits::max_connections`]).
//!
//! At the cap, a new connection waits while the oldest open one is asked to close
//! gracefully: hyper closes an idle connection at once, and a busy one after its answer.
//! So a flood of idle connections can neither use up the process's descriptors (when
//! `accept` would fail, again and again) nor lock out a new client such as a health
//! check; the client that loses its idle connection reconnects, as HTTP clients do for
//! a keep-alive connection the server closed. Shutdown asks every connection to close
//! the same way.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::time::{Duration, Instant};

use hyper_util::server::graceful::GracefulConnection;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

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
        }
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
    pub fn spawn<C>(&mut self, conn: C)
    where
        C: GracefulConnection + Send + 'static,
        C::Error: Display + Send,
    {
        let id = self.next_id;
        self.next_id += 1;
        let (close, asked) = oneshot::channel();
        self.open.insert(id, close);
        let mut stopping = self.stopping.subscribe();
        self.tasks.spawn(async move {
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
    }

    /// Asks every connection to close gracefully and waits for them, at most `grace`;
    /// then closes those still open.
    pub async fn shut_down(mut self, grace: Duration) {
        self.stopping.send_replace(true);
        let drained = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, drained).await.is_err() {
            tracing::warn!("shutdown grace period over; closing the remaining connections");
            self.tasks.shutdown().await;
        }
    }

    fn forget(&mut self, done: Result<u64, tokio::task::JoinError>) {
        if let Ok(id) = done {
            self.open.remove(&id);
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
