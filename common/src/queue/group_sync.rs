//! Group commit for directory fsyncs.
//!
//! Every new queue file needs its directory entry on disk before the `250` reply. With many
//! sessions writing into the same directory at once, one `fsync` of the directory makes every
//! entry linked before it started durable, so the sessions take tickets and share syncs: a
//! session whose ticket is covered by a sync that started after it took the ticket is done
//! without a sync of its own. This keeps the durability promise and halves the fsyncs per
//! message under load (the file's own fsync remains one per message).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

/// Shared directory syncs, one state per directory.
#[derive(Debug, Default)]
pub struct GroupSync {
    dirs: Mutex<HashMap<PathBuf, Arc<DirSync>>>,
}

#[derive(Debug, Default)]
struct DirSync {
    state: Mutex<SyncState>,
    done: Condvar,
}

#[derive(Debug, Default)]
struct SyncState {
    /// Tickets handed out so far; a ticket is taken after the caller's directory change.
    issued: u64,
    /// Every ticket up to this one is durable.
    durable: u64,
    /// A sync is running now (its leader covers every ticket issued before it started).
    running: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The state stays consistent across a panic in another thread (plain counters).
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl GroupSync {
    /// Make every change made so far to the entries of `dir` durable: either this thread runs
    /// an fsync of `dir`, or it waits for one that started after this call.
    pub fn sync(&self, dir: &Path) -> io::Result<()> {
        let ds = {
            let mut dirs = lock(&self.dirs);
            match dirs.get(dir) {
                Some(ds) => ds.clone(),
                None => dirs.entry(dir.to_path_buf()).or_default().clone(),
            }
        };
        ds.sync(dir)
    }
}

impl DirSync {
    /// Opened afresh every time: a kept handle would go on syncing a directory that was
    /// replaced under the same name.
    fn fsync(dir: &Path) -> io::Result<()> {
        match File::open(dir) {
            Ok(f) => f.sync_all(),
            // A local user submitting into maildrop (mode 1733) may not read that directory:
            // sync the whole file system that holds it, through the queue directory above it
            // (when that is on the same file system).
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                use std::os::fd::AsRawFd;
                use std::os::unix::fs::MetadataExt;
                let parent = dir.parent().ok_or(e)?;
                let f = File::open(parent)?;
                if std::fs::metadata(dir)?.dev() != f.metadata()?.dev() {
                    return Err(io::Error::from(io::ErrorKind::PermissionDenied));
                }
                // SAFETY: `f` keeps the descriptor open for the call.
                if unsafe { libc::syncfs(f.as_raw_fd()) } == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
            }
            Err(e) => Err(e),
        }
    }

    fn sync(&self, dir: &Path) -> io::Result<()> {
        let mut st = lock(&self.state);
        st.issued += 1;
        let ticket = st.issued;
        loop {
            if st.durable >= ticket {
                return Ok(());
            }
            if st.running {
                st = self.done.wait(st).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            st.running = true;
            let covers = st.issued;
            drop(st);
            let result = DirSync::fsync(dir);
            st = lock(&self.state);
            st.running = false;
            self.done.notify_all();
            match result {
                Ok(()) => st.durable = st.durable.max(covers),
                // Waiters covered by this failed sync elect a new leader and see the error
                // themselves if it persists.
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn concurrent_callers_all_return_and_share_syncs() {
        let tmp = tempfile::tempdir().unwrap();
        let gs = Arc::new(GroupSync::default());
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let gs = gs.clone();
                let dir = tmp.path().to_path_buf();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        fs::write(dir.join(format!("{t}.{i}")), b"x").unwrap();
                        gs.sync(&dir).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let ds = lock(&gs.dirs).get(tmp.path()).unwrap().clone();
        let st = lock(&ds.state);
        assert_eq!(st.issued, 16 * 50);
        assert_eq!(st.durable, st.issued, "every ticket is covered by a sync");
        assert!(!st.running);
    }

    #[test]
    fn a_failed_sync_is_reported() {
        let gs = GroupSync::default();
        let err = gs.sync(Path::new("/nonexistent/postern-group-sync")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
