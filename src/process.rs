//! Whether a session's recorded process is still the one that was recorded, from
//! `/proc` alone: the service never signals or kills anything.
//!
//! A pid alone proves nothing: the process may have died and the pid been given to
//! another. So a process is `alive` only if the pid exists, is not a zombie, and started
//! no later than when the pid was recorded; one that started after it is a reused pid,
//! and the recorded process is `gone`.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustix::event::{PollFd, PollFlags};
use rustix::process::{Pid, PidfdFlags};

use serde::Serialize;

use crate::model::Timestamp;

/// What is known about a session's recorded process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Liveness {
    /// No pid is recorded.
    None,
    /// The recorded process is running.
    Alive,
    /// It ended, or its pid now belongs to another process.
    Gone,
    /// It cannot be told from here (no `/proc`, another PID namespace, checks off).
    Unknown,
}

impl Liveness {
    pub const ALL: [Liveness; 4] = [
        Liveness::None,
        Liveness::Alive,
        Liveness::Gone,
        Liveness::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::None => "none",
            Liveness::Alive => "alive",
            Liveness::Gone => "gone",
            Liveness::Unknown => "unknown",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == value)
    }
}

/// Timing slack: `/proc` counts a start in clock ticks since boot, read against an
/// uptime of 10 ms resolution, so a start a little after the record is the same start.
const SLACK: Duration = Duration::from_millis(50);

/// The most processes whose verdict is kept (see [`Probe`]): more than the sessions of
/// a large store have pids; past that, the verdicts start over.
const KNOWN: usize = 1 << 18;

/// The most processes held by a pidfd at once (each is a descriptor); past that, a
/// process found alive is checked in `/proc` each time.
const HELD: usize = 1024;

/// Checks processes against `/proc` (or answers `Unknown` for all, when off).
///
/// A recorded process (pid and time of record) found gone stays gone: a pid given to
/// another process later never makes it alive again (not even one recorded without
/// its time by an older writer, which a check of `/proc` alone would take for it). One found alive is held by a
/// pidfd, which names that process and no other and turns readable when it ends. So
/// after the first check of a process, a check is one `poll`, or nothing, instead of two
/// reads of `/proc`, and is exact either way.
#[derive(Debug, Clone)]
pub struct Probe {
    proc: Option<&'static Path>,
    known: Arc<Mutex<Verdicts>>,
}

/// A recorded process: its pid, and when it was recorded (unknown for an older writer).
type Recorded = (i64, Option<Timestamp>);

/// The verdicts kept, and how many of them hold a pidfd.
#[derive(Debug, Default)]
struct Verdicts {
    verdicts: HashMap<Recorded, Known>,
    held: usize,
}

/// What was found of a recorded process.
#[derive(Debug)]
enum Known {
    Gone,
    /// Alive when found, held by its pidfd.
    Held(OwnedFd),
}

impl Probe {
    /// Checks against this machine's `/proc`, when it has one.
    pub fn new(enabled: bool) -> Self {
        let proc = Path::new("/proc");
        Self {
            proc: (enabled && proc.join("self/stat").exists()).then_some(proc),
            known: Arc::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.proc.is_some()
    }

    /// The liveness of `pid`, recorded at `recorded` (unknown for a pid stored by an
    /// older writer, which is then taken at its word if it runs).
    pub fn check(&self, pid: Option<i64>, recorded: Option<Timestamp>) -> Liveness {
        let Some(pid) = pid else {
            return Liveness::None;
        };
        let Some(proc) = self.proc else {
            return Liveness::Unknown;
        };
        let key = (pid, recorded);
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        match known.verdicts.get(&key) {
            Some(Known::Gone) => return Liveness::Gone,
            Some(Known::Held(pidfd)) if ended(pidfd) => {
                known.verdicts.insert(key, Known::Gone);
                known.held -= 1;
                return Liveness::Gone;
            }
            Some(Known::Held(_)) => return Liveness::Alive,
            None => {}
        }
        let found = match check_proc(proc, pid, recorded) {
            Liveness::Alive if known.held >= HELD => return Liveness::Alive,
            Liveness::Alive => match hold(pid) {
                // Held first, then checked again: the pidfd names the process whose
                // start the second check read, not one that took the pid meanwhile.
                Some(pidfd) => match check_proc(proc, pid, recorded) {
                    Liveness::Alive => Known::Held(pidfd),
                    Liveness::Gone => Known::Gone,
                    other => return other,
                },
                // No pidfd here (an old kernel, a filter): checked each time.
                None => return Liveness::Alive,
            },
            Liveness::Gone => Known::Gone,
            other => return other,
        };
        if known.verdicts.len() >= KNOWN {
            known.verdicts.clear();
            known.held = 0;
        }
        let liveness = match found {
            Known::Gone => Liveness::Gone,
            Known::Held(_) => {
                known.held += 1;
                Liveness::Alive
            }
        };
        known.verdicts.insert(key, found);
        liveness
    }
}

/// A pidfd for `pid`, if this kernel gives one.
fn hold(pid: i64) -> Option<OwnedFd> {
    let pid = Pid::from_raw(i32::try_from(pid).ok()?)?;
    rustix::process::pidfd_open(pid, PidfdFlags::empty()).ok()
}

/// Whether the process behind `pidfd` has ended (a zombie has).
fn ended(pidfd: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match rustix::event::poll(&mut fds, Some(&zero)) {
        Ok(ready) => ready > 0,
        Err(_) => false,
    }
}

/// The liveness of `pid` recorded at `recorded`, read from `/proc`.
fn check_proc(proc: &Path, pid: i64, recorded: Option<Timestamp>) -> Liveness {
    match started(proc, pid) {
        Ok(None) => Liveness::Gone,
        Ok(Some(start)) => match recorded {
            Some(at) if start > at.to_system_time() + SLACK => Liveness::Gone,
            _ => Liveness::Alive,
        },
        Err(()) => Liveness::Unknown,
    }
}

/// When process `pid` started, `None` when there is no such process (or only its
/// zombie), `Err` when `/proc` does not say (hidden by `hidepid`, unreadable).
fn started(proc: &Path, pid: i64) -> Result<Option<SystemTime>, ()> {
    let stat = match std::fs::read_to_string(proc.join(pid.to_string()).join("stat")) {
        Ok(stat) => stat,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(_) => return Err(()),
    };
    // `pid (comm) state ...`: comm may hold spaces and parentheses, so split after
    // the last `)`. The start time is field 22 of the whole line.
    let rest = stat.rsplit_once(')').ok_or(())?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first().ok_or(())?;
    if matches!(*state, "Z" | "X" | "x") {
        return Ok(None);
    }
    let ticks: u64 = fields.get(19).ok_or(())?.parse().map_err(drop)?;
    let uptime = std::fs::read_to_string(proc.join("uptime")).map_err(drop)?;
    let uptime: f64 = uptime
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(())?;
    let per_second = rustix::param::clock_ticks_per_second().max(1) as f64;
    let age = (uptime - ticks as f64 / per_second).max(0.0);
    Ok(Some(SystemTime::now() - Duration::from_secs_f64(age)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_when_recorded_after_it_started_and_gone_when_before() {
        let probe = Probe::new(true);
        assert!(probe.enabled(), "this machine has /proc");
        let me = Some(i64::from(std::process::id()));
        assert_eq!(probe.check(me, Some(Timestamp::now())), Liveness::Alive);
        assert_eq!(probe.check(me, None), Liveness::Alive);
        let long_ago = Timestamp::parse("2001-01-01T00:00:00+00:00");
        assert_eq!(probe.check(me, long_ago), Liveness::Gone, "a reused pid");
        assert_eq!(probe.check(None, None), Liveness::None);
        assert_eq!(Probe::new(false).check(me, None), Liveness::Unknown);
    }

    #[test]
    fn an_ended_and_reaped_child_is_gone_and_so_is_its_zombie() {
        let probe = Probe::new(true);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = Some(i64::from(child.id()));
        // Ended but not reaped: a zombie still has its /proc entry.
        let recorded = Some(Timestamp::now());
        while std::fs::read_to_string(format!("/proc/{}/stat", child.id()))
            .is_ok_and(|s| !s.contains(") Z"))
        {
            std::thread::yield_now();
        }
        assert_eq!(probe.check(pid, recorded), Liveness::Gone);
        child.wait().unwrap();
        assert_eq!(probe.check(pid, recorded), Liveness::Gone);
    }

    /// A process found alive is held: when it ends, the next check says so at once,
    /// whether it is reaped or still a zombie, and however many checks came before.
    #[test]
    fn a_process_found_alive_is_found_gone_once_it_ends() {
        for reap in [false, true] {
            let probe = Probe::new(true);
            let mut child = std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .unwrap();
            let pid = Some(i64::from(child.id()));
            let recorded = Some(Timestamp::now());
            for _ in 0..3 {
                assert_eq!(probe.check(pid, recorded), Liveness::Alive);
            }
            child.kill().unwrap();
            if reap {
                child.wait().unwrap();
            } else {
                while std::fs::read_to_string(format!("/proc/{}/stat", child.id()))
                    .is_ok_and(|s| !s.contains(") Z"))
                {
                    std::thread::yield_now();
                }
            }
            assert_eq!(probe.check(pid, recorded), Liveness::Gone, "reaped: {reap}");
            assert_eq!(probe.check(pid, recorded), Liveness::Gone, "reaped: {reap}");
            child.wait().unwrap();
        }
    }

    /// The verdicts of a large store's processes are all kept: a list of 100,000
    /// sessions with 10,000 pids checks each of them, and a verdict dropped is a read
    /// of `/proc` on every list.
    #[test]
    fn the_verdicts_of_ten_thousand_ended_processes_are_all_kept() {
        let probe = Probe::new(true);
        let recorded = Some(Timestamp::now());
        // Above the kernel's largest pid: no such process, ever.
        let pids = (1..=10_000).map(|i| Some((1_i64 << 22) + 1 + i));
        for pid in pids.clone() {
            assert_eq!(probe.check(pid, recorded), Liveness::Gone);
        }
        let known = probe.known.lock().unwrap();
        assert_eq!(known.verdicts.len(), 10_000);
        assert_eq!(known.held, 0);
    }
}
