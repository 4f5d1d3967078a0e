//! What every request passes before the routes, in one layer ([`FrontLayer`]): its
//! request id, the asterisk form, the `Host` and `Origin` checks, and its count and
//! latency in the metrics. One hand-written service instead of a middleware function for
//! each: such a function clones and boxes the whole stack below it for every request,
//! which cost a GET a fifth of its time.

use std::convert::Infallible;
use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use super::error::ApiError;
use super::routes;
use super::security::{self, HostGuard};
use crate::limits::REQUEST_TIMEOUT;
use crate::metrics::metrics;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id taken from a client; a longer one is replaced.
const MAX_REQUEST_ID: usize = 64;

/// The layer: the names this service answers for, and where request ids come from.
#[derive(Clone)]
pub struct FrontLayer {
    guard: Arc<HostGuard>,
    ids: Arc<SequentialIds>,
}

impl FrontLayer {
    pub fn new(guard: Arc<HostGuard>) -> Self {
        Self {
            guard,
            ids: Arc::new(SequentialIds::new()),
        }
    }
}

impl<S> Layer<S> for FrontLayer {
    type Service = Front<S>;

    fn layer(&self, inner: S) -> Front<S> {
        Front {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Front<S> {
    inner: S,
    layer: FrontLayer,
}

impl<S, B> Service<Request> for Front<S>
where
    S: Service<Request, Response = axum::http::Response<B>, Error = Infallible>,
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = FrontFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let start = Instant::now();
        let id = self.layer.ids.for_request(req.headers_mut());
        let route = req.extensions().get::<MatchedPath>().cloned();
        let method = method_label(req.method());
        let refused = match security::check_host_and_origin(&self.layer.guard, &req) {
            Err(refusal) => Some(*refusal),
            Ok(()) if req.uri() == "*" => Some(asterisk_form(&req)),
            Ok(()) => None,
        };
        let inner = match refused {
            Some(response) => Inner::Answered(Some(response)),
            None => Inner::Running(self.inner.call(req)),
        };
        FrontFuture {
            inner,
            id,
            route,
            method,
            start,
        }
    }
}

pin_project_lite::pin_project! {
    /// The routes' answer, then what [`Front`] adds to every answer.
    pub struct FrontFuture<F> {
        #[pin]
        inner: Inner<F>,
        id: HeaderValue,
        route: Option<MatchedPath>,
        method: &'static str,
        start: Instant,
    }
}

pin_project_lite::pin_project! {
    #[project = InnerProj]
    enum Inner<F> {
        Running { #[pin] future: F },
        Answered { response: Option<Response> },
    }
}

#[allow(non_snake_case)]
impl<F> Inner<F> {
    fn Running(future: F) -> Self {
        Self::Running { future }
    }

    fn Answered(response: Option<Response>) -> Self {
        Self::Answered { response }
    }
}

impl<F, B> Future for FrontFuture<F>
where
    F: Future<Output = Result<axum::http::Response<B>, Infallible>>,
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = match this.inner.project() {
            InnerProj::Running { future } => match future.poll(cx) {
                Poll::Ready(Ok(response)) => timeout_as_problem(response.map(Body::new)),
                Poll::Ready(Err(never)) => match never {},
                Poll::Pending => return Poll::Pending,
            },
            InnerProj::Answered { response } => response
                .take()
                .expect("a future is not polled after it is ready"),
        };
        if !response.headers().contains_key(REQUEST_ID) {
            response.headers_mut().insert(REQUEST_ID, this.id.clone());
        }
        let route = this.route.as_ref().map_or("unmatched", MatchedPath::as_str);
        metrics().observe_request(
            route,
            this.method,
            response.status().as_u16(),
            this.start.elapsed(),
        );
        Poll::Ready(Ok(response))
    }
}

/// The method as the metrics label it: one of the methods served, or `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        _ => "other",
    }
}

/// Request ids for requests that come without one: a random prefix per process and a
/// counter, unique enough to find a request in the logs, and without the system call a
/// random UUID per request costs.
struct SequentialIds {
    prefix: u32,
    next: AtomicU64,
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
            next: AtomicU64::new(1),
        }
    }

    /// The request's id: the client's `x-request-id` when it is one (at most
    /// [`MAX_REQUEST_ID`] printable ASCII characters, given once), a new one otherwise,
    /// set on the request for the log. A client's id is logged and echoed on every
    /// answer, 401s included, so an unfit one is replaced rather than letting any caller
    /// write whatever it likes into the log.
    fn for_request(&self, headers: &mut HeaderMap) -> HeaderValue {
        let fits = |v: &HeaderValue| {
            v.len() <= MAX_REQUEST_ID && v.as_bytes().iter().all(|b| (0x21..0x7f).contains(b))
        };
        let mut given = headers.get_all(REQUEST_ID).iter();
        if let (Some(id), None) = (given.next(), given.next())
            && fits(id)
        {
            return id.clone();
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut text = [0u8; 32];
        let len = {
            let mut rest = &mut text[..];
            write!(rest, "{:08x}-{n}", self.prefix).expect("at most 29 bytes");
            32 - rest.len()
        };
        let id = HeaderValue::from_bytes(&text[..len]).expect("hex digits, a dash and digits");
        headers.insert(REQUEST_ID, id.clone());
        id
    }
}

/// The timeout layer answers a bare 408; every error is a problem document.
fn timeout_as_problem(response: Response) -> Response {
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
fn asterisk_form(req: &Request) -> Response {
    if req.method() == Method::OPTIONS {
        return (StatusCode::NO_CONTENT, [(header::ALLOW, routes::METHODS)]).into_response();
    }
    ApiError::BadRequest(format!(
        "{} cannot take the target '*'; only OPTIONS can (RFC 9112, section 3.2.4)",
        req.method()
    ))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_timeout_becomes_a_problem() {
        let response = timeout_as_problem(StatusCode::REQUEST_TIMEOUT.into_response());
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            crate::http::error::PROBLEM_JSON
        );
        let ok = timeout_as_problem(StatusCode::OK.into_response());
        assert!(!ok.headers().contains_key(header::CONTENT_TYPE));
    }

    #[test]
    fn a_fitting_client_id_is_kept_and_any_other_replaced() {
        let ids = SequentialIds::new();
        let with = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for v in values {
                headers.append(REQUEST_ID, HeaderValue::from_str(v).unwrap());
            }
            let id = ids.for_request(&mut headers);
            let logged = headers
                .get_all(REQUEST_ID)
                .iter()
                .cloned()
                .collect::<Vec<_>>();
            (id, logged)
        };
        let (id, logged) = with(&["trace-me-42"]);
        assert_eq!((id.to_str().unwrap(), logged.len()), ("trace-me-42", 1));
        for unfit in [vec!["a b"], vec!["a", "b"], vec![&*"x".repeat(65)]] {
            let (id, logged) = with(&unfit);
            assert_eq!(logged, std::slice::from_ref(&id), "{unfit:?}");
            assert!(id.to_str().unwrap().contains('-'));
        }
    }
}
