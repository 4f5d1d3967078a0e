//! Prometheus metrics (OpenMetrics text): requests by route template and status, request
//! and store-operation latency, fsync latency, sessions by status, errors by kind, and
//! build information.
//!
//! One registry per process, reached through [`metrics`]: a process serves one sessions
//! directory, and a global lets the lowest layers (an fsync in `store::fsio`) record
//! without threading a handle through every call.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::model::Status;

type Labels = Vec<(&'static str, String)>;

/// Latency buckets from 50 µs to about 1.6 s, doubling.
#[derive(Clone, Copy)]
struct Buckets;

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
    }
}

/// The handles of one request series: a route's requests by method and status, and
/// their latency.
struct Series {
    method: &'static str,
    status: u16,
    count: Counter,
    seconds: Histogram,
}

thread_local! {
    /// This thread's handles, by route template.
    static SERIES: std::cell::RefCell<HashMap<Box<str>, Vec<Series>>> =
        std::cell::RefCell::new(HashMap::new());
}

pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    request_seconds: Family<Labels, Histogram, Buckets>,
    store_seconds: Family<Labels, Histogram, Buckets>,
    fsync_seconds: Histogram,
    errors: Family<Labels, Counter>,
    sessions: Family<Labels, Gauge>,
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("session_manager");
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route template, method and status",
            requests.clone(),
        );
        let request_seconds = Family::new_with_constructor(Buckets);
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route template and method",
            request_seconds.clone(),
        );
        let store_seconds = Family::new_with_constructor(Buckets);
        registry.register(
            "store_operation_duration_seconds",
            "Store write latency by operation, fsyncs included",
            store_seconds.clone(),
        );
        let fsync_seconds = Buckets.new_metric();
        registry.register(
            "fsync_duration_seconds",
            "Latency of each fsync of a file or directory",
            fsync_seconds.clone(),
        );
        let errors = Family::<Labels, Counter>::default();
        registry.register(
            "errors",
            "Error answers by kind (the problem type)",
            errors.clone(),
        );
        let sessions = Family::<Labels, Gauge>::default();
        registry.register("sessions", "Sessions by status", sessions.clone());
        registry.register(
            "build",
            "Build information",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        Self {
            registry,
            requests,
            request_seconds,
            store_seconds,
            fsync_seconds,
            errors,
            sessions,
        }
    }

    /// Counts one request and records its latency. Each thread keeps the handles of the
    /// series it has recorded to, so that a request costs a lookup in that thread's map,
    /// not label strings made, hashed and looked up in the shared families.
    pub fn observe_request(
        &self,
        route: &str,
        method: &'static str,
        status: u16,
        elapsed: Duration,
    ) {
        SERIES.with_borrow_mut(|series| {
            let slots = match series.get_mut(route) {
                Some(slots) => slots,
                None => series.entry(route.into()).or_default(),
            };
            let slot = match slots
                .iter()
                .position(|s| s.method == method && s.status == status)
            {
                Some(i) => &slots[i],
                None => {
                    let labels = |with_status: bool| {
                        let mut labels: Labels =
                            vec![("route", route.to_owned()), ("method", method.to_owned())];
                        if with_status {
                            labels.push(("status", status.to_string()));
                        }
                        labels
                    };
                    slots.push(Series {
                        method,
                        status,
                        count: self.requests.get_or_create(&labels(true)).clone(),
                        seconds: self.request_seconds.get_or_create(&labels(false)).clone(),
                    });
                    slots.last().expect("just pushed")
                }
            };
            slot.count.inc();
            slot.seconds.observe(elapsed.as_secs_f64());
        });
    }

    pub fn observe_store(&self, operation: &'static str, elapsed: Duration) {
        self.store_seconds
            .get_or_create(&vec![("operation", operation.to_owned())])
            .observe(elapsed.as_secs_f64());
    }

    pub fn observe_fsync(&self, elapsed: Duration) {
        self.fsync_seconds.observe(elapsed.as_secs_f64());
    }

    pub fn count_error(&self, kind: &'static str) {
        self.errors
            .get_or_create(&vec![("kind", kind.to_owned())])
            .inc();
    }

    /// The text exposition, with the session gauges set from `by_status` first.
    pub fn render(&self, by_status: &[(Status, usize)]) -> String {
        for (status, count) in by_status {
            self.sessions
                .get_or_create(&vec![("status", status.as_str().to_owned())])
                .set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Runs `f`, recording how long it took as an fsync.
pub fn timed_fsync<T>(f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let result = f();
    metrics().observe_fsync(start.elapsed());
    result
}
