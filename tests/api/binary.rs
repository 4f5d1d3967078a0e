//! The real binary (SPEC §5, §6): the directory lock against a second instance, graceful
//! stops on SIGTERM and SIGINT, `healthcheck`, the start-up checks on the listen address
//! and the token, state across `kill -9`, and the default directories under HOME.
//!
//! Each instance listens on `127.0.0.1:0`; the tests read the port from its
//! "listening on" log line, never sleep, and bound every wait.

use crate::helpers::*;

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_session-manager");
/// How long a debug build may take to start and say where it listens.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a stop may take (in-flight requests have at most SHUTDOWN_GRACE).
const EXIT_TIMEOUT: Duration = Duration::from_secs(25);

/// A command for the binary with a clean environment: only HOME, and plain-text logs
/// at info level.
fn command(home: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_clear()
        .env("HOME", home)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .current_dir(home)
        .stdin(Stdio::null());
    command
}

/// Arguments for an instance on `dirs` at a free loopback port.
fn serve_args(dirs: &Dirs) -> Vec<OsString> {
    vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--sessions-dir".into(),
        dirs.sessions().into(),
        "--personas-dir".into(),
        dirs.personas().into(),
    ]
}

fn home_of(dirs: &Dirs) -> PathBuf {
    let home = dirs.root.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    home
}

/// Removes terminal colour sequences (`ESC [ ... letter`), in case NO_COLOR is ignored.
fn strip_ansi(line: &str) -> String {
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

/// A running process of the binary: its stderr is read line by line on a thread, and
/// it is killed when dropped.
struct Process {
    child: Child,
    started: Instant,
    lines: Receiver<String>,
    stderr: Arc<Mutex<Vec<String>>>,
    stdout: Option<JoinHandle<String>>,
}

impl Process {
    fn spawn(command: &mut Command) -> Self {
        let started = Instant::now();
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the binary");
        let (tx, lines) = mpsc::channel();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&stderr);
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let line = strip_ansi(&line);
                log.lock().unwrap().push(line.clone());
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut pipe = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        });
        Self {
            child,
            started,
            lines,
            stderr,
            stdout: Some(stdout),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Waits, up to `timeout`, for a stderr line containing `needle` and returns it.
    fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no line with {needle:?} within {timeout:?}; stderr:\n{}",
                    self.stderr()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "exited ({:?}) before a line with {needle:?}; stderr:\n{}",
                    self.child.wait(),
                    self.stderr()
                ),
            }
        }
    }

    /// Waits for the process to end, at the latest `timeout` after `from`: its stderr
    /// reaching end of file is the signal, so no polling.
    fn wait_exit_by(&mut self, from: Instant, timeout: Duration) -> ExitStatus {
        let deadline = from + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(_) => {}
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!(
                    "still running {:?} after the start of the wait; stderr:\n{}",
                    from.elapsed(),
                    self.stderr()
                ),
            }
        }
        self.child.wait().expect("wait for the binary")
    }

    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.wait_exit_by(Instant::now(), timeout)
    }

    /// What it wrote on stdout; call after it exited.
    fn stdout(&mut self) -> String {
        self.stdout.take().unwrap().join().unwrap()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {}", self.pid());
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary to its end, at most `timeout`; returns its status, stdout, stderr.
fn run(command: &mut Command, timeout: Duration) -> (ExitStatus, String, String) {
    let mut process = Process::spawn(command);
    let status = process.wait_exit(timeout);
    (status, process.stdout(), process.stderr())
}

/// An instance serving HTTP.
struct Server {
    process: Process,
    addr: SocketAddr,
    client: Client,
}

impl Server {
    /// Starts the binary and waits for its "listening on ADDR" line.
    fn start(command: &mut Command) -> Self {
        let mut process = Process::spawn(command);
        let line = process.wait_for_line("listening on ", START_TIMEOUT);
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.trim_matches(|c| c == '"' || c == ',').parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Self {
            process,
            addr,
            client: Client::new(),
        }
    }

    fn on(dirs: &Dirs) -> Self {
        Self::start(command(&home_of(dirs)).args(serve_args(dirs)))
    }

    /// The address to reach it on (a wildcard listen address is reached on loopback).
    fn url(&self, path: &str) -> String {
        let addr = session_manager::healthcheck::target(self.addr);
        format!("http://{addr}{path}")
    }

    async fn status_of(&self, path: &str, token: Option<&str>) -> StatusCode {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap().status()
    }

    async fn json(&self, path: &str) -> Value {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.unwrap()
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> StatusCode {
        let response = self.client.request(method, self.url(path)).json(&body);
        response.send().await.unwrap().status()
    }
}

#[tokio::test]
async fn a_second_instance_on_the_same_sessions_dir_is_refused_at_once() {
    let dirs = Dirs::new();
    let first = Server::on(&dirs);
    let holder = format!("pid {}", first.process.pid());
    let canonical = std::fs::canonicalize(dirs.sessions()).unwrap();
    let alias = dirs.root.path().join("alias");
    std::os::unix::fs::symlink(dirs.sessions(), &alias).unwrap();

    let spellings = (0..20)
        .map(|_| dirs.sessions())
        .chain([dirs.sessions().join("."), alias]);
    for (attempt, sessions_dir) in spellings.enumerate() {
        let mut second = Process::spawn(
            command(&home_of(&dirs))
                .args(["--listen", "127.0.0.1:0", "--personas-dir"])
                .arg(dirs.personas())
                .arg("--sessions-dir")
                .arg(&sessions_dir),
        );
        let status = second.wait_exit_by(second.started, Duration::from_secs(1));
        let stderr = second.stderr();
        assert_eq!(status.code(), Some(1), "attempt {attempt}: {stderr}");
        assert!(
            stderr.contains(&canonical.display().to_string()) && stderr.contains(&holder),
            "attempt {attempt}: the message names the directory and {holder}: {stderr}"
        );
        assert!(!stderr.contains("listening on"), "{stderr}");
        assert_eq!(first.status_of("/healthz", None).await, StatusCode::OK);
    }
    // The first instance still owns the directory and still writes to it.
    let lock = std::fs::read_to_string(canonical.join(".lock")).unwrap();
    assert_eq!(lock.trim(), holder);
    let created = first
        .send(
            reqwest::Method::POST,
            "/sessions",
            json!({ "name": "after" }),
        )
        .await;
    assert_eq!(created, StatusCode::CREATED);
}

#[tokio::test]
async fn sigterm_finishes_the_request_in_flight_refuses_new_ones_and_exits_0() {
    let dirs = Dirs::new();
    let mut server = Server::start(
        command(&home_of(&dirs))
            // The trace layer says when a request reached the service.
            .env("RUST_LOG", "info,tower_http=debug")
            .args(serve_args(&dirs)),
    );
    for name in ["alpha", "beta"] {
        let status = server
            .send(reqwest::Method::POST, "/sessions", json!({ "name": name }))
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }

    // A switch whose body is only half sent: the request is in the handler, waiting.
    let body = json!({ "name": "beta" }).to_string();
    let (first_half, second_half) = body.split_at(body.len() / 2);
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "PUT /sessions/active HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        server.addr,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(first_half.as_bytes()).await.unwrap();
    server
        .process
        .wait_for_line("started processing request", START_TIMEOUT);

    server.process.signal("TERM");
    server
        .process
        .wait_for_line("SIGTERM received", Duration::from_secs(5));
    server
        .process
        .wait_for_line("shutting down", Duration::from_secs(5));
    // Nothing new is accepted once the shutdown began.
    let refused = tokio::net::TcpStream::connect(server.addr).await;
    assert!(
        refused.is_err(),
        "a new connection was accepted during shutdown"
    );

    // The request in flight is still answered, in full.
    stream.write_all(second_half.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("the request in flight was not answered within 10 s")
        .unwrap();
    let response = parse_raw_response(&response);
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.json(),
        json!({ "previous": null, "active": "beta", "changed": true })
    );

    let status = server.process.wait_exit(EXIT_TIMEOUT);
    assert_eq!(status.code(), Some(0), "{}", server.process.stderr());
    assert!(server.process.stderr().contains("stopped"));
    drop(server);

    // What it acknowledged during the shutdown is on disk.
    let server = Server::on(&dirs);
    assert_eq!(server.json("/sessions/active").await["active"], "beta");
}

#[tokio::test]
async fn sigint_stops_it_gracefully_with_exit_0() {
    let dirs = Dirs::new();
    let mut server = Server::on(&dirs);
    assert_eq!(server.status_of("/healthz", None).await, StatusCode::OK);
    server.process.signal("INT");
    let status = server.process.wait_exit(EXIT_TIMEOUT);
    assert_eq!(status.code(), Some(0), "{}", server.process.stderr());
    let stderr = server.process.stderr();
    assert!(stderr.contains("SIGINT received"), "{stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");
    assert!(tokio::net::TcpStream::connect(server.addr).await.is_err());
}

#[tokio::test]
async fn healthcheck_exits_0_when_healthy_and_1_otherwise() {
    let dirs = Dirs::new();
    let home = home_of(&dirs);
    let mut server = Server::on(&dirs);
    let probe = |addr: SocketAddr| {
        run(
            command(&home)
                .arg("healthcheck")
                .arg("--listen")
                .arg(addr.to_string()),
            Duration::from_secs(15),
        )
    };

    let (status, stdout, stderr) = probe(server.addr);
    assert_eq!(status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("200"), "{stdout}");

    // Something that answers, but not 200.
    let unhealthy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let unhealthy_addr = unhealthy.local_addr().unwrap();
    let answer = std::thread::spawn(move || {
        use std::io::Write;
        let (mut conn, _) = unhealthy.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = conn.read(&mut buf);
        conn.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    });
    let (status, stdout, stderr) = probe(unhealthy_addr);
    answer.join().unwrap();
    assert_eq!(status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("503"), "{stderr}");

    // Nothing listening any more.
    server.process.signal("TERM");
    assert_eq!(server.process.wait_exit(EXIT_TIMEOUT).code(), Some(0));
    let (status, stdout, stderr) = probe(server.addr);
    assert_eq!(status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("unhealthy") && stderr.contains(&server.addr.to_string()),
        "{stderr}"
    );
}

#[tokio::test]
async fn listening_beyond_loopback_needs_a_token_or_an_explicit_opt_out() {
    let dirs = Dirs::new();
    let home = home_of(&dirs);
    let args = |listen: &str| {
        let mut args = serve_args(&dirs);
        args[1] = listen.into();
        args
    };

    let (status, _, stderr) = run(
        command(&home).args(args("0.0.0.0:0")),
        Duration::from_secs(10),
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("token") && stderr.contains("--allow-unauthenticated"),
        "{stderr}"
    );
    // Refused before anything was touched.
    assert!(!dirs.sessions().exists() && !dirs.personas().exists());

    let mut server = Server::start(
        command(&home)
            .args(args("0.0.0.0:0"))
            .arg("--allow-unauthenticated"),
    );
    assert!(server.addr.ip().is_unspecified(), "{}", server.addr);
    assert_eq!(server.status_of("/sessions", None).await, StatusCode::OK);
    // The container's probe reaches a wildcard listener on loopback.
    let (status, stdout, stderr) = run(
        command(&home)
            .args(["healthcheck", "--listen"])
            .arg(server.addr.to_string()),
        Duration::from_secs(15),
    );
    assert_eq!(status.code(), Some(0), "{stdout}{stderr}");
    server.process.signal("TERM");
    assert_eq!(server.process.wait_exit(EXIT_TIMEOUT).code(), Some(0));
}

#[tokio::test]
async fn a_token_from_the_environment_is_required_everywhere_but_healthz() {
    let dirs = Dirs::new();
    let home = home_of(&dirs);
    let token = "env-token-3f9a1c";
    let mut args = serve_args(&dirs);
    args[1] = "0.0.0.0:0".into();
    let server = Server::start(
        command(&home)
            .env("SESSION_MANAGER_TOKEN", token)
            .args(&args),
    );
    assert_eq!(
        server.status_of("/sessions", None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        server.status_of("/sessions", Some("wrong")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        server.status_of("/sessions", Some(token)).await,
        StatusCode::OK
    );
    assert_eq!(server.status_of("/healthz", None).await, StatusCode::OK);
    let (status, stdout, stderr) = run(
        command(&home)
            .args(["healthcheck", "--listen"])
            .arg(server.addr.to_string()),
        Duration::from_secs(15),
    );
    assert_eq!(status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        !server.process.stderr().contains(token),
        "the token is in the log"
    );
}

#[tokio::test]
async fn a_token_file_gives_its_first_line_and_an_empty_one_is_refused() {
    let dirs = Dirs::new();
    let home = home_of(&dirs);
    let token_file = dirs.root.path().join("token");
    std::fs::write(&token_file, "file-token-7d2e\nsecond-line\n").unwrap();
    let server = Server::start(
        command(&home)
            .args(serve_args(&dirs))
            .arg("--token-file")
            .arg(&token_file),
    );
    assert_eq!(
        server.status_of("/sessions", Some("file-token-7d2e")).await,
        StatusCode::OK
    );
    for wrong in [
        None,
        Some("second-line"),
        Some("file-token-7d2e second-line"),
    ] {
        assert_eq!(
            server.status_of("/sessions", wrong).await,
            StatusCode::UNAUTHORIZED
        );
    }
    drop(server);

    let refuse = |configure: &dyn Fn(&mut Command), what: &str, needle: &str| {
        let mut command = command(&home);
        command.args(serve_args(&dirs));
        configure(&mut command);
        let (status, _, stderr) = run(&mut command, Duration::from_secs(10));
        assert_eq!(status.code(), Some(1), "{what}: {stderr}");
        assert!(stderr.contains(needle), "{what}: {stderr}");
        assert!(!stderr.contains("listening on"), "{what}: {stderr}");
    };
    let empty = dirs.root.path().join("empty-token");
    std::fs::write(&empty, "").unwrap();
    refuse(
        &|c| {
            c.arg("--token-file").arg(&empty);
        },
        "an empty token file",
        "token is empty",
    );
    let blank = dirs.root.path().join("blank-token");
    std::fs::write(&blank, "  \n\nnot-the-first-line\n").unwrap();
    refuse(
        &|c| {
            c.arg("--token-file").arg(&blank);
        },
        "a token file whose first line is blank",
        "token is empty",
    );
    let missing = dirs.root.path().join("no-such-token");
    refuse(
        &|c| {
            c.arg("--token-file").arg(&missing);
        },
        "a missing token file",
        &missing.display().to_string(),
    );
    refuse(
        &|c| {
            c.env("SESSION_MANAGER_TOKEN", "");
        },
        "an empty SESSION_MANAGER_TOKEN",
        "token is empty",
    );
}

#[tokio::test]
async fn sessions_and_the_current_one_survive_kill_9() {
    let dirs = Dirs::new();
    let mut server = Server::on(&dirs);
    for name in ["alpha", "beta", "gamma"] {
        let status = server
            .send(reqwest::Method::POST, "/sessions", json!({ "name": name }))
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    for name in ["alpha", "beta"] {
        let status = server
            .send(
                reqwest::Method::PUT,
                "/sessions/active",
                json!({ "name": name }),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let status = server
        .send(
            reqwest::Method::PATCH,
            "/sessions/beta",
            json!({ "pid": 4242 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let sessions = server.json("/sessions").await;
    let active = server.json("/sessions/active").await;

    server.process.signal("KILL");
    let status = server.process.wait_exit(EXIT_TIMEOUT);
    assert_eq!(status.code(), None, "killed by a signal");
    drop(server);

    let server = Server::on(&dirs);
    assert_eq!(server.json("/sessions").await, sessions);
    assert_eq!(server.json("/sessions/active").await, active);
    assert_eq!(active["active"], "beta");
    assert_eq!(active["session"]["status"], "active");
    assert_eq!(active["session"]["pid"], 4242);
    let alpha = server.json("/sessions/alpha").await;
    assert_eq!(alpha["status"], "suspended");
}

#[tokio::test]
async fn without_dir_flags_it_uses_home_telegram_and_seeds_the_library() {
    let dirs = Dirs::new();
    let home = home_of(&dirs);
    let server = Server::start(command(&home).args(["--listen", "127.0.0.1:0"]));
    let sessions = home.join("telegram").join("sessions");
    let personas = home.join("telegram").join("personas");
    assert!(sessions.is_dir());
    for key in ["default", "brainstorm", "planner", "research"] {
        let persona = read_json(&personas.join(format!("{key}.json")));
        assert_eq!(persona["settings"]["model"], "claude-sonnet-4-20250514");
    }
    let keys: Vec<String> = server
        .json("/personas")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap().to_owned())
        .collect();
    for key in ["brainstorm", "default", "planner", "research"] {
        assert!(keys.iter().any(|k| k == key), "{key} in {keys:?}");
    }
    let status = server
        .send(reqwest::Method::POST, "/sessions", json!({ "name": "one" }))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(sessions.join("one").join("metadata.json").is_file());

    // The default listen address, as the binary itself documents it.
    let (status, stdout, _) = run(command(&home).arg("--help"), Duration::from_secs(10));
    assert!(status.success());
    assert!(stdout.contains("[default: 127.0.0.1:8765]"), "{stdout}");

    // No HOME and no flags: refused with a message, not a directory in the cwd.
    let mut no_home = command(&home);
    no_home.env_remove("HOME").args(["--listen", "127.0.0.1:0"]);
    let (status, _, stderr) = run(&mut no_home, Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("HOME"), "{stderr}");
}
