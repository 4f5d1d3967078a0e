//! One writer per sessions directory: an exclusive advisory lock on `<dir>/.lock`,
//! held for the life of the [`DirLock`] (the kernel drops it when the process dies,
//! even on `kill -9`, so a crash never leaves a stale lock behind).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use super::error::StoreError;
use super::layout::LOCK_FILE;

#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock at once or fails with a message naming the directory and, when it
    /// can be read, the process that holds it.
    pub fn acquire(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(StoreError::Locked {
                    dir: dir.to_path_buf(),
                    holder: holder.trim().to_owned(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(e.into()),
        }
        // Say who holds it, for the next instance's error message.
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "pid {}", std::process::id())?;
        Ok(Self { _file: file })
    }
}
