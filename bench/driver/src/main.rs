//! The benchmark's driver, run by `bench/run` (see `bench/RESULTS.md`).
//!
//! In one run, on one filesystem (a temp directory):
//! 1. the ceiling: `src/bin/hello.rs` (axum "hello", same runtime setup as the service):
//!    its start-up time and resident memory; it then stays up for the loads below;
//! 2. for each N (0, 100, 10,000, and 100,000 with `--large`): N sessions written
//!    straight to disk in the SPEC §1 format, the service's start-up time (spawn to the
//!    first 200 on `/healthz`, median of three starts), its resident memory right after
//!    start, the wrk scenarios, and its resident memory after them. The ceiling is
//!    loaded again right before the reads, the get scenario is repeated on a fresh
//!    N=100 service right after it (for N > 100), and the durable-write floor
//!    (`src/bin/floor.rs`, 4 threads and 1, in a directory of N entries on the same
//!    filesystem) runs right before the create and switch scenarios: on a shared
//!    machine, each ratio then compares runs seconds apart.
//!
//! Then it prints one table, every figure with its ratio to the ceiling or the floor
//! and, where the issue sets one, its target and PASS or FAIL.
//!
//! Usage: `bench --repo DIR --bin-dir DIR [--large] [--duration SECS] [--report FILE]
//! [--command TEXT] [--keep]`. `--bin-dir` is cargo's `target/release`: it holds
//! `session-manager` and this package's `hello` and `floor`.
//! Everything it binds or connects to is on 127.0.0.1; every loop is bounded.
//!
//! `bench --populate DIR N PERSONA_FILE` only writes the N sessions into DIR, as the run
//! does, for a look by hand or a profile.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};

type Result<T, E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

/// Starts measured per server and N; the median is reported.
const STARTS: usize = 3;
/// The longest a start may take before the run gives up.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest a stop may take (the service's grace period is 20 s) before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(25);
/// wrk's per-request timeout: a slower answer counts as a socket error.
const WRK_TIMEOUT: &str = "10s";
/// Sessions the switch scenario cycles through (at most N).
const SWITCH_SESSIONS: usize = 1000;
const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

struct Opts {
    repo: PathBuf,
    bin_dir: PathBuf,
    large: bool,
    duration: u32,
    report: Option<PathBuf>,
    command: String,
    keep: bool,
}

fn parse_args() -> Result<Opts> {
    let mut opts = Opts {
        repo: PathBuf::from("."),
        bin_dir: PathBuf::from("target/release"),
        large: false,
        duration: 5,
        report: None,
        command: "bench/run".to_owned(),
        keep: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--repo" => opts.repo = value()?.into(),
            "--bin-dir" => opts.bin_dir = value()?.into(),
            "--large" => opts.large = true,
            "--duration" => opts.duration = value()?.parse()?,
            "--report" => opts.report = Some(value()?.into()),
            "--command" => opts.command = value()?,
            "--keep" => opts.keep = true,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if !(1..=600).contains(&opts.duration) {
        return Err("--duration must be 1 to 600 seconds".into());
    }
    Ok(opts)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, dir, n, persona] = args.as_slice()
        && flag == "--populate"
    {
        // A store to look at by hand (or to profile the service on).
        populate(Path::new(dir), n.parse()?, &fs::read(persona)?)?;
        sync(Path::new(dir));
        return Ok(());
    }
    let opts = parse_args()?;
    let work = tempfile::Builder::new()
        .prefix("session-manager-bench-")
        .tempdir()?;
    let root = work.path().to_path_buf();
    let result = run(&opts, &root);
    if opts.keep {
        let kept = work.keep();
        eprintln!("bench: kept the work directory {}", kept.display());
    } else {
        eprintln!("bench: removing the work directory {}", root.display());
    }
    result
}

fn run(opts: &Opts, root: &Path) -> Result<()> {
    let began = Instant::now();
    // Private copies of the binaries: others may rebuild target/ during the run.
    let bin = root.join("bin");
    fs::create_dir(&bin)?;
    for (name, from) in [
        ("session-manager", opts.bin_dir.join("session-manager")),
        ("hello", opts.bin_dir.join("hello")),
        ("floor", opts.bin_dir.join("floor")),
    ] {
        fs::copy(&from, bin.join(name)).map_err(|e| format!("{}: {e}", from.display()))?;
    }
    let logs = root.join("logs");
    fs::create_dir(&logs)?;
    let lua = fs::canonicalize(opts.repo.join("bench/wrk"))?;
    let persona = fs::read(opts.repo.join("personas/default.json"))?;
    let personas = root.join("personas");
    fs::create_dir(&personas)?;
    for entry in fs::read_dir(opts.repo.join("personas"))? {
        let entry = entry?;
        if entry.path().extension().is_some_and(|e| e == "json") {
            fs::copy(entry.path(), personas.join(entry.file_name()))?;
        }
    }
    let machine = Machine::probe(root);
    eprintln!("bench: {}", machine.one_line());
    let b = Bench {
        bin,
        logs,
        lua,
        duration: opts.duration,
    };

    // 1. The ceiling: started once (its start-up and idle memory measured here), kept
    // running idle, and loaded right before the service's reads at each N, so that
    // each ratio compares two runs minutes apart at most.
    eprintln!("bench: ceiling (bench/driver/src/bin/hello.rs)");
    let hello_cmd = |port: u16| {
        let mut cmd = Command::new(b.bin.join("hello"));
        cmd.arg(format!("127.0.0.1:{port}"));
        cmd
    };
    let (mut hello, hello_starts) = b.start_n("hello", &hello_cmd)?;
    let hello_idle = hello.rss_kib()?;

    // 2. The service at each N; the durable-write floor is measured right before the
    // service's writes (the disk is the noisiest part of a shared machine), in a
    // directory holding as many entries as the sessions directory.
    let floor_dir = root.join("floor");
    let mut sizes = vec![0, 100, 10_000];
    if opts.large {
        sizes.push(100_000);
    }
    let mut runs = Vec::new();
    let mut notes = Vec::new();
    for &n in &sizes {
        let store = root.join(format!("n{n}"));
        let sessions = store.join("sessions");
        eprintln!("bench: N={n}: populating");
        let took = Instant::now();
        populate(&sessions, n, &persona)?;
        sync(&sessions);
        eprintln!(
            "bench: N={n}: populated in {:.1} s",
            took.elapsed().as_secs_f64()
        );
        let service_cmd = |port: u16| b.service(port, &sessions, &personas);
        let (mut service, starts) = b.start_n(&format!("service-n{n}"), &service_cmd)?;
        let idle = service.rss_kib()?;
        let mut scenarios = None;
        if n > 0 {
            let port = service.port;
            let tag = |s: &str| format!("n{n}-{s}");
            let one = format!("/sessions/s{:05}", n / 2);
            let switch_count = n.min(SWITCH_SESSIONS).to_string();
            // The ceiling brackets the 32-connection reads it is compared with (its
            // throughput swings ±15% from run to run on a shared machine).
            let hello32a = b.wrk(&tag("hello-32a"), hello.port, "/", 32, "report.lua", &[])?;
            let get = b.wrk(&tag("get"), port, &one, 32, "report.lua", &[])?;
            // A fresh N=100 service measured right after, so that "within 10% of
            // N=100" compares two runs seconds apart, not minutes.
            let get_n100 = if n > 100 {
                let small = root.join("reference-n100");
                populate(&small.join("sessions"), 100, &persona)?;
                sync(&small);
                let small_cmd = |port: u16| b.service(port, &small.join("sessions"), &personas);
                let log = b.logs.join(format!("reference-for-n{n}.log"));
                let (mut reference, _) = Server::start(&small_cmd, &log)?;
                let get = b.wrk(
                    &tag("get-on-n100"),
                    reference.port,
                    "/sessions/s00050",
                    32,
                    "report.lua",
                    &[],
                )?;
                reference.stop()?;
                fs::remove_dir_all(&small)?;
                Some(get)
            } else {
                None
            };
            let hot = b.wrk(&tag("hot"), port, "/", 32, "hot.lua", &["s00000"])?;
            let hello32b = b.wrk(&tag("hello-32b"), hello.port, "/", 32, "report.lua", &[])?;
            let hello1 = b.wrk(&tag("hello-1"), hello.port, "/", 1, "report.lua", &[])?;
            let before = scrape(port);
            let list1 = b.wrk(&tag("list-1"), port, "/sessions", 1, "report.lua", &[])?;
            notes.extend(explain(
                n,
                "list all, 1 conn",
                &list1,
                &before,
                &scrape(port),
                None,
            ));
            let list32 = b.wrk(&tag("list-32"), port, "/sessions", 32, "report.lua", &[])?;
            prefill(&floor_dir, n)?;
            let create_floor = FloorPair {
                four: b.floor(&floor_dir, "create", 4)?,
                one: b.floor(&floor_dir, "create", 1)?,
            };
            let before = scrape(port);
            let create = b.wrk(
                &tag("create"),
                port,
                "/",
                4,
                "create.lua",
                &[&format!("b{n}")],
            )?;
            notes.extend(explain(
                n,
                "create, 4 conns",
                &create,
                &before,
                &scrape(port),
                Some("create"),
            ));
            let switch_floor = FloorPair {
                four: b.floor(&floor_dir, "switch", 4)?,
                one: b.floor(&floor_dir, "switch", 1)?,
            };
            let before = scrape(port);
            let switch = b.wrk(
                &tag("switch"),
                port,
                "/",
                4,
                "switch.lua",
                &[&switch_count, "2"],
            )?;
            notes.extend(explain(
                n,
                "switch, 4 conns",
                &switch,
                &before,
                &scrape(port),
                Some("switch"),
            ));
            scenarios = Some(Scenarios {
                get_n100,
                hello32: Wrk::pool(&hello32a, &hello32b),
                hello32a,
                hello32b,
                hello1,
                get,
                hot,
                list1,
                list32,
                create,
                switch,
                create_floor,
                switch_floor,
            });
        }
        std::thread::sleep(Duration::from_millis(200));
        let loaded = service.rss_kib()?;
        service.stop()?;
        // Removed only now: the unlinks would otherwise ride on the fsyncs measured.
        fs::remove_dir_all(&store)?;
        if floor_dir.exists() {
            fs::remove_dir_all(&floor_dir)?;
        }
        runs.push(Run {
            n,
            starts,
            idle,
            loaded,
            scenarios,
        });
    }

    let ceiling = Ceiling {
        start: median(&hello_starts),
        idle: hello_idle,
        loaded: hello.rss_kib()?,
    };
    hello.stop()?;
    let table = report(&ceiling, &runs, opts.large);
    let mut out = String::new();
    writeln!(out, "command: `{}`", opts.command)?;
    writeln!(out)?;
    writeln!(out, "{}", machine.markdown())?;
    writeln!(out, "{}", table.render())?;
    writeln!(out, "{}", table.summary())?;
    writeln!(
        out,
        "measured in {:.0} s (wrk and floor runs of {} s each)\n",
        began.elapsed().as_secs_f64(),
        opts.duration
    )?;
    if !notes.is_empty() {
        writeln!(
            out,
            "where the time goes (deltas of the service's /metrics over each run):"
        )?;
        for note in &notes {
            writeln!(out, "- {note}")?;
        }
    }
    println!("{out}");
    if let Some(path) = &opts.report {
        fs::write(path, &out)?;
        eprintln!("bench: report written to {}", path.display());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Running things.

struct Bench {
    bin: PathBuf,
    logs: PathBuf,
    lua: PathBuf,
    duration: u32,
}

impl Bench {
    /// The service's command line on `port` over these directories, logging at `warn`
    /// (request logs at `info` would dominate), with no `SESSION_MANAGER_*` setting of
    /// the caller's environment (a token would turn every request into a 401).
    fn service(&self, port: u16, sessions: &Path, personas: &Path) -> Command {
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
    fn start_n(
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

    fn wrk(
        &self,
        label: &str,
        port: u16,
        path: &str,
        conns: u32,
        script: &str,
        args: &[&str],
    ) -> Result<Wrk> {
        let threads = conns.min(2);
        let mut cmd = Command::new("wrk");
        cmd.arg(format!("-t{threads}"))
            .arg(format!("-c{conns}"))
            .arg(format!("-d{}s", self.duration))
            .arg("--timeout")
            .arg(WRK_TIMEOUT)
            .arg("--latency")
            .arg("-s")
            .arg(self.lua.join(script))
            .arg(format!("http://127.0.0.1:{port}{path}"));
        if !args.is_empty() {
            cmd.arg("--").args(args);
        }
        let output = cmd.stderr(Stdio::inherit()).output()?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        fs::write(self.logs.join(format!("wrk-{label}.txt")), &text)?;
        if !output.status.success() {
            return Err(format!("wrk {label} failed ({}):\n{text}", output.status).into());
        }
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("BENCH "))
            .ok_or_else(|| format!("wrk {label}: no BENCH line in:\n{text}"))?;
        let wrk = Wrk::parse(line)?;
        eprintln!(
            "bench: {label}: {:.0} req/s, p50 {} ms, p99 {} ms, non-2xx {}, socket errors {}{}",
            wrk.rps(),
            ms_us(wrk.p50_us),
            ms_us(wrk.p99_us),
            wrk.non2xx,
            wrk.socket_errors(),
            if wrk.unexpected > 0 {
                format!(", unexpected answers {}", wrk.unexpected)
            } else {
                String::new()
            }
        );
        Ok(wrk)
    }

    fn floor(&self, dir: &Path, op: &str, threads: u32) -> Result<FloorRun> {
        let output = Command::new(self.bin.join("floor"))
            .arg(dir)
            .arg(op)
            .arg(threads.to_string())
            .arg(self.duration.to_string())
            .stderr(Stdio::inherit())
            .output()?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            return Err(format!("floor {op} {threads} failed ({}): {text}", output.status).into());
        }
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("FLOOR "))
            .ok_or_else(|| format!("floor: no FLOOR line in {text:?}"))?;
        let fields = fields(line);
        let run = FloorRun {
            ops_per_sec: field(&fields, "ops_per_sec")?,
            p50_us: field(&fields, "p50_us")?,
            p99_us: field(&fields, "p99_us")?,
        };
        eprintln!(
            "bench: floor {op} x{threads}: {:.0} ops/s, p50 {} ms, p99 {} ms",
            run.ops_per_sec,
            ms_us(run.p50_us),
            ms_us(run.p99_us)
        );
        Ok(run)
    }
}

/// A server process on a loopback port; killed if dropped while running.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// Spawns `command(port)` on a free loopback port and measures the time from spawn to
    /// the first 200 on `/healthz`, polling in a tight loop (a refused connect costs a few
    /// microseconds; the loop sleeps 100 µs between tries).
    fn start(command: &dyn Fn(u16) -> Command, log: &Path) -> Result<(Server, Duration)> {
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
    fn rss_kib(&self) -> Result<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| "no VmRSS in /proc/PID/status".into())
    }

    /// SIGTERM, then waits (bounded) for the exit; SIGKILL if it does not come.
    fn stop(&mut self) -> Result<()> {
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

/// A port nobody listens on right now (bound on loopback, then released).
fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind(SocketAddrV4::new(LOOPBACK, 0))?;
    Ok(listener.local_addr()?.port())
}

/// One HTTP/1.1 GET on a fresh connection; the status code, or None if it cannot connect
/// or gets no status line.
fn probe(port: u16, path: &str) -> Option<u16> {
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

/// Writes N sessions `s00000..` straight to disk as the original module would have:
/// `metadata.json` (`json.dumps(indent=2)` style, RFC 3339 timestamps with microseconds
/// and `+00:00`, every `last_active` distinct) and `persona.json` (the default persona).
/// `s00000` is the current session (`active`, and named by `.current.json`); every tenth
/// session is `suspended` with a pid, the rest `idle`.
fn populate(dir: &Path, n: usize, persona: &[u8]) -> Result<()> {
    fs::create_dir_all(dir)?;
    let base: DateTime<Utc> = "2026-01-01T00:00:00Z".parse()?;
    let current = if n > 0 { "\"s00000\"" } else { "null" };
    fs::write(
        dir.join(".current.json"),
        format!("{{\n  \"name\": {current}\n}}\n"),
    )?;
    let write = |i: usize| -> io::Result<()> {
        let name = format!("s{i:05}");
        let created = base + TimeDelta::seconds(i as i64);
        // Most recently active first is s00000; each one a distinct instant.
        let last_active = base
            + TimeDelta::days(30)
            + TimeDelta::seconds((n - i) as i64)
            + TimeDelta::microseconds((i % 1_000_000) as i64);
        let (status, pid) = match i {
            0 => ("active", "4242".to_owned()),
            i if i % 10 == 1 => ("suspended", (10_000 + i).to_string()),
            _ => ("idle", "null".to_owned()),
        };
        let session = dir.join(&name);
        fs::create_dir(&session)?;
        let metadata = format!(
            "{{\n  \"name\": \"{name}\",\n  \"created\": \"{}\",\n  \"last_active\": \"{}\",\n  \
             \"persona\": null,\n  \"pid\": {pid},\n  \"status\": \"{status}\"\n}}",
            rfc3339(created),
            rfc3339(last_active)
        );
        fs::write(session.join("metadata.json"), metadata)?;
        fs::write(session.join("persona.json"), persona)
    };
    // Two writers (the machine has two cores); each takes every other session.
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|k| {
                let write = &write;
                scope.spawn(move || (k..n).step_by(2).try_for_each(write))
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .unwrap_or_else(|_| Err(io::Error::other("panicked")))
        })
    })?;
    Ok(())
}

/// The floor's stand-in for the sessions directory: `n` entries (empty directories: the
/// parent's size is what can matter to the floor's operations), flushed.
fn prefill(dir: &Path, n: usize) -> Result<()> {
    fs::create_dir(dir)?;
    for i in 0..n {
        fs::create_dir(dir.join(format!("s{i:05}")))?;
    }
    sync(dir);
    Ok(())
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// Flushes what populate wrote, so the writes measured after it do not pay for it.
fn sync(dir: &Path) {
    let synced = Command::new("sync").arg("-f").arg(dir).status();
    if !synced.is_ok_and(|s| s.success()) {
        let _ = Command::new("sync").status();
    }
}

/// The service's Prometheus metrics, `name{labels}` to value; empty if it has none.
fn scrape(port: u16) -> Vec<(String, f64)> {
    let Ok(mut stream) = TcpStream::connect(SocketAddrV4::new(LOOPBACK, port)) else {
        return Vec::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request =
        format!("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    if stream.write_all(request.as_bytes()).is_err() || stream.read_to_string(&mut text).is_err() {
        return Vec::new();
    }
    if !text.starts_with("HTTP/1.1 200") {
        return Vec::new();
    }
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The sum of the series whose key starts with `name` and holds every one of `labels`.
fn metric(metrics: &[(String, f64)], name: &str, labels: &[&str]) -> Option<f64> {
    let mut found = None;
    for (key, value) in metrics {
        let (series, rest) = key.split_once('{').unwrap_or((key, ""));
        if series == name && labels.iter().all(|l| rest.contains(l)) {
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}

/// A sentence on where a scenario's time went, from the service's own metrics (best
/// effort: nothing if the metrics are missing or renamed).
fn explain(
    n: usize,
    what: &str,
    w: &Wrk,
    before: &[(String, f64)],
    after: &[(String, f64)],
    operation: Option<&str>,
) -> Option<String> {
    let delta = |name: &str, labels: &[&str]| -> Option<f64> {
        Some(metric(after, name, labels)? - metric(before, name, labels).unwrap_or(0.0))
    };
    let mut text = format!(
        "N={n} {what}: {:.0} req/s, {:.1} KiB per answer",
        w.rps(),
        w.bytes as f64 / w.requests.max(1) as f64 / 1024.0
    );
    let wall = w.duration_us as f64 / 1e6;
    let Some(op) = operation else {
        let sum = delta(
            "session_manager_http_request_duration_seconds_sum",
            &[r#"route="/sessions""#, r#"method="GET""#],
        )?;
        let count = delta(
            "session_manager_http_request_duration_seconds_count",
            &[r#"route="/sessions""#, r#"method="GET""#],
        )?;
        write!(
            text,
            "; handler mean {:.2} ms (service side), so {:.2} ms per request is the network, wrk and the client reading",
            sum / count.max(1.0) * 1e3,
            (wall / w.requests.max(1) as f64 - sum / count.max(1.0)) * 1e3,
        )
        .ok();
        return Some(text);
    };
    let label = format!("operation=\"{op}\"");
    let store_sum = delta(
        "session_manager_store_operation_duration_seconds_sum",
        &[&label],
    )?;
    let store_count = delta(
        "session_manager_store_operation_duration_seconds_count",
        &[&label],
    )?;
    let fsync_sum = delta("session_manager_fsync_duration_seconds_sum", &[])?;
    let fsync_count = delta("session_manager_fsync_duration_seconds_count", &[])?;
    let ops = store_count.max(1.0);
    write!(
        text,
        "; {store_count:.0} store ops, each {:.2} ms under the writer lock (busy {:.0}% of the run), \
         of which {:.1} fsyncs taking {:.2} ms; the rest of the {:.1} ms p50 latency is \
         queueing for the lock, the blocking pool and HTTP",
        store_sum / ops * 1e3,
        store_sum / wall * 100.0,
        fsync_count / ops,
        fsync_sum / ops * 1e3,
        w.p50_us as f64 / 1e3,
    )
    .ok();
    Some(text)
}

// ---------------------------------------------------------------------------------------
// Measurements.

#[derive(Debug, Clone)]
struct Wrk {
    requests: u64,
    bytes: u64,
    duration_us: u64,
    p50_us: u64,
    p99_us: u64,
    non2xx: u64,
    connect: u64,
    read: u64,
    write: u64,
    timeout: u64,
    unexpected: u64,
}

impl Wrk {
    fn parse(line: &str) -> Result<Wrk> {
        let f = fields(line);
        Ok(Wrk {
            requests: field(&f, "requests")?,
            bytes: field(&f, "bytes")?,
            duration_us: field(&f, "duration_us")?,
            p50_us: field(&f, "p50_us")?,
            p99_us: field(&f, "p99_us")?,
            non2xx: field(&f, "non2xx")?,
            connect: field(&f, "connect")?,
            read: field(&f, "read")?,
            write: field(&f, "write")?,
            timeout: field(&f, "timeout")?,
            unexpected: field(&f, "unexpected")?,
        })
    }

    /// Two runs as one: requests over total time; percentiles averaged (an
    /// approximation: wrk gives no histogram to merge); errors added up.
    fn pool(a: &Wrk, b: &Wrk) -> Wrk {
        Wrk {
            requests: a.requests + b.requests,
            bytes: a.bytes + b.bytes,
            duration_us: a.duration_us + b.duration_us,
            p50_us: (a.p50_us + b.p50_us) / 2,
            p99_us: (a.p99_us + b.p99_us) / 2,
            non2xx: a.non2xx + b.non2xx,
            connect: a.connect + b.connect,
            read: a.read + b.read,
            write: a.write + b.write,
            timeout: a.timeout + b.timeout,
            unexpected: a.unexpected + b.unexpected,
        }
    }

    fn rps(&self) -> f64 {
        self.requests as f64 / (self.duration_us.max(1) as f64 / 1e6)
    }

    fn socket_errors(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout
    }

    fn clean(&self) -> bool {
        self.non2xx == 0 && self.socket_errors() == 0
    }
}

fn fields(line: &str) -> Vec<(&str, &str)> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .collect()
}

fn field<T: std::str::FromStr>(fields: &[(&str, &str)], key: &str) -> Result<T> {
    fields
        .iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
        .ok_or_else(|| format!("missing or bad field {key}").into())
}

struct FloorRun {
    ops_per_sec: f64,
    p50_us: u64,
    p99_us: u64,
}

struct Ceiling {
    start: Duration,
    idle: u64,
    /// After every load of the run.
    loaded: u64,
}

/// The floor of one write, on 4 threads and on 1.
struct FloorPair {
    four: FloorRun,
    one: FloorRun,
}

struct Scenarios {
    /// GET one session on a fresh N=100 service, right after `get` (for N > 100).
    get_n100: Option<Wrk>,
    /// The ceiling, right before the reads.
    /// Both runs of the ceiling at 32 connections, pooled: the reference.
    hello32: Wrk,
    hello32a: Wrk,
    hello32b: Wrk,
    hello1: Wrk,
    get: Wrk,
    hot: Wrk,
    list1: Wrk,
    list32: Wrk,
    create: Wrk,
    switch: Wrk,
    create_floor: FloorPair,
    switch_floor: FloorPair,
}

struct Run {
    n: usize,
    starts: Vec<Duration>,
    idle: u64,
    loaded: u64,
    scenarios: Option<Scenarios>,
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

// ---------------------------------------------------------------------------------------
// The table.

#[derive(Clone, Copy, PartialEq)]
enum Verdict {
    Pass,
    Fail,
    /// No target for this figure.
    None,
}

struct Row {
    n: String,
    what: String,
    conns: String,
    figure: String,
    p50: String,
    p99: String,
    ratio: String,
    errors: String,
    target: String,
    verdict: Verdict,
}

struct Table {
    rows: Vec<Row>,
    not_run: Vec<String>,
}

/// A target: its text, and whether it holds.
struct Check(String, bool);

fn report(ceiling: &Ceiling, runs: &[Run], large: bool) -> Table {
    let mut rows = Vec::new();
    let hello = "hello (ceiling)";
    rows.push(plain_row(
        "—",
        &format!("{hello} start-up"),
        format!("{} ms", ms(ceiling.start)),
        "1.00 (ceiling)".into(),
        vec![],
    ));
    rows.push(plain_row(
        "—",
        &format!("{hello} RSS idle"),
        mib(ceiling.idle),
        "1.00 (ceiling)".into(),
        vec![],
    ));
    rows.push(plain_row(
        "—",
        &format!("{hello} RSS at the end (after all its loads)"),
        mib(ceiling.loaded),
        "1.00 (ceiling)".into(),
        vec![],
    ));
    for run in runs {
        let n = run.n;
        let label = n.to_string();
        let start = median(&run.starts);
        let mut checks = Vec::new();
        let limit = match n {
            0 => Some(Duration::from_millis(10)),
            10_000 => Some(Duration::from_millis(150)),
            100_000 => Some(Duration::from_millis(1500)),
            _ => None,
        };
        if let Some(limit) = limit {
            checks.push(Check(format!("≤ {} ms", limit.as_millis()), start <= limit));
        }
        let spread = {
            let mut s = run.starts.clone();
            s.sort();
            format!("{}–{}", ms(s[0]), ms(s[s.len() - 1]))
        };
        rows.push(plain_row(
            &label,
            &format!("start-up (median of {STARTS}: {spread} ms)"),
            format!("{} ms", ms(start)),
            format!(
                "{} hello",
                times(start.as_secs_f64() / ceiling.start.as_secs_f64())
            ),
            checks,
        ));
        let mut checks = Vec::new();
        if n == 0 {
            checks.push(Check("≤ 8 MiB".into(), run.idle <= 8 * 1024));
        }
        rows.push(plain_row(
            &label,
            "RSS idle after start",
            mib(run.idle),
            format!("{} hello", times(run.idle as f64 / ceiling.idle as f64)),
            checks,
        ));
        if let Some(s) = &run.scenarios {
            let vs_hello = |w: &Wrk, h: &Wrk| {
                format!(
                    "{} hello req/s; p99 {} hello",
                    times(w.rps() / h.rps()),
                    times(w.p99_us as f64 / h.p99_us.max(1) as f64)
                )
            };
            let mut checks = Vec::new();
            if n == 10_000 {
                let h = &s.hello32;
                checks.push(Check(
                    "≥ 0.60× hello req/s".into(),
                    s.get.rps() >= 0.6 * h.rps(),
                ));
                checks.push(Check("p99 ≤ 2× hello".into(), s.get.p99_us <= 2 * h.p99_us));
                if let Some(small) = &s.get_n100 {
                    let ratio = s.get.rps() / small.rps();
                    checks.push(Check(
                        format!("≥ 0.90× N=100 req/s (is {ratio:.2}×)"),
                        ratio >= 0.9,
                    ));
                }
            }
            for (what, conns, w, ratio) in [
                (
                    "hello (ceiling) GET /, run 1",
                    32,
                    &s.hello32a,
                    "before the reads",
                ),
                (
                    "hello (ceiling) GET /, run 2",
                    32,
                    &s.hello32b,
                    "after get and hot path",
                ),
                (
                    "hello (ceiling) GET /, runs 1+2",
                    32,
                    &s.hello32,
                    "1.00 (ceiling)",
                ),
                ("hello (ceiling) GET /", 1, &s.hello1, "1.00 (ceiling)"),
            ] {
                rows.push(wrk_row(&label, what, conns, w, ratio.into(), vec![]));
            }
            rows.push(wrk_row(
                &label,
                "GET /sessions/{name}",
                32,
                &s.get,
                vs_hello(&s.get, &s.hello32),
                checks,
            ));
            if let Some(small) = &s.get_n100 {
                rows.push(wrk_row(
                    &label,
                    "GET /sessions/{name}, fresh N=100 service, right after",
                    32,
                    small,
                    vs_hello(small, &s.hello32),
                    vec![],
                ));
            }
            rows.push(wrk_row(
                &label,
                "GET /sessions/active + …/persona",
                32,
                &s.hot,
                vs_hello(&s.hot, &s.hello32),
                vec![],
            ));
            let mut checks = Vec::new();
            match n {
                10_000 => checks.push(Check("p50 ≤ 10 ms".into(), s.list1.p50_us <= 10_000)),
                100_000 => checks.push(Check("p50 ≤ 100 ms".into(), s.list1.p50_us <= 100_000)),
                _ => {}
            }
            rows.push(wrk_row(
                &label,
                "GET /sessions",
                1,
                &s.list1,
                vs_hello(&s.list1, &s.hello1),
                checks,
            ));
            rows.push(wrk_row(
                &label,
                "GET /sessions",
                32,
                &s.list32,
                vs_hello(&s.list32, &s.hello32),
                vec![],
            ));
            for (op, what, w, floor, expect) in [
                (
                    "create",
                    "POST /sessions (create)",
                    &s.create,
                    &s.create_floor,
                    "every answer 201",
                ),
                (
                    "switch",
                    "PUT /sessions/active (switch)",
                    &s.switch,
                    &s.switch_floor,
                    "every switch changed",
                ),
            ] {
                rows.push(floor_row(&label, op, 4, &floor.four, "1.00 (floor)".into()));
                rows.push(floor_row(
                    &label,
                    op,
                    1,
                    &floor.one,
                    format!(
                        "{} floor x4",
                        times(floor.one.ops_per_sec / floor.four.ops_per_sec)
                    ),
                ));
                let ratio = w.rps() / floor.four.ops_per_sec;
                let checks = vec![
                    Check("≥ 0.70× floor x4".into(), ratio >= 0.7),
                    Check(expect.into(), w.unexpected == 0),
                ];
                rows.push(wrk_row(
                    &label,
                    what,
                    4,
                    w,
                    format!(
                        "{} floor x4; {} floor x1",
                        times(ratio),
                        times(w.rps() / floor.one.ops_per_sec)
                    ),
                    checks,
                ));
            }
        }
        let mut checks = Vec::new();
        if n == 10_000 {
            checks.push(Check("≤ 24 MiB".into(), run.loaded <= 24 * 1024));
        }
        rows.push(plain_row(
            &label,
            if run.scenarios.is_some() {
                "RSS after load"
            } else {
                "RSS after start (no load)"
            },
            mib(run.loaded),
            format!(
                "{} hello after load",
                times(run.loaded as f64 / ceiling.loaded as f64)
            ),
            checks,
        ));
    }
    let mut not_run = Vec::new();
    if !large {
        not_run.push(
            "N=100000 (start-up ≤ 1.5 s, list all 1 conn p50 ≤ 100 ms): not run; \
             `bench/run --large` or BENCH_LARGE=1"
                .to_owned(),
        );
    }
    Table { rows, not_run }
}

fn floor_row(n: &str, op: &str, threads: u32, run: &FloorRun, ratio: String) -> Row {
    Row {
        n: n.into(),
        what: format!("durable {op} floor (bench/driver/src/bin/floor.rs)"),
        conns: format!("{threads} thr"),
        figure: format!("{:.0} ops/s", run.ops_per_sec),
        p50: format!("{} ms", ms_us(run.p50_us)),
        p99: format!("{} ms", ms_us(run.p99_us)),
        ratio,
        errors: "—".into(),
        target: String::new(),
        verdict: Verdict::None,
    }
}

fn plain_row(n: &str, what: &str, figure: String, ratio: String, checks: Vec<Check>) -> Row {
    let (target, verdict) = judge(&checks);
    Row {
        n: n.into(),
        what: what.into(),
        conns: "—".into(),
        figure,
        p50: "—".into(),
        p99: "—".into(),
        ratio,
        errors: "—".into(),
        target,
        verdict,
    }
}

fn wrk_row(n: &str, what: &str, conns: u32, w: &Wrk, ratio: String, mut checks: Vec<Check>) -> Row {
    checks.push(Check("0 errors".into(), w.clean()));
    let (target, verdict) = judge(&checks);
    let mut errors = format!("{} / {}", w.non2xx, w.socket_errors());
    if w.unexpected > 0 {
        write!(errors, " (+{} unexpected)", w.unexpected).ok();
    }
    Row {
        n: n.into(),
        what: what.into(),
        conns: conns.to_string(),
        figure: format!("{:.0} req/s", w.rps()),
        p50: format!("{} ms", ms_us(w.p50_us)),
        p99: format!("{} ms", ms_us(w.p99_us)),
        ratio,
        errors,
        target,
        verdict,
    }
}

/// The row's target text (each failing check marked) and its verdict.
fn judge(checks: &[Check]) -> (String, Verdict) {
    if checks.is_empty() {
        return (String::new(), Verdict::None);
    }
    let text = checks
        .iter()
        .map(|Check(t, ok)| {
            if *ok {
                t.clone()
            } else {
                format!("**{t}** ✗")
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    let verdict = if checks.iter().all(|c| c.1) {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    (text, verdict)
}

impl Table {
    fn render(&self) -> String {
        let header = [
            "N",
            "measure",
            "conns",
            "figure",
            "p50",
            "p99",
            "vs ceiling / floor",
            "non-2xx / socket err",
            "target",
            "result",
        ];
        let cells: Vec<[String; 10]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.n.clone(),
                    r.what.clone(),
                    r.conns.clone(),
                    r.figure.clone(),
                    r.p50.clone(),
                    r.p99.clone(),
                    r.ratio.clone(),
                    r.errors.clone(),
                    r.target.clone(),
                    match r.verdict {
                        Verdict::Pass => "PASS".into(),
                        Verdict::Fail => "FAIL".into(),
                        Verdict::None => "—".into(),
                    },
                ]
            })
            .collect();
        let width = |i: usize| {
            cells
                .iter()
                .map(|c| c[i].chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..header.len()).map(width).collect();
        let line = |cols: &[String]| {
            let mut s = String::from("|");
            for (c, w) in cols.iter().zip(&widths) {
                let pad = w - c.chars().count();
                write!(s, " {c}{} |", " ".repeat(pad)).ok();
            }
            s
        };
        let mut out = String::new();
        out.push_str(&line(&header.map(String::from)));
        out.push('\n');
        out.push_str(&line(
            &widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>(),
        ));
        out.push('\n');
        for c in &cells {
            out.push_str(&line(c));
            out.push('\n');
        }
        out
    }

    fn summary(&self) -> String {
        let pass = self
            .rows
            .iter()
            .filter(|r| r.verdict == Verdict::Pass)
            .count();
        let failed: Vec<String> = self
            .rows
            .iter()
            .filter(|r| r.verdict == Verdict::Fail)
            .map(|r| format!("N={} {} ({})", r.n, r.what, r.target))
            .collect();
        let mut out = format!("targets: {pass} rows pass, {} fail\n", failed.len());
        for f in &failed {
            writeln!(out, "- FAIL {f}").ok();
        }
        for n in &self.not_run {
            writeln!(out, "- {n}").ok();
        }
        out
    }
}

fn ms(d: Duration) -> String {
    ms_us(d.as_micros() as u64)
}

/// Milliseconds from microseconds: three decimals under 10 ms, one above.
fn ms_us(us: u64) -> String {
    let ms = us as f64 / 1000.0;
    if ms < 10.0 {
        format!("{ms:.3}")
    } else {
        format!("{ms:.1}")
    }
}

/// A ratio, with enough digits to tell small ones apart.
fn times(ratio: f64) -> String {
    if ratio >= 100.0 {
        format!("{ratio:.0}×")
    } else if ratio >= 10.0 {
        format!("{ratio:.1}×")
    } else if ratio >= 0.1 {
        format!("{ratio:.2}×")
    } else {
        format!("{ratio:.4}×")
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

// ---------------------------------------------------------------------------------------
// The machine.

struct Machine {
    nproc: usize,
    cpu: String,
    memory: String,
    fs: String,
    kernel: String,
    wrk: String,
    rustc: String,
    date: String,
    dir: PathBuf,
}

impl Machine {
    fn probe(dir: &Path) -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0))
            .unwrap_or_else(|| "unknown".into());
        let first_line = |cmd: &str, arg: &str| {
            Command::new(cmd)
                .arg(arg)
                .output()
                .ok()
                .map(|o| {
                    let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
                    text.push_str(&String::from_utf8_lossy(&o.stderr));
                    text.lines().next().unwrap_or("").trim().to_owned()
                })
                .unwrap_or_else(|| "unknown".into())
        };
        Machine {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            memory,
            fs: fs_type(dir).unwrap_or_else(|| "unknown".into()),
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "unknown".into()),
            wrk: first_line("wrk", "-v"),
            rustc: first_line("rustc", "--version"),
            date: Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            dir: dir.to_path_buf(),
        }
    }

    fn one_line(&self) -> String {
        format!(
            "{} cpus ({}), {} fs at {}, kernel {}",
            self.nproc,
            self.cpu,
            self.fs,
            self.dir.display(),
            self.kernel
        )
    }

    fn markdown(&self) -> String {
        format!(
            "| machine | |\n|---|---|\n| nproc | {} |\n| CPU | {} |\n| memory | {} |\n\
             | temp dir filesystem | {} ({}) |\n| kernel | {} |\n| wrk | {} |\n| rustc | {} |\n\
             | date | {} |\n",
            self.nproc,
            self.cpu,
            self.memory,
            self.fs,
            self.dir.display(),
            self.kernel,
            self.wrk,
            self.rustc,
            self.date
        )
    }
}

/// The filesystem type of the mount that holds `dir`, from /proc/self/mountinfo (the
/// longest mount point that is a prefix of its canonical path).
fn fs_type(dir: &Path) -> Option<String> {
    let dir = fs::canonicalize(dir).ok()?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut best: Option<(usize, String)> = None;
    for line in mountinfo.lines() {
        let (left, right) = line.split_once(" - ")?;
        let mount_point = left.split(' ').nth(4)?.replace("\\040", " ");
        let mut right = right.split(' ');
        let fs_type = right.next()?;
        let source = right.next().unwrap_or("");
        if dir.starts_with(&mount_point)
            && best
                .as_ref()
                .is_none_or(|(len, _)| mount_point.len() >= *len)
        {
            best = Some((mount_point.len(), format!("{fs_type} on {source}")));
        }
    }
    best.map(|(_, t)| t)
}
