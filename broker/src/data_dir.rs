//! One broker process per data directory: an exclusive lock on `<data_dir>/.lock`.
//!
//! Two brokers on one data directory would both run as the same node, assign the same
//! offsets to different records and overwrite each other's files, and after a restart
//! acknowledged records would be gone. So a broker locks its data directory
//! ([`DataDirLock::acquire`]) before it reads or writes anything else in it, and holds the
//! lock for as long as it runs. A second broker finds the lock held and refuses to start
//! ([`LockError::InUse`]), naming the process that holds it: the holder writes its pid into
//! the lock file once it has the lock.
//!
//! The lock is `flock(LOCK_EX | LOCK_NB)` on the open lock file (std's
//! [`File::try_lock`]), so the kernel releases it when the holder's file is closed: on
//! drop, on exit, and on a crash or SIGKILL. A lock file left behind never blocks a restart;
//! the pid in it is stale until the next holder overwrites it. The file is never removed:
//! a broker that opened the old file and one that created a new one could both hold "the"
//! lock. The lock is advisory (it keeps brokers apart, not other programs), and it belongs
//! to an open file, not to a process: a second [`DataDirLock`] on the same directory in the
//! same process is refused as well.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = ".lock";

/// The exclusive hold on a data directory; dropping it releases the lock.
#[derive(Debug)]
pub struct DataDirLock {
    /// Never read: held open because the lock lives as long as this descriptor.
    _file: File,
    path: PathBuf,
}

/// Why a data directory could not be locked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another process holds the lock: a broker is already running on this directory.
    #[error(
        "data directory {dir} is in use by another broker ({}, holding {lock_file}); \
         stop it first, or give this broker a data directory of its own",
        holder_text(*.holder)
    )]
    InUse {
        dir: PathBuf,
        lock_file: PathBuf,
        /// The holder's pid as it wrote it; `None` if it had not yet, or the file is unreadable.
        holder: Option<u32>,
    },
    #[error("cannot {op} the lock file {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn holder_text(holder: Option<u32>) -> String {
    match holder {
        Some(pid) => format!("pid {pid}"),
        None => "pid unknown".to_owned(),
    }
}

impl LockError {
    fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LockError {
        let path = path.to_owned();
        move |source| LockError::Io { op, path, source }
    }
}

impl DataDirLock {
    /// Locks `dir` (which must exist) for this process, without waiting: fails at once
    /// with [`LockError::InUse`] if another holder has it. Records this process's pid in
    /// the lock file.
    pub fn acquire(dir: &Path) -> Result<DataDirLock, LockError> {
        let path = dir.join(LOCK_FILE);
        // Not truncated on open: until this process has the lock, the file holds the
        // holder's pid.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(LockError::io("open", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::InUse {
                    dir: dir.to_owned(),
                    holder: read_pid(&mut file),
                    lock_file: path,
                });
            }
            Err(TryLockError::Error(e)) => return Err(LockError::io("lock", &path)(e)),
        }
        // Overwrite, then cut what a longer stale pid left: a reader never sees the file
        // empty. Not fsynced: after a crash the lock is gone and the pid means nothing.
        let pid = format!("{}\n", std::process::id());
        file.write_all(pid.as_bytes())
            .and_then(|()| file.set_len(pid.len() as u64))
            .map_err(LockError::io("write", &path))?;
        Ok(DataDirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The pid in a lock file just opened (so read from its start).
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pid in a lock file, as another process reads it.
    fn pid_in(lock_file: &Path) -> Option<u32> {
        std::fs::read_to_string(lock_file).ok()?.trim().parse().ok()
    }

    #[test]
    fn second_lock_on_a_locked_dir_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = DataDirLock::acquire(dir.path()).expect("first lock");
        assert_eq!(pid_in(first.path()), Some(std::process::id()));
        match DataDirLock::acquire(dir.path()) {
            Err(LockError::InUse {
                dir: d,
                lock_file,
                holder,
            }) => {
                assert_eq!(d, dir.path());
                assert_eq!(lock_file, first.path());
                assert_eq!(holder, Some(std::process::id()));
            }
            other => panic!("expected InUse, got {other:?}"),
        }
    }

    #[test]
    fn lock_is_free_again_once_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(DataDirLock::acquire(dir.path()).expect("first lock"));
        let again = DataDirLock::acquire(dir.path()).expect("lock after release");
        assert_eq!(pid_in(again.path()), Some(std::process::id()));
    }

    #[test]
    fn longer_stale_pid_is_overwritten_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(LOCK_FILE), "4294967295999\n").expect("stale file");
        let lock = DataDirLock::acquire(dir.path()).expect("lock");
        assert_eq!(pid_in(lock.path()), Some(std::process::id()));
    }

    #[test]
    fn in_use_message_names_the_directory_and_the_holder() {
        let err = LockError::InUse {
            dir: PathBuf::from("/var/lib/steme"),
            lock_file: PathBuf::from("/var/lib/steme/.lock"),
            holder: Some(4242),
        };
        let text = err.to_string();
        assert!(text.contains("/var/lib/steme is in use"), "{text}");
        assert!(text.contains("pid 4242"), "{text}");
        let unknown = LockError::InUse {
            dir: PathBuf::from("/d"),
            lock_file: PathBuf::from("/d/.lock"),
            holder: None,
        };
        assert!(unknown.to_string().contains("pid unknown"));
    }

    #[test]
    fn missing_dir_is_an_io_error_naming_the_lock_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope");
        match DataDirLock::acquire(&missing) {
            Err(LockError::Io { op, path, .. }) => {
                assert_eq!(op, "open");
                assert_eq!(path, missing.join(LOCK_FILE));
            }
            other => panic!("expected Io, got {other:?}"),
        }
    }
}
