//! The durable-write floor of the benchmark (`bench/run`): only the file operations of
//! one durable create, of one durable switch, or of one file replace, as
//! `src/store/fsio.rs` does them, with no HTTP and no service logic, on `threads` threads
//! at once for a fixed time.
//!
//! - create: a temp directory holding two files (`persona.json`, `metadata.json`), each
//!   written and fsynced; the directory fsynced; `renameat2(RENAME_NOREPLACE)` into
//!   place; the parent fsynced.
//! - switch: three file replaces (`.current.json` in the parent, then two sessions'
//!   `metadata.json`), each a temp file written and fsynced, renamed over the target,
//!   and its directory fsynced.
//! - replace: one file replace (a session's `metadata.json`: temp file written and
//!   fsynced, renamed over the target, its directory fsynced), what one usage report
//!   (`POST /sessions/{name}/usage`) or one `PATCH` writes. Each thread replaces the
//!   file of a session of its own.
//!
//! Usage: `floor <dir> <create|switch|replace> <threads> <seconds>`. `dir` stands for the
//! sessions directory: it must exist, on the filesystem under test, and may already hold
//! entries (`bench/run` fills it with as many as the store it compares with). Every
//! name this run writes in it starts with `r<pid>`. Prints one line:
//! `FLOOR op=.. threads=.. ops=.. secs=.. ops_per_sec=.. p50_us=.. p99_us=..`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Upper bound on operations per thread, whatever the duration (keeps every loop bounded
/// even on a filesystem whose fsync is free).
const MAX_OPS_PER_THREAD: u64 = 1_000_000;

const PERSONA: &[u8] = include_bytes!("../../../../personas/default.json");

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Create,
    Switch,
    Replace,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Switch => "switch",
            Op::Replace => "replace",
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, op, threads, seconds] = args.as_slice() else {
        return Err("usage: floor <dir> <create|switch|replace> <threads> <seconds>".into());
    };
    let parent = PathBuf::from(dir);
    let op = match op.as_str() {
        "create" => Op::Create,
        "switch" => Op::Switch,
        "replace" => Op::Replace,
        other => {
            return Err(format!("unknown operation {other:?}: create, switch or replace").into());
        }
    };
    let threads: usize = threads.parse()?;
    let duration = Duration::from_secs_f64(seconds.parse()?);
    if threads == 0 || threads > 64 {
        return Err("threads must be 1 to 64".into());
    }

    let run = format!("r{}", std::process::id());
    if op != Op::Create {
        replace_file(&parent, ".current.json", &pointer("none"), &run)?;
        for t in 0..threads {
            for side in ["a", "b"] {
                let session = parent.join(format!("{run}t{t}{side}"));
                fs::create_dir(&session)?;
                replace_file(&session, "metadata.json", &metadata("x", "idle"), &run)?;
            }
        }
        sync_dir(&parent)?;
    }

    let start = Instant::now();
    let deadline = start + duration;
    let per_thread: Vec<io::Result<Vec<u32>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let parent = &parent;
                let tag = format!("{run}t{t}");
                scope.spawn(move || run_thread(op, parent, &tag, deadline))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("a thread panicked")))
            })
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut latencies = Vec::new();
    for result in per_thread {
        latencies.extend(result?);
    }
    latencies.sort_unstable();
    let ops = latencies.len();
    let pct = |p: f64| -> u32 {
        if latencies.is_empty() {
            return 0;
        }
        let i = ((p / 100.0) * (ops as f64 - 1.0)).round() as usize;
        latencies[i.min(ops - 1)]
    };
    println!(
        "FLOOR op={} threads={threads} ops={ops} secs={elapsed:.3} ops_per_sec={:.1} p50_us={} p99_us={}",
        op.name(),
        ops as f64 / elapsed,
        pct(50.0),
        pct(99.0),
    );
    Ok(())
}

/// One thread's loop: operations until the deadline (or the bound); each one's latency
/// in microseconds. `thread` prefixes every name it writes.
fn run_thread(op: Op, parent: &Path, thread: &str, deadline: Instant) -> io::Result<Vec<u32>> {
    let mut latencies = Vec::new();
    for i in 0..MAX_OPS_PER_THREAD {
        let started = Instant::now();
        if started >= deadline {
            break;
        }
        let tag = format!("{thread}-{i}");
        match op {
            Op::Create => create(parent, &tag)?,
            Op::Switch => {
                let (from, to) = if i % 2 == 0 { ("a", "b") } else { ("b", "a") };
                let name = format!("{thread}{to}");
                replace_file(parent, ".current.json", &pointer(&name), &tag)?;
                let previous = parent.join(format!("{thread}{from}"));
                replace_file(
                    &previous,
                    "metadata.json",
                    &metadata(&name, "suspended"),
                    &tag,
                )?;
                let target = parent.join(&name);
                replace_file(&target, "metadata.json", &metadata(&name, "active"), &tag)?;
            }
            Op::Replace => {
                let session = parent.join(format!("{thread}a"));
                let name = format!("{thread}a");
                replace_file(&session, "metadata.json", &metadata(&name, "idle"), &tag)?;
            }
        }
        latencies.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
    }
    Ok(latencies)
}

/// A durable create: temp dir, two fsynced files, dir fsync, rename NOREPLACE, parent fsync.
fn create(parent: &Path, tag: &str) -> io::Result<()> {
    let name = format!("c{tag}");
    let staged = parent.join(format!(".tmp-{tag}"));
    fs::create_dir(&staged)?;
    write_new_file(&staged.join("persona.json"), PERSONA)?;
    write_new_file(&staged.join("metadata.json"), &metadata(&name, "idle"))?;
    sync_dir(&staged)?;
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        &staged,
        rustix::fs::CWD,
        parent.join(&name),
        rustix::fs::RenameFlags::NOREPLACE,
    )
    .map_err(io::Error::from)?;
    sync_dir(parent)
}

fn write_new_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create_new(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// A durable replace: temp file, fsync, rename over the target, directory fsync.
fn replace_file(dir: &Path, name: &str, bytes: &[u8], tag: &str) -> io::Result<()> {
    let temp = dir.join(format!(".tmp-{tag}-{name}"));
    write_new_file(&temp, bytes)?;
    fs::rename(&temp, dir.join(name))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Bytes the size and shape of the service's `metadata.json`.
fn metadata(name: &str, status: &str) -> Vec<u8> {
    format!(
        "{{\n  \"name\": \"{name}\",\n  \"created\": \"2026-01-01T00:00:00.000000+00:00\",\n  \
         \"last_active\": \"2026-01-01T00:00:00.000000+00:00\",\n  \"persona\": null,\n  \
         \"pid\": null,\n  \"status\": \"{status}\"\n}}\n"
    )
    .into_bytes()
}

/// Bytes the size and shape of the service's `.current.json`.
fn pointer(name: &str) -> Vec<u8> {
    format!(
        "{{\n  \"name\": \"{name}\",\n  \"since\": \"2026-01-01T00:00:00.000000+00:00\",\n  \
         \"previous\": \"{name}\"\n}}\n"
    )
    .into_bytes()
}
