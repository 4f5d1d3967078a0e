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

// ---- The real binary, for the binary, crash, failpoint, durability, observability and
// container tests.
//
// The command may be wrapped (strace), carry failpoints or run with a HOME of its own;
// the process may be killed before it listens or run to its end with its output
// captured; and `check_store` looks at a running instance and its directory from outside.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BINARY: &str = env!("CARGO_BIN_EXE_session-manager");
/// How long a debug build may take to start and say where it listens.
pub const BINARY_START_TIMEOUT: Duration = Duration::from_secs(20);
/// Every HTTP exchange with a spawned binary is bounded by this.
pub const BINARY_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A command for the binary with a clean environment (plain-text logs at info level)
/// serving `sessions` and `personas` on a free loopback port.
pub fn binary_command(sessions: &Path, personas: &Path) -> Command {
    let mut command = Command::new(BINARY);
    command.args(binary_serve_args(sessions, personas));
    binary_env(&mut command);
    command
}

/// A command for the binary with a clean environment and no arguments, run in `home`
/// with HOME set to it (where its default directories are).
pub fn binary_command_in_home(home: &Path) -> Command {
    let mut command = Command::new(BINARY);
    binary_env(&mut command);
    command.env("HOME", home).current_dir(home);
    command
}

/// The arguments that serve `sessions` and `personas` on `127.0.0.1:0`.
pub fn binary_serve_args(sessions: &Path, personas: &Path) -> Vec<std::ffi::OsString> {
    vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--sessions-dir".into(),
        sessions.into(),
        "--personas-dir".into(),
        personas.into(),
    ]
}

/// A clean environment for the binary (or a wrapper of it): no inherited token,
/// directories or failpoints.
pub fn binary_env(command: &mut Command) {
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
}

/// Removes terminal colour sequences, in case NO_COLOR is ignored.
pub fn strip_ansi_codes(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A spawned process whose stderr is read line by line on a thread, and whose stdout is
/// collected on another; killed on drop.
pub struct BinaryProcess {
    child: Child,
    started: Instant,
    lines: Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
    stdout: Option<std::thread::JoinHandle<String>>,
    exit: Option<ExitStatus>,
}

impl BinaryProcess {
    pub fn spawn(command: &mut Command) -> Self {
        let started = Instant::now();
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
        let (tx, lines) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let line = strip_ansi_codes(&line);
                sink.lock().unwrap().push(line.clone());
                // The receiver may be gone (nobody waits for lines any more): keep
                // draining, so the process never blocks on a full pipe.
                let _ = tx.send(line);
            }
        });
        let mut pipe = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            use std::io::Read;
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        });
        Self {
            child,
            started,
            lines,
            log,
            stdout: Some(stdout),
            exit: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// When it was spawned (taken just before the spawn).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Everything it wrote on stdout: waits for stdout to close, so call it once the
    /// process ended. Panics when called twice.
    pub fn stdout(&mut self) -> String {
        self.stdout
            .take()
            .expect("stdout is taken once")
            .join()
            .expect("the stdout reader panicked")
    }

    /// Everything it wrote on stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits, at most `timeout`, for a stderr line containing `needle`; `Err` with the
    /// log when the process ended (or the time ran out) before it.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Ok(line),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "no line with {needle:?} within {timeout:?}; stderr:\n{}",
                        self.log()
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.wait_exit(Duration::from_secs(5));
                    return Err(format!(
                        "exited ({status:?}) before a line with {needle:?}; stderr:\n{}",
                        self.log()
                    ));
                }
            }
        }
    }

    /// [`wait_for_line`](Self::wait_for_line) that panics (with the log) instead.
    pub fn expect_line(&mut self, needle: &str, timeout: Duration) -> String {
        self.wait_for_line(needle, timeout)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits, at most `timeout`, for the process to end; its stderr reaching end of
    /// file is the signal, so no polling. Panics when it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.wait_exit_by(Instant::now(), timeout)
    }

    /// [`wait_exit`](Self::wait_exit) with the time measured from `from` (such as
    /// [`started`](Self::started)) instead of from now.
    pub fn wait_exit_by(&mut self, from: Instant, timeout: Duration) -> ExitStatus {
        if let Some(status) = self.exit {
            return status;
        }
        let deadline = from + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(_) => {}
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!(
                        "pid {} still running {:?} into a wait of {timeout:?}; stderr:\n{}",
                        self.pid(),
                        from.elapsed(),
                        self.log()
                    );
                }
            }
        }
        let status = self.child.wait().expect("wait for the binary");
        self.exit = Some(status);
        status
    }

    /// `kill -9`, and waits for it to be gone (so its directory lock is released).
    pub fn kill(&mut self) -> ExitStatus {
        if self.exit.is_none() {
            let _ = self.child.kill();
        }
        self.wait_exit(Duration::from_secs(10))
    }

    /// Sends `signal` (a name such as `TERM`) to `pid` with `kill(1)`.
    pub fn signal_pid(pid: u32, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }
}

impl Drop for BinaryProcess {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs the command to its end, at most `timeout`; its status, stdout and stderr.
pub fn binary_run(command: &mut Command, timeout: Duration) -> (ExitStatus, String, String) {
    let mut process = BinaryProcess::spawn(command);
    let status = process.wait_exit(timeout);
    (status, process.stdout(), process.log())
}

/// A spawned binary that said where it listens, with a client bounded in time.
pub struct BinaryServer {
    pub process: BinaryProcess,
    pub addr: SocketAddr,
    pub client: Client,
    /// What it logged before it listened: the scan and every start-up repair.
    pub startup_log: Vec<String>,
}

impl BinaryServer {
    /// Spawns the command and waits for its "listening on ADDR" line.
    pub fn start(command: &mut Command) -> Self {
        Self::try_start(command).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_start(command: &mut Command) -> Result<Self, String> {
        let mut process = BinaryProcess::spawn(command);
        let line = process.wait_for_line("listening on ", BINARY_START_TIMEOUT)?;
        let addr = line
            .split("listening on ")
            .nth(1)
            // Plain text or a JSON log line: the address ends at a space or a quote.
            .and_then(|rest| rest.split([' ', '"', '\\', ',']).next())
            .and_then(|addr| addr.parse().ok())
            .ok_or_else(|| format!("no address in {line:?}"))?;
        let startup_log = process.log_lines();
        Ok(Self {
            process,
            addr,
            client: bounded_client(),
            startup_log,
        })
    }

    /// Whether start-up logged a warning: each repair of what a crash left is one.
    pub fn startup_repaired(&self) -> bool {
        self.startup_log.iter().any(|line| line.contains(" WARN "))
    }

    /// Where `path` is on it; a wildcard listen address is reached on loopback.
    pub fn url(&self, path: &str) -> String {
        let addr = session_manager::healthcheck::target(self.addr);
        format!("http://{addr}{path}")
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// A request whose answer is read whole; `Err` when the exchange failed.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), reqwest::Error> {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok((status, value))
    }

    /// A request that must get an answer (any status).
    pub async fn must(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let what = format!("{method} {path}");
        self.call(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}; stderr:\n{}", self.process.log()))
    }

    /// `GET path`, asserted 200.
    pub async fn get_ok(&self, path: &str) -> Value {
        let (status, body) = self.must(Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }
}

/// A client whose every request is bounded in time.
pub fn bounded_client() -> Client {
    Client::builder()
        .timeout(BINARY_REQUEST_TIMEOUT)
        .connect_timeout(BINARY_REQUEST_TIMEOUT)
        .build()
        .expect("build a client")
}

/// Copies a directory tree (files and directories only), as a template for a test.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Every entry under `dir` (recursively, `.archive` excepted) whose name starts with
/// the store's temp prefix.
pub fn temp_entries(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".tmp-") {
            found.push(entry.path());
        } else if name != ".archive" && entry.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(temp_entries(&entry.path()));
        }
    }
    found
}

/// A session as the service serves it and as it is on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSeen {
    /// `metadata.json`, as served without `dir` (checked equal to the file).
    pub metadata: Value,
    /// `persona.json`, as served (checked equal to the file).
    pub persona: Value,
}

/// What `check_store` saw.
#[derive(Debug, Clone, Default)]
pub struct StoreSeen {
    pub sessions: BTreeMap<String, SessionSeen>,
    pub current: Option<String>,
    pub health: Value,
}

/// The persona library on disk, by key.
pub fn library_on_disk(personas: &Path) -> BTreeMap<String, Value> {
    let mut library = BTreeMap::new();
    for entry in std::fs::read_dir(personas).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "json") {
            let key = path.file_stem().unwrap().to_string_lossy().into_owned();
            library.insert(key, read_json(&path));
        }
    }
    library
}

/// Checks a running instance against SPEC §1, §3 and §6 from outside, through its API
/// and its directory; returns what it saw and every violation, described.
///
/// - `/healthz` answers 200 and skips nothing;
/// - the sessions served are exactly the session directories on disk, each with a
///   `metadata.json` that parses, names its own directory and equals what is served,
///   and a valid `persona.json` that agrees with `metadata.persona` (a library key's
///   persona, or the default one for null);
/// - no temporary entry, and nothing but `.claude` beside the two files;
/// - at most one session `active`, and it is the current one; the current one is
///   listed and not `suspended`; `.current.json` names what is served as current.
pub async fn check_store(
    server: &BinaryServer,
    sessions_dir: &Path,
    personas_dir: &Path,
) -> (StoreSeen, Vec<String>) {
    let mut seen = StoreSeen::default();
    let mut violations = Vec::new();
    let mut fail = |v: String| violations.push(v);
    let get = |path: String| async move {
        server
            .call(Method::GET, &path, None)
            .await
            .map_err(|e| format!("GET {path}: {e}"))
    };

    match get("/healthz".into()).await {
        Ok((StatusCode::OK, health)) => {
            if health["skipped"].as_array().is_none_or(|s| !s.is_empty()) {
                fail(format!("/healthz skips entries: {}", health["skipped"]));
            }
            seen.health = health;
        }
        Ok((status, body)) => fail(format!("/healthz answered {status}: {body}")),
        Err(e) => fail(e),
    }
    let listed = match get("/sessions".into()).await {
        Ok((StatusCode::OK, Value::Array(list))) => list,
        other => {
            fail(format!("GET /sessions: {other:?}"));
            Vec::new()
        }
    };
    let current = match get("/sessions/active".into()).await {
        Ok((StatusCode::OK, body)) => body["active"].as_str().map(str::to_owned),
        other => {
            fail(format!("GET /sessions/active: {other:?}"));
            None
        }
    };
    seen.current = current.clone();

    for temp in temp_entries(sessions_dir) {
        fail(format!("a temporary entry is left: {}", temp.display()));
    }
    let library = library_on_disk(personas_dir);
    let mut on_disk = Vec::new();
    for entry in std::fs::read_dir(sessions_dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            on_disk.push(name);
        }
    }
    on_disk.sort();
    let mut served: Vec<String> = listed
        .iter()
        .filter_map(|s| s["name"].as_str().map(str::to_owned))
        .collect();
    served.sort();
    if served != on_disk {
        fail(format!(
            "served sessions {served:?} are not the session directories on disk {on_disk:?}"
        ));
    }

    let mut active = Vec::new();
    for listed in &listed {
        let Some(name) = listed["name"].as_str() else {
            fail(format!("a listed session has no name: {listed}"));
            continue;
        };
        let dir = sessions_dir.join(name);
        let metadata: Value = match std::fs::read(dir.join("metadata.json"))
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(m) => m,
            Err(e) => {
                fail(format!("{name}/metadata.json does not parse: {e}"));
                continue;
            }
        };
        if metadata["name"] != name {
            fail(format!("{name}/metadata.json names {}", metadata["name"]));
        }
        let mut served_metadata = listed.clone();
        served_metadata.as_object_mut().unwrap().remove("dir");
        if served_metadata != metadata {
            fail(format!(
                "{name}: served {served_metadata} but metadata.json holds {metadata}"
            ));
        }
        for extra in dir_names(&dir) {
            if extra.starts_with('.') && extra != ".claude" {
                fail(format!("{name}/{extra} is left beside the session's files"));
            }
        }
        let persona = match std::fs::read(dir.join("persona.json"))
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Value>(&b).map_err(|e| e.to_string()))
        {
            Ok(p) => p,
            Err(e) => {
                fail(format!("{name}/persona.json does not parse: {e}"));
                continue;
            }
        };
        if let Err(e) = session_manager::model::Persona::from_value(persona.clone()) {
            fail(format!("{name}/persona.json is not a valid persona: {e}"));
        }
        match get(format!("/sessions/{name}/persona")).await {
            Ok((StatusCode::OK, p)) if p == persona => {}
            other => fail(format!(
                "{name}: persona served {other:?}, on disk {persona}"
            )),
        }
        let expected = match &metadata["persona"] {
            Value::Null => library.get("default"),
            Value::String(key) if key == "custom" => None,
            Value::String(key) => match library.get(key) {
                Some(p) => Some(p),
                None => {
                    fail(format!(
                        "{name}: metadata names persona {key:?}, not in the library"
                    ));
                    None
                }
            },
            other => {
                fail(format!("{name}: metadata persona is {other}"));
                None
            }
        };
        if expected.is_some_and(|p| *p != persona) {
            fail(format!(
                "{name}: metadata says persona {} but persona.json is {:?} (half a replacement?)",
                metadata["persona"], persona["description"]
            ));
        }
        let status = metadata["status"].as_str().unwrap_or_default().to_owned();
        if !["idle", "active", "suspended"].contains(&status.as_str()) {
            fail(format!("{name}: status {status:?}"));
        }
        if status == "active" {
            active.push(name.to_owned());
        }
        if current.as_deref() == Some(name) && status == "suspended" {
            fail(format!("{name} is current but suspended"));
        }
        seen.sessions
            .insert(name.to_owned(), SessionSeen { metadata, persona });
    }
    if active.len() > 1 {
        fail(format!("more than one session is active: {active:?}"));
    }
    if let Some(name) = active
        .first()
        .filter(|a| current.as_deref() != Some(a.as_str()))
    {
        fail(format!(
            "{name} is active but the current session is {current:?}"
        ));
    }
    if let Some(current) = current.as_ref().filter(|c| !seen.sessions.contains_key(*c)) {
        fail(format!("the current session {current} is not listed"));
    }
    let pointer = std::fs::read(sessions_dir.join(".current.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    match pointer {
        Some(p) if p["name"].as_str() == current.as_deref() => {}
        other => fail(format!(
            ".current.json is {other:?} but the current session served is {current:?}"
        )),
    }
    (seen, violations)
}
