//! The machine a run is on (CPUs, memory, the temp directory's filesystem, kernel, wrk
//! and rustc versions), for the report's header: figures mean little without it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::Utc;

/// What the report says of the machine a run is on.
pub struct Machine {
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
    pub fn probe(dir: &Path) -> Machine {
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

    pub fn one_line(&self) -> String {
        format!(
            "{} cpus ({}), {} fs at {}, kernel {}",
            self.nproc,
            self.cpu,
            self.fs,
            self.dir.display(),
            self.kernel
        )
    }

    pub fn markdown(&self) -> String {
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
