//! The HTTP layer: everything that knows about requests, answers and status codes.
//!
//! - [`app`]: the router with all its layers, and `serve`, the seam `main` and the
//!   tests share;
//! - [`connections`]: the connections a listener serves, under a cap, and how they
//!   are asked to close;
//! - [`state`]: the handle every handler gets;
//! - [`routes`]: one module per resource (the operator's page, `routes::ui`, among
//!   them), and the table the router is built from;
//! - [`wire`]: the session's JSON (with the computed `dir`) and the list's filters;
//! - [`list_cache`]: the whole list's body, built in chunks, cached and shared;
//! - [`listing`]: `GET /sessions`'s query: its filters, and its pages and their cursor;
//! - [`feed`]: the change feed: the store's changes as server-sent events, with a ring
//!   of the latest for clients that reconnect;
//! - [`extract`]: the JSON and name extractors, whose rejections are problem answers;
//! - [`conditional`]: `ETag`, `If-Match` and `If-None-Match`;
//! - [`security`]: the bearer token and the Host/Origin checks, as middlewares with
//!   their own state;
//! - [`error`]: `ApiError` and the one table of statuses and titles (RFC 9457).
//!
//! Within it, `error` uses no other HTTP module; `security` and `extract` use only
//! `error`; `feed` uses `wire`; `listing` uses `wire` and `error`; `state` holds the
//! store, the personas, the token check and the feed; `routes` use `state`, `feed`,
//! `wire`, `listing`, `extract` and `error`; `connections` uses none of them; `app`
//! assembles them all, and runs and closes the feed.

pub mod app;
pub mod conditional;
pub mod connections;
pub mod error;
pub mod extract;
pub mod feed;
mod front;
pub mod list_cache;
pub mod listing;
pub mod routes;
pub mod security;
pub mod state;
pub mod wire;
