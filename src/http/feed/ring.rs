//! The feed's history and its ids: every event is numbered `n` (1, 2, ... in this
//! process), its id is `<boot epoch hex>-<n>`, and the ring keeps the latest ones for
//! clients that come back with `Last-Event-ID`.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use super::Resync;

/// One event of the feed, built once and shared by every subscriber.
#[derive(Debug)]
pub struct Published {
    /// Its number in this process: consecutive, so a client can see a gap.
    pub n: u64,
    /// The whole SSE event as sent: id, type and data.
    pub frame: Bytes,
}

/// An SSE event as sent: its id (when it has one), its type, and its data, one `data:`
/// line for each line of it, then the blank line that ends it.
pub fn frame(id: Option<&str>, kind: &str, data: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + kind.len() + 48);
    if let Some(id) = id {
        out.put_slice(b"id: ");
        out.put_slice(id.as_bytes());
        out.put_u8(b'\n');
    }
    out.put_slice(b"event: ");
    out.put_slice(kind.as_bytes());
    out.put_u8(b'\n');
    for line in data.split('\n') {
        out.put_slice(b"data: ");
        out.put_slice(line.as_bytes());
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
    out.freeze()
}

/// The latest events, oldest first, and the number the next one gets.
#[derive(Debug)]
pub struct Ring {
    events: VecDeque<Arc<Published>>,
    capacity: usize,
    next: u64,
}

impl Ring {
    pub fn new(capacity: usize) -> Self {
        Self {
            events: VecDeque::with_capacity(capacity),
            capacity: capacity.max(1),
            next: 1,
        }
    }

    /// The number of the next event; taking it is the caller's promise to
    /// [`push`](Self::push) that event.
    pub fn take_number(&mut self) -> u64 {
        let n = self.next;
        self.next += 1;
        n
    }

    /// Keeps an event, forgetting the oldest one if the ring is full.
    pub fn push(&mut self, event: Arc<Published>) {
        if self.events.len() == self.capacity {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// The events after the one numbered `seen`, in order; or, when those are not all
    /// here any more (or `seen` was never given out), why the client must resync.
    pub fn after(&self, seen: u64) -> Result<Vec<Arc<Published>>, Resync> {
        let last = self.next - 1;
        if seen == 0 || seen > last {
            return Err(Resync::UnknownId);
        }
        let first = self.events.front().map_or(self.next, |e| e.n);
        if seen + 1 < first {
            return Err(Resync::TooOld);
        }
        let skip = (seen + 1 - first) as usize;
        Ok(self.events.iter().skip(skip).cloned().collect())
    }
}

/// The id of event `n` of the run that started at `epoch`.
pub fn format_id(epoch: u64, n: u64) -> String {
    format!("{epoch:x}-{n}")
}

/// The epoch and number of an id, if it has the form [`format_id`] writes.
pub fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (epoch, n) = id.split_once('-')?;
    let hex =
        !epoch.is_empty() && epoch.len() <= 16 && epoch.bytes().all(|b| b.is_ascii_hexdigit());
    let decimal = !n.is_empty() && n.len() <= 20 && n.bytes().all(|b| b.is_ascii_digit());
    if !(hex && decimal) {
        return None;
    }
    Some((u64::from_str_radix(epoch, 16).ok()?, n.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_of(capacity: usize, count: u64) -> Ring {
        let mut ring = Ring::new(capacity);
        for _ in 0..count {
            let n = ring.take_number();
            let frame = frame(Some(&n.to_string()), "test", "{}");
            ring.push(Arc::new(Published { n, frame }));
        }
        ring
    }

    fn numbers(events: Vec<Arc<Published>>) -> Vec<u64> {
        events.iter().map(|e| e.n).collect()
    }

    #[test]
    fn ids_round_trip_and_refuse_anything_else() {
        let id = format_id(0x19a_2b3c_4d5e, 42);
        assert_eq!(id, "19a2b3c4d5e-42");
        assert_eq!(parse_id(&id), Some((0x19a_2b3c_4d5e, 42)));
        for bad in [
            "",
            "-",
            "42",
            "abc-",
            "-42",
            "xyz-1",
            "ab-1x",
            "ab-+1",
            "+ab-1",
            "ab-1-2",
            " ab-1",
            "ab-1 ",
            "11111111111111111-1",
            "ab-999999999999999999999",
        ] {
            assert_eq!(parse_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn replays_exactly_what_follows_the_last_event_seen() {
        let ring = ring_of(8, 5);
        assert_eq!(numbers(ring.after(2).unwrap()), [3, 4, 5]);
        assert_eq!(numbers(ring.after(1).unwrap()), [2, 3, 4, 5]);
        assert!(ring.after(5).unwrap().is_empty());
    }

    #[test]
    fn an_id_the_ring_has_forgotten_or_never_gave_needs_a_resync() {
        let ring = ring_of(4, 10);
        // Holds 7..=10: a client that saw 6 misses nothing the ring lacks.
        assert_eq!(numbers(ring.after(6).unwrap()), [7, 8, 9, 10]);
        assert_eq!(ring.after(5).unwrap_err(), Resync::TooOld);
        assert_eq!(ring.after(11).unwrap_err(), Resync::UnknownId);
        assert_eq!(ring.after(0).unwrap_err(), Resync::UnknownId);
        let empty = Ring::new(4);
        assert_eq!(empty.after(1).unwrap_err(), Resync::UnknownId);
    }

    #[test]
    fn a_frame_has_its_fields_and_one_data_line_per_line() {
        assert_eq!(
            frame(Some("a-1"), "session.updated", "{}"),
            "id: a-1\nevent: session.updated\ndata: {}\n\n"
        );
        assert_eq!(
            frame(None, "resync", "x\ny"),
            "event: resync\ndata: x\ndata: y\n\n"
        );
    }
}
