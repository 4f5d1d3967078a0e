//! The body of `GET /sessions` (the whole list), cached for as long as it stays true and
//! shared by every list that asks for it meanwhile.
//!
//! At 100,000 sessions a list is about 20 MiB of JSON. So that concurrent lists cost one
//! body, not one each: at most one list is built at a time, a list that finds one being
//! built waits for it and takes it from the cache, and every answer is a reference to
//! the same cached chunks. The body is built and sent in chunks of 64 KiB, not
//! as one allocation: the allocator hands out memory of that size from its heap and
//! takes it back for the next body, where one allocation of the whole body would be
//! mapped, returned on free, and (glibc raises its mapping threshold to the size freed)
//! the next ones kept from the system for good.

use std::io::{self, Write};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};

use super::wire::{Filter, SessionJson};
use crate::process::Liveness;
use crate::store::{Entry, Store, Version};

/// The size of a body's chunks: well under glibc's initial mapping threshold (128 KiB).
const CHUNK: usize = 64 * 1024;

/// `GET /sessions` in its JSON form, one slot per status filter, each tagged with the
/// store version and the second it was built at: `process` and `idle_seconds` are
/// computed, so a cached body is served within the second it was built in, only while no
/// write has happened, and only while each process it shows is still as it shows it (a
/// process ends without a write).
#[derive(Debug, Default)]
pub struct ListCache {
    slots: Mutex<[Option<Arc<CachedList>>; 4]>,
    /// Held while a cacheable list is built, so that lists asked for meanwhile wait for
    /// it instead of building one each. A tokio mutex: a list waits without holding an
    /// async worker.
    building: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct CachedList {
    version: Version,
    second: u64,
    body: ListBody,
    /// The listed sessions that have a recorded process, and what the body says of it.
    processes: Vec<(Arc<Entry>, Liveness)>,
}

/// A list's JSON, in chunks; cloning it clones references.
#[derive(Debug, Clone, Default)]
pub struct ListBody {
    chunks: Arc<[Bytes]>,
    len: u64,
}

impl ListBody {
    /// The whole body in one piece (for tests and small callers).
    pub fn to_vec(&self) -> Vec<u8> {
        self.chunks.iter().flat_map(|c| c.iter().copied()).collect()
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The body of a response, with its exact length (so `Content-Length` is set).
    pub fn into_body(self) -> Body {
        Body::new(Sending {
            remaining: self.len,
            body: self,
            next: 0,
        })
    }
}

/// A [`ListBody`] being sent: one frame per chunk.
struct Sending {
    body: ListBody,
    next: usize,
    /// The bytes of the chunks not sent yet.
    remaining: u64,
}

impl http_body::Body for Sending {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let Some(chunk) = self.body.chunks.get(self.next).cloned() else {
            return Poll::Ready(None);
        };
        self.next += 1;
        self.remaining -= chunk.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.body.chunks.len()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// An [`io::Write`] that cuts what it is given into chunks of about [`CHUNK`] bytes.
struct Chunker {
    chunks: Vec<Bytes>,
    current: Vec<u8>,
    len: u64,
}

impl Chunker {
    fn new() -> Self {
        Self {
            chunks: Vec::new(),
            current: Vec::with_capacity(CHUNK),
            len: 0,
        }
    }

    fn cut(&mut self) {
        let full = std::mem::replace(&mut self.current, Vec::with_capacity(CHUNK));
        self.len += full.len() as u64;
        self.chunks.push(Bytes::from(full));
    }

    fn finish(mut self) -> ListBody {
        if !self.current.is_empty() {
            self.cut();
        }
        ListBody {
            chunks: self.chunks.into(),
            len: self.len,
        }
    }
}

impl Write for Chunker {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        // Never grow a chunk past its capacity: start the next one instead.
        if !self.current.is_empty() && self.current.len() + data.len() > self.current.capacity() {
            self.cut();
        }
        self.current.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ListCache {
    /// The sessions `filter` selects, most recently active first, as a JSON array. A
    /// list never shows less than what was acknowledged before it was asked for: every
    /// change moves the store's version.
    pub async fn list_json(&self, store: &Store, filter: &Filter) -> ListBody {
        if !filter.status_only() {
            return build(store, filter).0;
        }
        let slot = filter.status.map_or(0, |s| s as usize + 1);
        if let Some(body) = self.cached(store, slot) {
            return body;
        }
        let _building = self.building.lock().await;
        // Built by the list this one waited for?
        if let Some(body) = self.cached(store, slot) {
            return body;
        }
        // The cached body is stale for every list from now on (its version or second has
        // passed): let it go before building, so that its chunks, once no answer still
        // sends them, are reused for the new body rather than held beside it.
        let stale = self.slots()[slot].take();
        drop(stale);
        let (body, built) = build(store, filter);
        let mut slots = self.slots();
        if slots[slot]
            .as_ref()
            .is_none_or(|c| (c.version, c.second) < (built.version, built.second))
        {
            slots[slot] = Some(Arc::new(built));
        }
        body
    }

    /// The cached body of `slot`, if it is still true.
    fn cached(&self, store: &Store, slot: usize) -> Option<ListBody> {
        let current = store.version();
        let second = unix_second(SystemTime::now());
        // Cloned out first: the processes are checked without the lock.
        let cached = self.slots()[slot].clone()?;
        (cached.version == current
            && cached.second == second
            && cached
                .processes
                .iter()
                .all(|(e, l)| store.liveness(e) == *l))
        .then(|| cached.body.clone())
    }

    fn slots(&self) -> MutexGuard<'_, [Option<Arc<CachedList>>; 4]> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn unix_second(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The list `filter` selects, and what caching it needs to know. Each session's answer
/// is serialised as soon as it is made: only the body is held, not every answer first.
fn build(store: &Store, filter: &Filter) -> (ListBody, CachedList) {
    let now = SystemTime::now();
    let (version, entries) = store.list(filter.status);
    let mut out = Chunker::new();
    let mut processes = Vec::new();
    let mut first = true;
    out.write_all(b"[").expect("writing to memory");
    for entry in entries {
        if !filter.keeps(&entry.metadata, now) {
            continue;
        }
        let session = SessionJson::at(store, entry, now);
        if filter.process.is_some_and(|p| session.process != p) {
            continue;
        }
        if !first {
            out.write_all(b",").expect("writing to memory");
        }
        first = false;
        serde_json::to_writer(&mut out, &session).expect("sessions serialise");
        if session.metadata().pid.is_some() {
            processes.push((session.entry, session.process));
        }
    }
    out.write_all(b"]").expect("writing to memory");
    let body = out.finish();
    let cached = CachedList {
        version,
        second: unix_second(now),
        body: body.clone(),
        processes,
    };
    (body, cached)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_stay_within_their_size_and_keep_every_byte_in_order() {
        let mut out = Chunker::new();
        let mut expected = Vec::new();
        for i in 0..50_000u32 {
            let piece = format!("{i},");
            out.write_all(piece.as_bytes()).unwrap();
            expected.extend_from_slice(piece.as_bytes());
        }
        // One write larger than a chunk goes whole into a chunk of its own.
        let big = vec![b'x'; CHUNK * 2];
        out.write_all(&big).unwrap();
        expected.extend_from_slice(&big);
        let body = out.finish();
        assert_eq!(body.to_vec(), expected);
        assert_eq!(body.len(), expected.len() as u64);
        assert!(body.chunks.len() > 2);
        let (last, rest) = body.chunks.split_last().unwrap();
        assert_eq!(last.len(), CHUNK * 2);
        assert!(rest.iter().all(|c| !c.is_empty() && c.len() <= CHUNK));
    }
}
