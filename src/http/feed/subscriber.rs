//! One client's subscription: what it missed first (a replay from the ring, or a
//! resync), then live events, until it goes, it lags, or the feed closes.
//!
//! Events are written to a client together when they come fast: an event after a quiet
//! spell goes at once, and those that follow it within [`FEED_GAP`] go in the next
//! write, together. Sixty-four clients of a feed at a thousand writes a second then cost
//! a few hundred socket writes a second each, not a thousand, for a few milliseconds of
//! delay. A keep-alive comment goes every [`FEED_KEEP_ALIVE`].

use std::convert::Infallible;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{OwnedSemaphorePermit, broadcast, watch};
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::Resync;
use super::ring::Published;
use crate::limits::{FEED_GAP, FEED_KEEP_ALIVE};

/// What a keep-alive sends: an SSE comment, which clients ignore.
const KEEP_ALIVE: &[u8] = b":\n\n";

/// The most bytes one write to a client gathers.
const WRITE_MAX: usize = 64 * 1024;

/// A client's place in the feed. Holds one of the feed's slots until it is dropped,
/// which the server does when the client disconnects.
pub struct Subscription {
    /// Sent first: why the client must resync, if it must.
    resync: Option<Resync>,
    /// Then the events it missed, from the ring.
    replay: std::vec::IntoIter<Arc<Published>>,
    live: broadcast::Receiver<Arc<Published>>,
    closing: watch::Receiver<bool>,
    keep_alive: Interval,
    /// When the last write to the client began.
    written: Option<Instant>,
    _slot: OwnedSemaphorePermit,
}

impl Subscription {
    pub(super) fn new(
        start: Result<Vec<Arc<Published>>, Resync>,
        live: broadcast::Receiver<Arc<Published>>,
        closing: watch::Receiver<bool>,
        slot: OwnedSemaphorePermit,
    ) -> Self {
        let (resync, replay) = match start {
            Ok(missed) => (None, missed),
            Err(reason) => (Some(reason), Vec::new()),
        };
        let mut keep_alive =
            tokio::time::interval_at(Instant::now() + FEED_KEEP_ALIVE, FEED_KEEP_ALIVE);
        keep_alive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            resync,
            replay: replay.into_iter(),
            live,
            closing,
            keep_alive,
            written: None,
            _slot: slot,
        }
    }

    /// The subscription as a stream of writes, each one or more whole SSE frames.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
        futures_util::stream::unfold(self, |mut subscription| async move {
            let write = subscription.next_write().await?;
            Some((Ok(write), subscription))
        })
    }

    /// The next write: the next event, and every one that follows it within
    /// [`FEED_GAP`] of the last write; `None` once the feed closes. The gap is waited
    /// out before the next event is, so that a client busy with a fast feed wakes once
    /// per write, not once per event.
    async fn next_write(&mut self) -> Option<Bytes> {
        if let Some(written) = self.written {
            let closing = self.closing.wait_for(|closing| *closing);
            tokio::select! {
                biased;
                _ = closing => return None,
                () = tokio::time::sleep_until(written + FEED_GAP) => {}
            }
        }
        let first = self.next().await?;
        self.written = Some(Instant::now());
        let Some(second) = self.try_next() else {
            return Some(first);
        };
        let mut write = BytesMut::from(first);
        write.extend_from_slice(&second);
        while write.len() < WRITE_MAX
            && let Some(frame) = self.try_next()
        {
            write.extend_from_slice(&frame);
        }
        Some(write.freeze())
    }

    /// The next event, or a keep-alive; `None` once the feed closes.
    async fn next(&mut self) -> Option<Bytes> {
        if *self.closing.borrow() {
            return None;
        }
        if let Some(frame) = self.try_next() {
            return Some(frame);
        }
        let received = tokio::select! {
            biased;
            _ = self.closing.wait_for(|closing| *closing) => return None,
            received = self.live.recv() => received,
            _ = self.keep_alive.tick() => return Some(Bytes::from_static(KEEP_ALIVE)),
        };
        match received {
            Ok(published) => Some(published.frame.clone()),
            Err(RecvError::Lagged(missed)) => Some(self.lagged(missed)),
            Err(RecvError::Closed) => None,
        }
    }

    /// The next event that is here already: the resync, the replay, then live ones.
    fn try_next(&mut self) -> Option<Bytes> {
        if let Some(reason) = self.resync.take() {
            return Some(reason.event());
        }
        if let Some(missed) = self.replay.next() {
            return Some(missed.frame.clone());
        }
        match self.live.try_recv() {
            Ok(published) => Some(published.frame.clone()),
            Err(TryRecvError::Lagged(missed)) => Some(self.lagged(missed)),
            Err(TryRecvError::Empty | TryRecvError::Closed) => None,
        }
    }

    /// The client fell `missed` events behind: it goes on from the newest, and is told
    /// to resync.
    fn lagged(&mut self, missed: u64) -> Bytes {
        tracing::info!(
            missed,
            "a change-feed client fell behind; telling it to resync"
        );
        // From the newest on: the events it did not miss are older than what it is
        // about to read again.
        self.live = self.live.resubscribe();
        Resync::Lagged.event()
    }
}
