//! A regular file's identity: what tells one version of it from another without
//! reading it.

use std::os::fd::AsFd;

use rustix::fs::{AtFlags, FileType};

/// What tells one version of a regular file from another without reading it: the inode,
/// the size and both change times. A write moves `ctime`, which no caller can set back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
    size: i64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileId {
    /// When the file last changed (its `ctime`), in nanoseconds since the Unix epoch.
    pub fn changed_nanos(&self) -> i128 {
        i128::from(self.ctime.0) * 1_000_000_000 + i128::from(self.ctime.1)
    }
}

/// The [`FileId`] of `name` in `dir` if it is a regular file (a symlink is not followed).
pub fn file_id_at(dir: impl AsFd, name: &str) -> Option<FileId> {
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
    (FileType::from_raw_mode(st.st_mode) == FileType::RegularFile).then_some(FileId {
        dev: st.st_dev,
        ino: st.st_ino,
        size: st.st_size,
        mtime: (st.st_mtime, st.st_mtime_nsec as i64),
        ctime: (st.st_ctime, st.st_ctime_nsec as i64),
    })
}

/// The device and inode of the directory `name` in `parent`, if it is one (a symlink is
/// not followed).
pub fn dir_id_at(parent: impl AsFd, name: &str) -> Option<(u64, u64)> {
    let st = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
    (FileType::from_raw_mode(st.st_mode) == FileType::Directory).then_some((st.st_dev, st.st_ino))
}

/// The device and inode of an open directory.
pub fn dir_id(dir: impl AsFd) -> Option<(u64, u64)> {
    let st = rustix::fs::fstat(dir).ok()?;
    Some((st.st_dev, st.st_ino))
}
