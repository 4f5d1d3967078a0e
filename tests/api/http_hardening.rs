//! HTTP below the routes: the request target and `Host` as RFC 9112 has them (absolute
//! form, a missing or repeated `Host`, the asterisk form), a declared body over the limit,
//! a flood of idle connections against the open-files limit, SIGHUP, and request ids
//! too large to log. Raw TCP where a client library would not send the request as
//! written; the real binary where the process itself is what is tested.

use crate::helpers::*;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use tokio::io::AsyncWriteExt;

/// RFC 9112 §3.2: an HTTP/1.1 request carries exactly one `Host` (400 otherwise), and
/// a target in absolute form names the host itself, so its authority passes the same
/// check as `Host` (421 when foreign). Both are checked when both are sent. HTTP/1.0
/// did not require `Host`, and still does not.
#[tokio::test]
async fn the_target_and_host_follow_rfc_9112() {
    let app = TestApp::fresh().await;
    let ours = app.addr.to_string();
    let port = app.addr.port();
    let get = |target: &str, version: &str, hosts: &[&str]| {
        let mut request = format!("GET {target} {version}\r\nConnection: close\r\n");
        for host in hosts {
            request.push_str(&format!("Host: {host}\r\n"));
        }
        request.push_str("\r\n");
        request.into_bytes()
    };

    // Absolute form naming this service: served.
    for target in [
        format!("http://127.0.0.1:{port}/healthz"),
        format!("http://localhost:{port}/healthz"),
        "http://[::1]/healthz".to_owned(),
    ] {
        let response = raw_request(app.addr, &get(&target, "HTTP/1.1", &[&ours])).await;
        assert_eq!(response.status, 200, "GET {target}: {response:?}");
        assert_eq!(response.json()["status"], "ok");
    }
    // Absolute form naming another host: refused like such a Host, whatever Host says.
    for (target, host) in [
        ("http://evil.example/sessions".to_owned(), ours.as_str()),
        (format!("http://evil.example:{port}/healthz"), ours.as_str()),
        ("http://127.0.0.1.nip.io/healthz".to_owned(), ours.as_str()),
        (format!("http://127.0.0.1:{port}/healthz"), "evil.example"),
    ] {
        let response = raw_request(app.addr, &get(&target, "HTTP/1.1", &[host])).await;
        let body = assert_raw_problem(&response, 421, "misdirected-request", &target);
        assert!(
            body["detail"].as_str().unwrap().contains("evil.example")
                || body["detail"].as_str().unwrap().contains("nip.io"),
            "{body}"
        );
    }
    // A write in absolute form to another host changes nothing.
    let create = br#"{"name":"rebound"}"#;
    let mut request = format!(
        "POST http://evil.example/sessions HTTP/1.1\r\nHost: {ours}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        create.len()
    )
    .into_bytes();
    request.extend_from_slice(create);
    let response = raw_request(app.addr, &request).await;
    assert_raw_problem(
        &response,
        421,
        "misdirected-request",
        "POST in absolute form",
    );
    assert!(!app.session_dir("rebound").exists());

    // HTTP/1.1 without Host, or with more than one: 400, on public and token routes.
    for path in ["/healthz", "/sessions"] {
        let response = raw_request(app.addr, &get(path, "HTTP/1.1", &[])).await;
        let body = assert_raw_problem(&response, 400, "bad-request", "no Host");
        assert_eq!(
            body["detail"],
            "an HTTP/1.1 request needs a Host header (RFC 9112, section 3.2)"
        );
        for hosts in [
            [ours.as_str(), ours.as_str()],
            [ours.as_str(), "evil.example"],
        ] {
            let response = raw_request(app.addr, &get(path, "HTTP/1.1", &hosts)).await;
            let body = assert_raw_problem(&response, 400, "bad-request", "two Hosts");
            assert_eq!(
                body["detail"],
                "the request has more than one Host header; send exactly one"
            );
        }
    }
    // HTTP/1.0 needs no Host; its absolute form is still checked.
    let response = raw_request(app.addr, &get("/healthz", "HTTP/1.0", &[])).await;
    assert_eq!(response.status, 200, "{response:?}");
    let response = raw_request(
        app.addr,
        &get("http://evil.example/healthz", "HTTP/1.0", &[]),
    )
    .await;
    assert_raw_problem(&response, 421, "misdirected-request", "HTTP/1.0, absolute");
    app.stop().await;
}

/// A request whose `Content-Length` is over the limit is refused before its body is
/// read: at once, not after the request timeout (30 s) waiting for bytes that never
/// come. Only routes that read a body do so; the others answer as ever.
#[tokio::test]
async fn a_declared_body_over_the_limit_is_refused_at_once() {
    let app = TestApp::fresh().await;
    app.created("alpha").await;
    let bound = Duration::from_secs(5);
    let declared = |method: &str, path: &str, length: u64| {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n",
            app.addr
        )
    };
    let over = BODY_LIMIT as u64 + 1;
    for (method, path, length) in [
        ("POST", "/sessions", 999_999_999_999),
        ("POST", "/sessions", over),
        ("PUT", "/sessions/active", 999_999_999_999),
        ("PATCH", "/sessions/alpha", over),
        ("PUT", "/sessions/alpha/persona", 999_999_999_999),
    ] {
        let started = Instant::now();
        let request = declared(method, path, length);
        let response = tokio::time::timeout(bound, raw_request(app.addr, request.as_bytes()))
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: no answer within {bound:?}"));
        let context = format!("{method} {path} with Content-Length {length}");
        let body = assert_raw_problem(&response, 413, "payload-too-large", &context);
        assert_eq!(
            body["detail"],
            format!(
                "the request declares a body of {length} bytes; the limit is {BODY_LIMIT} bytes"
            ),
            "{context}"
        );
        assert!(started.elapsed() < bound);
    }
    assert_eq!(app.sessions_on_disk(), ["alpha"]);
    // A route that reads no body does not care what length is declared.
    let request = declared("GET", "/healthz", 999_999_999_999);
    let response = tokio::time::timeout(bound, raw_request(app.addr, request.as_bytes()))
        .await
        .expect("GET /healthz answered");
    assert_eq!(response.status, 200, "{response:?}");
    app.stop().await;
}

const TOKEN: &str = "correct-horse-battery-staple";

fn allow_set(value: &str) -> BTreeSet<String> {
    value
        .split(',')
        .map(|m| m.trim().to_ascii_uppercase())
        .filter(|m| !m.is_empty())
        .collect()
}

/// `OPTIONS *` (RFC 9110 §9.3.7) asks the server, not a resource, what it supports: 204
/// with `Allow` listing every method some route serves, without the token. Any other
/// method cannot take the asterisk: 400.
#[tokio::test]
async fn options_asterisk_lists_the_methods_and_other_methods_cannot_use_it() {
    let app = TestApp::fresh_with(Options {
        token: Some(TOKEN.to_owned()),
        ..Options::default()
    })
    .await;
    let host = app.addr.to_string();
    let response = raw_request(app.addr, &raw_http("OPTIONS", "*", &host, None)).await;
    assert_eq!(response.status, 204, "{response:?}");
    assert!(response.body.is_empty(), "{response:?}");
    let allowed = allow_set(response.header("allow").expect("an Allow header"));

    // The union of what each path serves, as its 405 answers say.
    let mut served = BTreeSet::new();
    for path in route_paths() {
        let path = path.replace("{name}", "alpha").replace("{key}", "default");
        let response = app.request(Method::TRACE, &path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
        served.extend(allow_set(response.headers()["allow"].to_str().unwrap()));
    }
    assert_eq!(allowed, served);
    assert_eq!(
        allowed,
        allow_set("GET, HEAD, POST, PUT, PATCH, DELETE"),
        "the methods of the API"
    );

    for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "TRACE"] {
        let response = raw_request(app.addr, &raw_http(method, "*", &host, None)).await;
        assert_eq!(response.status, 400, "{method} *: {response:?}");
        if method != "HEAD" {
            let body = assert_raw_problem(&response, 400, "bad-request", method);
            assert_eq!(
                body["detail"],
                format!(
                    "{method} cannot take the target '*'; only OPTIONS can (RFC 9112, \
                     section 3.2.4)"
                )
            );
        }
    }
    // Still behind the Host check.
    let response = raw_request(app.addr, &raw_http("OPTIONS", "*", "evil.example", None)).await;
    assert_raw_problem(
        &response,
        421,
        "misdirected-request",
        "OPTIONS * foreign Host",
    );
    app.stop().await;
}

/// With the usual soft limit of 1,024 open files and no room above it, 1,100 idle
/// connections must not lock the service out: it caps its connections below the limit
/// and makes room for a new one by closing the oldest, so `/healthz` still answers,
/// and `accept` never fails.
#[tokio::test]
async fn a_flood_of_idle_connections_does_not_lock_out_healthz() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    const FLOOD: usize = 1_100;
    // This process holds the flood: it needs room for it.
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        )
        .expect("raise this test's open-files limit");
    }
    let room = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    assert!(
        room > 2 * FLOOD as u64,
        "the test needs more than {room} files"
    );

    let dirs = Dirs::new();
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(r#"ulimit -n 1024 && exec "$0" "$@""#)
        .arg(BINARY)
        .args(binary_serve_args(&dirs.sessions(), &dirs.personas()));
    binary_env(&mut command);
    let server = BinaryServer::start(&mut command);
    let cap = max_connections(1024);
    let limit_line = format!("open-files limit: 1024 (hard 1024); at most {cap} connections");
    assert!(
        server.startup_log.iter().any(|l| l.contains(&limit_line)),
        "no {limit_line:?} in {:#?}",
        server.startup_log
    );

    let mut flood = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        let stream = tokio::net::TcpStream::connect(server.addr)
            .await
            .expect("connect");
        flood.push(stream);
    }
    let started = Instant::now();
    let response = server
        .request(Method::GET, "/healthz")
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap_or_else(|e| panic!("/healthz: {e}; stderr:\n{}", server.process.log()));
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(5));
    // One more round, to show it was no accident of timing.
    server.get_ok("/healthz").await;

    let log = server.process.log();
    assert!(!log.contains("accept failed"), "{log}");
    let warnings = log.matches("at the connection cap").count();
    assert_eq!(warnings, 1, "one warning, not one per connection:\n{log}");
    drop(flood);
}

/// SIGHUP reloads the persona library (an operator's edits show without a restart) and
/// says so in the log; the service keeps running. A reload that fails keeps the
/// library that was loaded.
#[tokio::test]
async fn sighup_reloads_the_persona_library_and_keeps_serving() {
    let dirs = Dirs::new();
    let mut server = BinaryServer::start(&mut binary_command(&dirs.sessions(), &dirs.personas()));
    let (status, _) = server.must(Method::GET, "/personas/reviewer", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    std::fs::write(
        dirs.personas().join("reviewer.json"),
        custom_persona().to_string(),
    )
    .unwrap();
    std::fs::write(dirs.personas().join("broken.json"), "{").unwrap();
    BinaryProcess::signal_pid(server.process.pid(), "HUP");
    server.process.expect_line(
        "SIGHUP received: persona library reloaded (5 personas, 1 skipped)",
        Duration::from_secs(10),
    );
    assert_eq!(server.get_ok("/personas/reviewer").await, custom_persona());
    assert_eq!(server.get_ok("/healthz").await["status"], "degraded");

    // The directory gone: the reload fails, the library loaded before is still served.
    std::fs::rename(dirs.personas(), dirs.root.path().join("moved")).unwrap();
    BinaryProcess::signal_pid(server.process.pid(), "HUP");
    server.process.expect_line(
        "SIGHUP received: the persona library could not be reloaded",
        Duration::from_secs(10),
    );
    assert_eq!(server.get_ok("/personas/reviewer").await, custom_persona());

    BinaryProcess::signal_pid(server.process.pid(), "TERM");
    let status = server.process.wait_exit(Duration::from_secs(25));
    assert_eq!(status.code(), Some(0), "{}", server.process.log());
}

/// A 300 KB `x-request-id` is neither echoed nor logged: 50 such requests grow the log
/// by a line each, not by their ids. hyper reads a header this large (its read buffer
/// holds about 400 KB), so each is answered, with an id of the service's own.
#[tokio::test]
async fn a_huge_request_id_is_not_echoed_or_logged() {
    let dirs = Dirs::new();
    let mut server = BinaryServer::start(&mut binary_command(&dirs.sessions(), &dirs.personas()));
    server.get_ok("/healthz").await;
    let huge = "r".repeat(300_000);
    let before = server.process.log().len();
    for _ in 0..50 {
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let head = format!(
            "GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nx-request-id: ",
            server.addr
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(huge.as_bytes()).await.unwrap();
        stream.write_all(b"\r\n\r\n").await.unwrap();
        let mut bytes = Vec::new();
        tokio::time::timeout(
            Duration::from_secs(10),
            tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut bytes),
        )
        .await
        .expect("an answer within 10 s")
        .expect("read the answer");
        let response = parse_raw_response(&bytes);
        assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&bytes));
        let id = response.header("x-request-id").expect("a request id");
        assert!(id.len() <= 64, "echoed {} bytes", id.len());
        assert!(!bytes.windows(64).any(|w| w == &huge.as_bytes()[..64]));
    }
    // Wait until every answer is logged: one more request, whose line comes last.
    server
        .request(Method::GET, "/healthz")
        .header("x-request-id", "the-last-one")
        .send()
        .await
        .unwrap();
    server
        .process
        .expect_line("the-last-one", Duration::from_secs(10));
    let log = server.process.log();
    let grown = log.len() - before;
    assert!(grown < 10 * 1024, "the log grew by {grown} bytes");
    assert!(!log.contains(&huge[..64]));
    let longest = log.lines().map(str::len).max().unwrap_or_default();
    assert!(longest < 1024, "a log line of {longest} bytes");
}
