//! The durable-write floor, from the driver's side: the directory it runs in, running
//! the `floor` binary (`src/bin/floor.rs`) and reading its `FLOOR ..` line.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::Result;
use crate::populate::sync;
use crate::run::Bench;
use crate::table::ms_us;
use crate::wrk::{field, fields};

/// What one floor run measured.
pub struct FloorRun {
    pub ops_per_sec: f64,
    pub p50_us: u64,
    pub p99_us: u64,
}

/// The floor of one write, on 4 threads and on 1.
pub struct FloorPair {
    pub four: FloorRun,
    pub one: FloorRun,
}

impl Bench {
    /// One floor run of `op` (`create` or `switch`) on `threads` threads in `dir`, for
    /// the run's duration.
    pub fn floor(&self, dir: &Path, op: &str, threads: u32) -> Result<FloorRun> {
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

/// The floor's stand-in for the sessions directory: `n` entries (empty directories: the
/// parent's size is what can matter to the floor's operations), flushed.
pub fn prefill(dir: &Path, n: usize) -> Result<()> {
    fs::create_dir(dir)?;
    for i in 0..n {
        fs::create_dir(dir.join(format!("s{i:05}")))?;
    }
    sync(dir);
    Ok(())
}
