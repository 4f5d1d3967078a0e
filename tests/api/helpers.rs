//! `TestApp`: the real router served by `app::serve` on a random loopback port, over
//! temp directories, with typed helpers. Dropping it without `stop` aborts the server;
//! `stop` shuts it down gracefully and fails the test if the server failed.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use session_manager::app;
use session_manager::personas::Personas;
use session_manager::security::{Auth, HostGuard};
use session_manager::state::AppState;
use session_manager::store::Store;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The directories a test app runs on; kept across restarts of the app.
pub struct Dirs {
    pub root: TempDir,
}

impl Dirs {
    pub fn new() -> Self {
        Self {
            root: tempfile::tempdir().expect("temp dir"),
        }
    }
    pub fn sessions(&self) -> PathBuf {
        self.root.path().join("sessions")
    }
    pub fn personas(&self) -> PathBuf {
        self.root.path().join("personas")
    }
}

#[derive(Default, Clone)]
pub struct Options {
    pub token: Option<String>,
    pub allowed_hosts: Vec<String>,
}

pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub base: String,
    pub client: Client,
    pub token: Option<String>,
    pub sessions_dir: PathBuf,
    pub personas_dir: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    /// Starts the app on fresh temp directories.
    pub async fn spawn(dirs: &Dirs) -> Self {
        Self::spawn_with(dirs, Options::default()).await
    }

    pub async fn spawn_with(dirs: &Dirs, options: Options) -> Self {
        let store = Store::open(&dirs.sessions()).expect("open the store");
        let personas = Personas::open(&dirs.personas()).expect("open the personas");
        // Bound before the server task starts, so no request can race the listener.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let state = AppState::new(
            store,
            personas,
            Auth::new(options.token.as_deref()),
            HostGuard::new(addr, &options.allowed_hosts),
        );
        let (tx, rx) = oneshot::channel();
        let server = tokio::spawn(app::serve(listener, state, async {
            let _ = rx.await;
        }));
        TestApp {
            addr,
            base: format!("http://{addr}"),
            client: Client::new(),
            token: options.token,
            sessions_dir: std::fs::canonicalize(dirs.sessions()).unwrap(),
            personas_dir: dirs.personas(),
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    /// Stops the server gracefully and waits for it; panics if it failed. The store's
    /// directory lock is released when this returns.
    pub async fn stop(mut self) {
        let _ = self.shutdown.take().unwrap().send(());
        self.server
            .take()
            .unwrap()
            .await
            .expect("server task panicked")
            .expect("server failed");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request with the token (when the app has one).
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let builder = self.client.request(method, self.url(path));
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.unwrap()
    }

    pub async fn send_json(&self, method: Method, path: &str, body: &Value) -> Response {
        self.request(method, path).json(body).send().await.unwrap()
    }

    pub async fn create_session(&self, name: &str, persona: Option<Value>) -> Response {
        let mut body = json!({ "name": name });
        if let Some(persona) = persona {
            body["persona"] = persona;
        }
        self.send_json(Method::POST, "/sessions", &body).await
    }

    /// Creates a session and asserts it was created.
    pub async fn created(&self, name: &str) -> Value {
        let response = self.create_session(name, None).await;
        assert_eq!(response.status(), StatusCode::CREATED, "create {name}");
        response.json().await.unwrap()
    }

    pub async fn switch(&self, name: &str) -> Response {
        self.send_json(Method::PUT, "/sessions/active", &json!({ "name": name }))
            .await
    }

    pub async fn patch(&self, name: &str, body: &Value) -> Response {
        self.send_json(Method::PATCH, &format!("/sessions/{name}"), body)
            .await
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.request(Method::DELETE, path).send().await.unwrap()
    }

    pub fn session_dir(&self, name: &str) -> PathBuf {
        self.sessions_dir.join(name)
    }

    /// The session's `metadata.json` as on disk.
    pub fn metadata_on_disk(&self, name: &str) -> Value {
        read_json(&self.session_dir(name).join("metadata.json"))
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Asserts a problem answer: status, content type, and the `status`/`title` members;
/// returns the body for further checks on `detail`.
pub async fn assert_problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status, "status of {}", response.url());
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "content type of a {status} answer"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(body["type"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(body["detail"].as_str().is_some_and(|t| !t.is_empty()));
    body
}

/// A persona object that passes validation.
pub fn custom_persona() -> Value {
    json!({
        "name": "Reviewer",
        "description": "Reviews diffs",
        "system_prompt": "Review the operator's changes.",
        "settings": { "model": "claude-sonnet-4-20250514", "max_turns": 5, "effort": "high" },
        "color": "blue"
    })
}

// ---- Shared by the sessions, active, personas and compat tests.

/// Asserts a JSON success answer (status and `content-type: application/json`) and
/// returns its body.
pub async fn assert_json(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status, "status of {}", response.url());
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "content type of a {status} answer from {}",
        response.url()
    );
    response.json().await.unwrap()
}

/// Asserts that `value` is a timestamp as the service writes it: RFC 3339 in UTC with
/// `+00:00` and exactly six fractional digits. Returns the instant.
pub fn assert_timestamp(value: &Value) -> chrono::DateTime<chrono::Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is not a string"));
    let parsed = chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}"));
    assert!(text.ends_with("+00:00"), "{text:?} is not written in UTC");
    let fraction = text
        .split_once('.')
        .map(|(_, rest)| rest.trim_end_matches("+00:00"))
        .unwrap_or_default();
    assert!(
        fraction.len() == 6 && fraction.bytes().all(|b| b.is_ascii_digit()),
        "{text:?} does not have microseconds"
    );
    parsed.with_timezone(&chrono::Utc)
}

/// The names in a directory, sorted.
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Writes `value` as the original Python module does: `json.dumps(value, indent=2)`,
/// keys in the given order, no trailing newline.
pub fn write_python_json(path: &Path, value: &Value) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Writes a session directory as the original Python module leaves it: `metadata.json`
/// (as given) and `persona.json` (a byte copy of the shipped `default.json`).
pub fn write_python_session(sessions_dir: &Path, name: &str, metadata: &Value) {
    let dir = sessions_dir.join(name);
    write_python_json(&dir.join("metadata.json"), metadata);
    std::fs::write(dir.join("persona.json"), shipped_persona_text("default")).unwrap();
}

/// Metadata in the original module's field order.
pub fn python_metadata(name: &str, created: &str, last_active: &str, status: &str) -> Value {
    json!({
        "name": name,
        "created": created,
        "last_active": last_active,
        "persona": null,
        "pid": null,
        "status": status,
    })
}

/// The text of a persona of the repository's shipped library (`personas/<key>.json`).
pub fn shipped_persona_text(key: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("personas")
        .join(format!("{key}.json"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `metadata` as the API answers it: plus `dir`.
pub fn with_dir(metadata: &Value, dir: &Path) -> Value {
    let mut answer = metadata.clone();
    answer["dir"] = json!(dir.to_str().unwrap());
    answer
}

impl TestApp {
    pub async fn head(&self, path: &str) -> Response {
        self.request(Method::HEAD, path).send().await.unwrap()
    }

    /// `GET /sessions` (with an optional query), asserted 200.
    pub async fn list_sessions(&self, query: &str) -> Value {
        assert_json(self.get(&format!("/sessions{query}")).await, StatusCode::OK).await
    }

    /// Switches and asserts 200; returns the answer.
    pub async fn switched(&self, name: &str) -> Value {
        assert_json(self.switch(name).await, StatusCode::OK).await
    }

    /// `GET /healthz`, asserted 200.
    pub async fn health(&self) -> Value {
        assert_json(self.get("/healthz").await, StatusCode::OK).await
    }
}

/// An HTTP response read off a raw TCP connection (see [`raw_request`]).
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Sends `request` byte for byte over a new connection — no path normalisation, unlike
/// reqwest, so `..` reaches the server as written — and reads until the server closes
/// the connection (send `Connection: close`). Bounded by ten seconds.
pub async fn raw_request(addr: std::net::SocketAddr, request: &[u8]) -> RawResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(request).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        std::io::Result::Ok(response)
    };
    let bytes = tokio::time::timeout(std::time::Duration::from_secs(10), exchange)
        .await
        .expect("no complete answer within 10 s")
        .expect("raw exchange failed");
    parse_raw_response(&bytes)
}

/// A request line, `Host`, `Connection: close`, and a JSON body when given.
pub fn raw_http(method: &str, path: &str, host: &str, body: Option<&Value>) -> Vec<u8> {
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n").into_bytes();
    match body {
        Some(body) => {
            let body = body.to_string();
            request.extend_from_slice(
                format!(
                    "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
        None => request.extend_from_slice(b"\r\n"),
    }
    request
}

/// Parses one HTTP/1.1 response (a `Content-Length` or chunked body, or up to the end).
pub fn parse_raw_response(bytes: &[u8]) -> RawResponse {
    let text = String::from_utf8_lossy(bytes);
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete response head in {text:?}"));
    let head = String::from_utf8_lossy(&bytes[..split]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &bytes[split + 4..];
    let is_chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let body = if is_chunked {
        dechunk(rest)
    } else if let Some(length) = length {
        rest[..length.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    RawResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&rest[..eol]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).expect("chunk size");
        rest = &rest[eol + 2..];
        if size == 0 {
            break;
        }
        body.extend_from_slice(&rest[..size.min(rest.len())]);
        rest = &rest[(size + 2).min(rest.len())..];
    }
    body
}

/// Asserts a problem answer read off a raw connection; returns its body.
pub fn assert_raw_problem(response: &RawResponse, status: u16, context: &str) -> Value {
    assert_eq!(response.status, status, "status of {context}");
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json"),
        "content type of {context}"
    );
    let body = response.json();
    assert_eq!(body["status"], status, "problem status of {context}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "problem detail of {context}"
    );
    body
}
