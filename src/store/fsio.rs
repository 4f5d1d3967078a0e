//! Every open, read and durable write of the store and the persona library.
//!
//! The tree is hostile: a Claude Code process with a shell runs in every session
//! directory, so any entry this service did not just create may be a symlink, a FIFO, a
//! device or a huge file. So, here and nowhere else:
//! - every lookup is relative to a directory descriptor and opened `O_NOFOLLOW`, so no
//!   symlink is followed, whatever the component;
//! - reads are `O_NONBLOCK` (a FIFO cannot stall an open), checked with `fstat` on the
//!   opened descriptor to be a regular file, and capped ([`read_capped_at`]);
//! - temp files get random names and are created `O_EXCL|O_NOFOLLOW`: nothing is ever
//!   opened for writing under a name someone else could have chosen;
//! - a whole tree (an archived session) is removed or measured by an iterative walk that
//!   holds one directory at a time and never follows a symlink (`tree`).
//!
//! Each write completes all its steps before it returns, so a caller that got `Ok` may
//! acknowledge it: the data is on stable storage, and a crash at any moment leaves
//! either the old or the new content. Every temporary entry starts with
//! [`TEMP_PREFIX`], so start-up recovery can recognise and remove it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use rustix::path::Arg;
use serde::Serialize;

use super::failpoint::{self, Step};
use crate::metrics::timed_fsync;

mod identity;
mod listing;
mod tree;

pub use identity::{FileId, dir_id, dir_id_at, file_id_at};
pub use listing::{each_entry, entries};
pub use tree::{TreeSize, remove_tree_at, tree_size};

/// Every temporary file or directory this service creates starts with this.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Files are created with the mode an ordinary file would get (0644 less the umask), so
/// they stay readable by the tools that read them today (the original module, a shell).
const FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o755;

/// Why an entry the service did not write itself is not read. The text names the kind
/// of the entry, never its content: it is published in `/healthz` and in answers.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("is missing")]
    Missing,
    #[error("is a symlink, which is never followed")]
    Symlink,
    #[error("is {is}, not {expected}")]
    WrongKind {
        is: &'static str,
        expected: &'static str,
    },
    #[error("is over the {} KiB cap", .0 / 1024)]
    TooLarge(usize),
    #[error("cannot be read ({0})")]
    Io(#[source] io::Error),
}

impl Refusal {
    /// Whether the storage failed, rather than the entry being unfit: such an error
    /// says nothing about the entry and must not mark it corrupt.
    pub fn is_storage_failure(&self) -> bool {
        match self {
            Refusal::Io(e) => !matches!(
                Errno::from_io_error(e),
                Some(Errno::ACCESS | Errno::PERM | Errno::ISDIR | Errno::NAMETOOLONG)
            ),
            _ => false,
        }
    }

    pub fn into_io(self) -> io::Error {
        match self {
            Refusal::Io(e) => e,
            Refusal::Missing => io::Error::from(io::ErrorKind::NotFound),
            other => io::Error::other(other.to_string()),
        }
    }
}

fn describe(kind: FileType) -> &'static str {
    match kind {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symlink",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice | FileType::BlockDevice => "a device",
        FileType::Unknown => "an entry of unknown kind",
    }
}

/// The kind of `name` in `dir`, without following it.
fn kind_at(dir: impl AsFd, name: impl Arg + Copy) -> Option<FileType> {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .ok()
        .map(|st| FileType::from_raw_mode(st.st_mode))
}

/// Opens the directory `name` in `parent`, refusing a symlink or anything but a
/// directory.
pub fn open_dir_at(parent: impl AsFd, name: impl Arg + Copy) -> Result<OwnedFd, Refusal> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(&parent, name, flags, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(Errno::NOENT) => Err(Refusal::Missing),
        Err(e @ (Errno::LOOP | Errno::NOTDIR)) => Err(match kind_at(&parent, name) {
            Some(FileType::Symlink) => Refusal::Symlink,
            Some(kind) => Refusal::WrongKind {
                is: describe(kind),
                expected: "a directory",
            },
            None => Refusal::Io(e.into()),
        }),
        Err(e) => Err(Refusal::Io(e.into())),
    }
}

/// Opens a directory the operator configured (symlinks in its path are theirs to
/// choose), for the lookups of this module.
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(
        rustix::fs::CWD,
        path,
        flags,
        Mode::empty(),
    )?)
}

/// Opens the regular file `name` in `dir` for reading, and gives its size: a symlink is
/// refused, a FIFO never blocks the open, and anything but a regular file is refused.
pub fn open_regular_at(dir: impl AsFd, name: &str) -> Result<(File, u64), Refusal> {
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(&dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Err(Refusal::Missing),
        Err(Errno::LOOP) => return Err(Refusal::Symlink),
        Err(e) => return Err(Refusal::Io(e.into())),
    };
    let stat = rustix::fs::fstat(&fd).map_err(|e| Refusal::Io(e.into()))?;
    let kind = FileType::from_raw_mode(stat.st_mode);
    if kind != FileType::RegularFile {
        return Err(Refusal::WrongKind {
            is: describe(kind),
            expected: "a regular file",
        });
    }
    Ok((File::from(fd), u64::try_from(stat.st_size).unwrap_or(0)))
}

/// Reads the regular file `name` in `dir`, at most `cap` bytes: a symlink, a FIFO, a
/// device, a directory or a larger file is refused without reading a byte of it.
pub fn read_capped_at(dir: impl AsFd, name: &str, cap: usize) -> Result<Vec<u8>, Refusal> {
    let (file, size) = open_regular_at(dir, name)?;
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    if size > cap {
        return Err(Refusal::TooLarge(cap));
    }
    // The file may grow between fstat and read: read one byte past the cap to tell.
    let mut bytes = Vec::with_capacity(size + 1);
    file.take(cap as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(Refusal::Io)?;
    if bytes.len() > cap {
        return Err(Refusal::TooLarge(cap));
    }
    Ok(bytes)
}

/// Serialises `value` as pretty JSON with a trailing newline (the files are for people
/// too, and the original module wrote them indented).
pub fn to_json_bytes<T: Serialize + ?Sized>(value: &T) -> io::Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// A fresh temp name for `base`: `.tmp-<base>.<random>`. Start-up recognises a leftover
/// by its prefix.
pub fn temp_name(base: &str) -> String {
    format!("{TEMP_PREFIX}{base}.{:016x}", fastrand::u64(..))
}

/// Creates a new file `name` in `dir`, exclusively and without following anything, and
/// writes `bytes` to it and fsyncs it.
fn write_new_at(dir: impl AsFd, name: &str, bytes: &[u8]) -> io::Result<()> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(&dir, name, flags, Mode::from_raw_mode(FILE_MODE))?;
    let mut file = File::from(fd);
    file.write_all(bytes)?;
    failpoint::hit(Step::TempWritten)?;
    timed_fsync(|| file.sync_all())?;
    failpoint::hit(Step::TempSynced)
}

/// Replaces `dir/file_name` with `bytes`: a new temp file in the same directory, fsync
/// it, rename it over the target (a symlink planted there is replaced, not followed),
/// fsync the directory.
pub fn replace_at(dir: BorrowedFd<'_>, file_name: &str, bytes: &[u8]) -> io::Result<()> {
    let temp = prepare_replace_at(dir, file_name, bytes)?;
    commit_replace_at(dir, &temp, file_name)
}

/// The first half of [`replace_at`]: the new content in a temp file of `dir`, fsynced.
/// Returns the temp file's name, for [`commit_replace_at`] or [`discard_at`].
pub fn prepare_replace_at(
    dir: BorrowedFd<'_>,
    file_name: &str,
    bytes: &[u8],
) -> io::Result<String> {
    let temp = temp_name(file_name);
    match write_new_at(dir, &temp, bytes) {
        Ok(()) => Ok(temp),
        Err(e) => {
            discard_at(dir, &temp);
            Err(e)
        }
    }
}

/// The second half of [`replace_at`]: renames the prepared `temp` over `file_name` and
/// fsyncs the directory.
pub fn commit_replace_at(dir: BorrowedFd<'_>, temp: &str, file_name: &str) -> io::Result<()> {
    let renamed = rustix::fs::renameat(dir, temp, dir, file_name)
        .map_err(io::Error::from)
        .and_then(|()| failpoint::hit(Step::Renamed));
    if renamed.is_err() {
        // Leave nothing half-written behind; the target is untouched.
        discard_at(dir, temp);
    }
    renamed?;
    sync(dir)?;
    failpoint::hit(Step::DirSynced)
}

/// Removes a prepared temp file that will not be committed, at best.
pub fn discard_at(dir: BorrowedFd<'_>, temp: &str) {
    let _ = rustix::fs::unlinkat(dir, temp, AtFlags::empty());
}

/// Moves `dir/from`, a file that is already durable, over `dir/to`, then fsyncs the
/// directory.
pub fn move_at(dir: BorrowedFd<'_>, from: &str, to: &str) -> io::Result<()> {
    rustix::fs::renameat(dir, from, dir, to)?;
    failpoint::hit(Step::Renamed)?;
    sync(dir)?;
    failpoint::hit(Step::DirSynced)
}

/// Creates `dir/file_name` with `bytes` durably, never replacing an existing entry.
/// Returns `false` (and writes nothing) when the name is taken.
pub fn create_at(dir: BorrowedFd<'_>, file_name: &str, bytes: &[u8]) -> io::Result<bool> {
    let temp = temp_name(file_name);
    let created = write_new_at(dir, &temp, bytes).and_then(|()| {
        rustix::fs::renameat_with(dir, &temp, dir, file_name, RenameFlags::NOREPLACE)
            .map_err(io::Error::from)
    });
    match created {
        Ok(()) => {}
        Err(e) => {
            let _ = rustix::fs::unlinkat(dir, &temp, AtFlags::empty());
            return match e.kind() {
                io::ErrorKind::AlreadyExists => Ok(false),
                _ => Err(e),
            };
        }
    }
    sync(dir)?;
    Ok(true)
}

/// A directory being built under a temporary name in its parent; removed on drop
/// unless [`publish_dir`] moved it into place.
#[derive(Debug)]
pub struct StagedDir {
    parent: OwnedFd,
    name: Option<String>,
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            let _ = remove_tree_at(self.parent.as_fd(), &name, 1);
        }
    }
}

/// Builds a directory under a temporary name in `parent` holding `files`, each written
/// and fsynced, and fsyncs the directory itself: ready for [`publish_dir`]. Removed
/// again if anything fails.
pub fn build_dir(parent: BorrowedFd<'_>, files: &[(&str, &[u8])]) -> io::Result<StagedDir> {
    let name = temp_name("session");
    rustix::fs::mkdirat(parent, &name, Mode::from_raw_mode(DIR_MODE))?;
    let staged = StagedDir {
        parent: parent.try_clone_to_owned()?,
        name: Some(name.clone()),
    };
    let dir = open_dir_at(parent, &name).map_err(Refusal::into_io)?;
    for (file, bytes) in files {
        write_new_at(&dir, file, bytes)?;
    }
    sync(dir.as_fd())?;
    Ok(staged)
}

/// Moves a directory built by [`build_dir`] to `target` in its parent, in one step that
/// refuses to replace an existing entry, then fsyncs the parent so the move survives a
/// crash. Returns `AlreadyExists` when `target` exists.
pub fn publish_dir(mut staged: StagedDir, target: &str) -> io::Result<()> {
    let name = staged.name.clone().unwrap_or_default();
    let parent = staged.parent.as_fd();
    rustix::fs::renameat_with(parent, &name, parent, target, RenameFlags::NOREPLACE)?;
    // The staged name is gone: nothing left to clean up.
    staged.name = None;
    failpoint::hit(Step::Renamed)?;
    sync(staged.parent.as_fd())?;
    failpoint::hit(Step::DirSynced)
}

/// Moves `from_dir/from` to `to_dir/to` (one filesystem) without replacing anything,
/// and fsyncs both directories. A symlink is moved as the link, never through it.
pub fn move_entry_at(
    from_dir: BorrowedFd<'_>,
    from: &str,
    to_dir: BorrowedFd<'_>,
    to: &str,
) -> io::Result<()> {
    rustix::fs::renameat_with(from_dir, from, to_dir, to, RenameFlags::NOREPLACE)?;
    failpoint::hit(Step::Renamed)?;
    sync(to_dir)?;
    sync(from_dir)?;
    failpoint::hit(Step::DirSynced)
}

/// Opens the directory `name` in `parent`, creating it (durably) when it is missing.
pub fn ensure_dir_at(parent: BorrowedFd<'_>, name: &str) -> Result<OwnedFd, Refusal> {
    match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(DIR_MODE)) {
        Ok(()) => sync(parent).map_err(Refusal::Io)?,
        Err(Errno::EXIST) => {}
        Err(e) => return Err(Refusal::Io(e.into())),
    }
    open_dir_at(parent, name)
}

/// Creates `dir` and whichever of its parents are missing, and makes each new level
/// durable: after a crash, a directory the service reported as created is still there,
/// and so is every level above it. For the directories the operator configured.
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut level = dir;
    while std::fs::symlink_metadata(level).is_err_and(|e| e.kind() == io::ErrorKind::NotFound) {
        missing.push(level);
        match level.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => level = parent,
            _ => break,
        }
    }
    for level in missing.into_iter().rev() {
        match std::fs::create_dir(level) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            other => other?,
        }
        sync(open_dir(parent_of(level))?.as_fd())?;
    }
    Ok(())
}

pub fn sync(dir: BorrowedFd<'_>) -> io::Result<()> {
    timed_fsync(|| rustix::fs::fsync(dir).map_err(io::Error::from))
}

/// The directory that holds `path`.
pub fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Creates, writes and removes a temp file in `dir`: whether it can be written now.
pub fn write_probe(dir: BorrowedFd<'_>) -> io::Result<()> {
    let name = temp_name("probe");
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let written = rustix::fs::openat(dir, &name, flags, Mode::from_raw_mode(FILE_MODE))
        .map_err(io::Error::from)
        .and_then(|fd| File::from(fd).write_all(b"probe"));
    let removed = rustix::fs::unlinkat(dir, &name, AtFlags::empty());
    written?;
    Ok(removed?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn root(dir: &Path) -> OwnedFd {
        open_dir(dir).unwrap()
    }

    #[test]
    fn replace_leaves_only_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let fd = root(dir.path());
        replace_at(fd.as_fd(), "a.json", b"one").unwrap();
        replace_at(fd.as_fd(), "a.json", b"two").unwrap();
        assert_eq!(fs::read(dir.path().join("a.json")).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn replace_replaces_a_planted_symlink_instead_of_following_it() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::NamedTempFile::new().unwrap();
        fs::write(outside.path(), b"outside").unwrap();
        symlink(outside.path(), dir.path().join("a.json")).unwrap();
        replace_at(root(dir.path()).as_fd(), "a.json", b"new").unwrap();
        assert_eq!(fs::read(outside.path()).unwrap(), b"outside");
        let meta = fs::symlink_metadata(dir.path().join("a.json")).unwrap();
        assert!(meta.is_file());
    }

    #[test]
    fn reads_refuse_symlinks_fifos_directories_and_large_files() {
        let dir = tempfile::tempdir().unwrap();
        let fd = root(dir.path());
        symlink("/etc/hostname", dir.path().join("link")).unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("big"), vec![b'x'; 2048]).unwrap();
        fs::write(dir.path().join("ok"), b"{}").unwrap();
        rustix::fs::mknodat(&fd, "fifo", FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
        let reason = |name: &str| read_capped_at(&fd, name, 1024).unwrap_err().to_string();
        assert_eq!(reason("link"), "is a symlink, which is never followed");
        assert_eq!(reason("fifo"), "is a FIFO, not a regular file");
        assert_eq!(reason("sub"), "is a directory, not a regular file");
        assert_eq!(reason("big"), "is over the 1 KiB cap");
        assert_eq!(reason("none"), "is missing");
        assert_eq!(read_capped_at(&fd, "ok", 1024).unwrap(), b"{}");
        let dir_reason = |name: &str| open_dir_at(&fd, name).unwrap_err().to_string();
        symlink(dir.path().join("sub"), dir.path().join("sublink")).unwrap();
        assert_eq!(
            dir_reason("sublink"),
            "is a symlink, which is never followed"
        );
        assert_eq!(dir_reason("ok"), "is a regular file, not a directory");
        assert_eq!(dir_reason("fifo"), "is a FIFO, not a directory");
    }

    #[test]
    fn publish_refuses_to_replace() {
        let parent = tempfile::tempdir().unwrap();
        fs::create_dir(parent.path().join("s")).unwrap();
        let fd = root(parent.path());
        let staged = build_dir(fd.as_fd(), &[("a", b"1")]).unwrap();
        let err = publish_dir(staged, "s").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        // The staged directory was dropped and removed: only the target remains.
        assert_eq!(fs::read_dir(parent.path()).unwrap().count(), 1);
    }

    #[test]
    fn removing_a_tree_never_follows_a_symlink_in_it() {
        let parent = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("keep"), b"keep").unwrap();
        let tree = parent.path().join(".tmp-x");
        fs::create_dir(&tree).unwrap();
        symlink(outside.path(), tree.join("link")).unwrap();
        fs::write(tree.join("file"), b"f").unwrap();
        remove_tree_at(root(parent.path()).as_fd(), ".tmp-x", 1).unwrap();
        assert!(!tree.exists());
        assert_eq!(fs::read(outside.path().join("keep")).unwrap(), b"keep");
    }
}
