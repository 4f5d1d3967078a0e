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
//!    filesystem) runs right before the create, switch and usage scenarios: on a shared
//!    machine, each ratio then compares runs seconds apart. For N ≥ 10,000, the change
//!    feed last ([`feed`]: paced writes with 0, 64 and again 0 subscribers).
//!
//! Then it prints one table, every figure with its ratio to the ceiling or the floor
//! and, where the issue sets one, its target and PASS or FAIL.
//!
//! Usage: `bench [--repo DIR] [--bin-dir DIR] [--large] [--duration SECS] [--report FILE]
//! [--command TEXT] [--keep]` (see `bench --help`). `--bin-dir` is cargo's
//! `target/release`: it holds `session-manager` and this package's `hello` and `floor`.
//! Everything it binds or connects to is on 127.0.0.1; every loop is bounded.
//!
//! `bench populate DIR N PERSONA_FILE` (or `bench --populate ...`) only writes the N
//! sessions into DIR, as the run does, for a look by hand or a profile.
//!
//! The modules, in the order a run uses them: [`run`] (the sequence of measurements),
//! [`machine`], [`server`], [`populate`], [`wrk`], [`floor`], [`feed`], [`metrics`], then
//! [`report`], [`targets`] (every target, in one table) and [`table`].

mod feed;
mod floor;
mod machine;
mod metrics;
mod populate;
mod report;
mod run;
mod server;
mod table;
mod targets;
mod wrk;

use std::fs;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

type Result<T, E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

/// The benchmark of session-manager, run by bench/run: the service at N sessions next to
/// a hello ceiling and a durable-write floor, in one table with each target's verdict.
#[derive(Parser)]
#[command(name = "bench", args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
    #[command(flatten)]
    opts: Opts,
}

#[derive(Subcommand)]
enum Mode {
    /// Only write N sessions into DIR, as a run does, for a look by hand or a profile.
    #[command(long_flag = "populate")]
    Populate {
        /// The sessions directory to write into (created if missing).
        dir: PathBuf,
        /// How many sessions: s00000, s00001, ...
        n: usize,
        /// The persona.json every session gets.
        persona_file: PathBuf,
    },
}

/// The command line of a benchmark run.
#[derive(Args)]
struct Opts {
    /// The repository: the wrk scripts (bench/wrk/) and the personas (personas/) come
    /// from it.
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Cargo's target/release: it holds session-manager, hello and floor.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Also measure N = 100,000.
    #[arg(long)]
    large: bool,
    /// Seconds per wrk run, per floor run and per change-feed phase.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=600))]
    duration: u32,
    /// Also write the report to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// The command line the report names.
    #[arg(long, default_value = "bench/run")]
    command: String,
    /// Keep the work directory (logs, wrk output) instead of removing it.
    #[arg(long)]
    keep: bool,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(Mode::Populate {
        dir,
        n,
        persona_file,
    }) = cli.mode
    {
        populate::populate(&dir, n, &fs::read(persona_file)?)?;
        populate::sync(&dir);
        return Ok(());
    }
    let opts = cli.opts;
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
