//! The sessions directory, held: [`Root`] is its descriptor, which every lookup of the
//! store is relative to, and the lock that makes this process its one writer.
//!
//! The lock is an exclusive `flock` on the directory itself, so removing `.lock` (an
//! operator "clearing a stale lock") cannot let a second instance in; the kernel drops
//! it when the process dies, even on `kill -9`. `.lock` is locked too (as earlier
//! versions did) and says which process holds the directory; it is recreated when it
//! goes missing. Each write first checks that the configured path still names the
//! directory that was locked: one moved away and replaced is refused for good, since
//! another instance may now own the new one.

use std::fs::{File, TryLockError};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use super::error::StoreError;
use super::fsio;
use super::layout::LOCK_FILE;

/// The locked sessions directory.
#[derive(Debug)]
pub struct Root {
    path: PathBuf,
    /// Also holds the lock on the directory.
    dir: File,
    id: (u64, u64),
    /// `.lock`, open and locked, with its identity.
    lock_file: Mutex<(File, (u64, u64))>,
    /// Why writes are refused for good, once the directory was found replaced.
    replaced: OnceLock<String>,
}

fn identity(stat: &rustix::fs::Stat) -> (u64, u64) {
    (stat.st_dev, stat.st_ino)
}

impl Root {
    /// Opens `path` (an existing, canonical directory) and takes its lock at once, or
    /// fails with a message naming the directory and, when it says, the holder.
    pub fn lock(path: &Path) -> Result<Self, StoreError> {
        let open_error = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let dir = File::from(fsio::open_dir(path).map_err(open_error)?);
        let id = identity(&rustix::fs::fstat(&dir).map_err(|e| open_error(e.into()))?);
        let locked = |holder: String| StoreError::Locked {
            dir: path.to_path_buf(),
            holder,
        };
        match dir.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(locked(read_holder(dir.as_fd()))),
            Err(TryLockError::Error(e)) => return Err(open_error(e)),
        }
        let lock_file = open_lock_file(dir.as_fd()).map_err(open_error)?;
        match lock_file.0.try_lock() {
            Ok(()) => {}
            // An instance of an earlier version, which locked only the file.
            Err(TryLockError::WouldBlock) => return Err(locked(read_holder(dir.as_fd()))),
            Err(TryLockError::Error(e)) => return Err(open_error(e)),
        }
        say_holder(&lock_file.0).map_err(open_error)?;
        Ok(Self {
            path: path.to_path_buf(),
            dir,
            id,
            lock_file: Mutex::new(lock_file),
            replaced: OnceLock::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// Why writes are refused for good, if they are.
    pub fn replaced(&self) -> Option<&str> {
        self.replaced.get().map(String::as_str)
    }

    /// Before each write, under the writer mutex: the configured path must still be the
    /// directory this process locked, and `.lock` must still be there (recreated, and
    /// logged, when it is not).
    pub fn check(&self) -> Result<(), StoreError> {
        if let Some(why) = self.replaced() {
            return Err(StoreError::Replaced(why.to_owned()));
        }
        let now = rustix::fs::statat(rustix::fs::CWD, &self.path, AtFlags::empty());
        if now.as_ref().map(identity).ok() != Some(self.id) {
            let why = format!(
                "the sessions directory {} is no longer the directory this service locked at \
                 start (it was moved, removed or replaced); restart the service to serve \
                 what is there now",
                self.path.display()
            );
            tracing::error!("{why}");
            let why = self.replaced.get_or_init(|| why);
            return Err(StoreError::Replaced(why.clone()));
        }
        let mut lock_file = self.lock_file.lock().unwrap_or_else(|e| e.into_inner());
        let on_disk = rustix::fs::statat(self.fd(), LOCK_FILE, AtFlags::SYMLINK_NOFOLLOW);
        if on_disk.as_ref().map(identity).ok() != Some(lock_file.1) {
            tracing::warn!(path = %self.path.join(LOCK_FILE).display(), "the lock file was removed or replaced; recreating it (the directory itself stays locked)");
            let fresh = open_lock_file(self.fd())?;
            // Nobody else can hold it: the directory's own lock keeps other instances out.
            let _ = fresh.0.try_lock();
            say_holder(&fresh.0)?;
            *lock_file = fresh;
        }
        Ok(())
    }
}

/// Opens `.lock` without following it; anything but a regular file there (a planted
/// symlink or FIFO) is removed, not followed, and a fresh file made in its place.
fn open_lock_file(dir: BorrowedFd<'_>) -> std::io::Result<(File, (u64, u64))> {
    let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NONBLOCK;
    let mode = Mode::from_raw_mode(0o644);
    for _ in 0..3 {
        match rustix::fs::openat(dir, LOCK_FILE, flags | OFlags::CLOEXEC, mode) {
            Ok(fd) => {
                let stat = rustix::fs::fstat(&fd)?;
                if FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile {
                    return Ok((File::from(fd), identity(&stat)));
                }
            }
            Err(rustix::io::Errno::LOOP) => {}
            Err(e) => return Err(e.into()),
        }
        tracing::warn!("{LOCK_FILE} is not a regular file; replacing it without following it");
        fsio::remove_tree_at(dir, LOCK_FILE, 0)?;
    }
    Err(std::io::Error::other(format!(
        "{LOCK_FILE} keeps being replaced by something other than a regular file"
    )))
}

/// Writes who holds the directory, for the next instance's error message.
fn say_holder(mut file: &File) -> std::io::Result<()> {
    file.set_len(0)?;
    writeln!(file, "pid {}", std::process::id())?;
    Ok(())
}

/// Who holds the lock, as `.lock` says: `pid N`, or nothing when it says anything else.
fn read_holder(dir: BorrowedFd<'_>) -> String {
    let unknown = || "its pid unknown".to_owned();
    let Ok(bytes) = fsio::read_capped_at(dir, LOCK_FILE, 64) else {
        return unknown();
    };
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim();
    match text.strip_prefix("pid ") {
        Some(pid) if pid.parse::<u32>().is_ok() => text.to_owned(),
        _ => unknown(),
    }
}
