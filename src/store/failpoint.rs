//! Failpoints: named steps of a durable write where a test can make the process crash or
//! the write fail, to check recovery at exactly that step rather than at random.
//!
//! Compiled in only with the `failpoints` feature; without it, [`hit`] is a no-op the
//! optimiser removes. With it, `SESSION_MANAGER_FAILPOINTS` arms them at start-up, as a
//! comma-separated list of `step=action[@n]`: `action` is `crash` (abort at once, as a
//! `kill -9` would), `eio` or `enospc` (the write fails with that error), or `hang` (the
//! write never finishes, as on storage that stopped answering), and `n` (1 by default)
//! says on which hit of that step it fires. Example: `renamed=crash@3`.

/// A step of a durable write, in the order they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The new content is written to the temp file, not yet fsynced.
    TempWritten,
    /// The temp file is fsynced, not yet renamed.
    TempSynced,
    /// The rename is done, the directory not yet fsynced.
    Renamed,
    /// The directory is fsynced: the write is complete.
    DirSynced,
    /// A switch committed its intent and wrote the previous session, not yet the new one.
    SwitchHalfway,
}

impl Step {
    #[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
    const ALL: [(Step, &'static str); 5] = [
        (Step::TempWritten, "temp-written"),
        (Step::TempSynced, "temp-synced"),
        (Step::Renamed, "renamed"),
        (Step::DirSynced, "dir-synced"),
        (Step::SwitchHalfway, "switch-halfway"),
    ];
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_step: Step) -> std::io::Result<()> {
    Ok(())
}

#[cfg(all(test, feature = "failpoints"))]
pub use armed::arm;
#[cfg(feature = "failpoints")]
pub use armed::hit;

#[cfg(feature = "failpoints")]
mod armed {
    use super::Step;
    use std::io;
    use std::sync::Mutex;
    use std::sync::OnceLock;

    #[derive(Debug, Clone, Copy)]
    enum Action {
        Crash,
        Fail(i32),
        Hang,
    }

    struct Armed {
        step: Step,
        action: Action,
        remaining: u64,
    }

    fn parse(spec: &str) -> Vec<Armed> {
        spec.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|item| {
                let (step, rest) = item.trim().split_once('=').expect("failpoint: step=action");
                let (action, n) = rest.split_once('@').unwrap_or((rest, "1"));
                let step = Step::ALL
                    .iter()
                    .find(|(_, name)| *name == step)
                    .unwrap_or_else(|| panic!("failpoint: unknown step {step:?}"))
                    .0;
                let action = match action {
                    "crash" => Action::Crash,
                    "eio" => Action::Fail(5),
                    "enospc" => Action::Fail(28),
                    "hang" => Action::Hang,
                    other => panic!("failpoint: unknown action {other:?}"),
                };
                let remaining = n.parse().expect("failpoint: @n must be a number");
                Armed {
                    step,
                    action,
                    remaining,
                }
            })
            .collect()
    }

    fn table() -> &'static Mutex<Vec<Armed>> {
        static TABLE: OnceLock<Mutex<Vec<Armed>>> = OnceLock::new();
        TABLE.get_or_init(|| {
            Mutex::new(parse(
                &std::env::var("SESSION_MANAGER_FAILPOINTS").unwrap_or_default(),
            ))
        })
    }

    /// Arms `spec` (the syntax of `SESSION_MANAGER_FAILPOINTS`) in this process, for
    /// the store's own tests.
    #[cfg(test)]
    pub fn arm(spec: &str) {
        let mut table = table().lock().unwrap_or_else(|e| e.into_inner());
        table.extend(parse(spec));
    }

    pub fn hit(step: Step) -> io::Result<()> {
        let mut table = table().lock().unwrap_or_else(|e| e.into_inner());
        let mut hang = false;
        for armed in table.iter_mut().filter(|a| a.step == step) {
            if armed.remaining == 0 {
                continue;
            }
            armed.remaining -= 1;
            if armed.remaining == 0 {
                match armed.action {
                    Action::Crash => {
                        eprintln!("failpoint {step:?}: crashing");
                        std::process::abort();
                    }
                    Action::Fail(errno) => return Err(io::Error::from_raw_os_error(errno)),
                    Action::Hang => hang = true,
                }
            }
        }
        drop(table);
        if hang {
            eprintln!("failpoint {step:?}: hanging");
            loop {
                std::thread::park();
            }
        }
        Ok(())
    }
}
