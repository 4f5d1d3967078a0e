//! The servers under measurement (the service and the hello ceiling): their command
//! lines, spawning one on a free loopback port and timing its start-up, its resident
//! memory, and stopping it.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::Result;
use crate::run::Bench;
use crate::table::ms;

/// Starts measured per server and N; the median is reported.
pub const STARTS: usize = 3;
/// The longest a start may take before the run gives up.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest a stop may take (the service's grace period is 20 s) before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(25);
/// How often the peak resident memory is sampled during a load.
const RSS_SAMPLE: Duration = Duration::from_millis(5);
pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

impl Bench {
    /// The service's command line on `port` over these directories, logging at `warn`
    /// (request logs at `info` would dominate), with no `SESSION_MANAGER_*` setting of
    /// the caller's environment (a token would turn every request into a 401).
    pub fn service(&self, port: u16, sessions: &Path, personas: &Path) -> Command {
        let mut cmd = Command::new(self.bin.join("session-manager"));
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--sessions-dir")
            .arg(sessions)
            .arg("--personas-dir")
            .arg(personas)
            .env("RUST_LOG", "warn");
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SESSION_MANAGER_") {
                cmd.env_remove(key);
            }
        }
        cmd
    }

    /// Starts a server [`STARTS`] times (stopping all but the last), measuring each start;
    /// returns the running one and the start times.
    pub fn start_n(
        &self,
        label: &str,
        command: &dyn Fn(u16) -> Command,
    ) -> Result<(Server, Vec<Duration>)> {
        let mut times = Vec::new();
        for i in 0..STARTS {
            let log = self.logs.join(format!("{label}-{i}.log"));
            let (server, took) = Server::start(command, &log)?;
            times.push(took);
            if i + 1 == STARTS {
                eprintln!(
                    "bench: {label}: start-up {} ms",
                    times.iter().map(|t| ms(*t)).collect::<Vec<_>>().join(", ")
                );
                // "Idle right after start": let the runtime settle for a moment.
                std::thread::sleep(Duration::from_millis(100));
                return Ok((server, times));
            }
            let mut server = server;
            server.stop()?;
        }
        unreachable!("STARTS is at least 1")
    }
}

/// A server process on a loopback port; killed if dropped while running.
pub struct Server {
    child: Child,
    pub port: u16,
}

impl Server {
    /// Spawns `command(port)` on a free loopback port and measures the time from spawn to
    /// the first 200 on `/healthz`, polling in a tight loop (a refused connect costs a few
    /// microseconds; the loop sleeps 100 µs between tries).
    pub fn start(command: &dyn Fn(u16) -> Command, log: &Path) -> Result<(Server, Duration)> {
        let port = free_port()?;
        let mut cmd = command(port);
        cmd.stdin(Stdio::null())
            .stdout(fs::File::create(log.with_extension("out"))?)
            .stderr(fs::File::create(log)?);
        let spawned = Instant::now();
        let child = cmd.spawn()?;
        let mut server = Server { child, port };
        let deadline = spawned + START_TIMEOUT;
        // Bounded twice: by the deadline, and by a count no start needs.
        for _ in 0..10_000_000u64 {
            if let Some(status) = server.child.try_wait()? {
                let log = fs::read_to_string(log).unwrap_or_default();
                return Err(format!("the server exited during start-up ({status}):\n{log}").into());
            }
            if probe(port, "/healthz") == Some(200) {
                return Ok((server, spawned.elapsed()));
            }
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        Err(format!("no 200 on /healthz within {START_TIMEOUT:?}").into())
    }

    /// Resident memory (VmRSS) in KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        rss_kib(self.child.id())
    }

    /// Runs `load` while a thread reads the server's VmRSS every [`RSS_SAMPLE`]; what
    /// `load` returns, and the highest VmRSS seen (KiB). Sampled rather than VmHWM,
    /// which would include start-up and every load before this one.
    pub fn peak_rss_during<T>(&self, load: impl FnOnce() -> T) -> (T, u64) {
        let pid = self.child.id();
        let done = AtomicBool::new(false);
        let peak = AtomicU64::new(rss_kib(pid).unwrap_or(0));
        let result = std::thread::scope(|scope| {
            scope.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    if let Ok(kib) = rss_kib(pid) {
                        peak.fetch_max(kib, Ordering::Relaxed);
                    }
                    std::thread::sleep(RSS_SAMPLE);
                }
            });
            let result = load();
            done.store(true, Ordering::Relaxed);
            result
        });
        (result, peak.into_inner())
    }

    /// SIGTERM, then waits (bounded) for the exit; SIGKILL if it does not come.
    pub fn stop(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.child.kill()?;
        self.child.wait()?;
        Err("the server did not stop on SIGTERM; killed".into())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A process's resident memory (VmRSS) in KiB.
fn rss_kib(pid: u32) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmRSS in /proc/PID/status".into())
}

/// A port nobody listens on right now (bound on loopback, then released).
fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind(SocketAddrV4::new(LOOPBACK, 0))?;
    Ok(listener.local_addr()?.port())
}

/// One HTTP/1.1 GET on a fresh connection; the status code, or None if it cannot connect
/// or gets no status line.
pub fn probe(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(SocketAddrV4::new(LOOPBACK, port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.set_nodelay(true).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    let head = std::str::from_utf8(&head).ok()?;
    head.strip_prefix("HTTP/1.1 ")?.trim().parse().ok()
}
