//! The queue directory layout and moves between queues.
//!
//! `$queue_directory/` holds `maildrop incoming active deferred hold corrupt defer bounce flush
//! public private pid`. Queues in `hash_queue_names` spread their files over `hash_queue_depth`
//! levels of one-hex-digit subdirectories chosen by a hash of the ID (an even spread whatever
//! the ID looks like). Every move is a rename, so a file is always in exactly one queue.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::group_sync::GroupSync;
use super::id::QueueId;

/// A queue (a directory of queue files). In IPC frames it travels as its directory name, and a
/// frame naming anything else fails to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueName {
    Maildrop,
    Incoming,
    Active,
    Deferred,
    Hold,
    Corrupt,
    Defer,
    Bounce,
}

impl QueueName {
    pub const ALL: [QueueName; 8] = [
        QueueName::Maildrop,
        QueueName::Incoming,
        QueueName::Active,
        QueueName::Deferred,
        QueueName::Hold,
        QueueName::Corrupt,
        QueueName::Defer,
        QueueName::Bounce,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QueueName::Maildrop => "maildrop",
            QueueName::Incoming => "incoming",
            QueueName::Active => "active",
            QueueName::Deferred => "deferred",
            QueueName::Hold => "hold",
            QueueName::Corrupt => "corrupt",
            QueueName::Defer => "defer",
            QueueName::Bounce => "bounce",
        }
    }

    pub fn parse(s: &str) -> Option<QueueName> {
        QueueName::ALL.into_iter().find(|q| q.as_str() == s)
    }
}

/// Directories that are not queues but live in the spool too.
pub const OTHER_DIRS: [&str; 4] = ["flush", "public", "private", "pid"];

/// The master's PID file in the spool at `root` (`pid/master.pid`, as Postfix's).
pub fn master_pid_file(root: &Path) -> PathBuf {
    root.join("pid").join("master.pid")
}

/// The fast flush service's logfiles in the spool at `root` (`flush/`).
pub fn flush_dir(root: &Path) -> PathBuf {
    root.join("flush")
}

/// The spool: where queues are and how they are hashed.
#[derive(Debug, Clone)]
pub struct Spool {
    pub root: PathBuf,
    hashed: Vec<String>,
    depth: usize,
    /// Directory fsyncs shared by the clones of this spool (the writers of one process).
    syncs: Arc<GroupSync>,
}

/// FNV-1a: a stable, cheap hash for spreading IDs over subdirectories.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl Spool {
    pub fn new(root: PathBuf, hash_queue_names: &[String], hash_queue_depth: usize) -> Spool {
        Spool { root, hashed: hash_queue_names.to_vec(), depth: hash_queue_depth.min(8), syncs: Arc::default() }
    }

    pub fn queue_dir(&self, queue: QueueName) -> PathBuf {
        self.root.join(queue.as_str())
    }

    fn is_hashed(&self, queue: QueueName) -> bool {
        self.hashed.iter().any(|q| q == queue.as_str())
    }

    /// The directory that holds `id` in `queue` (with hash levels where configured).
    pub fn dir_for(&self, queue: QueueName, id: &QueueId) -> PathBuf {
        let mut dir = self.queue_dir(queue);
        if self.is_hashed(queue) {
            let h = fnv1a(id.as_str());
            for level in 0..self.depth {
                dir.push(format!("{:X}", (h >> (4 * level)) & 0xf));
            }
        }
        dir
    }

    /// The path of `id` in `queue`.
    pub fn path(&self, queue: QueueName, id: &QueueId) -> PathBuf {
        self.dir_for(queue, id).join(id.as_str())
    }

    /// Create every spool directory that is missing (`postfix check`, master start-up).
    pub fn create_dirs(&self) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        let mut b = fs::DirBuilder::new();
        b.recursive(true).mode(0o700);
        for q in QueueName::ALL {
            b.create(self.queue_dir(q))?;
        }
        for d in OTHER_DIRS {
            b.create(self.root.join(d))?;
        }
        // Local users reach the public sockets (postqueue, sendmail); the services check who
        // they are with SO_PEERCRED. Everything else stays private to the mail system.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o755))?;
        fs::set_permissions(self.root.join("public"), fs::Permissions::from_mode(0o711))?;
        // Any local user may submit with sendmail: sticky and writable, as Postfix's maildrop
        // was before postdrop; pickup checks every file it takes from there.
        fs::set_permissions(self.queue_dir(QueueName::Maildrop), fs::Permissions::from_mode(0o1733))?;
        Ok(())
    }

    /// Move `id` from one queue to another by rename, creating hash directories on demand.
    /// `Ok(false)` when the file was not in `from` (someone else moved it first). A file in
    /// `deferred` is locked for the move, and one that an ODMR session has claimed (see
    /// [`super::claim`]) stays where it is (`Ok(false)` too): its deliverer owns it.
    pub fn move_file(&self, id: &QueueId, from: QueueName, to: QueueName) -> io::Result<bool> {
        let src = self.path(from, id);
        let _lock = if from == QueueName::Deferred {
            match super::claim::lock(&src)? {
                Some(l) => Some(l),
                None => return Ok(false),
            }
        } else {
            None
        };
        let dst_dir = self.dir_for(to, id);
        let dst = dst_dir.join(id.as_str());
        match fs::rename(&src, &dst) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !src.exists() {
                    return Ok(false);
                }
                self.create_hash_dir(to, &dst_dir)?;
                fs::rename(&src, &dst).map(|()| true).or_else(|e| if e.kind() == io::ErrorKind::NotFound { Ok(false) } else { Err(e) })
            }
            Err(e) => Err(e),
        }
    }

    /// Create a hash subdirectory owned like its queue, so that a root program (postsuper)
    /// never leaves a directory the daemons cannot write.
    pub(super) fn create_hash_dir(&self, queue: QueueName, dir: &Path) -> io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        fs::create_dir_all(dir)?;
        let top = fs::metadata(self.queue_dir(queue))?;
        let here = fs::metadata(dir)?;
        if (here.uid(), here.gid()) != (top.uid(), top.gid()) {
            // Only root can give a directory away; anyone else created it as the right user.
            let _ = std::os::unix::fs::chown(dir, Some(top.uid()), Some(top.gid()));
        }
        Ok(())
    }

    /// Make the entries of `dir` (a queue directory) durable, sharing the fsync with other
    /// writers of this spool that need the same.
    pub fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.syncs.sync(dir)
    }

    /// Bytes free for unprivileged writers on the queue's file system (Postfix's `fsspace`).
    pub fn free_space(&self) -> io::Result<u64> {
        let st = nix::sys::statvfs::statvfs(&self.root).map_err(io::Error::from)?;
        Ok((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64))
    }

    /// Every queue ID in `queue` (walking hash levels), in no particular order. Names that are
    /// not valid IDs (temporary files, strays) are skipped.
    pub fn list(&self, queue: QueueName) -> io::Result<Vec<QueueId>> {
        let mut out = Vec::new();
        let levels = if self.is_hashed(queue) { self.depth } else { 0 };
        walk(&self.queue_dir(queue), levels, &mut out)?;
        Ok(out)
    }
}

fn walk(dir: &Path, levels: usize, out: &mut Vec<QueueId>) -> io::Result<()> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in rd {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if levels > 0 && name.len() == 1 {
            walk(&entry.path(), levels - 1, out)?;
        } else if let Ok(id) = QueueId::parse(name) {
            out.push(id);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_paths_moves_and_listing() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::new(tmp.path().to_path_buf(), &["deferred".into(), "defer".into()], 1);
        spool.create_dirs().unwrap();
        let id = QueueId::parse("ABC123").unwrap();
        let p = spool.path(QueueName::Deferred, &id);
        assert_eq!(p.parent().unwrap().parent().unwrap(), tmp.path().join("deferred"));
        assert_eq!(spool.path(QueueName::Incoming, &id), tmp.path().join("incoming/ABC123"));
        fs::write(spool.path(QueueName::Incoming, &id), b"x").unwrap();
        assert!(spool.move_file(&id, QueueName::Incoming, QueueName::Deferred).unwrap());
        assert!(p.exists());
        assert!(!spool.move_file(&id, QueueName::Incoming, QueueName::Deferred).unwrap());
        fs::write(spool.queue_dir(QueueName::Deferred).join(".tmp.1"), b"").unwrap();
        assert_eq!(spool.list(QueueName::Deferred).unwrap(), vec![id]);
    }

    #[test]
    fn spread_is_even() {
        let spool = Spool::new("/q".into(), &["deferred".into()], 1);
        let mut counts = std::collections::HashMap::new();
        for i in 0..1600 {
            let id = QueueId::parse(&format!("SEQ{i:06}")).unwrap();
            *counts.entry(spool.dir_for(QueueName::Deferred, &id)).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 16);
        assert!(counts.values().all(|&n| (50..=150).contains(&n)), "{counts:?}");
    }
}
