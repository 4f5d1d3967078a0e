//! session-manager: owns the sessions of a multi-session Claude Code Telegram bot on
//! disk and serves them, with the persona library, over local HTTP/JSON.
//!
//! Who owns what:
//! - [`config`]: the command line and environment, and the start-up checks.
//! - [`app`]: the router with all its layers, and `serve`, the seam `main` and the tests share.
//! - [`state`]: the handle every handler gets (store, personas, access control).
//! - [`routes`]: one module per resource; handlers validate, call the store, shape the answer.
//! - [`extract`]: the JSON and name extractors, whose rejections are problem answers.
//! - [`error`]: `ApiError` and the one table of statuses and titles (RFC 9457 bodies).
//! - [`security`]: the bearer token and the Host/Origin checks.
//! - [`model`]: names, status, metadata and personas; no HTTP, no I/O.
//! - [`store`]: the sessions directory: durable writes, the lock, recovery, the index.
//! - [`personas`]: the shipped library, first-start seeding, the loaded library.
//! - [`metrics`]: the Prometheus registry: requests, latencies, fsyncs, sessions, errors.
//! - [`healthcheck`]: the client behind `session-manager healthcheck`.

pub mod app;
pub mod config;
pub mod error;
pub mod extract;
pub mod healthcheck;
pub mod metrics;
pub mod model;
pub mod personas;
pub mod routes;
pub mod security;
pub mod state;
pub mod store;
