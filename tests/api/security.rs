//! What a hostile or careless client may send (SPEC §4, §5, §6): the bearer token, the
//! Host and Origin checks against DNS rebinding, names that try to become paths, body
//! limits and content types, unknown routes and methods, and a client too slow to send
//! its headers.

use crate::helpers::*;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "correct-horse-battery-staple";

/// Every route behind the token, each with a body it would accept.
fn protected_routes() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (Method::GET, "/personas", None),
        (Method::GET, "/personas/default", None),
        (Method::GET, "/sessions", None),
        (
            Method::POST,
            "/sessions",
            Some(json!({ "name": "intruder" })),
        ),
        (Method::GET, "/sessions/alpha", None),
        (Method::HEAD, "/sessions/alpha", None),
        (
            Method::PATCH,
            "/sessions/alpha",
            Some(json!({ "pid": 4242 })),
        ),
        (Method::GET, "/sessions/alpha/persona", None),
        (
            Method::PUT,
            "/sessions/alpha/persona",
            Some(custom_persona()),
        ),
        (Method::GET, "/sessions/active", None),
        (
            Method::PUT,
            "/sessions/active",
            Some(json!({ "name": "alpha" })),
        ),
        (Method::DELETE, "/sessions/active", None),
        (Method::DELETE, "/sessions/alpha", None),
    ]
}

#[tokio::test]
async fn with_a_token_every_route_but_healthz_needs_exactly_that_token() {
    let app = TestApp::fresh_with(Options {
        token: Some(TOKEN.to_owned()),
        ..Options::default()
    })
    .await;
    app.created("alpha").await;
    let before = app.metadata_on_disk("alpha");

    let wrong: Vec<Option<String>> = vec![
        None,
        Some("Bearer wrong-token".into()),
        Some("Bearer ".into()),
        Some("Bearer".into()),
        Some(TOKEN.into()),
        Some(format!("Basic {TOKEN}")),
        Some(format!("Token {TOKEN}")),
        Some(format!("Bearer{TOKEN}")),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Bearer x{TOKEN}")),
        Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
        Some(format!("Bearer {}", TOKEN.to_uppercase())),
        Some(format!("Bearer {TOKEN} {TOKEN}")),
    ];
    for (method, path, body) in protected_routes() {
        for auth in &wrong {
            let mut request = app.client.request(method.clone(), app.url(path));
            if let Some(auth) = auth {
                request = request.header("authorization", auth);
            }
            if let Some(body) = &body {
                request = request.json(body);
            }
            let response = request.send().await.unwrap();
            let context = format!("{method} {path} with Authorization {auth:?}");
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{context}");
            assert_eq!(
                response.headers()["www-authenticate"],
                "Bearer",
                "{context}"
            );
            if method != Method::HEAD {
                assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
            }
        }
    }
    // Nothing a refused request carried was applied.
    assert_eq!(app.metadata_on_disk("alpha"), before);
    assert!(!app.session_dir("intruder").exists());

    // The right token, with the scheme in any case, passes everywhere.
    let expected = [
        200, 200, 200, 201, 200, 200, 200, 200, 200, 200, 200, 200, 204,
    ];
    for ((method, path, body), status) in protected_routes().into_iter().zip(expected) {
        let mut request = app.client.request(method.clone(), app.url(path));
        let scheme = if method == Method::GET {
            "bearer"
        } else {
            "Bearer"
        };
        request = request.header("authorization", format!("{scheme} {TOKEN}"));
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{method} {path}");
    }
    assert!(app.session_dir("intruder").join("metadata.json").is_file());

    // /healthz is for the container runtime: no token, and a wrong one does not matter.
    for auth in [None, Some("Bearer wrong-token")] {
        let mut request = app.client.get(app.url("/healthz"));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "/healthz with {auth:?}");
    }
    app.stop().await;
}

/// With a token configured, a caller without it learns from `/healthz` only what a
/// container probe needs: not the session names, the current session, or the paths and
/// reasons of skipped entries. With the token, the whole report.
#[tokio::test]
async fn with_a_token_an_unauthenticated_healthz_says_only_status_and_version() {
    let dirs = Dirs::new();
    std::fs::create_dir_all(dirs.sessions().join("stray")).unwrap();
    let app = TestApp::spawn_with(
        &dirs,
        Options {
            token: Some(TOKEN.to_owned()),
            ..Options::default()
        },
    )
    .await;
    app.created("secret-project").await;
    app.switch("secret-project").await;
    for auth in [None, Some("Bearer wrong-token")] {
        let mut request = app.client.get(app.url("/healthz"));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let body = assert_json(request.send().await.unwrap(), StatusCode::OK).await;
        let keys: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["status", "version"], "{auth:?}: {body}");
        assert_eq!(
            body["status"], "degraded",
            "the stray entry still shows as degraded"
        );
    }
    let full = app.get_ok("/healthz").await;
    assert_eq!(full["current"], "secret-project");
    assert_eq!(full["skipped"][0]["path"], json!(app.session_dir("stray")));
    app.stop().await;
}

#[tokio::test]
async fn host_must_be_loopback_or_the_listen_address() {
    let app = TestApp::fresh().await;
    let port = app.addr.port();
    let allowed = [
        format!("127.0.0.1:{port}"),
        "127.0.0.1".to_owned(),
        format!("127.8.9.10:{port}"),
        format!("localhost:{port}"),
        "localhost".to_owned(),
        format!("LocalHost:{port}"),
        format!("[::1]:{port}"),
        "foo.localhost".to_owned(),
        format!("bot.foo.localhost:{port}"),
    ];
    let refused = [
        "evil.example".to_owned(),
        format!("evil.example:{port}"),
        "127.0.0.1.nip.io".to_owned(),
        format!("127.0.0.1.nip.io:{port}"),
        "localhost.evil.example".to_owned(),
        "0.0.0.0".to_owned(),
        format!("0.0.0.0:{port}"),
        "10.1.2.3".to_owned(),
        format!("[::]:{port}"),
        format!("[fe80::1]:{port}"),
        String::new(),
    ];
    for path in ["/sessions", "/healthz"] {
        for host in &allowed {
            let response = app.client.get(app.url(path)).header("host", host);
            let response = response.send().await.unwrap();
            assert_eq!(
                response.status(),
                StatusCode::OK,
                "GET {path} Host {host:?}"
            );
        }
        for host in &refused {
            let response = app.client.get(app.url(path)).header("host", host);
            let body = assert_problem(
                response.send().await.unwrap(),
                StatusCode::MISDIRECTED_REQUEST,
                "misdirected-request",
            )
            .await;
            assert!(body["detail"].as_str().unwrap().contains("host"), "{body}");
        }
    }
    // A refused request changes nothing.
    let response = app
        .request(Method::POST, "/sessions")
        .header("host", "evil.example")
        .json(&json!({ "name": "rebound" }))
        .send()
        .await
        .unwrap();
    assert_problem(
        response,
        StatusCode::MISDIRECTED_REQUEST,
        "misdirected-request",
    )
    .await;
    assert!(!app.session_dir("rebound").exists());
    app.stop().await;
}

#[tokio::test]
async fn origin_of_a_foreign_web_page_is_refused() {
    let app = TestApp::fresh().await;
    let port = app.addr.port();
    let allowed = [
        "http://localhost:3000".to_owned(),
        "http://localhost".to_owned(),
        format!("http://127.0.0.1:{port}"),
        format!("http://[::1]:{port}"),
        "http://foo.localhost:8080".to_owned(),
    ];
    let refused = [
        "https://evil.example".to_owned(),
        format!("http://evil.example:{port}"),
        "null".to_owned(),
        "http://localhost.evil.example".to_owned(),
        format!("http://127.0.0.1.nip.io:{port}"),
        "http://0.0.0.0:3000".to_owned(),
        "file://".to_owned(),
        String::new(),
    ];
    for path in ["/sessions", "/healthz"] {
        for origin in &allowed {
            let response = app.client.get(app.url(path)).header("origin", origin);
            let response = response.send().await.unwrap();
            assert_eq!(
                response.status(),
                StatusCode::OK,
                "{path} Origin {origin:?}"
            );
        }
        for origin in &refused {
            let response = app.client.get(app.url(path)).header("origin", origin);
            assert_problem(
                response.send().await.unwrap(),
                StatusCode::FORBIDDEN,
                "forbidden-origin",
            )
            .await;
        }
    }
    // The cross-site write a page would attempt changes nothing.
    let response = app
        .request(Method::POST, "/sessions")
        .header("origin", "https://evil.example")
        .json(&json!({ "name": "csrf" }))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden-origin").await;
    assert!(!app.session_dir("csrf").exists());
    app.stop().await;
}

#[tokio::test]
async fn allowed_hosts_are_accepted_in_host_and_origin() {
    let app = TestApp::fresh_with(Options {
        allowed_hosts: vec![
            "session-manager".into(),
            "Bot.Internal".into(),
            "192.168.1.10".into(),
        ],
        ..Options::default()
    })
    .await;
    let status = |host: &'static str, origin: Option<&'static str>| {
        let mut request = app.client.get(app.url("/sessions")).header("host", host);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status("session-manager:8765", None).await, 200);
    assert_eq!(status("SESSION-MANAGER", None).await, 200);
    assert_eq!(status("bot.internal:80", None).await, 200);
    assert_eq!(
        status("session-manager:8765", Some("http://session-manager:8765")).await,
        200
    );
    assert_eq!(status("127.0.0.1", Some("http://bot.internal")).await, 200);
    // An address is allowed as a name is (a browser on the LAN uses one).
    assert_eq!(
        status("192.168.1.10:8765", Some("http://192.168.1.10:8765")).await,
        200
    );
    assert_eq!(status("192.168.1.11:8765", None).await, 421);
    assert_eq!(status("127.0.0.1", Some("http://192.168.1.11")).await, 403);
    // Only those names: not their subdomains, not another service.
    assert_eq!(status("session-manager.evil.example", None).await, 421);
    assert_eq!(status("evil.session-manager", None).await, 421);
    assert_eq!(status("other-service:8765", None).await, 421);
    assert_eq!(
        status("session-manager", Some("http://other-service")).await,
        403
    );
    app.stop().await;
}

/// Whether `response` is a problem with `status`, the `type` of `slug` and a detail.
fn is_raw_problem(response: &RawResponse, status: u16, slug: &str) -> bool {
    let body = lenient_json(&response.body);
    response.status == status
        && response.header("content-type") == Some("application/problem+json")
        && body["type"] == problem_type(slug)
        && body["detail"].as_str().is_some_and(|d| !d.is_empty())
}

/// Names and keys that must never become a path (SPEC §6). Observed and required:
/// a hostile segment where a route expects a name or key is 400 (the name rules), on
/// every such route and method — also an empty segment inside a route
/// (`/sessions//persona`); a path that fits no route at all (a trailing slash, extra
/// `..` segments, which the server does not resolve) is 404. Raw TCP, because reqwest
/// would resolve `..` and `%2e%2e` before sending.
#[tokio::test]
async fn hostile_names_in_paths_are_refused_and_touch_nothing() {
    // The temp root sits three levels below a directory of its own, so a traversal
    // of up to four `..` would land somewhere this test can see.
    let outer = tempfile::tempdir().unwrap();
    let nest = outer.path().join("a").join("b");
    std::fs::create_dir_all(&nest).unwrap();
    let dirs = Dirs {
        root: tempfile::tempdir_in(&nest).unwrap(),
    };
    let app = TestApp::spawn(&dirs).await;
    app.created("alpha").await;
    let before = snapshot(outer.path());

    let long = "x".repeat(51);
    let segments = [
        "..",
        ".",
        "%2e%2e",
        "%2E%2E",
        ".%2e",
        "..%2F..%2Fetc",
        "..%2F..%2F..%2F..%2Fescaped",
        "%2F",
        "%2Fetc%2Fpasswd",
        "%252F",
        "..%252F..%252Fetc",
        "a%5Cb",
        "..%5C..%5Cescaped",
        "%00",
        "a%00b",
        "alpha%00",
        &long,
        "%D0%B0lpha",    // Cyrillic 'а' + "lpha", looks like "alpha"
        "%EF%BD%81lpha", // full-width 'ａ' + "lpha"
        "%EF%BC%A1",     // full-width 'Ａ'
        "alph%C3%A1",    // 'á'
        "%20",
        "alpha%20",
        "%09alpha",
        "%FF",
        ".archive",
        ".lock",
        ".current.json",
        "alpha.json",
        "~",
        "*",
    ];
    let routes: [(&str, &str, Option<Value>); 6] = [
        ("GET", "/sessions/{}", None),
        ("PATCH", "/sessions/{}", Some(json!({ "status": "idle" }))),
        ("DELETE", "/sessions/{}", None),
        ("GET", "/sessions/{}/persona", None),
        ("PUT", "/sessions/{}/persona", Some(custom_persona())),
        ("GET", "/personas/{}", None),
    ];
    let host = app.addr.to_string();
    let mut failures = Vec::new();
    for (method, template, body) in &routes {
        for segment in &segments {
            let path = template.replace("{}", segment);
            let response =
                raw_request(app.addr, &raw_http(method, &path, &host, body.as_ref())).await;
            if !is_raw_problem(&response, 400, "invalid-name") {
                failures.push(format!(
                    "{method} {path}: {} {}",
                    response.status,
                    String::from_utf8_lossy(&response.body)
                ));
            }
        }
    }
    // An empty name inside a route's path reaches the name check: 400, not a path.
    for (method, path) in [("GET", "/sessions//persona"), ("PUT", "/sessions//persona")] {
        let response = raw_request(app.addr, &raw_http(method, path, &host, None)).await;
        let body = assert_raw_problem(&response, 400, "invalid-name", path);
        assert!(body["detail"].as_str().unwrap().contains("empty"), "{body}");
    }
    // Paths that fit no route at all (a trailing slash, more segments): 404.
    let unrouted = [
        ("GET", "/sessions/"),
        ("PATCH", "/sessions/"),
        ("DELETE", "/sessions/"),
        ("GET", "/personas/"),
        ("GET", "/sessions/../../etc/passwd"),
        ("DELETE", "/sessions/alpha/.."),
        ("GET", "/sessions/alpha/../../../etc/persona"),
        ("GET", "/personas/../sessions/alpha"),
        ("GET", "/personas/default/.."),
    ];
    for (method, path) in unrouted {
        let response = raw_request(app.addr, &raw_http(method, path, &host, None)).await;
        if !is_raw_problem(&response, 404, "not-found") {
            failures.push(format!(
                "{method} {path}: {} {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Nothing was created, removed or changed anywhere around or inside the temp dirs.
    assert_eq!(snapshot(outer.path()), before);
    assert_eq!(names(&app.list_sessions("").await), ["alpha"]);
    app.stop().await;
}

/// A create body of exactly `len` bytes: a valid custom persona padded by an extra field.
fn create_body_of_len(name: &str, len: usize) -> String {
    let mut body = json!({ "name": name, "persona": custom_persona() });
    body["persona"]["notes"] = json!("");
    let base = body.to_string().len();
    assert!(len >= base);
    body["persona"]["notes"] = json!("x".repeat(len - base));
    let text = body.to_string();
    assert_eq!(text.len(), len);
    text
}

#[tokio::test]
async fn a_body_over_256_kib_is_refused_and_one_at_the_limit_is_not() {
    let app = TestApp::fresh().await;
    assert_eq!(BODY_LIMIT, 256 * 1024);

    let response = app
        .request(Method::POST, "/sessions")
        .header("content-type", "application/json")
        .body(create_body_of_len("too-big", BODY_LIMIT + 1))
        .send()
        .await
        .unwrap();
    let body = assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large").await;
    assert!(
        body["detail"].as_str().unwrap().contains("262144"),
        "the detail names the limit: {body}"
    );
    assert!(!app.session_dir("too-big").exists());

    // The same without a Content-Length: a chunked body is counted as it arrives.
    let big = create_body_of_len("too-big-chunked", 300 * 1024);
    let mut request = format!(
        "POST /sessions HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        app.addr
    )
    .into_bytes();
    for chunk in big.as_bytes().chunks(16 * 1024) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let response = raw_request(app.addr, &request).await;
    assert_raw_problem(
        &response,
        413,
        "payload-too-large",
        "a chunked body over the limit",
    );
    assert!(!app.session_dir("too-big-chunked").exists());

    let at_limit = create_body_of_len("at-limit", BODY_LIMIT);
    let response = app
        .request(Method::POST, "/sessions")
        .header("content-type", "application/json")
        .body(at_limit)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let stored = read_json(&app.session_dir("at-limit").join("persona.json"));
    assert!(stored["notes"].as_str().unwrap().len() > 250 * 1024);
    app.stop().await;
}

#[tokio::test]
async fn bodies_that_are_not_the_expected_json_are_refused() {
    let app = TestApp::fresh().await;
    app.created("alpha").await;
    let before = snapshot(&app.sessions_dir);
    let routes = [
        (Method::POST, "/sessions"),
        (Method::PUT, "/sessions/active"),
        (Method::PATCH, "/sessions/alpha"),
        (Method::PUT, "/sessions/alpha/persona"),
    ];
    let send = |method: Method, path: &str, content_type: Option<&str>, body: &str| {
        let mut request = app.request(method, path).body(body.to_owned());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        async move { request.send().await.unwrap() }
    };

    // Broken before any field is read, so no route can mistake it for a data error
    // (see `malformed_json_is_400_even_when_what_was_read_so_far_is_wrong`).
    let malformed = ["", "{", "{,}", "not json", "nul"];
    for (method, path) in &routes {
        for body in malformed {
            let response = send(method.clone(), path, Some("application/json"), body).await;
            assert_problem(response, StatusCode::BAD_REQUEST, "malformed-json").await;
        }
        // A browser may send these cross-site without a preflight: never accepted.
        let valid = r#"{"name": "alpha"}"#;
        for content_type in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
        ] {
            let response = send(method.clone(), path, content_type, valid).await;
            assert_problem(
                response,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
            )
            .await;
        }
    }

    let wrong_types = [
        (Method::POST, "/sessions", json!({ "name": 5 })),
        (Method::POST, "/sessions", json!({ "name": ["beta"] })),
        (
            Method::POST,
            "/sessions",
            json!({ "name": "beta", "persona": 5 }),
        ),
        (Method::POST, "/sessions", json!({})),
        (Method::POST, "/sessions", json!([])),
        (Method::PUT, "/sessions/active", json!({ "name": true })),
        (Method::PUT, "/sessions/active", json!("alpha")),
        (Method::PATCH, "/sessions/alpha", json!({ "pid": "abc" })),
        (Method::PATCH, "/sessions/alpha", json!({ "pid": -1 })),
        (
            Method::PATCH,
            "/sessions/alpha",
            json!({ "status": "running" }),
        ),
        (Method::PATCH, "/sessions/alpha", json!({ "status": 1 })),
        (Method::PUT, "/sessions/alpha/persona", json!({ "name": 1 })),
        (Method::PUT, "/sessions/alpha/persona", json!("default")),
    ];
    let mut failures = Vec::new();
    for (method, path, body) in &wrong_types {
        let response = app.send_json(method.clone(), path, body).await;
        if response.status() == StatusCode::UNPROCESSABLE_ENTITY {
            assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body").await;
        } else {
            failures.push(format!(
                "{method} {path} {body}: {} {}",
                response.status(),
                response.text().await.unwrap()
            ));
        }
    }
    assert_eq!(
        snapshot(&app.sessions_dir),
        before,
        "a refused body changed the store"
    );

    // JSON with a charset parameter is still JSON.
    let response = send(
        Method::POST,
        "/sessions",
        Some("application/json; charset=utf-8"),
        r#"{"name": "beta"}"#,
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    app.stop().await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// SPEC §4: malformed JSON is 400. Bodies that break off, or carry trailing text, after
/// a field the route does not take or a value of the wrong type are still malformed:
/// the answer must not depend on how far the parser got before it noticed.
#[tokio::test]
async fn malformed_json_is_400_even_when_what_was_read_so_far_is_wrong() {
    let app = TestApp::fresh().await;
    app.created("alpha").await;
    let cases = [
        (Method::POST, "/sessions", r#"{"name": 5"#),
        (Method::POST, "/sessions", r#"{"name": "beta", "colour": "#),
        (
            Method::POST,
            "/sessions",
            r#"{"name": "beta", "colour": 1} x"#,
        ),
        (Method::POST, "/sessions", r#"["beta", "#),
        (Method::PUT, "/sessions/active", r#"{"name": true"#),
        (Method::PUT, "/sessions/active", r#"{"nmae": "alpha""#),
        (Method::PATCH, "/sessions/alpha", r#"{"name": "beta""#),
        (Method::PATCH, "/sessions/alpha", r#"{"pid": "abc", "#),
        (
            Method::PATCH,
            "/sessions/alpha",
            r#"{"status": "running"} x"#,
        ),
    ];
    let mut failures = Vec::new();
    for (method, path, body) in cases {
        let response = app
            .request(method.clone(), path)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        if response.status() != StatusCode::BAD_REQUEST {
            failures.push(format!(
                "{method} {path} {body:?}: {} {}",
                response.status(),
                response.text().await.unwrap()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    app.stop().await;
}

fn allow_set(value: &str) -> BTreeSet<String> {
    value
        .split(',')
        .map(|m| m.trim().to_ascii_uppercase())
        .filter(|m| !m.is_empty())
        .collect()
}

#[tokio::test]
async fn unknown_paths_and_methods_are_problems_and_405_lists_the_methods() {
    let app = TestApp::fresh().await;
    // `/` leads to the page (302), or is unknown with --no-ui: tests/api/ui.rs.
    for (method, path) in [
        (Method::GET, "/ui/nope"),
        (Method::GET, "/nope"),
        (Method::POST, "/nope"),
        (Method::GET, "/session"),
        (Method::GET, "/sessions/alpha/persona/extra"),
        (Method::GET, "/healthz/extra"),
    ] {
        let response = app.request(method, path).send().await.unwrap();
        assert_problem(response, StatusCode::NOT_FOUND, "not-found").await;
    }

    let methods_of = |list: &[&str]| list.iter().map(|m| m.to_string()).collect::<BTreeSet<_>>();
    let cases = [
        ("TRACE", "/sessions", &["GET", "HEAD", "POST"][..]),
        ("OPTIONS", "/sessions", &["GET", "HEAD", "POST"][..]),
        ("DELETE", "/sessions", &["GET", "HEAD", "POST"][..]),
        ("PUT", "/healthz", &["GET", "HEAD"][..]),
        ("POST", "/healthz", &["GET", "HEAD"][..]),
        (
            "POST",
            "/sessions/x",
            &["GET", "HEAD", "PATCH", "DELETE"][..],
        ),
        (
            "PUT",
            "/sessions/x",
            &["GET", "HEAD", "PATCH", "DELETE"][..],
        ),
        (
            "POST",
            "/sessions/active",
            &["GET", "HEAD", "PUT", "DELETE"][..],
        ),
        (
            "PATCH",
            "/sessions/active",
            &["GET", "HEAD", "PUT", "DELETE"][..],
        ),
        ("DELETE", "/sessions/x/persona", &["GET", "HEAD", "PUT"][..]),
        ("POST", "/sessions/x/persona", &["GET", "HEAD", "PUT"][..]),
        ("DELETE", "/personas", &["GET", "HEAD"][..]),
        ("PUT", "/personas/default", &["GET", "HEAD"][..]),
    ];
    for (method, path, allowed) in cases {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let response = app.request(method.clone(), path).send().await.unwrap();
        let allow = response
            .headers()
            .get("allow")
            .unwrap_or_else(|| panic!("{method} {path}: no Allow header"))
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(allow_set(&allow), methods_of(allowed), "{method} {path}");
        assert_problem(
            response,
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
        )
        .await;
    }
    app.stop().await;
}

/// Reads until the server closes the connection; what it sent before closing.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return received,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// A slowloris client — headers that never end, a connection that never speaks, or one
/// that goes quiet after a request — is disconnected after the header-read timeout,
/// and the server keeps serving everyone else meanwhile.
#[tokio::test]
async fn clients_that_do_not_send_their_headers_are_disconnected() {
    let app = TestApp::fresh().await;
    let bound = HEADER_READ_TIMEOUT + Duration::from_secs(5);
    let started = Instant::now();

    let partial = async {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1")
            .await
            .unwrap();
        let received = tokio::time::timeout(bound, read_until_closed(&mut stream)).await;
        (received, started.elapsed())
    };
    let silent = async {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        let received = tokio::time::timeout(bound, read_until_closed(&mut stream)).await;
        (received, started.elapsed())
    };
    let idle_after_request = async {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        let request = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", app.addr);
        stream.write_all(request.as_bytes()).await.unwrap();
        let received = tokio::time::timeout(bound, read_until_closed(&mut stream)).await;
        (received, started.elapsed())
    };
    let others = async {
        let response = app.get("/healthz").await;
        assert_eq!(response.status(), StatusCode::OK);
        started.elapsed()
    };
    let (partial, silent, idle, served) = tokio::join!(partial, silent, idle_after_request, others);

    assert!(served < Duration::from_secs(2), "others waited {served:?}");
    for (what, (received, elapsed)) in [
        ("partial headers", partial),
        ("no bytes at all", silent),
        ("idle keep-alive", idle),
    ] {
        let received = received.unwrap_or_else(|_| panic!("{what}: still open after {bound:?}"));
        assert!(
            elapsed >= HEADER_READ_TIMEOUT - Duration::from_secs(1),
            "{what}: closed after only {elapsed:?}"
        );
        let text = String::from_utf8_lossy(&received);
        if what == "idle keep-alive" {
            assert!(text.starts_with("HTTP/1.1 200"), "{what}: {text}");
        } else {
            assert!(
                text.is_empty() || text.starts_with("HTTP/1.1 408"),
                "{what}: {text}"
            );
        }
    }
    app.stop().await;
}

/// A request id is echoed and logged on every answer, 401s included: one longer than 64
/// characters, outside printable ASCII, or sent twice is replaced by a made-up one, so a
/// caller cannot write what it likes into the log (a 300 KB id grew it by 72 MiB in a
/// second). A fitting one is kept.
#[tokio::test]
async fn unfit_request_ids_are_replaced_not_echoed() {
    let app = TestApp::fresh_with(Options {
        token: Some(TOKEN.to_owned()),
        ..Options::default()
    })
    .await;
    let long = "a".repeat(65);
    let huge = "b".repeat(300_000);
    for unfit in [long.as_str(), "tab\there", "caf\u{e9}", huge.as_str()] {
        let mut request = app.client.get(app.url("/sessions"));
        request = request.header("x-request-id", unfit.as_bytes().to_vec());
        let response = request.send().await.unwrap();
        if response.status() == StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE {
            continue; // hyper refused the header itself: nothing was logged or echoed
        }
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let echoed = response.headers()["x-request-id"].to_str().unwrap();
        assert_ne!(echoed, unfit);
        assert!(echoed.len() <= 64 && !echoed.is_empty(), "{echoed}");
    }
    let twice = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "first")
        .header("x-request-id", "second")
        .send()
        .await
        .unwrap();
    let echoed: Vec<_> = twice.headers().get_all("x-request-id").iter().collect();
    assert_eq!(echoed.len(), 1);
    assert!(echoed[0] != "first" && echoed[0] != "second", "{echoed:?}");
    let fits = "x".repeat(64);
    let kept = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", &fits)
        .send()
        .await
        .unwrap();
    assert_eq!(kept.headers()["x-request-id"], fits.as_str());
    app.stop().await;
}
