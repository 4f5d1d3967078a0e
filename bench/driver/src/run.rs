//! One benchmark run: the order of the measurements (which is what keeps each ratio a
//! comparison of runs seconds apart), and what they produce for the report.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::feed::FeedRun;
use crate::floor::{FloorPair, prefill};
use crate::machine::Machine;
use crate::metrics::{explain, scrape};
use crate::populate::{cursor, populate, sync};
use crate::server::{Server, probe};
use crate::wrk::Wrk;
use crate::{Opts, Result, report};

/// Sessions the switch and usage scenarios cycle through (at most N).
const SWITCH_SESSIONS: usize = 1000;
/// The size of the page the page scenario asks for.
const PAGE: usize = 100;
/// The smallest N the change feed is measured at.
const FEED_FROM: usize = 10_000;

/// What every measurement of a run shares: where the private binaries, the logs and the
/// wrk scripts are, and how long each wrk and floor run lasts.
pub struct Bench {
    pub bin: PathBuf,
    pub logs: PathBuf,
    pub lua: PathBuf,
    pub duration: u32,
}

/// The ceiling's own figures: start-up and memory.
pub struct Ceiling {
    pub start: Duration,
    pub idle: u64,
    /// After every load of the run.
    pub loaded: u64,
}

/// The loads at one N > 0, each next to what it is compared with.
pub struct Scenarios {
    /// GET one session on a fresh N=100 service, right after `get` (for N > 100).
    pub get_n100: Option<Wrk>,
    /// Both runs of the ceiling at 32 connections, pooled: the reference.
    pub hello32: Wrk,
    /// The ceiling at 32 connections, right before the reads.
    pub hello32a: Wrk,
    /// The ceiling at 32 connections, right after get and the hot path.
    pub hello32b: Wrk,
    pub hello1: Wrk,
    pub get: Wrk,
    pub hot: Wrk,
    pub list1: Wrk,
    pub list32: Wrk,
    /// The service's peak resident memory during `list32` (KiB).
    pub list32_peak: u64,
    /// A page of [`PAGE`] from the middle of the paging order, at 1 connection.
    pub page: Wrk,
    pub create: Wrk,
    pub switch: Wrk,
    pub usage: Wrk,
    pub create_floor: FloorPair,
    pub switch_floor: FloorPair,
    pub replace_floor: FloorPair,
    /// The change feed (for N ≥ 10,000).
    pub feed: Option<FeedRun>,
}

/// Everything measured on the service at one N.
pub struct Run {
    pub n: usize,
    pub starts: Vec<Duration>,
    pub idle: u64,
    pub loaded: u64,
    pub scenarios: Option<Scenarios>,
}

pub fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

pub fn run(opts: &Opts, root: &Path) -> Result<()> {
    let began = Instant::now();
    // Private copies of the binaries: others may rebuild target/ during the run.
    let bin = root.join("bin");
    fs::create_dir(&bin)?;
    for name in ["session-manager", "hello", "floor"] {
        let from = opts.bin_dir.join(name);
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
            let (list32, list32_peak) = service.peak_rss_during(|| {
                b.wrk(&tag("list-32"), port, "/sessions", 32, "report.lua", &[])
            });
            let list32 = list32?;
            eprintln!(
                "bench: {}: peak RSS {:.1} MiB",
                tag("list-32"),
                list32_peak as f64 / 1024.0
            );
            let page_path = format!("/sessions?limit={PAGE}&after={}", cursor(n / 2)?);
            if probe(port, &page_path) != Some(200) {
                return Err(format!("GET {page_path} did not answer 200").into());
            }
            let page = b.wrk(&tag("page"), port, &page_path, 1, "report.lua", &[])?;
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
            let replace_floor = FloorPair {
                four: b.floor(&floor_dir, "replace", 4)?,
                one: b.floor(&floor_dir, "replace", 1)?,
            };
            let usage = b.wrk(
                &tag("usage"),
                port,
                "/",
                4,
                "usage.lua",
                &[&switch_count, "2", &format!("u{n}")],
            )?;
            let feed = if n >= FEED_FROM {
                Some(b.feed(&tag("feed"), port, n)?)
            } else {
                None
            };
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
                list32_peak,
                page,
                create,
                switch,
                usage,
                create_floor,
                switch_floor,
                replace_floor,
                feed,
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
    let table = report::report(&ceiling, &runs, opts.large);
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
