//! One `intake run` at a time on a SQLite database, told by the kernel rather than by a lease.
//!
//! The daemon holds an exclusive `flock` on `DATABASE-run.lock`, beside the database, for as
//! long as it lives; the kernel lets go of it the moment the process ends, however it ends. A
//! SQLite database in WAL mode is only ever used from one host (its `-shm` index is shared
//! memory), so whoever holds the lock knows that no other daemon on this database is alive,
//! whatever PID namespace it ran in: folder leases left by another holder belong to a dead
//! instance and are taken over at once instead of after `imap::LEASE_TTL`. A second daemon
//! on the same database stands by, taking no folder, until the lock is free.
//!
//! PostgreSQL serves instances on several hosts: there the leases alone decide.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock file of the SQLite database at `database`.
pub fn path_for(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push("-run.lock");
    PathBuf::from(name)
}

/// What trying the lock found.
#[derive(Debug)]
pub enum Attempt {
    /// This process holds it until the returned `RunLock` is dropped.
    Held(RunLock),
    /// Another live process holds it; its PID, when it wrote one.
    Busy { pid: Option<u32> },
}

/// The held lock. Dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct RunLock {
    file: File,
}

impl RunLock {
    /// Holds the lock until the process ends, however it ends: the daemon's lock must outlive
    /// every task that still finishes a message, so nothing in it may drop the lock earlier.
    pub fn keep_until_exit(self) {
        // The open file is what holds a flock; leaking it closes it only when the process does.
        std::mem::forget(self.file);
    }
}

/// Tries once, without waiting. `Err` when the file cannot be opened or locked at all (a
/// read-only directory, a filesystem without locks): the caller then relies on leases alone.
pub fn try_take(path: &Path) -> std::io::Result<Attempt> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    match file.try_lock() {
        Ok(()) => {
            // For the log line of whoever finds it busy; the lock itself is what counts.
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            writeln!(file, "{}", std::process::id())?;
            Ok(Attempt::Held(RunLock { file }))
        }
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            // A holder that has not written its PID yet reads as empty: no PID to name.
            let _ = file.read_to_string(&mut text);
            Ok(Attempt::Busy {
                pid: text.trim().parse().ok(),
            })
        }
        Err(TryLockError::Error(error)) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_released_on_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = path_for(&dir.path().join("intake.db"));
        assert_eq!(path, dir.path().join("intake.db-run.lock"));

        let Ok(Attempt::Held(held)) = try_take(&path) else {
            panic!("a free lock is taken");
        };
        // flock locks belong to the open file: a second open in the same process is refused
        // just as another process would be.
        match try_take(&path) {
            Ok(Attempt::Busy { pid }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("a held lock is busy, got {other:?}"),
        }
        drop(held);
        let Ok(Attempt::Held(kept)) = try_take(&path) else {
            panic!("a dropped lock is free again");
        };
        kept.keep_until_exit();
        assert!(
            matches!(try_take(&path), Ok(Attempt::Busy { .. })),
            "a lock kept until exit stays held"
        );
    }

    #[test]
    fn an_unopenable_lock_file_is_an_error() {
        let path = Path::new("/nonexistent-intake-dir/intake.db-run.lock");
        assert!(try_take(path).is_err());
    }
}
