//! `pid/master.pid`: the master's PID, right-aligned in 32 characters plus a newline as in
//! Postfix, kept exclusively locked (flock) while the master runs. "Running" means "locked".

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Why the pid file cannot be taken.
#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    #[error("the Postern mail system is already running: PID: {0}")]
    Running(u32),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// A held pid file lock; released when dropped or when the process ends (even by SIGKILL).
#[derive(Debug)]
pub struct PidFile {
    _file: File,
}

/// Lock `path` and write our PID into it.
pub fn acquire(path: &Path) -> Result<PidFile, PidFileError> {
    let err = |source| PidFileError::Io { path: path.to_path_buf(), source };
    let mut f = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(err)?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(PidFileError::Running(read_pid(&mut f).unwrap_or(0)));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(err(e)),
    }
    f.set_len(0).map_err(err)?;
    f.seek(SeekFrom::Start(0)).map_err(err)?;
    f.write_all(format!("{:>32}\n", std::process::id()).as_bytes()).map_err(err)?;
    f.sync_data().map_err(err)?;
    Ok(PidFile { _file: f })
}

fn read_pid(f: &mut File) -> Option<u32> {
    let mut s = String::new();
    f.seek(SeekFrom::Start(0)).ok()?;
    f.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

/// The PID of the running master, or `None` when no master holds the lock.
pub fn running_pid(path: &Path) -> Option<u32> {
    let mut f = File::open(path).ok()?;
    match f.try_lock_shared() {
        Ok(()) => None,
        Err(_) => read_pid(&mut f),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_and_report() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("master.pid");
        assert_eq!(running_pid(&p), None);
        let held = acquire(&p).unwrap();
        assert_eq!(std::fs::read(&p).unwrap().len(), 33);
        assert_eq!(running_pid(&p), Some(std::process::id()));
        assert!(matches!(acquire(&p), Err(PidFileError::Running(pid)) if pid == std::process::id()));
        drop(held);
        assert_eq!(running_pid(&p), None);
    }
}
