//! The service's limits and timeouts, in one leaf every layer may read: the HTTP layer
//! enforces them, the store caps its reads with them, and the answers quote them. Also
//! the open-files limit, which caps the connections served at once.

use std::time::Duration;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// The largest request body accepted (SPEC §4).
pub const BODY_LIMIT: usize = 256 * 1024;
/// How long a client may take to send its request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a whole request may take, body included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for in-flight requests.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// How often every recorded process is checked, so that one that ended is announced
/// even when nobody reads its session.
pub const PROCESS_CHECK_PERIOD: Duration = Duration::from_secs(10);
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
/// How often a feed sends a keep-alive comment.
pub const FEED_KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The least time between two writes to one feed client while events keep coming:
/// those within it go together (see `http::feed`).
pub const FEED_GAP: Duration = Duration::from_millis(4);
/// How long, once shutdown began, a feed's connection may take to send the feed's end
/// before it is closed (its client reads nothing).
pub const FEED_END_GRACE: Duration = Duration::from_secs(1);

/// How deep the size of an archived session is counted: directories nested this many
/// levels, the session's own directory being the first. A deeper tree is listed with
/// `size_complete: false`.
pub const ARCHIVE_SIZE_DEPTH: usize = 64;
/// How many entries of an archived session are looked at to count its size; past
/// them, `size_complete` is false. Keeps a listing's cost bounded whatever a session's
/// process left in its directory.
pub const ARCHIVE_SIZE_ENTRIES: u64 = 100_000;
/// How deep an archived session may be nested for a hard delete or a purge to remove
/// it (the walk holds one directory at a time, so the bound is about time, not files).
pub const ARCHIVE_REMOVE_DEPTH: usize = 1024;
/// How often archived sessions older than `--archive-keep-days` are purged (and once
/// at start).
pub const ARCHIVE_PURGE_PERIOD: Duration = Duration::from_secs(24 * 60 * 60);
/// The largest `limit` of a page of `GET /archive`.
pub const ARCHIVE_PAGE_MAX: usize = 1000;

/// Open files kept out of the connections' share: the standard streams, the listeners,
/// the sessions directory and its lock, the runtime's own, and the metrics listener's
/// connections ([`METRICS_MAX_CONNECTIONS`]).
pub const RESERVED_FILES: u64 = 64;
/// The most connections the metrics listener (`--metrics-listen`) serves at once: a
/// local Prometheus needs one.
pub const METRICS_MAX_CONNECTIONS: usize = 8;

/// The most connections served at once under an open-files limit of `open_files`: half
/// of what [`RESERVED_FILES`] leaves, so that each connection's request has room for the
/// files it opens (a persona read; a write's temp file and directory).
pub fn max_connections(open_files: u64) -> usize {
    let share = open_files.saturating_sub(RESERVED_FILES) / 2;
    usize::try_from(share).unwrap_or(usize::MAX).max(1)
}

/// The process's soft open-files limit (`RLIMIT_NOFILE`).
pub fn open_files_limit() -> u64 {
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// The open-files limits at start-up, after [`raise_open_files_limit`].
#[derive(Debug)]
pub struct OpenFiles {
    /// The soft limit the process started with.
    pub was: u64,
    /// The soft limit now: the hard one, unless raising it failed.
    pub soft: u64,
    pub hard: u64,
    /// Why the soft limit could not be raised.
    pub error: Option<std::io::Error>,
}

/// Raises the soft open-files limit to the hard one: the usual soft limit, 1,024, is
/// kept low for programs that use `select`, which tokio does not. When the soft limit
/// is the hard one already (as with systemd's `LimitNOFILE=`), no call is made at all,
/// so a system-call filter that refuses `setrlimit` is never met.
pub fn raise_open_files_limit() -> OpenFiles {
    let limit = getrlimit(Resource::Nofile);
    let was = limit.current.unwrap_or(u64::MAX);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    let mut files = OpenFiles {
        was,
        soft: was,
        hard,
        error: None,
    };
    // An unlimited hard limit cannot be the soft one (the kernel caps open files).
    if was < hard && limit.maximum.is_some() {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => files.soft = hard,
            Err(e) => files.error = Some(e.into()),
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_get_half_of_what_the_reserve_leaves() {
        assert_eq!(max_connections(1024), 480);
        assert_eq!(max_connections(65_536), 32_736);
        assert_eq!(max_connections(64), 1);
        assert_eq!(max_connections(0), 1);
    }
}
