//! The system around the binary, for the tests that need more than temp dirs: whether
//! they run as root, a disk that turns read-only on demand, FIFOs, the binary run as
//! an unprivileged user or with its address space capped, and its peak memory.
//!
//! Each wrapper (`setpriv`, `prlimit`) execs the binary, so the spawned process id is
//! the binary's own and killing it leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::binary::{BINARY, binary_env, binary_serve_args};

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

/// Runs a system tool; `Err` with what it said when it fails.
fn run(command: &mut Command) -> Result<(), String> {
    let out = command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// An ext4 filesystem in an image file, on a loop device, mounted with
/// `errors=remount-ro`; unmounted (which frees the loop device) when dropped — also when
/// the test panics.
///
/// Not a tmpfs remounted read-only: the kernel refuses that while any file on it is
/// open for writing, as a service's lock file may be. A filesystem error is what turns a
/// disk read-only under a running service in real life, and ext4 can be told to have one.
pub struct Ext4Mount {
    pub path: PathBuf,
    /// The loop device's name (`loop0`), which names the filesystem under /sys/fs/ext4.
    device: String,
}

impl Ext4Mount {
    /// Makes a `bytes`-sized image in `dir` and mounts it at `dir/ext4`.
    pub fn new(dir: &Path, bytes: u64) -> Result<Self, String> {
        let image = dir.join("ext4.img");
        let path = dir.join("ext4");
        std::fs::File::create(&image)
            .and_then(|file| file.set_len(bytes))
            .and_then(|()| std::fs::create_dir_all(&path))
            .map_err(|e| e.to_string())?;
        run(Command::new("mkfs.ext4").arg("-q").arg(&image))?;
        run(Command::new("mount")
            .args(["-o", "loop,errors=remount-ro"])
            .arg(&image)
            .arg(&path))?;
        let mut mount = Self {
            path,
            device: String::new(),
        };
        let source = Command::new("findmnt")
            .args(["-n", "-o", "SOURCE"])
            .arg(&mount.path)
            .output()
            .map_err(|e| format!("cannot run findmnt: {e}"))?;
        let source = String::from_utf8_lossy(&source.stdout);
        mount.device = source.trim().trim_start_matches("/dev/").to_owned();
        Ok(mount)
    }

    /// Has the kernel report an error on the filesystem: with `errors=remount-ro` it is
    /// read-only at once, under every open file.
    pub fn fail_read_only(&self) -> Result<(), String> {
        let trigger = format!("/sys/fs/ext4/{}/trigger_fs_error", self.device);
        std::fs::write(&trigger, "a test makes the disk read-only")
            .map_err(|e| format!("{trigger}: {e}"))
    }
}

impl Drop for Ext4Mount {
    fn drop(&mut self) {
        if run(Command::new("umount").arg(&self.path)).is_err() {
            // Something still holds it: detach it now, the kernel frees it when released.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// Puts a FIFO at `path`, replacing the file there.
pub fn plant_fifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    run(Command::new("mkfifo").arg(path))
        .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display()));
}

/// The user and group an unprivileged binary runs as (`nobody`).
pub const NOBODY: u32 = 65534;

/// Gives `path` and everything under it to [`NOBODY`].
pub fn give_to_nobody(path: &Path) {
    run(Command::new("chown")
        .arg("-R")
        .arg(format!("{NOBODY}:{NOBODY}"))
        .arg(path))
    .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

/// The binary serving `sessions` and `personas` as [`NOBODY`], with no supplementary
/// groups: as root, the tests could read any file, so an unreadable one needs a user
/// who cannot.
pub fn binary_command_as_nobody(sessions: &Path, personas: &Path) -> Command {
    let mut command = Command::new("setpriv");
    command
        .arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .args(["--clear-groups", "--", BINARY])
        .args(binary_serve_args(sessions, personas));
    binary_env(&mut command);
    command
}

/// The binary serving `sessions` and `personas` with its address space capped at
/// `bytes`: a read without a size cap then fails inside the service instead of taking
/// the machine's memory (other builds share it). Two malloc arenas keep the address
/// space a healthy service reserves far below the cap.
pub fn binary_command_capped(sessions: &Path, personas: &Path, bytes: u64) -> Command {
    let mut command = Command::new("prlimit");
    command
        .arg(format!("--as={bytes}"))
        .args(["--", BINARY])
        .args(binary_serve_args(sessions, personas));
    binary_env(&mut command);
    command.env("MALLOC_ARENA_MAX", "2");
    command
}

/// The peak resident memory of process `pid` so far (`VmHWM`), in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status"))
}
