//! The HTTP layer: everything that knows about requests, answers and status codes.
//!
//! - [`app`]: the router with all its layers, and `serve`, the seam `main` and the
//!   tests share;
//! - [`state`]: the handle every handler gets;
//! - [`routes`]: one module per resource, and the table the router is built from;
//! - [`wire`]: the session's JSON (with the computed `dir`) and the cached list body;
//! - [`feed`]: the change feed: the store's changes as server-sent events, with a ring
//!   of the latest for clients that reconnect;
//! - [`extract`]: the JSON and name extractors, whose rejections are problem answers;
//! - [`security`]: the bearer token and the Host/Origin checks, as middlewares with
//!   their own state;
//! - [`error`]: `ApiError` and the one table of statuses and titles (RFC 9457).
//!
//! Within it, `error` uses no other HTTP module; `security` and `extract` use only
//! `error`; `feed` uses `wire`; `state` holds the store, the personas, the token check
//! and the feed; `routes` use `state`, `feed`, `wire`, `extract` and `error`; `app`
//! assembles them all, and runs and closes the feed.

pub mod app;
pub mod error;
pub mod extract;
pub mod feed;
pub mod routes;
pub mod security;
pub mod state;
pub mod wire;
