//! A client of the change feed (`GET /events`): reads server-sent events off a reqwest
//! answer as they come, each within a bound, so a missing event fails the test instead
//! of hanging it.

use std::time::Duration;

use reqwest::{Method, Response, StatusCode};
use serde_json::Value;

use super::app::TestApp;

/// How long a test waits for one event that should come.
pub const EVENT_BOUND: Duration = Duration::from_secs(10);

/// One event: its id (none for a `resync` sent to one client), type and data.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: Value,
}

impl SseEvent {
    /// The event's number within its run: the part of the id after the epoch.
    pub fn n(&self) -> u64 {
        let id = self.id.as_deref().expect("an event with an id");
        id.split_once('-').unwrap().1.parse().unwrap()
    }

    /// The run's epoch: the part of the id before the number.
    pub fn epoch(&self) -> &str {
        let id = self.id.as_deref().expect("an event with an id");
        id.split_once('-').unwrap().0
    }
}

/// An open feed, read event by event.
pub struct EventStream {
    response: Response,
    buffer: Vec<u8>,
}

impl EventStream {
    pub fn new(response: Response) -> Self {
        assert_eq!(response.status(), StatusCode::OK, "GET /events");
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        assert_eq!(response.headers()["cache-control"], "no-cache");
        Self {
            response,
            buffer: Vec::new(),
        }
    }

    /// The next event (keep-alive comments skipped), or `None` when the stream ended;
    /// panics after `bound`.
    pub async fn next_within(&mut self, bound: Duration) -> Option<SseEvent> {
        tokio::time::timeout(bound, self.read_event())
            .await
            .unwrap_or_else(|_| panic!("no event within {bound:?}"))
    }

    /// The next event, which must come within [`EVENT_BOUND`].
    pub async fn next(&mut self) -> SseEvent {
        self.next_within(EVENT_BOUND)
            .await
            .expect("the feed ended, but an event was expected")
    }

    /// The next `count` events.
    pub async fn take(&mut self, count: usize) -> Vec<SseEvent> {
        let mut events = Vec::with_capacity(count);
        for _ in 0..count {
            events.push(self.next().await);
        }
        events
    }

    async fn read_event(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse_frame(&String::from_utf8(frame).unwrap()) {
                    return Some(event);
                }
                continue;
            }
            let chunk = self.response.chunk().await.expect("reading the feed")?;
            self.buffer.extend_from_slice(&chunk);
        }
    }
}

/// An event's fields; `None` for a frame of comments only (a keep-alive).
fn parse_frame(frame: &str) -> Option<SseEvent> {
    let (mut id, mut event, mut data) = (None, None, None);
    for line in frame
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with(':'))
    {
        let (field, value) = line.split_once(": ").unwrap_or((line, ""));
        match field {
            "id" => id = Some(value.to_owned()),
            "event" => event = Some(value.to_owned()),
            "data" => {
                assert!(data.is_none(), "one data line per event: {frame:?}");
                data =
                    Some(serde_json::from_str(value).unwrap_or_else(|e| panic!("{e}: {frame:?}")));
            }
            other => panic!("unexpected field {other:?} in {frame:?}"),
        }
    }
    let event = event?;
    Some(SseEvent {
        id,
        data: data.unwrap_or_else(|| panic!("an event without data: {frame:?}")),
        event,
    })
}

impl TestApp {
    /// `GET /events`, with `Last-Event-ID` when given, as sent.
    pub async fn follow_raw(&self, last_event_id: Option<&[u8]>) -> Response {
        let mut request = self.request(Method::GET, "/events");
        if let Some(id) = last_event_id {
            let value = reqwest::header::HeaderValue::from_bytes(id).unwrap();
            request = request.header("last-event-id", value);
        }
        request.send().await.unwrap()
    }

    /// Follows the feed (from `last_event_id`, when given). The feed is subscribed when
    /// this returns: its answer's head came after the subscription was taken.
    pub async fn follow(&self, last_event_id: Option<&str>) -> EventStream {
        EventStream::new(self.follow_raw(last_event_id.map(str::as_bytes)).await)
    }
}
