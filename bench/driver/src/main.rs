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
//!
//! The modules, in the order a run uses them: [`run`] (the sequence of measurements),
//! [`machine`], [`server`], [`populate`], [`wrk`], [`floor`], [`metrics`], then
//! [`report`] and [`table`].

mod floor;
mod machine;
mod metrics;
mod populate;
mod report;
mod run;
mod server;
mod table;
mod wrk;

use std::fs;
use std::path::{Path, PathBuf};

type Result<T, E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

/// The command line of a benchmark run.
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
        populate::populate(Path::new(dir), n.parse()?, &fs::read(persona)?)?;
        populate::sync(Path::new(dir));
        return Ok(());
    }
    let opts = parse_args()?;
    let work = tempfile::Builder::new()
        .prefix("session-manager-bench-")
        .tempdir()?;
    let root = work.path().to_path_buf();
    let result = run::run(&opts, &root);
    if opts.keep {
        let kept = work.keep();
        eprintln!("bench: kept the work directory {}", kept.display());
    } else {
        eprintln!("bench: removing the work directory {}", root.display());
    }
    result
}
