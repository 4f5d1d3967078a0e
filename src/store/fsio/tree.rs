//! Walks of a whole tree that the service did not write (an archived session, a leftover
//! temp directory): its removal ([`remove_tree_at`]) and its size ([`tree_size`]).
//!
//! A session directory holds whatever its Claude Code process made, so a tree may be
//! deep, wide, or changing while it is walked. Both walks are iterative and hold one
//! directory descriptor at a time, however deep the tree: each level is opened
//! `O_NOFOLLOW|O_DIRECTORY` relative to its parent, and the way back up (`..`) is
//! checked to lead to the very directory the walk came down from, so a directory moved
//! away meanwhile stops the walk instead of taking it elsewhere. A symlink is never
//! followed (it is removed, or counted as nothing); a FIFO or a device is never opened.
//! Names are kept as the bytes they are, so a name that is not UTF-8 is removed too.

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::{Refusal, open_dir_at};

/// A directory of the walk: its name in its parent, its identity, and its entries not
/// yet visited.
struct Level {
    name: CString,
    id: (u64, u64),
    pending: Vec<CString>,
}

impl Level {
    fn read(dir: &OwnedFd, name: CString) -> io::Result<Self> {
        let stat = rustix::fs::fstat(dir)?;
        let mut pending = Vec::new();
        for entry in rustix::fs::Dir::read_from(dir)? {
            let entry = entry?;
            let entry = entry.file_name();
            if entry != c"." && entry != c".." {
                pending.push(entry.to_owned());
            }
        }
        Ok(Self {
            name,
            id: (stat.st_dev, stat.st_ino),
            pending,
        })
    }
}

/// The parent of `dir`, which must still be the directory `expected` the walk came
/// down from.
fn up(dir: &OwnedFd, expected: (u64, u64)) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let parent = rustix::fs::openat(dir, c"..", flags, Mode::empty())?;
    let stat = rustix::fs::fstat(&parent)?;
    if (stat.st_dev, stat.st_ino) != expected {
        return Err(io::Error::other(
            "a directory was moved out of the tree while it was walked",
        ));
    }
    Ok(parent)
}

fn child_dir(parent: &OwnedFd, name: &CStr) -> io::Result<OwnedFd> {
    open_dir_at(parent, name).map_err(Refusal::into_io)
}

/// Removes `name` from `parent`: a file or symlink is unlinked (never followed), a
/// directory emptied the same way first. `depth` counts the levels of directories
/// allowed, `name` itself being the first: 0 removes only what is not a directory, 1 a
/// directory of files. A deeper tree is an error, with what is above the limit removed.
pub fn remove_tree_at(parent: BorrowedFd<'_>, name: &str, depth: usize) -> io::Result<()> {
    match rustix::fs::unlinkat(parent, name, AtFlags::empty()) {
        Err(Errno::ISDIR) => {}
        other => return Ok(other?),
    }
    let too_deep = || {
        io::Error::other(format!(
            "the directory is nested more than {depth} levels deep, too deeply to remove"
        ))
    };
    if depth == 0 {
        return Err(too_deep());
    }
    let root = open_dir_at(parent, name).map_err(Refusal::into_io)?;
    let name = CString::new(name).map_err(io::Error::other)?;
    let mut levels = vec![Level::read(&root, name)?];
    let mut dir = root;
    while let Some(level) = levels.last_mut() {
        if let Some(child) = level.pending.pop() {
            match rustix::fs::unlinkat(&dir, child.as_c_str(), AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => continue,
                Err(Errno::ISDIR) => {}
                Err(e) => return Err(e.into()),
            }
            if levels.len() >= depth {
                return Err(too_deep());
            }
            let sub = child_dir(&dir, &child)?;
            levels.push(Level::read(&sub, child)?);
            dir = sub;
            continue;
        }
        let done = levels.pop().expect("the level just looked at");
        let Some(above) = levels.last() else {
            rustix::fs::unlinkat(parent, done.name.as_c_str(), AtFlags::REMOVEDIR)?;
            break;
        };
        let above = up(&dir, above.id)?;
        rustix::fs::unlinkat(&above, done.name.as_c_str(), AtFlags::REMOVEDIR)?;
        dir = above;
    }
    Ok(())
}

/// What a tree holds, as [`tree_size`] counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeSize {
    /// The sizes of the regular files in it, each file once however many hard links it
    /// has (symlinks are not followed; FIFOs, devices and sockets count nothing).
    pub bytes: u64,
    /// False when the count stopped short: the tree is deeper or larger than the bounds,
    /// or part of it could not be read or changed while it was counted.
    pub complete: bool,
}

/// Counts the regular files in the directory `root` down to `depth` levels of
/// directories (`root` being the first), looking at `max_entries` entries at most.
pub fn tree_size(root: OwnedFd, depth: usize, max_entries: u64) -> TreeSize {
    let mut size = TreeSize {
        bytes: 0,
        complete: true,
    };
    let mut linked = HashSet::new();
    let mut seen = 0u64;
    let Ok(first) = Level::read(&root, CString::default()) else {
        size.complete = false;
        return size;
    };
    let mut levels = vec![first];
    let mut dir = root;
    while let Some(level) = levels.last_mut() {
        let Some(child) = level.pending.pop() else {
            levels.pop();
            let Some(above) = levels.last() else { break };
            match up(&dir, above.id) {
                Ok(above) => dir = above,
                Err(_) => {
                    size.complete = false;
                    break;
                }
            }
            continue;
        };
        seen += 1;
        if seen > max_entries {
            size.complete = false;
            break;
        }
        // Gone since the directory was read: nothing to count.
        let Ok(stat) = rustix::fs::statat(&dir, child.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile
                if stat.st_nlink <= 1 || linked.insert((stat.st_dev, stat.st_ino)) =>
            {
                let bytes = u64::try_from(stat.st_size).unwrap_or(0);
                size.bytes = size.bytes.saturating_add(bytes);
            }
            FileType::Directory if levels.len() >= depth => size.complete = false,
            FileType::Directory => match child_dir(&dir, &child)
                .and_then(|sub| Level::read(&sub, child).map(|level| (sub, level)))
            {
                Ok((sub, level)) => {
                    levels.push(level);
                    dir = sub;
                }
                Err(_) => size.complete = false,
            },
            _ => {}
        }
    }
    size
}

#[cfg(test)]
mod tests {
    use super::super::open_dir;
    use super::*;
    use std::fs;
    use std::os::fd::AsFd;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::symlink;
    use std::path::{Path, PathBuf};

    /// `levels` directories nested in `top`, the deepest holding a file; its path.
    fn nest(top: &Path, levels: usize) -> PathBuf {
        let mut path = top.to_path_buf();
        for _ in 1..levels {
            path.push("d");
        }
        fs::create_dir_all(&path).unwrap();
        fs::write(path.join("f"), b"deep").unwrap();
        path
    }

    /// An outside directory with a file, and a tree `t` in `parent` whose entries are
    /// a file, a FIFO, a symlink to the outside directory, a name that is not UTF-8
    /// and a nest 300 levels deep.
    fn hostile_tree(parent: &Path, outside: &Path) {
        fs::write(outside.join("keep"), b"keep").unwrap();
        let tree = parent.join("t");
        nest(&tree, 300);
        fs::write(tree.join("file"), b"12345").unwrap();
        symlink(outside, tree.join("link")).unwrap();
        symlink(outside.join("keep"), tree.join("d/filelink")).unwrap();
        let odd = std::ffi::OsStr::from_bytes(b"not-utf8-\xff");
        fs::create_dir(tree.join(odd)).unwrap();
        fs::write(tree.join(odd).join("inside"), b"x").unwrap();
        let fd = open_dir(&tree).unwrap();
        rustix::fs::mknodat(&fd, "fifo", FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
    }

    #[test]
    fn a_deep_and_hostile_tree_is_removed_without_following_anything() {
        let parent = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        hostile_tree(parent.path(), outside.path());
        let fd = open_dir(parent.path()).unwrap();
        remove_tree_at(fd.as_fd(), "t", 1024).unwrap();
        assert!(fs::read_dir(parent.path()).unwrap().next().is_none());
        assert_eq!(fs::read(outside.path().join("keep")).unwrap(), b"keep");
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_tree_deeper_than_the_bound_is_refused() {
        let parent = tempfile::tempdir().unwrap();
        nest(&parent.path().join("t"), 5);
        let fd = open_dir(parent.path()).unwrap();
        let err = remove_tree_at(fd.as_fd(), "t", 4).unwrap_err();
        assert!(err.to_string().contains("more than 4 levels"), "{err}");
        remove_tree_at(fd.as_fd(), "t", 5).unwrap();
        assert!(!parent.path().join("t").exists());
        // A symlink, or a file, needs no level at all.
        symlink(parent.path(), parent.path().join("l")).unwrap();
        remove_tree_at(fd.as_fd(), "l", 0).unwrap();
        assert!(fs::read_dir(parent.path()).unwrap().next().is_none());
    }

    #[test]
    fn the_size_counts_regular_files_once_and_follows_nothing() {
        let parent = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("big"), vec![0u8; 100_000]).unwrap();
        hostile_tree(parent.path(), outside.path());
        let tree = parent.path().join("t");
        fs::hard_link(tree.join("file"), tree.join("file2")).unwrap();
        let open = || open_dir(&tree).unwrap();
        // "file" (5, with its hard link once), "inside" (1), the deepest "f" (4).
        assert_eq!(
            tree_size(open(), 1024, 10_000),
            TreeSize {
                bytes: 10,
                complete: true
            }
        );
        let shallow = tree_size(open(), 10, 10_000);
        assert_eq!((shallow.bytes, shallow.complete), (6, false));
        let few = tree_size(open(), 1024, 3);
        assert!(!few.complete && few.bytes <= 6, "{few:?}");
        assert_eq!(
            tree_size(open(), 1, 10_000),
            TreeSize {
                bytes: 5,
                complete: false
            }
        );
    }
}
