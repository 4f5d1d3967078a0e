//! The change feed under load (`GET /events`): durable writes paced open-loop at
//! [`RATE`] a second, first with no subscriber, then with [`SUBSCRIBERS`], then with none
//! again; each subscriber notes when each event reaches it.
//!
//! A write is `PATCH /sessions/{name}` setting a title no other write uses (so each one
//! writes, and sends one `session.updated`), spread over the first [`SESSIONS`]
//! sessions, from [`WRITERS`] threads on keep-alive connections, each keeping its own
//! share of the schedule (a thread whose write is late sends the next one at once, and
//! stops at the phase's end whatever is left; a write's latency is from its send to its
//! reply). An event is matched to its write by
//! the store version: the write's reply carries it in its `ETag` (`"<version>.<process>"`),
//! the event in its data's `version`. Delivery time is the event's arrival at the
//! subscriber minus the moment its writer had the reply, and 0 when the event came first.
//!
//! Plain std threads and `TcpStream`s speaking HTTP/1.1 (the writers' replies have a
//! `content-length`; the feed is chunked), every read bounded by a timeout and every
//! loop by a count or a deadline.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::Result;
use crate::run::Bench;
use crate::server::LOOPBACK;
use crate::table::ms_us;
use crate::wrk::Wrk;

/// Writes a second, over all writer threads.
pub const RATE: f64 = 1000.0;
/// Writer threads, each on its own keep-alive connection.
pub const WRITERS: u32 = 16;
/// Subscribers of the middle phase: the most the service serves at once.
pub const SUBSCRIBERS: usize = 64;
/// Sessions the writes go round (at most N).
const SESSIONS: usize = 1000;
/// The longest the subscribers are waited for after the last write.
const DRAIN: Duration = Duration::from_secs(5);
/// The longest a write's reply, or a subscriber's next byte, may take.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound on a writer's writes, whatever the duration.
const MAX_WRITES: u64 = 10_000_000;

/// The three phases: the writes of each (as a wrk run is counted), and the events.
pub struct FeedRun {
    /// No subscriber, before.
    pub before: Wrk,
    /// [`SUBSCRIBERS`] subscribers.
    pub loaded: Wrk,
    /// No subscriber, after.
    pub after: Wrk,
    /// `before` and `after` as one (their latencies merged, not averaged): the reference.
    pub quiet: Wrk,
    pub delivery: Delivery,
}

/// What the subscribers of the middle phase received.
pub struct Delivery {
    /// Every successful write's event, once per subscriber.
    pub expected: u64,
    pub delivered: u64,
    /// `resync` events, over all subscribers.
    pub resyncs: u64,
    pub p50_us: u64,
    pub p99_us: u64,
}

/// A write the service acknowledged: the version it made, and when its reply came.
struct Written {
    version: String,
    at: Instant,
}

/// One phase's writes.
#[derive(Default)]
struct Phase {
    written: Vec<Written>,
    /// Every answered write's latency, in microseconds.
    latencies: Vec<u32>,
    /// Answers other than 200 with an `ETag`.
    non2xx: u64,
    socket_errors: u64,
    secs: f64,
}

/// What one subscriber received.
#[derive(Default)]
struct Received {
    arrivals: HashMap<String, Instant>,
    resyncs: u64,
}

impl Bench {
    /// The three phases against the service on `port`, which holds `n` sessions.
    pub fn feed(&self, label: &str, port: u16, n: usize) -> Result<FeedRun> {
        let count = n.min(SESSIONS);
        let secs = f64::from(self.duration);
        let (a, _) = phase(port, count, "a", 0, secs)?;
        let (b, received) = phase(port, count, "b", SUBSCRIBERS, secs)?;
        let (c, _) = phase(port, count, "c", 0, secs)?;
        let delivery = delivery(&b.written, &received);
        let run = FeedRun {
            before: wrk(&[&a]),
            loaded: wrk(&[&b]),
            after: wrk(&[&c]),
            quiet: wrk(&[&a, &c]),
            delivery,
        };
        for (phase, w) in [
            ("0 subscribers, before", &run.before),
            ("64 subscribers", &run.loaded),
            ("0 subscribers, after", &run.after),
        ] {
            eprintln!(
                "bench: {label}: writes with {phase}: {:.0}/s, p50 {} ms, p99 {} ms, \
                 non-2xx {}, socket errors {}",
                w.rps(),
                ms_us(w.p50_us),
                ms_us(w.p99_us),
                w.non2xx,
                w.socket_errors()
            );
        }
        let d = &run.delivery;
        eprintln!(
            "bench: {label}: delivered {} of {} events, {} resyncs, p50 {} ms, p99 {} ms",
            d.delivered,
            d.expected,
            d.resyncs,
            ms_us(d.p50_us),
            ms_us(d.p99_us)
        );
        Ok(run)
    }
}

/// One phase: `subscribers` subscribers connected (their answer's headers read, so each
/// is subscribed), then `secs` of paced writes, then the subscribers given until every
/// one has as many `session.updated` events as there were writes (or [`DRAIN`]).
fn phase(
    port: u16,
    count: usize,
    tag: &str,
    subscribers: usize,
    secs: f64,
) -> Result<(Phase, Vec<Received>)> {
    let mut streams = Vec::new();
    let mut readers = Vec::new();
    for _ in 0..subscribers {
        let reader = subscribe(port)?;
        streams.push(reader.get_ref().try_clone()?);
        readers.push(reader);
    }
    let updated: Vec<AtomicU64> = (0..subscribers).map(|_| AtomicU64::new(0)).collect();
    let (phase, received) = std::thread::scope(|scope| {
        let followers: Vec<_> = readers
            .into_iter()
            .zip(&updated)
            .map(|(reader, updated)| scope.spawn(move || follow(reader, updated)))
            .collect();
        let start = Instant::now();
        let end = start + Duration::from_secs_f64(secs);
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| scope.spawn(move || writer(port, w, count, tag, start, end)))
            .collect();
        let mut phase = Phase::default();
        for handle in writers {
            let one = handle.join().unwrap_or_default();
            phase.written.extend(one.written);
            phase.latencies.extend(one.latencies);
            phase.non2xx += one.non2xx;
            phase.socket_errors += one.socket_errors;
        }
        phase.secs = start.elapsed().as_secs_f64().max(secs);
        let want = phase.written.len() as u64;
        let deadline = Instant::now() + DRAIN;
        while Instant::now() < deadline && updated.iter().any(|u| u.load(Ordering::Relaxed) < want)
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        for stream in &streams {
            let _ = stream.shutdown(Shutdown::Both);
        }
        let received: Vec<Received> = followers
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect();
        (phase, received)
    });
    Ok((phase, received))
}

/// Writer `w`'s share of the schedule: write k is due at `(k * WRITERS + w) / RATE`
/// seconds after `start`, and goes to session `(k * WRITERS + w) mod count`.
fn writer(port: u16, w: u32, count: usize, tag: &str, start: Instant, end: Instant) -> Phase {
    let mut out = Phase::default();
    let mut conn = None;
    for k in 0..MAX_WRITES {
        let slot = k * u64::from(WRITERS) + u64::from(w);
        let due = start + Duration::from_secs_f64(slot as f64 / RATE);
        // A writer behind its schedule stops at the end all the same: the phase lasts
        // its time, and what could not be sent lowers the achieved rate.
        if due >= end || Instant::now() >= end {
            break;
        }
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let session = slot as usize % count;
        let body = format!(r#"{{"title":"feed {tag} {w} {k}"}}"#);
        let request = format!(
            "PATCH /sessions/s{session:05} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let sent = Instant::now();
        // A connection that failed is dropped, and the next write opens a new one.
        let answer = conn
            .take()
            .map_or_else(|| connect(port), Ok)
            .and_then(|mut c| {
                let answer = exchange(&mut c, request.as_bytes())?;
                conn = Some(c);
                Ok(answer)
            });
        match answer {
            Ok((status, etag)) => {
                let at = Instant::now();
                out.latencies
                    .push(u32::try_from((at - sent).as_micros()).unwrap_or(u32::MAX));
                let version = etag.as_deref().and_then(version_of_etag);
                match version {
                    Some(version) if status == 200 => out.written.push(Written {
                        version: version.to_owned(),
                        at,
                    }),
                    _ => out.non2xx += 1,
                }
            }
            Err(_) => out.socket_errors += 1,
        }
    }
    out
}

/// The writes of `phases` counted as one wrk run: latencies merged, time added up.
fn wrk(phases: &[&Phase]) -> Wrk {
    let mut latencies: Vec<u32> = phases
        .iter()
        .flat_map(|p| p.latencies.iter().copied())
        .collect();
    latencies.sort_unstable();
    Wrk {
        requests: latencies.len() as u64,
        bytes: 0,
        duration_us: (phases.iter().map(|p| p.secs).sum::<f64>() * 1e6) as u64,
        p50_us: percentile(&latencies, 50.0),
        p99_us: percentile(&latencies, 99.0),
        non2xx: phases.iter().map(|p| p.non2xx).sum(),
        connect: 0,
        read: phases.iter().map(|p| p.socket_errors).sum(),
        write: 0,
        timeout: 0,
        unexpected: 0,
    }
}

/// Each acknowledged write's event at each subscriber: how many arrived, and how long
/// after the write's reply (0 for one that came before it).
fn delivery(written: &[Written], received: &[Received]) -> Delivery {
    let mut delays = Vec::with_capacity(written.len() * received.len());
    for r in received {
        for w in written {
            if let Some(at) = r.arrivals.get(&w.version) {
                let delay = at.saturating_duration_since(w.at).as_micros();
                delays.push(u32::try_from(delay).unwrap_or(u32::MAX));
            }
        }
    }
    delays.sort_unstable();
    Delivery {
        expected: (written.len() * received.len()) as u64,
        delivered: delays.len() as u64,
        resyncs: received.iter().map(|r| r.resyncs).sum(),
        p50_us: percentile(&delays, 50.0),
        p99_us: percentile(&delays, 99.0),
    }
}

/// The `p`th percentile of sorted microseconds (nearest rank); 0 for none.
fn percentile(sorted: &[u32], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    u64::from(sorted[i.min(sorted.len() - 1)])
}

/// The version in a session's `ETag`: `"<version>.<process>"`.
fn version_of_etag(etag: &str) -> Option<&str> {
    let tag = etag.trim().strip_prefix('"')?.strip_suffix('"')?;
    Some(tag.split_once('.').map_or(tag, |(version, _)| version))
}

fn connect(port: u16) -> io::Result<BufReader<TcpStream>> {
    let stream = TcpStream::connect(SocketAddrV4::new(LOOPBACK, port))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(BufReader::new(stream))
}

/// The status line and headers of an answer: the status, and the headers' names (in
/// lower case) and values.
fn head(conn: &mut BufReader<TcpStream>) -> io::Result<(u16, Vec<(String, String)>)> {
    let mut line = String::new();
    conn.read_line(&mut line)?;
    let status = line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::other(format!("not an HTTP/1.1 status line: {line:?}")))?;
    let mut headers = Vec::new();
    for _ in 0..100 {
        line.clear();
        if conn.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let text = line.trim_end();
        if text.is_empty() {
            return Ok((status, headers));
        }
        if let Some((name, value)) = text.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    Err(io::Error::other("more than 100 header lines"))
}

/// One request on a keep-alive connection: the answer's status and `ETag`, its body read
/// (by its `content-length`) and dropped.
fn exchange(conn: &mut BufReader<TcpStream>, request: &[u8]) -> io::Result<(u16, Option<String>)> {
    conn.get_mut().write_all(request)?;
    let (status, headers) = head(conn)?;
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let length: u64 = header("content-length")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| io::Error::other("an answer without content-length"))?;
    io::copy(&mut conn.by_ref().take(length), &mut io::sink())?;
    Ok((status, header("etag").cloned()))
}

/// A subscriber: `GET /events`, its answer's headers read (from then on it is subscribed).
fn subscribe(port: u16) -> Result<BufReader<TcpStream>> {
    let mut conn = connect(port)?;
    write!(
        conn.get_mut(),
        "GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n"
    )?;
    let (status, headers) = head(&mut conn)?;
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if status != 200 || !chunked {
        return Err(format!("GET /events answered {status} (chunked: {chunked})").into());
    }
    Ok(conn)
}

/// A subscriber's loop, until its connection is shut down or ends: each event's arrival,
/// by the version in its data; `updated` counts the `session.updated` events.
fn follow(mut conn: BufReader<TcpStream>, updated: &AtomicU64) -> Received {
    let mut received = Received::default();
    let mut pending = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if conn.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let size = line.trim().split(';').next().unwrap_or_default();
        let Ok(size) = usize::from_str_radix(size, 16) else {
            break;
        };
        if size == 0 {
            break;
        }
        let mut chunk = vec![0; size + 2];
        if conn.read_exact(&mut chunk).is_err() {
            break;
        }
        pending.push_str(&String::from_utf8_lossy(&chunk[..size]));
        let now = Instant::now();
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            let (mut kind, mut data) = ("message", "");
            for field in event.lines() {
                if let Some(value) = field.strip_prefix("event:") {
                    kind = value.trim();
                } else if let Some(value) = field.strip_prefix("data:") {
                    data = value.trim_start();
                }
            }
            match kind {
                "resync" => received.resyncs += 1,
                "session.updated" => {
                    if let Some(version) = version_of_data(data) {
                        received.arrivals.insert(version.to_owned(), now);
                    }
                    updated.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    }
    received
}

/// The `version` of an event's data (`{"name":..,"version":"..",..}`).
fn version_of_data(data: &str) -> Option<&str> {
    let key = r#""version":""#;
    let rest = &data[data.find(key)? + key.len()..];
    Some(&rest[..rest.find('"')?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_the_etag_and_the_event_data() {
        assert_eq!(
            version_of_etag(r#""661ae44625c7b-103.none""#),
            Some("661ae44625c7b-103")
        );
        assert_eq!(
            version_of_etag(r#""661ae44625c7b-62""#),
            Some("661ae44625c7b-62")
        );
        assert_eq!(version_of_etag("661ae44625c7b-62"), None);
        assert_eq!(
            version_of_data(r#"{"name":"s00006","version":"661ae-103","session":{}}"#),
            Some("661ae-103")
        );
        assert_eq!(version_of_data(r#"{"reason":"lagged"}"#), None);
    }

    #[test]
    fn an_event_before_its_reply_counts_as_0_and_a_missing_one_as_undelivered() {
        let at = Instant::now();
        let written = vec![
            Written {
                version: "e-1".into(),
                at,
            },
            Written {
                version: "e-2".into(),
                at,
            },
        ];
        let early = Received {
            arrivals: HashMap::from([("e-1".into(), at - Duration::from_millis(1))]),
            resyncs: 0,
        };
        let late = Received {
            arrivals: HashMap::from([
                ("e-1".into(), at + Duration::from_millis(3)),
                ("e-2".into(), at + Duration::from_millis(3)),
            ]),
            resyncs: 1,
        };
        let d = delivery(&written, &[early, late]);
        assert_eq!((d.expected, d.delivered, d.resyncs), (4, 3, 1));
        assert_eq!((d.p50_us, d.p99_us), (3000, 3000));
    }
}
