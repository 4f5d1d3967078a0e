//! The service's limits and timeouts, in one leaf every layer may read: the HTTP layer
//! enforces them, the store caps its reads with them, and the answers quote them.

use std::time::Duration;

/// The largest request body accepted (SPEC §4).
pub const BODY_LIMIT: usize = 256 * 1024;
/// How long a client may take to send its request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a whole request may take, body included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for in-flight requests.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// How long a write may take before its caller is answered 503 and `/healthz` turns
/// unhealthy (`--write-timeout`).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long, after the last connection closed at shutdown, the process waits for a write
/// still running on hung storage before it exits anyway.
pub const BLOCKING_GRACE: Duration = Duration::from_secs(2);
/// How many clients may follow the change feed (`GET /events`) at once.
pub const FEED_SUBSCRIBERS: usize = 64;
/// How many of the feed's latest events are kept for clients that reconnect with
/// `Last-Event-ID`.
pub const FEED_HISTORY: usize = 1024;
/// How many events a feed client may fall behind before it is told to resync.
pub const FEED_BACKLOG: usize = 1024;
/// How long an idle feed waits before it sends a keep-alive comment.
pub const FEED_KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long, once shutdown began, a feed's connection may take to send the feed's end
/// before it is closed (its client reads nothing).
pub const FEED_END_GRACE: Duration = Duration::from_secs(1);
