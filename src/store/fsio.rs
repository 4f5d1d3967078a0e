//! Durable file operations: the only code that writes state to disk.
//!
//! Each function completes all its steps before it returns, so a caller that got `Ok`
//! may acknowledge the write: the data is on stable storage, and a crash at any moment
//! leaves either the old or the new content, never a mixture. Every temporary entry
//! starts with [`TEMP_PREFIX`], so start-up recovery can recognise and remove it.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use serde::Serialize;

use super::failpoint::{self, Step};
use crate::metrics::timed_fsync;

/// Every temporary file or directory this service creates starts with this.
pub const TEMP_PREFIX: &str = ".tmp-";

/// A temp file in `dir`, named with [`TEMP_PREFIX`] so start-up can recognise it.
/// Temp files are created with the mode an ordinary file would get (0644 less the
/// umask), not tempfile's private 0600, so the files stay readable by the tools that
/// read them today (the original module, the operator's shell).
pub fn temp_file(dir: &Path) -> io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .permissions(fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)
}

/// Serialises `value` as pretty JSON with a trailing newline (the files are for people
/// too, and the original module wrote them indented).
pub fn to_json_bytes<T: Serialize + ?Sized>(value: &T) -> io::Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The temp file [`replace_file`] writes before renaming it to `file_name`.
///
/// Its name is fixed, not random: writes to one directory are serialised (the store's
/// writer mutex, and one instance per directory), so it cannot clash, and start-up can
/// remove a leftover with one `unlink` instead of listing every session directory.
pub fn temp_name(file_name: &str) -> String {
    format!("{TEMP_PREFIX}{file_name}")
}

/// Replaces `dir/file_name` with `bytes`: temp file in the same directory, fsync it,
/// rename it over the target, fsync the directory. The caller must be the only writer
/// of `dir` (see [`temp_name`]).
pub fn replace_file(dir: &Path, file_name: &str, bytes: &[u8]) -> io::Result<()> {
    let temp = dir.join(temp_name(file_name));
    let result = write_temp_and_rename(&temp, &dir.join(file_name), bytes);
    if result.is_err() {
        // Leave nothing half-written behind; the target is untouched.
        let _ = fs::remove_file(&temp);
    }
    result?;
    sync_dir(dir)?;
    failpoint::hit(Step::DirSynced)
}

fn write_temp_and_rename(temp: &Path, target: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(temp)?;
    file.write_all(bytes)?;
    failpoint::hit(Step::TempWritten)?;
    timed_fsync(|| file.sync_all())?;
    failpoint::hit(Step::TempSynced)?;
    fs::rename(temp, target)?;
    failpoint::hit(Step::Renamed)
}

/// Moves `dir/from`, a file that is already durable, over `dir/to`, then fsyncs the
/// directory.
pub fn move_file(dir: &Path, from: &str, to: &str) -> io::Result<()> {
    fs::rename(dir.join(from), dir.join(to))?;
    failpoint::hit(Step::Renamed)?;
    sync_dir(dir)?;
    failpoint::hit(Step::DirSynced)
}

/// Creates `dir/file_name` with `bytes` durably, never replacing an existing file.
/// Returns `false` (and writes nothing) when the file already exists.
pub fn create_file(dir: &Path, file_name: &str, bytes: &[u8]) -> io::Result<bool> {
    let mut temp = temp_file(dir)?;
    temp.write_all(bytes)?;
    timed_fsync(|| temp.as_file().sync_all())?;
    match rename_no_replace(temp.path(), &dir.join(file_name)) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        other => other?,
    }
    // The temp path is gone; keep TempPath from trying to remove it.
    let _ = temp.into_temp_path().keep();
    sync_dir(dir)?;
    Ok(true)
}

/// Writes a new file inside a directory that is not visible yet (a session being built):
/// its content is fsynced, and the directory itself is fsynced by [`publish_dir`].
fn write_new_file(dir: &Path, file_name: &str, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create_new(dir.join(file_name))?;
    file.write_all(bytes)?;
    failpoint::hit(Step::TempWritten)?;
    timed_fsync(|| file.sync_all())?;
    failpoint::hit(Step::TempSynced)
}

/// A directory being built under a temporary name in `parent`; removed on drop unless
/// it was published.
fn staging_dir(parent: &Path) -> io::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempdir_in(parent)
}

/// Builds a directory under a temporary name in `parent` holding `files`, each written
/// and fsynced, and fsyncs the directory itself: ready for [`publish_dir`]. Removed
/// again if anything fails.
pub fn build_dir(parent: &Path, files: &[(&str, &[u8])]) -> io::Result<tempfile::TempDir> {
    let staged = staging_dir(parent)?;
    for (name, bytes) in files {
        write_new_file(staged.path(), name, bytes)?;
    }
    sync_dir(staged.path())?;
    Ok(staged)
}

/// Moves a directory built by [`build_dir`] to `target` in one step that refuses to
/// replace an existing entry, then fsyncs the parent so the move survives a crash.
/// Returns `AlreadyExists` when `target` exists.
pub fn publish_dir(staged: tempfile::TempDir, target: &Path) -> io::Result<()> {
    rename_no_replace(staged.path(), target)?;
    // The staged path is gone: nothing left for TempDir to clean up.
    let _ = staged.keep();
    failpoint::hit(Step::Renamed)?;
    sync_dir(parent_of(target))?;
    failpoint::hit(Step::DirSynced)
}

/// Moves `from` to `to` (both on one filesystem) without replacing anything, and fsyncs
/// both parent directories.
pub fn move_dir(from: &Path, to: &Path) -> io::Result<()> {
    rename_no_replace(from, to)?;
    failpoint::hit(Step::Renamed)?;
    sync_dir(parent_of(to))?;
    sync_dir(parent_of(from))?;
    failpoint::hit(Step::DirSynced)
}

/// Creates `dir` and whichever of its parents are missing, and makes each new level
/// durable: after a crash, a directory the service reported as created is still there,
/// and so is every level above it.
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut level = dir;
    while fs::symlink_metadata(level).is_err_and(|e| e.kind() == io::ErrorKind::NotFound) {
        missing.push(level);
        match level.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => level = parent,
            _ => break,
        }
    }
    for level in missing.into_iter().rev() {
        match fs::create_dir(level) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            other => other?,
        }
        sync_dir(parent_of(level))?;
    }
    Ok(())
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = File::open(dir)?;
    timed_fsync(|| dir.sync_all())
}

/// The directory that holds `path`.
pub fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        from,
        rustix::fs::CWD,
        to,
        rustix::fs::RenameFlags::NOREPLACE,
    )
    .map_err(io::Error::from)
}

/// Removes a temporary entry left by an interrupted write, file or directory.
pub fn remove_temp(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_file_leaves_only_the_target() {
        let dir = tempfile::tempdir().unwrap();
        replace_file(dir.path(), "a.json", b"one").unwrap();
        replace_file(dir.path(), "a.json", b"two").unwrap();
        assert_eq!(fs::read(dir.path().join("a.json")).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn publish_refuses_to_replace() {
        let parent = tempfile::tempdir().unwrap();
        let target = parent.path().join("s");
        fs::create_dir(&target).unwrap();
        let staged = staging_dir(parent.path()).unwrap();
        let err = publish_dir(staged, &target).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        // The staged directory was dropped and removed: only the target remains.
        assert_eq!(fs::read_dir(parent.path()).unwrap().count(), 1);
    }
}
