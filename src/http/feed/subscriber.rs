//! One client's subscription: what it missed first (a replay from the ring, or a
//! resync), then live events, until it goes, it lags, or the feed closes.

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::Event;
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{OwnedSemaphorePermit, broadcast, watch};

use super::Resync;
use super::ring::Published;

/// A client's place in the feed. Holds one of the feed's slots until it is dropped,
/// which the server does when the client disconnects.
pub struct Subscription {
    /// Sent first: why the client must resync, if it must.
    resync: Option<Resync>,
    /// Then the events it missed, from the ring.
    replay: std::vec::IntoIter<Arc<Published>>,
    live: broadcast::Receiver<Arc<Published>>,
    closing: watch::Receiver<bool>,
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
        Self {
            resync,
            replay: replay.into_iter(),
            live,
            closing,
            _slot: slot,
        }
    }

    /// The subscription as a stream of events, for [`axum::response::sse::Sse`].
    pub fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
        futures_util::stream::unfold(self, |mut subscription| async move {
            let event = subscription.next().await?;
            Some((Ok(event), subscription))
        })
    }

    /// The next event; `None` once the feed closes.
    async fn next(&mut self) -> Option<Event> {
        if *self.closing.borrow() {
            return None;
        }
        if let Some(reason) = self.resync.take() {
            return Some(reason.event());
        }
        if let Some(missed) = self.replay.next() {
            return Some(missed.event.clone());
        }
        tokio::select! {
            biased;
            _ = self.closing.wait_for(|closing| *closing) => None,
            received = self.live.recv() => match received {
                Ok(published) => Some(published.event.clone()),
                Err(RecvError::Lagged(missed)) => {
                    tracing::info!(missed, "a change-feed client fell behind; telling it to resync");
                    // From the newest on: the events it did not miss are older than what
                    // it is about to read again.
                    self.live = self.live.resubscribe();
                    Some(Resync::Lagged.event())
                }
                Err(RecvError::Closed) => None,
            },
        }
    }
}
