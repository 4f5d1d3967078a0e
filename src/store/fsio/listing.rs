//! Listing a directory through its descriptor.

use std::io;
use std::os::fd::BorrowedFd;

/// The names in `dir`, without `.` and `..`; a name that is not UTF-8 is given lossily.
pub fn entries(dir: BorrowedFd<'_>) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(String::from_utf8_lossy(name).into_owned());
        }
    }
    Ok(names)
}

/// Calls `each` with every name in `dir` but `.` and `..`, read with `getdents` straight
/// from `dir`'s own position into `buf` (which a caller reuses from one directory to the
/// next): for a directory just opened, its whole listing, without the reopen and the
/// buffer [`entries`] allocates. `dir` is left at its end.
pub fn each_entry(
    dir: BorrowedFd<'_>,
    buf: &mut [std::mem::MaybeUninit<u8>],
    mut each: impl FnMut(&[u8]),
) -> io::Result<()> {
    let mut listing = rustix::fs::RawDir::new(dir, buf);
    while let Some(entry) = listing.next() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            each(name);
        }
    }
    Ok(())
}
