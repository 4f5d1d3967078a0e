//! `/ui/`: the operator's page, three static files embedded in the binary (the
//! repository's `ui/`), and `/`, which sends a browser there.
//!
//! The files hold no data, so they are served without the token: the page asks for it
//! and sends it with every API call it makes, as `Authorization: Bearer`. Every answer
//! here carries a strict Content-Security-Policy (the page's own script and style only,
//! no inline code, no other origin), `nosniff` and `no-referrer`, and an `ETag` of its
//! bytes, so a browser revalidates (`no-cache`) and gets 304 until the binary changes.

use std::sync::LazyLock;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// Where the page is; `/` redirects there.
pub const PAGE: &str = "/ui/";

/// What a page may load and do: its own script, style and API, images only inline
/// (`data:`, the favicon), no plugins, no frames around it, no forms posted, no `<base>`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One embedded file, with its tag.
struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    etag: HeaderValue,
}

impl Asset {
    fn new(body: &'static [u8], content_type: &'static str) -> Self {
        let digest = Sha256::digest(body);
        let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        Self {
            body,
            content_type,
            etag: HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a header value"),
        }
    }

    /// 304 when the client has these bytes (`If-None-Match`, compared weakly), else 200.
    fn answer(&self, headers: &HeaderMap) -> Response {
        let cached = headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|tag| tag.trim().trim_start_matches("W/"))
            .any(|tag| tag == "*" || tag.as_bytes() == self.etag.as_bytes());
        let mut response = if cached {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            ([(header::CONTENT_TYPE, self.content_type)], self.body).into_response()
        };
        let headers = response.headers_mut();
        headers.insert(header::ETAG, self.etag.clone());
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        harden(headers);
        response
    }
}

static INDEX: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_bytes!("../../../ui/index.html"),
        "text/html; charset=utf-8",
    )
});
static SCRIPT: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_bytes!("../../../ui/app.js"),
        "text/javascript; charset=utf-8",
    )
});
static STYLE: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_bytes!("../../../ui/app.css"),
        "text/css; charset=utf-8",
    )
});

/// The headers every answer of the page carries.
fn harden(headers: &mut HeaderMap) {
    let set = |headers: &mut HeaderMap, name: HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        CONTENT_SECURITY_POLICY,
    );
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "no-referrer");
}

/// `GET /ui/`: the page.
pub async fn index(headers: HeaderMap) -> Response {
    INDEX.answer(&headers)
}

/// `GET /ui/app.js`: its script.
pub async fn script(headers: HeaderMap) -> Response {
    SCRIPT.answer(&headers)
}

/// `GET /ui/app.css`: its style.
pub async fn style(headers: HeaderMap) -> Response {
    STYLE.answer(&headers)
}

/// `GET /`: 302 to the page, with the short note RFC 9110 suggests for a client that
/// does not follow. Temporary, not 308: whether `/` leads to the page depends on
/// `--no-ui`, which a browser's cached permanent redirect would outlive.
pub async fn root() -> Response {
    let note = concat!(
        "<!doctype html><title>session-manager</title>",
        "<p>The page is at <a href=\"/ui/\">/ui/</a>.</p>\n"
    );
    let mut response = (
        StatusCode::FOUND,
        [
            (header::LOCATION, PAGE),
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        ],
        note,
    )
        .into_response();
    harden(response.headers_mut());
    response
}
