//! The operator's page (`/ui/`): its files and their headers, what `--no-ui` leaves,
//! that the page's own origin may call the API while the Host and Origin checks still
//! keep other pages out, and the page itself in headless Chromium
//! (`tests/ui/test_page.py`), against the real binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::{Method, StatusCode, header};
use serde_json::json;

use crate::helpers::*;

const TOKEN: &str = "ui-test-token";
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";
/// The page's files and their types.
const FILES: [(&str, &str); 3] = [
    ("/ui/", "text/html; charset=utf-8"),
    ("/ui/app.js", "text/javascript; charset=utf-8"),
    ("/ui/app.css", "text/css; charset=utf-8"),
];
/// The page loads in one go on a slow phone link.
const PAGE_BUDGET: usize = 50 * 1024;

async fn app_with_token() -> TestApp {
    TestApp::fresh_with(Options {
        token: Some(TOKEN.to_owned()),
        ..Options::default()
    })
    .await
}

fn assert_page_headers(response: &reqwest::Response, what: &str) {
    let headers = response.headers();
    assert_eq!(headers[header::CONTENT_SECURITY_POLICY], CSP, "{what}");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{what}");
    assert_eq!(headers[header::REFERRER_POLICY], "no-referrer", "{what}");
}

#[tokio::test]
async fn the_files_need_no_token_and_carry_a_strict_policy_and_a_tag() {
    let app = app_with_token().await;
    let mut total = 0;
    for (path, content_type) in FILES {
        // No token: the files hold no data (the API they call needs it).
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.headers()[header::CONTENT_TYPE], content_type);
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-cache");
        assert_page_headers(&response, path);
        let etag = response.headers()[header::ETAG].clone();
        let body = response.bytes().await.unwrap();
        assert!(!body.is_empty(), "{path}");
        total += body.len();

        // Revalidation: the same tag is 304 with the same headers and no body.
        let tag = etag.to_str().unwrap().to_owned();
        for if_none_match in [tag.clone(), format!("W/{tag}"), format!("\"x\", {tag}")] {
            let response = app
                .client
                .get(app.url(path))
                .header(header::IF_NONE_MATCH, &if_none_match)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::NOT_MODIFIED, "{path}");
            assert_eq!(response.headers()[header::ETAG], etag);
            assert_page_headers(&response, path);
            assert!(response.bytes().await.unwrap().is_empty());
        }
        let response = app
            .client
            .get(app.url(path))
            .header(header::IF_NONE_MATCH, "\"other\"")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}, another tag");

        let response = app.client.head(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "HEAD {path}");
        assert_eq!(response.headers()[header::ETAG], etag);
    }
    assert!(
        total < PAGE_BUDGET,
        "the page is {total} bytes, over its budget of {PAGE_BUDGET}"
    );
    // The data is not public: the API still needs the token.
    let response = app.client.get(app.url("/sessions")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test]
async fn slash_sends_a_browser_to_the_page() {
    let app = app_with_token().await;
    let response = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()[header::LOCATION], "/ui/");
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    assert_page_headers(&response, "/");
    let note = response.text().await.unwrap();
    assert!(note.contains("href=\"/ui/\""), "{note}");
    app.stop().await;
}

fn page_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("ui").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What the policy forbids is not in the files in the first place, and the script
/// never turns text into markup.
#[test]
fn the_files_hold_no_inline_code_and_the_script_inserts_text_only() {
    let html = page_file("index.html").to_ascii_lowercase();
    for tag in html.split("<script").skip(1) {
        let open = &tag[..tag.find('>').expect("a script tag closes")];
        assert!(
            open.contains(" src=\"/ui/"),
            "an inline script: <script{open}>"
        );
    }
    assert!(!html.contains("<style"), "an inline style sheet");
    assert!(!html.contains(" style="), "an inline style attribute");
    for word in html.split(|c: char| c.is_whitespace()) {
        let handler = word.starts_with("on") && word.contains('=');
        assert!(!handler, "an inline event handler: {word}");
    }
    let script = page_file("app.js");
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "localStorage",
        "document.cookie",
        "http://",
        "https://",
    ] {
        assert!(!script.contains(sink), "app.js uses {sink}");
    }
    assert!(
        script.contains("sessionStorage"),
        "the token is kept per tab"
    );
}

#[tokio::test]
async fn the_page_may_call_the_api_from_its_own_origin_only() {
    let app = app_with_token().await;
    let port = app.addr.port();
    // What a browser sends with the page's write (a fetch from http://127.0.0.1:PORT).
    let response = app
        .request(Method::POST, "/sessions")
        .header(header::ORIGIN, format!("http://127.0.0.1:{port}"))
        .json(&json!({ "name": "from-the-page" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    // A page of another site can neither call the API nor load the page's files, and a
    // rebound name cannot load them either.
    for path in ["/sessions", "/ui/", "/ui/app.js"] {
        let response = app
            .request(Method::GET, path)
            .header(header::ORIGIN, "https://evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
        let response = app
            .request(Method::GET, path)
            .header(header::HOST, format!("evil.example:{port}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST, "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn no_ui_leaves_the_page_unknown_and_the_api_as_it_was() {
    let app = TestApp::fresh_with(Options {
        args: vec!["--no-ui".to_owned()],
        ..Options::default()
    })
    .await;
    for path in ["/", "/ui/", "/ui/app.js", "/ui/app.css"] {
        let response = app.get(path).await;
        assert_problem(response, StatusCode::NOT_FOUND, "not-found").await;
    }
    app.get_ok("/sessions").await;
    app.stop().await;
}

#[test]
fn no_ui_is_also_read_from_the_environment() {
    let dirs = Dirs::new();
    let mut command = binary_command(&dirs.sessions(), &dirs.personas());
    command.env("SESSION_MANAGER_NO_UI", "true");
    let server = BinaryServer::start(&mut command);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = runtime.block_on(async { server.must(Method::GET, "/ui/", None).await.0 });
    assert_eq!(status, StatusCode::NOT_FOUND);
}

// ---- In a browser

const BROWSER_TEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ui/test_page.py");
/// Set (to anything) where a browser must be there, as `.ci/run` does after installing
/// it: the browser test then fails instead of skipping.
const REQUIRE_BROWSER: &str = "SESSION_MANAGER_UI_TEST_REQUIRED";
/// The script's exit status when it finds no Chromium.
const SKIPPED: i32 = 77;

/// Where the screenshots go: `target/ui-screenshots/`, beside the build's own directory.
fn screenshot_dir() -> PathBuf {
    Path::new(BINARY)
        .ancestors()
        .nth(2)
        .expect("the binary is in target/<profile>/")
        .join("ui-screenshots")
}

fn skip(why: &str) {
    assert!(
        std::env::var_os(REQUIRE_BROWSER).is_none(),
        "{REQUIRE_BROWSER} is set, but {why}"
    );
    println!("skipped: {why}");
}

/// The page in headless Chromium against the real binary with a token: it asks for
/// the token, shows the sessions, switches one by a click, shows a session created
/// over HTTP within a second without reloading, shows a title and a transcript message
/// that are HTML as text, saves a title and tags, archives a session and restores it,
/// and fits a phone. Screenshots of both widths go to `target/ui-screenshots/`.
#[test]
fn the_page_works_in_headless_chromium() {
    if Command::new("python3").arg("--version").output().is_err() {
        return skip("python3 is not installed");
    }
    let dirs = Dirs::new();
    let sessions = dirs.sessions();
    for (name, last_active, title, tags) in [
        (
            "hostile",
            "2026-11-20T10:00:00.000000+00:00",
            "<img src=x onerror=alert(1)>",
            json!(["xss"]),
        ),
        (
            "backups",
            "2026-11-21T10:00:00.000000+00:00",
            "Nightly backups to the NAS",
            json!(["backup", "nas"]),
        ),
    ] {
        let mut metadata = python_metadata(name, last_active, last_active, "idle");
        metadata["title"] = json!(title);
        metadata["tags"] = tags;
        write_python_session(&sessions, name, &metadata);
    }
    // Where the script writes a transcript as the Claude Code CLI would.
    let claude = dirs.root.path().join("claude");
    let mut command = binary_command(&sessions, &dirs.personas());
    command
        .env("SESSION_MANAGER_TOKEN", TOKEN)
        .arg("--claude-config-dir")
        .arg(&claude);
    let server = BinaryServer::start(&mut command);

    let mut script = Command::new("python3");
    script
        .arg(BROWSER_TEST)
        .env("BASE_URL", server.url(""))
        .env("TOKEN", TOKEN)
        .env("CLAUDE_CONFIG_DIR", &claude)
        .env("SCREENSHOTS", screenshot_dir());
    let (status, stdout, stderr) = binary_run(&mut script, Duration::from_secs(120));
    println!("{stdout}");
    if status.code() == Some(SKIPPED) {
        return skip(stdout.trim());
    }
    assert!(
        status.success(),
        "the browser test failed ({status}):\n{stdout}\n{stderr}\nthe service's log:\n{}",
        server.process.log()
    );
}
