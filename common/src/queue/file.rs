//! Queue files: the envelope and the message, written durably, plus per-recipient results
//! appended later.
//!
//! Layout (text framing around arbitrary message bytes):
//! ```text
//! POSTERN-QUEUE 1\n
//! <envelope as one line of JSON>\n
//! <message length in decimal, zero-padded to 20 digits by writers>\n
//! <message bytes>\n
//! END\n
//! R <recipient result as one line of JSON>\n     (zero or more, appended as delivery goes on)
//! ```
//! A new file is written as an anonymous file (or under a temporary name where the file system
//! cannot do that), fsynced, linked or renamed to its queue ID without replacing anything, and
//! its directory fsynced (shared between concurrent writers): only then may the caller say
//! `250`. The message may be streamed in ([`NewQueueFile`]): the length field has a fixed width
//! so that it can be filled in when the message is complete, and a writer holds at most
//! [`WRITE_CHUNK`] bytes of it in memory. A file
//! that lacks the `END` line is torn and is never taken for a message; a result line without
//! its newline is a torn append and is ignored (that recipient is simply tried again).

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::dirs::{QueueName, Spool};
use super::id::QueueId;

const MAGIC: &str = "POSTERN-QUEUE 1\n";
const END: &[u8] = b"\nEND\n";

/// A queue file problem.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// The file is torn or not a queue file.
    #[error("{path}: corrupt queue file: {what}")]
    Corrupt { path: PathBuf, what: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> QueueError + '_ {
    move |source| QueueError::Io { path: path.to_path_buf(), source }
}

/// Where a message came from (for `client=` log lines and Received headers).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    pub name: String,
    pub addr: String,
    pub helo: String,
    pub protocol: String,
}

/// One envelope recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orig: Option<String>,
}

/// Sender, recipients and arrival.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub sender: String,
    pub recipients: Vec<Recipient>,
    /// Arrival time, microseconds since the epoch.
    pub arrival_us: u64,
    #[serde(default)]
    pub client: ClientInfo,
}

/// What happened to one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Sent,
    Bounced,
    Deferred,
}

impl Outcome {
    /// The word in `status=` of the delivery log line.
    pub fn status(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Bounced => "bounced",
            Outcome::Deferred => "deferred",
        }
    }
}

/// A delivery result for the recipient at `index`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientResult {
    pub index: usize,
    pub outcome: Outcome,
    pub dsn: String,
    pub text: String,
}

/// A parsed queue file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueFile {
    pub envelope: Envelope,
    pub message: Vec<u8>,
    pub results: Vec<RecipientResult>,
}

impl QueueFile {
    /// The last result recorded for each recipient.
    pub fn last_result(&self, index: usize) -> Option<&RecipientResult> {
        self.results.iter().rev().find(|r| r.index == index)
    }

    /// Recipients that are neither sent nor bounced.
    pub fn pending(&self) -> impl Iterator<Item = (usize, &Recipient)> {
        self.envelope
            .recipients
            .iter()
            .enumerate()
            .filter(|(i, _)| !matches!(self.last_result(*i).map(|r| r.outcome), Some(Outcome::Sent | Outcome::Bounced)))
    }
}

/// Microseconds since the epoch, now.
pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// Parse the bytes of a queue file.
pub fn decode(bytes: &[u8], path: &Path) -> Result<QueueFile, QueueError> {
    let corrupt = |what: &str| QueueError::Corrupt { path: path.to_path_buf(), what: what.to_string() };
    let rest = bytes.strip_prefix(MAGIC.as_bytes()).ok_or_else(|| corrupt("bad header"))?;
    let nl = rest.iter().position(|&b| b == b'\n').ok_or_else(|| corrupt("truncated envelope"))?;
    let envelope: Envelope = serde_json::from_slice(&rest[..nl]).map_err(|e| corrupt(&format!("envelope: {e}")))?;
    let rest = &rest[nl + 1..];
    let nl = rest.iter().position(|&b| b == b'\n').ok_or_else(|| corrupt("truncated length"))?;
    let len: usize = std::str::from_utf8(&rest[..nl]).ok().and_then(|s| s.parse().ok()).ok_or_else(|| corrupt("bad length"))?;
    let rest = &rest[nl + 1..];
    // The length is outside data (a maildrop file is written by any local user): no overflow.
    let end = len.checked_add(END.len()).ok_or_else(|| corrupt("bad length"))?;
    if rest.len() < end || &rest[len..end] != END {
        return Err(corrupt("missing end marker"));
    }
    let message = rest[..len].to_vec();
    let mut results = Vec::new();
    let mut tail = &rest[len + END.len()..];
    while let Some(nl) = tail.iter().position(|&b| b == b'\n') {
        let line = &tail[..nl];
        tail = &tail[nl + 1..];
        let r = line.strip_prefix(b"R ").and_then(|j| serde_json::from_slice::<RecipientResult>(j).ok());
        match r {
            Some(r) if r.index < envelope.recipients.len() => results.push(r),
            _ => return Err(corrupt("bad result record")),
        }
    }
    Ok(QueueFile { envelope, message, results })
}

/// Read and parse a queue file.
pub fn read(path: &Path) -> Result<QueueFile, QueueError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    decode(&bytes, path)
}

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

fn c_path(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput.into())
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Rename without replacing an existing file (`renameat2(RENAME_NOREPLACE)`).
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let (f, t) = (c_path(from)?, c_path(to)?);
    // SAFETY: both arguments are valid NUL-terminated paths that outlive the call.
    check(unsafe { libc::renameat2(libc::AT_FDCWD, f.as_ptr(), libc::AT_FDCWD, t.as_ptr(), libc::RENAME_NOREPLACE) })
}

/// Give an anonymous (`O_TMPFILE`) file a name; fails with `AlreadyExists` rather than replace.
fn link_anonymous(file: &File, to: &Path) -> io::Result<()> {
    let from = c_path(Path::new(&format!("/proc/self/fd/{}", file.as_raw_fd())))?;
    let t = c_path(to)?;
    // SAFETY: both arguments are valid NUL-terminated paths that outlive the call; `file` keeps
    // the descriptor open.
    check(unsafe { libc::linkat(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, t.as_ptr(), libc::AT_SYMLINK_FOLLOW) })
}

/// How a new queue file comes to exist before it gets its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Creation {
    /// An anonymous `O_TMPFILE` inode, linked in under its queue ID: one change to the directory
    /// per message, no directory lock held while the file system allocates the inode, and
    /// nothing left behind by a crash mid-write.
    Anonymous,
    /// A dot-named temporary file renamed to its queue ID, for file systems without `O_TMPFILE`
    /// (or a system without `/proc/self/fd`).
    Temporary,
}

/// How much of a message a [`NewQueueFile`] keeps in memory before it writes to the file.
pub const WRITE_CHUNK: usize = 64 * 1024;

/// Width of the length field: any `u64` fits, so the field can be filled in last.
const LENGTH_WIDTH: usize = 20;

/// A queue file being written: the envelope first, then the message in pieces of any size,
/// then [`NewQueueFile::commit`] makes it durable and names it. Dropped without a commit, it
/// leaves nothing behind under a queue-ID name (an anonymous file simply vanishes).
pub struct NewQueueFile {
    file: File,
    /// Where errors point: the queue directory, or the temporary file's name.
    path: PathBuf,
    /// The temporary name to remove when the file is dropped uncommitted.
    temp: Option<PathBuf>,
    queue: QueueName,
    /// Bytes not yet written to the file (at most about [`WRITE_CHUNK`]).
    pending: Vec<u8>,
    /// Bytes already written to the file.
    flushed: u64,
    /// File offset of the length field.
    length_at: u64,
    message_len: u64,
}

impl NewQueueFile {
    /// Start a new queue file in `queue` holding `envelope`.
    pub fn create(spool: &Spool, queue: QueueName, envelope: &Envelope) -> Result<NewQueueFile, QueueError> {
        static PROC_FD: OnceLock<bool> = OnceLock::new();
        let creation = if *PROC_FD.get_or_init(|| Path::new("/proc/self/fd").is_dir()) { Creation::Anonymous } else { Creation::Temporary };
        Self::create_by(spool, queue, envelope, creation)
    }

    fn create_by(spool: &Spool, queue: QueueName, envelope: &Envelope, creation: Creation) -> Result<NewQueueFile, QueueError> {
        let top = spool.queue_dir(queue);
        let env = serde_json::to_string(envelope).map_err(|e| QueueError::Corrupt { path: top.clone(), what: e.to_string() })?;
        // Private to the writer, in maildrop too: sendmail then grants pickup (and only pickup)
        // read access (`maildrop::release`).
        let mode = 0o600;
        let (file, path, temp) = match creation {
            Creation::Anonymous => match OpenOptions::new().write(true).custom_flags(libc::O_TMPFILE).mode(mode).open(&top) {
                Ok(f) => (f, top, None),
                // The file system cannot make anonymous files: name a temporary one instead.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)) => {
                    return Self::create_by(spool, queue, envelope, Creation::Temporary);
                }
                Err(e) => return Err(io_err(&top)(e)),
            },
            Creation::Temporary => {
                let temp = top.join(format!(".tmp.{}.{}", std::process::id(), TEMP_SEQ.fetch_add(1, Ordering::Relaxed)));
                let f = OpenOptions::new().write(true).create_new(true).mode(mode).open(&temp).map_err(io_err(&temp))?;
                (f, temp.clone(), Some(temp))
            }
        };
        let mut pending = Vec::with_capacity(MAGIC.len() + env.len() + LENGTH_WIDTH + 2);
        pending.extend_from_slice(MAGIC.as_bytes());
        pending.extend_from_slice(env.as_bytes());
        pending.push(b'\n');
        let length_at = pending.len() as u64;
        pending.extend_from_slice(&[b'0'; LENGTH_WIDTH]);
        pending.push(b'\n');
        Ok(NewQueueFile { file, path, temp, queue, pending, flushed: 0, length_at, message_len: 0 })
    }

    /// Bytes of message written so far.
    pub fn message_len(&self) -> u64 {
        self.message_len
    }

    /// Append message bytes; they reach the file once [`WRITE_CHUNK`] bytes are pending.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), QueueError> {
        self.pending.extend_from_slice(bytes);
        self.message_len += bytes.len() as u64;
        if self.pending.len() >= WRITE_CHUNK {
            self.flush_pending()?;
        }
        Ok(())
    }

    fn flush_pending(&mut self) -> Result<(), QueueError> {
        self.file.write_all(&self.pending).map_err(io_err(&self.path))?;
        self.flushed += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Fill in the length, end the file, fsync it and give it its queue-ID name. When this
    /// returns `Ok`, the file and its name are on disk.
    pub fn commit(mut self, spool: &Spool) -> Result<QueueId, QueueError> {
        let length = format!("{:0width$}", self.message_len, width = LENGTH_WIDTH);
        match self.length_at.checked_sub(self.flushed) {
            // Still in memory (every small message): one write for the whole file.
            Some(at) => {
                let at = at as usize;
                self.pending[at..at + LENGTH_WIDTH].copy_from_slice(length.as_bytes());
            }
            None => {
                use std::os::unix::fs::FileExt;
                self.file.write_all_at(length.as_bytes(), self.length_at).map_err(io_err(&self.path))?;
            }
        }
        self.pending.extend_from_slice(END);
        self.flush_pending()?;
        self.file.sync_all().map_err(io_err(&self.path))?;
        let inode = self.file.metadata().map_err(io_err(&self.path))?.ino();
        let queue = self.queue;
        let id = match self.temp.clone() {
            None => name_file(spool, queue, inode, |dest| link_anonymous(&self.file, dest))?,
            Some(temp) => name_file(spool, queue, inode, |dest| rename_noreplace(&temp, dest))?,
        };
        // Named: nothing to clean up any more.
        self.temp = None;
        Ok(id)
    }
}

impl Drop for NewQueueFile {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            let _ = fs::remove_file(temp);
        }
    }
}

/// Write a new queue file into `queue` durably and return its ID. When this returns `Ok`, the
/// file and its name are on disk; on error no file is left behind under a queue-ID name.
pub fn write_new(spool: &Spool, queue: QueueName, envelope: &Envelope, message: &[u8]) -> Result<QueueId, QueueError> {
    let mut f = NewQueueFile::create(spool, queue, envelope)?;
    f.write(message)?;
    f.commit(spool)
}

/// Give a durable file its queue-ID name with `place` (which must not replace an existing
/// name), then make the name durable.
fn name_file(spool: &Spool, queue: QueueName, inode: u64, mut place: impl FnMut(&Path) -> io::Result<()>) -> Result<QueueId, QueueError> {
    // The ID embeds the time, so a collision (only possible with a reused inode in the same
    // microsecond) is resolved by trying again a moment later.
    for _ in 0..100 {
        let id = QueueId::generate(SystemTime::now(), inode);
        let dest = spool.path(queue, &id);
        let dir = dest.parent().unwrap_or(&dest);
        let top = spool.queue_dir(queue);
        let mut placed = place(&dest);
        if matches!(&placed, Err(e) if e.kind() == io::ErrorKind::NotFound) && dir != top {
            // A hashed queue whose subdirectory did not exist (another writer may have made it
            // since: creating it is idempotent). The new directories' own entries must survive
            // a power cut as much as the file's.
            spool.create_hash_dir(queue, dir).map_err(io_err(dir))?;
            for parent in dir.ancestors().skip(1).take_while(|p| p.starts_with(&top)) {
                spool.sync_dir(parent).map_err(io_err(parent))?;
            }
            placed = place(&dest);
        }
        match placed {
            Ok(()) => {
                spool.sync_dir(dir).map_err(io_err(&dest))?;
                return Ok(id);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => std::thread::sleep(std::time::Duration::from_micros(1)),
            Err(e) => return Err(io_err(&dest)(e)),
        }
    }
    Err(QueueError::Io { path: spool.queue_dir(queue), source: io::Error::other("cannot find a unique queue ID") })
}

/// Append a recipient result. It is not fsynced here: call [`sync`] before the file moves on
/// (to `deferred`); a file that is removed next needs no sync, since a crash before the removal
/// only means another delivery attempt (at-least-once, as in Postfix).
pub fn append_result(path: &Path, result: &RecipientResult) -> Result<(), QueueError> {
    let line = serde_json::to_string(result).map_err(|e| QueueError::Corrupt { path: path.to_path_buf(), what: e.to_string() })?;
    let mut f: File = OpenOptions::new().append(true).open(path).map_err(io_err(path))?;
    f.write_all(format!("R {line}\n").as_bytes()).map_err(io_err(path))
}

/// Make the appended results durable.
pub fn sync(path: &Path) -> Result<(), QueueError> {
    File::open(path).and_then(|f| f.sync_data()).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            sender: "s@example.org".into(),
            recipients: vec![
                Recipient { address: "a@example.net".into(), orig: None },
                Recipient { address: "b@other.example".into(), orig: Some("B@other.example".into()) },
            ],
            arrival_us: 1_800_000_000_000_000,
            client: ClientInfo { name: "localhost".into(), addr: "127.0.0.1".into(), helo: "c".into(), protocol: "ESMTP".into() },
        }
    }

    fn spool() -> (tempfile::TempDir, Spool) {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::new(tmp.path().to_path_buf(), &["deferred".into()], 1);
        spool.create_dirs().unwrap();
        (tmp, spool)
    }

    #[test]
    fn write_read_and_results() {
        let (_t, spool) = spool();
        let msg = b"Subject: x\r\n\r\nEND\n\0binary\xff\r\n.\r\n".to_vec();
        let id = write_new(&spool, QueueName::Incoming, &envelope(), &msg).unwrap();
        let path = spool.path(QueueName::Incoming, &id);
        let qf = read(&path).unwrap();
        assert_eq!(qf.envelope, envelope());
        assert_eq!(qf.message, msg);
        assert_eq!(qf.pending().count(), 2);
        append_result(&path, &RecipientResult { index: 0, outcome: Outcome::Sent, dsn: "2.0.0".into(), text: "ok".into() }).unwrap();
        append_result(&path, &RecipientResult { index: 1, outcome: Outcome::Deferred, dsn: "4.4.1".into(), text: "refused".into() })
            .unwrap();
        let qf = read(&path).unwrap();
        assert_eq!(qf.pending().map(|(i, _)| i).collect::<Vec<_>>(), vec![1]);
        assert_eq!(qf.last_result(1).unwrap().text, "refused");
        let names: Vec<_> = fs::read_dir(spool.queue_dir(QueueName::Incoming)).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "no temporary file is left: {names:?}");
    }

    #[test]
    fn torn_files_are_never_messages() {
        let (_t, spool) = spool();
        let id = write_new(&spool, QueueName::Incoming, &envelope(), b"hello\r\n").unwrap();
        let path = spool.path(QueueName::Incoming, &id);
        let whole = fs::read(&path).unwrap();
        for cut in 0..whole.len() {
            assert!(decode(&whole[..cut], &path).is_err(), "a file cut at {cut} of {} parsed", whole.len());
        }
        // A torn result append: the partial line is ignored, the rest is intact.
        let mut torn = whole.clone();
        torn.extend_from_slice(b"R {\"index\":0,\"outc");
        let qf = decode(&torn, &path).unwrap();
        assert!(qf.results.is_empty());
        // A garbage result line in the middle is corruption, not silence.
        let mut bad = whole;
        bad.extend_from_slice(b"R nonsense\nR {}\n");
        assert!(decode(&bad, &path).is_err());
    }

    #[test]
    fn streamed_messages_larger_than_a_chunk_and_abandoned_files() {
        let (_t, spool) = spool();
        for creation in [Creation::Anonymous, Creation::Temporary] {
            // Pieces of odd sizes, so that the length field is written after the file has grown.
            let message: Vec<u8> = (0..3 * WRITE_CHUNK + 17).map(|i| (i % 251) as u8).collect();
            let mut f = NewQueueFile::create_by(&spool, QueueName::Incoming, &envelope(), creation).unwrap();
            for piece in message.chunks(1000 + 7) {
                f.write(piece).unwrap();
            }
            assert_eq!(f.message_len(), message.len() as u64);
            let id = f.commit(&spool).unwrap();
            assert_eq!(read(&spool.path(QueueName::Incoming, &id)).unwrap().message, message, "{creation:?}");
            // A file dropped before its commit leaves nothing behind.
            let mut f = NewQueueFile::create_by(&spool, QueueName::Incoming, &envelope(), creation).unwrap();
            f.write(&message).unwrap();
            drop(f);
        }
        let names: Vec<_> = fs::read_dir(spool.queue_dir(QueueName::Incoming)).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "two messages and no temporary file: {names:?}");
    }

    #[test]
    fn both_creations_name_a_complete_file_in_a_hashed_queue() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::new(tmp.path().to_path_buf(), &["incoming".into()], 2);
        spool.create_dirs().unwrap();
        for creation in [Creation::Anonymous, Creation::Temporary] {
            let mut f = NewQueueFile::create_by(&spool, QueueName::Incoming, &envelope(), creation).unwrap();
            f.write(b"hello\r\n").unwrap();
            let id = f.commit(&spool).unwrap();
            let path = spool.path(QueueName::Incoming, &id);
            assert_ne!(path.parent().unwrap(), spool.queue_dir(QueueName::Incoming), "{creation:?}: hashed");
            assert_eq!(read(&path).unwrap().message, b"hello\r\n", "{creation:?}");
            let mode = fs::metadata(&path).unwrap().mode() & 0o777;
            assert_eq!(mode & !0o600, 0, "{creation:?}: private file, mode {mode:o}");
        }
        assert_eq!(spool.list(QueueName::Incoming).unwrap().len(), 2);
        let top: Vec<_> = fs::read_dir(spool.queue_dir(QueueName::Incoming)).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(top.iter().all(|n| n.len() <= 2), "only hash directories at the top, no temporary files: {top:?}");
    }

    #[test]
    fn concurrent_writers_create_hash_directories_without_failing() {
        for _round in 0..10 {
            let tmp = tempfile::tempdir().unwrap();
            let spool = Spool::new(tmp.path().to_path_buf(), &["incoming".into()], 1);
            spool.create_dirs().unwrap();
            let threads: Vec<_> = (0..16)
                .map(|_| {
                    let spool = spool.clone();
                    std::thread::spawn(move || {
                        (0..8).map(|_| write_new(&spool, QueueName::Incoming, &envelope(), b"x")).collect::<Result<Vec<_>, _>>()
                    })
                })
                .collect();
            let written: usize = threads.into_iter().map(|t| t.join().unwrap().unwrap().len()).sum();
            assert_eq!(spool.list(QueueName::Incoming).unwrap().len(), written);
        }
    }

    #[test]
    fn unique_ids_under_load() {
        let (_t, spool) = spool();
        let mut ids = std::collections::HashSet::new();
        for _ in 0..200 {
            assert!(ids.insert(write_new(&spool, QueueName::Incoming, &envelope(), b"x").unwrap()));
        }
    }
}
