//! Claims on deferred queue files: a process that delivers a message straight from `deferred`
//! (smtpd's ODMR provider, RFC 2645) holds an exclusive `flock` on the file for as long as it
//! works on it, and every move out of `deferred` ([`Spool::move_file`]) takes the same lock
//! first and leaves a claimed file where it is. So the queue manager, the flush service and
//! another ODMR session never take a message that is being delivered, and a claim ends with
//! its process: a crash or `kill -9` releases it and the file is simply still deferred.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use nix::fcntl::{Flock, FlockArg};

use super::dirs::{QueueName, Spool};
use super::id::QueueId;

/// An exclusive claim on a file in `deferred`; released when dropped.
#[derive(Debug)]
pub struct Claim {
    _lock: Flock<File>,
    pub path: PathBuf,
}

/// Lock `path` without waiting. `Ok(None)`: it is gone, or someone else holds it.
pub(super) fn lock(path: &std::path::Path) -> io::Result<Option<Flock<File>>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(Some(l)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(io::Error::from(e)),
    }
}

impl Claim {
    /// Claim `id` in `deferred`. `Ok(None)` when it is not there, or another process has it or
    /// is moving it. The file is checked to be still the one at the deferred path once locked:
    /// a mover may have renamed it between our open and our lock.
    pub fn take(spool: &Spool, id: &QueueId) -> io::Result<Option<Claim>> {
        let path = spool.path(QueueName::Deferred, id);
        let Some(lock) = lock(&path)? else { return Ok(None) };
        let held = lock.metadata()?;
        match std::fs::metadata(&path) {
            Ok(now) if (now.dev(), now.ino()) == (held.dev(), held.ino()) => Ok(Some(Claim { _lock: lock, path })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claimed_file_stays_in_deferred_until_released() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::new(tmp.path().to_path_buf(), &["deferred".into()], 1);
        spool.create_dirs().unwrap();
        let id = QueueId::parse("CLAIM1").unwrap();
        let path = spool.path(QueueName::Deferred, &id);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"x").unwrap();
        let claim = Claim::take(&spool, &id).unwrap().expect("free");
        assert!(Claim::take(&spool, &id).unwrap().is_none(), "one claim at a time");
        assert!(!spool.move_file(&id, QueueName::Deferred, QueueName::Incoming).unwrap(), "movers leave it");
        assert!(path.exists());
        drop(claim);
        assert!(spool.move_file(&id, QueueName::Deferred, QueueName::Incoming).unwrap());
        assert!(Claim::take(&spool, &id).unwrap().is_none(), "gone from deferred");
    }
}
