//! Where the time of a scenario goes, from the service's own Prometheus metrics: read
//! before and after a run, and the deltas put into one sentence for the report.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::time::Duration;

use crate::server::LOOPBACK;
use crate::wrk::Wrk;

/// The service's Prometheus metrics, `name{labels}` to value; empty if it has none.
pub fn scrape(port: u16) -> Vec<(String, f64)> {
    let Ok(mut stream) = TcpStream::connect(SocketAddrV4::new(LOOPBACK, port)) else {
        return Vec::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request =
        format!("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    if stream.write_all(request.as_bytes()).is_err() || stream.read_to_string(&mut text).is_err() {
        return Vec::new();
    }
    if !text.starts_with("HTTP/1.1 200") {
        return Vec::new();
    }
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The sum of the series whose key starts with `name` and holds every one of `labels`.
fn metric(metrics: &[(String, f64)], name: &str, labels: &[&str]) -> Option<f64> {
    let mut found = None;
    for (key, value) in metrics {
        let (series, rest) = key.split_once('{').unwrap_or((key, ""));
        if series == name && labels.iter().all(|l| rest.contains(l)) {
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}

/// A sentence on where a scenario's time went, from the service's own metrics (best
/// effort: nothing if the metrics are missing or renamed).
pub fn explain(
    n: usize,
    what: &str,
    w: &Wrk,
    before: &[(String, f64)],
    after: &[(String, f64)],
    operation: Option<&str>,
) -> Option<String> {
    let delta = |name: &str, labels: &[&str]| -> Option<f64> {
        Some(metric(after, name, labels)? - metric(before, name, labels).unwrap_or(0.0))
    };
    let mut text = format!(
        "N={n} {what}: {:.0} req/s, {:.1} KiB per answer",
        w.rps(),
        w.bytes as f64 / w.requests.max(1) as f64 / 1024.0
    );
    let wall = w.duration_us as f64 / 1e6;
    let Some(op) = operation else {
        let sum = delta(
            "session_manager_http_request_duration_seconds_sum",
            &[r#"route="/sessions""#, r#"method="GET""#],
        )?;
        let count = delta(
            "session_manager_http_request_duration_seconds_count",
            &[r#"route="/sessions""#, r#"method="GET""#],
        )?;
        write!(
            text,
            "; handler mean {:.2} ms (service side), so {:.2} ms per request is the network, wrk and the client reading",
            sum / count.max(1.0) * 1e3,
            (wall / w.requests.max(1) as f64 - sum / count.max(1.0)) * 1e3,
        )
        .ok();
        return Some(text);
    };
    let label = format!("operation=\"{op}\"");
    let store_sum = delta(
        "session_manager_store_operation_duration_seconds_sum",
        &[&label],
    )?;
    let store_count = delta(
        "session_manager_store_operation_duration_seconds_count",
        &[&label],
    )?;
    let fsync_sum = delta("session_manager_fsync_duration_seconds_sum", &[])?;
    let fsync_count = delta("session_manager_fsync_duration_seconds_count", &[])?;
    let ops = store_count.max(1.0);
    write!(
        text,
        "; {store_count:.0} store ops, each {:.2} ms under the writer lock (busy {:.0}% of the run), \
         of which {:.1} fsyncs taking {:.2} ms; the rest of the {:.1} ms p50 latency is \
         queueing for the lock, the blocking pool and HTTP",
        store_sum / ops * 1e3,
        store_sum / wall * 100.0,
        fsync_count / ops,
        fsync_sum / ops * 1e3,
        w.p50_us as f64 / 1e3,
    )
    .ok();
    Some(text)
}
