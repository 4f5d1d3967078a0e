//! The router and the server: [`router`] builds every route and layer, [`serve`] runs it
//! on a listener until `shutdown` resolves. `main` and every test call these two.

use std::future::Future;
use std::io;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use super::connections::Connections;
use super::error::ApiError;
use super::front::{FrontLayer, REQUEST_ID};
use super::routes::{self, Access};
use super::security;
use super::state::AppState;
use crate::limits::{
    ARCHIVE_PURGE_PERIOD, BODY_LIMIT, FEED_END_GRACE, HEADER_READ_TIMEOUT, PROCESS_CHECK_PERIOD,
    REQUEST_TIMEOUT, SHUTDOWN_GRACE, max_connections, open_files_limit,
};

/// The whole API.
pub fn router(state: AppState) -> Router {
    let mut public = Router::new();
    let mut protected = Router::new();
    for (path, access, methods) in routes::table() {
        match access {
            Access::Public => public = public.route(path, methods),
            Access::Page if state.ui => public = public.route(path, methods),
            Access::Page => {}
            Access::Token => protected = protected.route(path, methods),
        }
    }
    let protected = protected.route_layer(security::RequireTokenLayer(state.auth.clone()));
    with_layers(public.merge(protected), state)
}

/// Only `/metrics`, without the token: for a separate loopback listener
/// (`--metrics-listen`) that a local Prometheus scrapes.
pub fn metrics_router(state: AppState) -> Router {
    with_layers(
        Router::new().route("/metrics", axum::routing::get(routes::metrics::scrape)),
        state,
    )
}

/// Every layer, in one place, outermost first.
fn with_layers(routes: Router<AppState>, state: AppState) -> Router {
    let layers = ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION]))
        .layer(FrontLayer::new(state.guard.clone()))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let id = req
                        .headers()
                        .get(REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    tracing::info_span!("request", method = %req.method(), route = route_of(req), id)
                })
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal("a handler panicked".to_owned()).into_response()
        }))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ));
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(layers)
        .with_state(state)
}

/// The route template a request matched (never the raw path, which would let clients
/// invent label values), or `unmatched`.
fn route_of(req: &Request) -> &str {
    req.extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound(format!(
        "no route for {}; see openapi.yaml for the routes",
        req.uri().path()
    ))
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{} is not served on {}; the Allow header lists the methods that are",
        req.method(),
        req.uri().path()
    ))
}

/// Serves `state` on `listener` until `shutdown` resolves, then stops accepting, lets
/// in-flight requests finish (up to [`SHUTDOWN_GRACE`]) and returns. At most
/// [`max_connections`] of the process's open-files limit are served at once. Runs the
/// change feed and the periodic process check meanwhile, and closes the feed as soon as
/// `shutdown` resolves: a feed is an answer that never finishes by itself.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let cap = max_connections(open_files_limit());
    // A process that ends is noticed (and announced on the feed) within this period,
    // even when nobody reads its session.
    let watcher = tokio::spawn({
        let store = state.store.clone();
        async move {
            let mut every = tokio::time::interval(PROCESS_CHECK_PERIOD);
            loop {
                every.tick().await;
                let store = store.clone();
                let _ = tokio::task::spawn_blocking(move || store.check_processes()).await;
            }
        }
    });
    let purger = state
        .archive_keep
        .map(|keep| tokio::spawn(purge_archive(state.store.clone(), keep)));
    let feed = state.feed.clone();
    let pump = tokio::spawn(feed.clone().run());
    let closing = feed.clone();
    let shutdown = async move {
        shutdown.await;
        closing.close();
    };
    let served = serve_router(listener, router(state), cap, shutdown).await;
    watcher.abort();
    if let Some(purger) = purger {
        purger.abort();
    }
    feed.close();
    if let Err(e) = pump.await {
        tracing::error!(error = %e, "the change feed's task failed");
    }
    served
}

/// Purges archived sessions older than `keep` now and every [`ARCHIVE_PURGE_PERIOD`]
/// (`--archive-keep-days`); each purged one is logged by the store.
async fn purge_archive(store: crate::store::Store, keep: Duration) {
    let mut every = tokio::time::interval(ARCHIVE_PURGE_PERIOD);
    loop {
        every.tick().await;
        match store.purge_archive(keep).await {
            Ok(purged) if !purged.is_empty() => {
                tracing::info!(purged = purged.len(), "archive purged");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "the archive could not be purged"),
        }
    }
}

/// [`serve`] for any router (the API's, or the metrics listener's), with at most
/// `max_connections` connections at once (see [`Connections`]).
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    max_connections: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    // Connection tasks are owned here, not detached: serve returns only once every
    // one has ended and dropped its handle on the state (the store and its lock).
    let mut connections = Connections::new(max_connections);
    tokio::pin!(shutdown);
    loop {
        let next = async {
            connections.make_room().await;
            listener.accept().await
        };
        let (stream, _peer) = tokio::select! {
            accepted = next => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let id = connections.next_id();
        let service = connections.watching(router.clone(), id);
        let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        connections.spawn(id, conn);
    }
    drop(listener);
    tracing::info!("shutting down: finishing in-flight requests");
    connections.shut_down(FEED_END_GRACE, SHUTDOWN_GRACE).await;
    Ok(())
}
