//! Access control: the bearer token (compared in constant time) and the `Host` and
//! `Origin` checks that keep a web page the operator visits from reaching the service
//! through DNS rebinding or a cross-site request (SPEC §5).

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{HeaderMap, Version, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::Either;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower::{Layer, Service};

use super::error::ApiError;

/// The configured token, kept only as its digest: comparing digests of equal length in
/// constant time reveals neither the token's content nor its length.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    digest: Option<[u8; 32]>,
}

impl Auth {
    pub fn new(token: Option<&str>) -> Self {
        Self {
            digest: token.map(|t| Sha256::digest(t.as_bytes()).into()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.digest.is_some()
    }

    /// Whether the request's `Authorization` header carries the token.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.digest else {
            return true;
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .unwrap_or_default();
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        bool::from(digest.ct_eq(expected))
    }
}

/// The layer in front of every route that needs the token: a service of its own rather
/// than a middleware function, which would clone and box the route for each request.
#[derive(Clone)]
pub struct RequireTokenLayer(pub Arc<Auth>);

impl<S> Layer<S> for RequireTokenLayer {
    type Service = RequireToken<S>;

    fn layer(&self, inner: S) -> RequireToken<S> {
        RequireToken {
            inner,
            auth: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RequireToken<S> {
    inner: S,
    auth: Arc<Auth>,
}

impl<S> Service<Request> for RequireToken<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, Ready<Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if self.auth.allows(req.headers()) {
            return Either::Left(self.inner.call(req));
        }
        let detail = if req.headers().contains_key(header::AUTHORIZATION) {
            "the bearer token is wrong"
        } else {
            "this route needs 'Authorization: Bearer <token>'"
        };
        Either::Right(ready(Ok(
            ApiError::Unauthorized(detail.to_owned()).into_response()
        )))
    }
}

/// Which names a request may use for this service in `Host` and `Origin`.
#[derive(Debug, Clone)]
pub struct HostGuard {
    listen: SocketAddr,
    /// The `--allowed-host` names, lower case.
    extra: Vec<String>,
    /// The `--allowed-host` entries that are addresses (`192.168.1.10`, `[fd00::5]`),
    /// compared as addresses: a browser on the LAN reaches the service by one as often
    /// as by a name.
    extra_ips: Vec<IpAddr>,
}

impl HostGuard {
    pub fn new(listen: SocketAddr, extra: &[String]) -> Self {
        let entries: Vec<String> = extra
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        let ip = |entry: &String| {
            entry
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .ok()
        };
        Self {
            listen,
            extra_ips: entries.iter().filter_map(ip).collect(),
            extra: entries.into_iter().filter(|e| ip(e).is_none()).collect(),
        }
    }

    /// A loopback name or address, the configured listen address, or an allowed name
    /// or address.
    pub fn allows_host(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if bare == "localhost" || bare.ends_with(".localhost") {
            return true;
        }
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return ip.is_loopback()
                || (ip == self.listen.ip() && !ip.is_unspecified())
                || self.extra_ips.contains(&ip);
        }
        self.extra.iter().any(|allowed| *allowed == bare)
    }
}

/// Splits `host[:port]` (or `[v6]:port`) and returns the host part.
fn host_part(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

/// RFC 9112 §3.2: an HTTP/1.1 request carries exactly one `Host` (400 otherwise; HTTP/1.0
/// did not require one), and a target in absolute form (`GET http://host/path`) names
/// the host itself, so its authority must name this service as `Host` must (421). A
/// server is to prefer the target's authority to `Host`; both are checked here, since a
/// request is only safe to serve when neither names another host.
fn check_host(guard: &HostGuard, req: &Request) -> Result<(), ApiError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(ApiError::BadRequest(
            "the request has more than one Host header; send exactly one".to_owned(),
        ));
    }
    if host.is_none() && req.version() == Version::HTTP_11 {
        return Err(ApiError::BadRequest(
            "an HTTP/1.1 request needs a Host header (RFC 9112, section 3.2)".to_owned(),
        ));
    }
    let target = req.uri().authority().map(|a| a.host());
    let header = host.map(|h| host_part(h.to_str().unwrap_or_default()));
    for name in target.into_iter().chain(header) {
        if !guard.allows_host(name) {
            return Err(ApiError::MisdirectedRequest(format!(
                "this service does not answer for the host {name:?}; use a loopback address, \
                 or add the name with --allowed-host"
            )));
        }
    }
    Ok(())
}

/// `Host` and `Origin` must name this service: the refusal to answer otherwise.
pub fn check_host_and_origin(guard: &HostGuard, req: &Request) -> Result<(), Box<Response>> {
    if let Err(refusal) = check_host(guard, req) {
        tracing::info!(refusal = %refusal, "request refused: Host");
        return Err(Box::new(refusal.into_response()));
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        let authority = origin
            .split_once("://")
            .map(|(_, rest)| rest.trim_end_matches('/'))
            .unwrap_or_default();
        if authority.is_empty() || !guard.allows_host(host_part(authority)) {
            tracing::info!(origin, "request refused: Origin");
            return Err(Box::new(
                ApiError::ForbiddenOrigin(format!(
                    "requests from the web origin {origin:?} are refused; this API is for \
                     local clients, not for web pages"
                ))
                .into_response(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let guard = HostGuard::new(
            "10.0.0.5:8765".parse().unwrap(),
            &["Session-Manager".into()],
        );
        for ok in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.3.2.1",
            "[::1]",
            "::1",
            "a.localhost",
            "10.0.0.5",
            "session-manager",
        ] {
            assert!(guard.allows_host(ok), "{ok}");
        }
        for bad in [
            "evil.com",
            "localhost.evil.com",
            "10.0.0.6",
            "0.0.0.0",
            "",
            "127.0.0.1.nip.io",
        ] {
            assert!(!guard.allows_host(bad), "{bad}");
        }
        // Addresses given with --allowed-host are compared as addresses.
        let guard = HostGuard::new(
            "0.0.0.0:8765".parse().unwrap(),
            &["192.168.1.10".into(), "[FD00::5]".into()],
        );
        for ok in ["192.168.1.10", "fd00::5", "[fd00:0::5]", "FD00::5"] {
            assert!(guard.allows_host(ok), "{ok}");
        }
        for bad in [
            "192.168.1.11",
            "fd00::6",
            "0.0.0.0",
            "192.168.1.10.evil.com",
        ] {
            assert!(!guard.allows_host(bad), "{bad}");
        }
        assert_eq!(host_part("[::1]:8765"), "::1");
        assert_eq!(host_part("localhost:80"), "localhost");
        assert_eq!(host_part("localhost"), "localhost");
    }

    #[test]
    fn token() {
        let auth = Auth::new(Some("s3cret"));
        let mut headers = HeaderMap::new();
        assert!(!auth.allows(&headers));
        headers.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(auth.allows(&headers));
        headers.insert(header::AUTHORIZATION, "bearer s3cret".parse().unwrap());
        assert!(auth.allows(&headers));
        headers.insert(header::AUTHORIZATION, "Bearer s3cre".parse().unwrap());
        assert!(!auth.allows(&headers));
        headers.insert(header::AUTHORIZATION, "Basic s3cret".parse().unwrap());
        assert!(!auth.allows(&headers));
        assert!(Auth::new(None).allows(&HeaderMap::new()));
    }
}
