//! session-manager: owns the sessions of a multi-session Claude Code Telegram bot on
//! disk and serves them, with the persona library, over local HTTP/JSON.
//!
//! Who owns what, and which layer may use which (each uses only those below it):
//! - [`config`]: the command line and environment, the start-up checks, and
//!   [`config::build`], which assembles store, personas and state for `main` and the
//!   tests alike. May use everything.
//! - [`http`]: the router, its layers and `serve`; handlers, errors as problem answers,
//!   access control, the session's wire format, the change feed. Uses `store`,
//!   `personas`, `transcript`, `model`, `metrics`, `limits`.
//! - [`personas`]: the shipped library, first-start seeding, the loaded library. Uses
//!   `store` (its durable file operations), `model`.
//! - [`transcript`]: the Claude Code CLI's transcripts of a session's conversations,
//!   found under its config dir and read from the end, never written. Uses `store`'s
//!   `fsio` (its guarded reads), `model`.
//! - [`store`]: the sessions directory: durable writes, the lock, recovery, the index,
//!   the change events, the archive of deleted sessions. Uses `model`, `metrics`,
//!   `limits`, `process`; knows nothing of HTTP.
//! - [`metrics`]: the Prometheus registry. Uses `model`.
//! - [`launch`]: the launch spec, persona settings turned into the CLI's command line.
//!   Uses `model`; no I/O.
//! - [`model`]: names, status, metadata, the patch type, personas; no HTTP, no I/O.
//! - [`limits`]: body limit, timeouts, the open-files limit and the connection cap: a
//!   leaf every layer may read.
//! - [`process`]: whether a recorded process is still the one recorded, from `/proc`.
//!   Uses `model`.
//! - [`client`]: the command-line client (`ls`, `new`, `switch`, …): speaks only the
//!   public HTTP API; uses nothing else of the crate.
//! - [`healthcheck`]: the client behind `session-manager healthcheck`; a leaf.

pub mod client;
pub mod config;
pub mod healthcheck;
pub mod http;
pub mod launch;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod personas;
pub mod process;
pub mod store;
pub mod transcript;
