//! The change feed behind `GET /events`: the store's changes as server-sent events.
//!
//! One task, [`Feed::run`], takes the store's changes in order from its broadcast
//! channel, turns each into an event once (id, type, JSON data), keeps it in a ring of
//! the latest ones (`ring`) and sends it on the feed's own broadcast channel, to which
//! each client's [`Subscription`] listens. So a change is serialised once whatever the
//! number of clients, the writer never waits for the feed, and the feed never waits for
//! a client: one that falls too far behind is told to resync.
//!
//! An event is kept and sent under one lock, and a client subscribes and reads the ring
//! under the same lock, so a client coming back with `Last-Event-ID` gets every event it
//! missed once, from the ring or live, never both and never neither.
//!
//! The lock is a `std` mutex: it is never held across an `.await`, and is held only to
//! number, keep and send one event, or to copy out a replay.

mod ring;
mod subscriber;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{Semaphore, broadcast, watch};

pub use subscriber::Subscription;

use crate::http::wire::SessionJson;
use crate::limits::{FEED_BACKLOG, FEED_HISTORY, FEED_SUBSCRIBERS};
use crate::model::SessionName;
use crate::process::Probe;
use crate::store::{Change, Store, Subject};
use ring::{Published, Ring, format_id, parse_id};

/// The type of the event that tells a client to read everything again
/// (`GET /sessions`) because it cannot be told exactly what it missed.
pub const RESYNC: &str = "resync";

/// Why a client must resync: the `reason` of a [`RESYNC`] event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resync {
    /// Its `Last-Event-ID` is older than the ring's oldest event.
    TooOld,
    /// Its `Last-Event-ID` is from another run of the service.
    OtherRun,
    /// Its `Last-Event-ID` is malformed, or was never given out.
    UnknownId,
    /// It fell more than the live channel holds behind.
    Lagged,
    /// The feed itself missed changes of the store (it fell behind the store's channel).
    Missed,
}

impl Resync {
    fn data(self) -> String {
        #[derive(Serialize)]
        struct Data {
            reason: Resync,
        }
        serde_json::to_string(&Data { reason: self }).expect("a reason serialises")
    }

    /// The event for one client alone: without an id, so that the client's
    /// `Last-Event-ID` stays the last event it did get.
    fn event(self) -> Bytes {
        ring::frame(None, RESYNC, &self.data())
    }
}

/// Why a client cannot follow the feed now.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error(
        "{0} clients already follow the change feed, the most it serves at once; \
         close one of them, or retry later"
    )]
    Full(usize),
    #[error("the service is shutting down; reconnect once it is back")]
    Closing,
}

/// The feed: its ring, its live channel, its subscriber slots, and whether it is closing.
pub struct Feed {
    /// This run's epoch (the store's), the first part of every id.
    epoch: u64,
    /// For the `dir` of a session in an event's data.
    sessions_dir: PathBuf,
    /// Whether a session's process runs, as its answers say.
    probe: Probe,
    ring: Mutex<Ring>,
    live: broadcast::Sender<Arc<Published>>,
    slots: Arc<Semaphore>,
    capacity: usize,
    closing: watch::Sender<bool>,
    /// The store's changes, until [`run`](Self::run) takes them.
    source: Mutex<Option<broadcast::Receiver<Change>>>,
}

impl Feed {
    /// A feed of `store`'s changes from now on. It sends nothing until [`run`](Self::run)
    /// runs; changes made before then wait in the store's channel.
    pub fn new(store: &Store) -> Self {
        Self::with_caps(store, FEED_HISTORY, FEED_BACKLOG, FEED_SUBSCRIBERS)
    }

    /// [`new`](Self::new) with other sizes: the ring, the live channel, the slots.
    fn with_caps(store: &Store, history: usize, backlog: usize, subscribers: usize) -> Self {
        Self {
            epoch: store.version().epoch,
            sessions_dir: store.dir().to_path_buf(),
            probe: store.probe().clone(),
            ring: Mutex::new(Ring::new(history)),
            live: broadcast::channel(backlog.max(1)).0,
            slots: Arc::new(Semaphore::new(subscribers)),
            capacity: subscribers,
            closing: watch::Sender::new(false),
            source: Mutex::new(Some(store.subscribe())),
        }
    }

    /// Turns the store's changes into events until the feed closes or the store is
    /// gone. Holds no handle on the store, so it never keeps the store (and its lock)
    /// alive. Only the first call does anything.
    pub async fn run(self: Arc<Self>) {
        let Some(mut changes) = lock(&self.source).take() else {
            return;
        };
        let mut closing = self.closing.subscribe();
        loop {
            let received = tokio::select! {
                biased;
                _ = closing.wait_for(|closing| *closing) => return,
                received = changes.recv() => received,
            };
            match received {
                Ok(change) => self.publish(
                    change.kind.name(),
                    &render(&change, &self.sessions_dir, &self.probe),
                ),
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "the change feed fell behind the store; its clients must resync"
                    );
                    self.publish(RESYNC, &Resync::Missed.data());
                }
                Err(RecvError::Closed) => return,
            }
        }
    }

    /// Ends every subscription and refuses new ones: at shutdown, so that open feeds do
    /// not hold the server's graceful stop for its whole grace period.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// A subscription for a client that last saw `last_event_id` (`None`: a new client,
    /// which gets live events only). An id this feed cannot resume from starts the
    /// subscription with a [`RESYNC`] event.
    pub fn subscribe(&self, last_event_id: Option<&str>) -> Result<Subscription, Refused> {
        let closing = self.closing.subscribe();
        if *closing.borrow() {
            return Err(Refused::Closing);
        }
        let slot = self.slots.clone().try_acquire_owned();
        let slot = slot.map_err(|_| Refused::Full(self.capacity))?;
        let ring = lock(&self.ring);
        let live = self.live.subscribe();
        let start = match last_event_id {
            None => Ok(Vec::new()),
            Some(id) => self.resume(&ring, id),
        };
        drop(ring);
        Ok(Subscription::new(start, live, closing, slot))
    }

    /// The events after `id`, or why they cannot be told.
    fn resume(&self, ring: &Ring, id: &str) -> Result<Vec<Arc<Published>>, Resync> {
        let (epoch, n) = parse_id(id).ok_or(Resync::UnknownId)?;
        if epoch != self.epoch {
            return Err(Resync::OtherRun);
        }
        ring.after(n)
    }

    /// Numbers an event, keeps it and sends it, in one step for subscribers.
    fn publish(&self, kind: &str, data: &str) {
        let mut ring = lock(&self.ring);
        let n = ring.take_number();
        let frame = ring::frame(Some(&format_id(self.epoch, n)), kind, data);
        let published = Arc::new(Published { n, frame });
        ring.push(published.clone());
        // No subscriber is no error.
        let _ = self.live.send(published);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A change's data: its session's name and the store's version, with the session as
/// `GET /sessions/{name}` answers it when the change gave it a new state, or the
/// previous and new current session for a switch.
fn render(change: &Change, sessions_dir: &Path, probe: &Probe) -> String {
    #[derive(Serialize)]
    struct Data<'a> {
        name: Option<&'a SessionName>,
        version: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        session: Option<SessionJson>,
        #[serde(flatten, skip_serializing_if = "Option::is_none")]
        current: Option<Current<'a>>,
    }
    #[derive(Serialize)]
    struct Current<'a> {
        previous: Option<&'a SessionName>,
        active: Option<&'a SessionName>,
    }
    let (session, current) = match &change.subject {
        Subject::Session(entry) => (
            Some(SessionJson::under(sessions_dir, probe, entry.clone())),
            None,
        ),
        Subject::Gone(_) => (None, None),
        Subject::Current { previous, active } => {
            let current = Current {
                previous: previous.as_ref(),
                active: active.as_ref(),
            };
            (None, Some(current))
        }
    };
    let data = Data {
        name: change.name(),
        version: change.version.to_string(),
        session,
        current,
    };
    serde_json::to_string(&data).expect("a change serialises")
}

#[cfg(test)]
mod tests;
