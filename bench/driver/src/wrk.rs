//! The HTTP loads: running wrk with a script of `bench/wrk/`, and reading the one
//! machine-readable line its `report.lua` prints (`BENCH requests=.. bytes=.. ..`).

use std::fs;
use std::process::{Command, Stdio};

use crate::Result;
use crate::run::Bench;
use crate::table::ms_us;

/// wrk's per-request timeout: a slower answer counts as a socket error.
const WRK_TIMEOUT: &str = "10s";

impl Bench {
    /// One wrk run of the run's duration against `127.0.0.1:{port}{path}` with `conns`
    /// connections and the lua `script` (given `args` after `--`); its output is kept
    /// in the logs as `wrk-{label}.txt`.
    pub fn wrk(
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
}

/// What one wrk run measured, as `report.lua` counts it.
#[derive(Debug, Clone)]
pub struct Wrk {
    pub requests: u64,
    pub bytes: u64,
    pub duration_us: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub non2xx: u64,
    pub connect: u64,
    pub read: u64,
    pub write: u64,
    pub timeout: u64,
    /// Answers the script itself rejected (a create not 201, a switch not changed).
    pub unexpected: u64,
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
    pub fn pool(a: &Wrk, b: &Wrk) -> Wrk {
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

    pub fn rps(&self) -> f64 {
        self.requests as f64 / (self.duration_us.max(1) as f64 / 1e6)
    }

    pub fn socket_errors(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout
    }
}

/// The `key=value` pairs of a machine-readable line (wrk's `BENCH`, the floor's `FLOOR`).
pub fn fields(line: &str) -> Vec<(&str, &str)> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .collect()
}

pub fn field<T: std::str::FromStr>(fields: &[(&str, &str)], key: &str) -> Result<T> {
    fields
        .iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
        .ok_or_else(|| format!("missing or bad field {key}").into())
}
