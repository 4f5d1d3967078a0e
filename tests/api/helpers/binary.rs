//! The real binary, for the binary, crash, failpoint, durability, observability and
//! container tests.
//!
//! The command may be wrapped (strace), carry failpoints or run with a HOME of its own;
//! the process may be killed before it listens or run to its end with its output
//! captured.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Client, Method, RequestBuilder, StatusCode};
use serde_json::Value;

use super::app::reachable_addr;
use super::assert::lenient_json;

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
        let addr = reachable_addr(self.addr);
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
            lenient_json(&bytes)
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
