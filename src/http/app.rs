//! The router and the server: [`router`] builds every route and layer, [`serve`] runs it
//! on a listener until `shutdown` resolves. `main` and every test call these two.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use super::connections::Connections;
use super::error::ApiError;
use super::routes::{self, Access};
use super::security;
use super::state::AppState;
use crate::limits::{
    ARCHIVE_PURGE_PERIOD, BODY_LIMIT, FEED_END_GRACE, HEADER_READ_TIMEOUT, PROCESS_CHECK_PERIOD,
    REQUEST_TIMEOUT, SHUTDOWN_GRACE, max_connections, open_files_limit,
};
use crate::metrics::metrics;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

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
    let protected = protected.route_layer(middleware::from_fn_with_state(
        state.auth.clone(),
        security::require_token,
    ));
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
        .layer(middleware::map_request(drop_unfit_request_id))
        .layer(SetRequestIdLayer::new(REQUEST_ID, SequentialIds::new()))
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
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(middleware::from_fn(track))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal("a handler panicked".to_owned()).into_response()
        }))
        .layer(middleware::map_response(timeout_as_problem))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(middleware::from_fn_with_state(
            state.guard.clone(),
            security::check_host_and_origin,
        ))
        .layer(middleware::from_fn(asterisk_form));
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(layers)
        .with_state(state)
}

/// Request ids for requests that come without one: a random prefix per process and a
/// counter, unique enough to find a request in the logs, and without the system call a
/// random UUID per request costs.
#[derive(Clone)]
struct SequentialIds {
    prefix: u32,
    next: Arc<AtomicU64>,
}

impl SequentialIds {
    fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        // The standard library's randomly keyed hasher is seed enough for a log prefix.
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Self {
            prefix: seed as u32,
            next: Arc::new(AtomicU64::new(1)),
        }
    }
}

impl MakeRequestId for SequentialIds {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("{:08x}-{n}", self.prefix);
        axum::http::HeaderValue::from_str(&id)
            .ok()
            .map(RequestId::new)
    }
}

/// The longest request id taken from a client; a longer one is replaced.
const MAX_REQUEST_ID: usize = 64;

/// A client's `x-request-id` is logged and echoed on every answer, 401s included, so one
/// longer than [`MAX_REQUEST_ID`] or outside printable ASCII is dropped (and a fresh id
/// made up) rather than letting any caller write whatever it likes into the log.
async fn drop_unfit_request_id(mut req: Request) -> Request {
    let fits = |v: &axum::http::HeaderValue| {
        v.len() <= MAX_REQUEST_ID && v.as_bytes().iter().all(|b| (0x21..0x7f).contains(b))
    };
    let headers = req.headers_mut();
    if headers.get_all(REQUEST_ID).iter().count() > 1
        || headers.get(REQUEST_ID).is_some_and(|v| !fits(v))
    {
        headers.remove(REQUEST_ID);
    }
    req
}

/// The route template a request matched (never the raw path, which would let clients
/// invent label values), or `unmatched`.
fn route_of(req: &Request) -> &str {
    req.extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
}

/// Records each request's route, method, status and latency.
async fn track(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = match *req.method() {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        _ => "other",
    };
    let response = next.run(req).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    metrics().observe_request(route, method, response.status().as_u16(), start.elapsed());
    response
}

/// The timeout layer answers a bare 408; every error is a problem document.
async fn timeout_as_problem(response: Response) -> Response {
    if response.status() == StatusCode::REQUEST_TIMEOUT
        && !response.headers().contains_key(header::CONTENT_TYPE)
    {
        return ApiError::Timeout(format!(
            "the request did not complete within {} seconds. A write may still have been \
             applied: GET the resource to see its state before you send the request again",
            REQUEST_TIMEOUT.as_secs()
        ))
        .into_response();
    }
    response
}

/// The asterisk form (`OPTIONS * HTTP/1.1`, RFC 9112 §3.2.4) names the server, not a
/// resource. `OPTIONS *` asks what the server supports (RFC 9110 §9.3.7): 204 with every
/// method some route serves, public like `/healthz`, since the routes' own 405 answers
/// tell as much. No other method can take that target: 400.
async fn asterisk_form(req: Request, next: Next) -> Response {
    if req.uri() != "*" {
        return next.run(req).await;
    }
    if req.method() == Method::OPTIONS {
        return (StatusCode::NO_CONTENT, [(header::ALLOW, routes::METHODS)]).into_response();
    }
    ApiError::BadRequest(format!(
        "{} cannot take the target '*'; only OPTIONS can (RFC 9112, section 3.2.4)",
        req.method()
    ))
    .into_response()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bare_timeout_becomes_a_problem() {
        let response = timeout_as_problem(StatusCode::REQUEST_TIMEOUT.into_response()).await;
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            crate::http::error::PROBLEM_JSON
        );
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains("may still have been applied") && detail.contains("GET the resource"),
            "a write that timed out may have committed, and the detail says how to check: {detail}"
        );
        let ok = timeout_as_problem(StatusCode::OK.into_response()).await;
        assert!(!ok.headers().contains_key(header::CONTENT_TYPE));
    }
}
