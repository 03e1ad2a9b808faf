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
//! that lacks the `END` line is torn and is never taken for a message. The envelope line of a
//! message whose headers may still ask for SMTPUTF8 (smtpd's autodetection) ends in spaces,
//! room for the flag to be written in place before the commit; JSON readers skip them.
//!
//! Result records are self-delimiting: each starts with `R {` and is one JSON object ending at
//! its newline, and JSON never has an unescaped `"` inside a string, so `R {"` cannot occur
//! inside a record. A torn record (a crash or a full disk during an append, possibly followed
//! by later appends on the same line, or a block of NULs the file system left behind) is
//! therefore skipped wherever it is, and the records after it are still read: a line that is
//! not a record is read again from its last `R {"`. A skipped record only means that its
//! recipient is tried again (at-least-once, as after any crash).
//!
//! The queue manager reads only the envelope and the results ([`read_envelope`] seeks over the
//! message); the delivery agent reads the message itself.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, Write};
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
use crate::dsn::{Notify, Ret};

const MAGIC: &str = "POSTERN-QUEUE 1\n";
const END: &[u8] = b"\nEND\n";

/// A queue file problem.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// The file is torn or not a queue file (or a new one cannot be made as asked: an envelope
    /// that cannot be encoded, or changed without room for it).
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orig: Option<String>,
    /// RCPT's `NOTIFY=` (RFC 3461); absent in files written before DSN support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
    /// RCPT's `ORCPT=`, decoded: `rfc822;user@example.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orcpt: Option<String>,
}

/// Sender, recipients and arrival.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub sender: String,
    pub recipients: Vec<Recipient>,
    /// Arrival time, microseconds since the epoch.
    pub arrival_us: u64,
    #[serde(default)]
    pub client: ClientInfo,
    /// The sender asked for SMTPUTF8 (`MAIL FROM:<...> SMTPUTF8`), or the message's source is
    /// autodetected and it has a UTF-8 address or header (`smtputf8_autodetect_classes`):
    /// next hops must offer SMTPUTF8 for the deliveries that need it. Written only when set,
    /// so files without it read as before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub smtputf8: bool,
    /// An address verification probe (Postfix's `DEL_REQ_FLAG_MTA_VRFY`, see verify(8)): routed
    /// like mail, but the delivery agent stops after RCPT and reports to the verify service;
    /// one attempt settles every recipient, and nothing is ever returned or deferred.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verify_probe: bool,
    /// MAIL's `RET=` (RFC 3461); absent in files written before DSN support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ret: Option<Ret>,
    /// MAIL's `ENVID=`, decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envid: Option<String>,
    /// The submitter's full name for the `From:` header cleanup adds (Postfix's
    /// `REC_TYPE_FULL`): `sendmail -F`, `NAME`, or the password file's; as given, unsanitized.
    /// Absent in files written before it, and for mail that has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fullname: Option<String>,
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
    /// Result records that were torn and skipped.
    pub torn_records: usize,
    /// A delay notice was sent for the message (`delay_warning_time`): none is sent again.
    pub delay_notified: bool,
}

impl QueueFile {
    /// The last result recorded for each recipient.
    pub fn last_result(&self, index: usize) -> Option<&RecipientResult> {
        last_result(&self.results, index)
    }

    /// Recipients that are neither sent nor bounced.
    pub fn pending(&self) -> impl Iterator<Item = (usize, &Recipient)> {
        pending(&self.envelope, &self.results)
    }
}

/// A queue file without its message: what the queue manager keeps of an active message, so
/// that its memory per message is envelope-sized whatever the message size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEnvelope {
    pub envelope: Envelope,
    /// The message's length in bytes (`size=` in the log).
    pub message_len: u64,
    pub results: Vec<RecipientResult>,
    /// Result records that were torn and skipped.
    pub torn_records: usize,
    /// A delay notice was sent for the message (`delay_warning_time`): none is sent again.
    pub delay_notified: bool,
}

impl QueueEnvelope {
    /// The last result recorded for each recipient.
    pub fn last_result(&self, index: usize) -> Option<&RecipientResult> {
        last_result(&self.results, index)
    }

    /// Recipients that are neither sent nor bounced.
    pub fn pending(&self) -> impl Iterator<Item = (usize, &Recipient)> {
        pending(&self.envelope, &self.results)
    }
}

fn last_result(results: &[RecipientResult], index: usize) -> Option<&RecipientResult> {
    results.iter().rev().find(|r| r.index == index)
}

fn pending<'a>(envelope: &'a Envelope, results: &'a [RecipientResult]) -> impl Iterator<Item = (usize, &'a Recipient)> {
    envelope
        .recipients
        .iter()
        .enumerate()
        .filter(|(i, _)| !matches!(last_result(results, *i).map(|r| r.outcome), Some(Outcome::Sent | Outcome::Bounced)))
}

/// Microseconds since the epoch, now.
pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// What a reader wants of the message between the envelope and the results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// All of it.
    Whole,
    /// Nothing: it is skipped with a seek.
    Skip,
}

/// The parts of a queue file, read from `r` (a file or a byte slice).
struct Parts {
    envelope: Envelope,
    message_len: u64,
    message: Vec<u8>,
    results: Vec<RecipientResult>,
    torn_records: usize,
    delay_notified: bool,
}

fn corrupt(path: &Path, what: &str) -> QueueError {
    QueueError::Corrupt { path: path.to_path_buf(), what: what.to_string() }
}

/// One `\n`-terminated header line; end of input before the newline is a torn file.
fn read_line<R: BufRead>(r: &mut R, path: &Path, what: &str) -> Result<Vec<u8>, QueueError> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).map_err(io_err(path))?;
    if line.pop() != Some(b'\n') {
        return Err(corrupt(path, what));
    }
    Ok(line)
}

/// The envelope and the message length; `r` is left at the first byte of the message.
fn read_head<R: BufRead>(r: &mut R, path: &Path) -> Result<(Envelope, u64), QueueError> {
    if read_line(r, path, "bad header")? != MAGIC.as_bytes()[..MAGIC.len() - 1] {
        return Err(corrupt(path, "bad header"));
    }
    let env = read_line(r, path, "truncated envelope")?;
    let envelope: Envelope = serde_json::from_slice(&env).map_err(|e| corrupt(path, &format!("envelope: {e}")))?;
    let len = read_line(r, path, "truncated length")?;
    let len: u64 = std::str::from_utf8(&len).ok().and_then(|s| s.parse().ok()).ok_or_else(|| corrupt(path, "bad length"))?;
    Ok((envelope, len))
}

fn read_parts<R: BufRead + Seek>(r: &mut R, path: &Path, body: Body) -> Result<Parts, QueueError> {
    let (envelope, message_len) = read_head(r, path)?;
    let mut message = Vec::new();
    match body {
        // `take` grows the buffer as bytes arrive: a hostile length cannot make us allocate
        // more than the file holds.
        Body::Whole => {
            r.by_ref().take(message_len).read_to_end(&mut message).map_err(io_err(path))?;
        }
        Body::Skip => {
            let skip = i64::try_from(message_len).map_err(|_| corrupt(path, "bad length"))?;
            r.seek_relative(skip).map_err(io_err(path))?;
        }
    }
    let mut end = [0u8; END.len()];
    let got = read_up_to(r, &mut end, path)?;
    if (body == Body::Whole && message.len() as u64 != message_len) || got != END.len() || end != END {
        return Err(corrupt(path, "missing end marker"));
    }
    let mut tail = Vec::new();
    r.read_to_end(&mut tail).map_err(io_err(path))?;
    let records = parse_results(&tail, envelope.recipients.len());
    Ok(Parts {
        envelope,
        message_len,
        message,
        results: records.results,
        torn_records: records.torn,
        delay_notified: records.delay_notified,
    })
}

/// Fill `buf` as far as the input goes; returns how much was read.
fn read_up_to<R: Read>(r: &mut R, buf: &mut [u8], path: &Path) -> Result<usize, QueueError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(path)(e)),
        }
    }
    Ok(got)
}

/// What the records after the end marker say.
struct Records {
    results: Vec<RecipientResult>,
    /// Torn records skipped.
    torn: usize,
    /// A delay notice record is among them.
    delay_notified: bool,
}

/// The record that says a delay notice was sent: `R {"delay_notice_us":N}`. It starts like a
/// result record, so the torn-record rules hold for it too; a reader from before it skips it
/// as torn (and may send a delay notice again).
#[derive(Debug, Serialize, Deserialize)]
struct DelayNoticeRecord {
    delay_notice_us: u64,
}

/// One record after the end marker.
enum Record {
    Result(RecipientResult),
    DelayNotice,
}

/// The records after the end marker, and how many torn ones were skipped.
fn parse_results(tail: &[u8], recipients: usize) -> Records {
    let mut out = Records { results: Vec::new(), torn: 0, delay_notified: false };
    let mut lines = tail.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        // The piece after the last newline is empty, or an append torn before its newline.
        let last = lines.peek().is_none();
        if line.is_empty() {
            continue;
        }
        match (last, parse_record(line, recipients)) {
            (false, Some((record, garbage))) => {
                match record {
                    Record::Result(r) => out.results.push(r),
                    Record::DelayNotice => out.delay_notified = true,
                }
                out.torn += usize::from(garbage);
            }
            _ => out.torn += 1,
        }
    }
    out
}

/// A record in `line`: the whole line, or else one that starts after torn bytes and runs to
/// the end of the line (true: bytes were skipped). Since `R {"` never occurs inside a record,
/// such a record starts at the last `R {"` of the line: one more parse, however long the line.
fn parse_record(line: &[u8], recipients: usize) -> Option<(Record, bool)> {
    let record = |from: &[u8]| {
        let json = from.strip_prefix(b"R ")?;
        match serde_json::from_slice::<RecipientResult>(json) {
            Ok(r) => (r.index < recipients).then_some(Record::Result(r)),
            Err(_) => serde_json::from_slice::<DelayNoticeRecord>(json).ok().map(|_| Record::DelayNotice),
        }
    };
    if let Some(r) = record(line) {
        return Some((r, false));
    }
    let start = line.windows(4).rposition(|w| w == b"R {\"").filter(|&i| i > 0)?;
    record(&line[start..]).map(|r| (r, true))
}

/// Parse the bytes of a queue file.
pub fn decode(bytes: &[u8], path: &Path) -> Result<QueueFile, QueueError> {
    let p = read_parts(&mut io::Cursor::new(bytes), path, Body::Whole)?;
    Ok(QueueFile {
        envelope: p.envelope,
        message: p.message,
        results: p.results,
        torn_records: p.torn_records,
        delay_notified: p.delay_notified,
    })
}

/// Read and parse a queue file.
pub fn read(path: &Path) -> Result<QueueFile, QueueError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    decode(&bytes, path)
}

/// Read a queue file's envelope and results; the message is skipped over, not read.
pub fn read_envelope(path: &Path) -> Result<QueueEnvelope, QueueError> {
    let mut r = BufReader::new(File::open(path).map_err(io_err(path))?);
    let p = read_parts(&mut r, path, Body::Skip)?;
    Ok(QueueEnvelope {
        envelope: p.envelope,
        message_len: p.message_len,
        results: p.results,
        torn_records: p.torn_records,
        delay_notified: p.delay_notified,
    })
}

/// The first `limit` bytes of a queue file's message (all of it when shorter), and its whole
/// length; for a bounce, which returns at most `bounce_size_limit` bytes of the original.
pub fn read_message_prefix(path: &Path, limit: u64) -> Result<(Vec<u8>, u64), QueueError> {
    let mut r = BufReader::new(File::open(path).map_err(io_err(path))?);
    let (_, len) = read_head(&mut r, path)?;
    let mut prefix = Vec::new();
    r.take(len.min(limit)).read_to_end(&mut prefix).map_err(io_err(path))?;
    Ok((prefix, len))
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

impl Creation {
    /// Anonymous where `/proc/self/fd` can name the file.
    fn best() -> Creation {
        static PROC_FD: OnceLock<bool> = OnceLock::new();
        if *PROC_FD.get_or_init(|| Path::new("/proc/self/fd").is_dir()) { Creation::Anonymous } else { Creation::Temporary }
    }
}

/// How much of a message a [`NewQueueFile`] keeps in memory before it writes to the file.
pub const WRITE_CHUNK: usize = 64 * 1024;

/// Width of the length field: any `u64` fits, so the field can be filled in last.
const LENGTH_WIDTH: usize = 20;

/// Room left after the envelope of a file whose message may still turn out to ask for
/// SMTPUTF8 (its headers come after the envelope): what setting the flag adds to the JSON.
/// Until then the room is spaces, which JSON ignores.
const SMTPUTF8_ROOM: usize = r#","smtputf8":true"#.len();

/// A queue file being written: the envelope first, then the message in pieces of any size,
/// then [`NewQueueFile::commit`] makes it durable and names it. Dropped without a commit, it
/// leaves nothing behind under a queue-ID name (an anonymous file simply vanishes).
///
/// Its queue ID is known from the start, as Postfix's cleanup knows it when it opens the file:
/// the message itself may carry it (smtpd's `Received: ... id QUEUEID`, cleanup's Message-ID).
pub struct NewQueueFile {
    file: File,
    /// The name it gets at commit: its creation time and its inode.
    id: QueueId,
    created: SystemTime,
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
    /// The envelope of a file started with room for the SMTPUTF8 flag, until it is set.
    smtputf8_undecided: Option<Envelope>,
}

impl NewQueueFile {
    /// Start a new queue file in `queue` holding `envelope`.
    pub fn create(spool: &Spool, queue: QueueName, envelope: &Envelope) -> Result<NewQueueFile, QueueError> {
        Self::create_by(spool, queue, envelope, Creation::best(), false)
    }

    /// Start a new queue file whose envelope does not ask for SMTPUTF8 yet but may, once the
    /// headers are seen ([`NewQueueFile::request_smtputf8`]): smtpd's autodetection.
    pub fn create_smtputf8_undecided(spool: &Spool, queue: QueueName, envelope: &Envelope) -> Result<NewQueueFile, QueueError> {
        Self::create_by(spool, queue, envelope, Creation::best(), !envelope.smtputf8)
    }

    fn create_by(
        spool: &Spool,
        queue: QueueName,
        envelope: &Envelope,
        creation: Creation,
        undecided: bool,
    ) -> Result<NewQueueFile, QueueError> {
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
                    return Self::create_by(spool, queue, envelope, Creation::Temporary, undecided);
                }
                Err(e) => return Err(io_err(&top)(e)),
            },
            Creation::Temporary => {
                let temp = top.join(format!(".tmp.{}.{}", std::process::id(), TEMP_SEQ.fetch_add(1, Ordering::Relaxed)));
                let f = OpenOptions::new().write(true).create_new(true).mode(mode).open(&temp).map_err(io_err(&temp))?;
                (f, temp.clone(), Some(temp))
            }
        };
        // While the file is open no other file has its inode, so the name is free unless a file
        // was brought in from another file system (see `name_file`).
        let created = SystemTime::now();
        let inode = file.metadata().map_err(io_err(&path))?.ino();
        let id = QueueId::generate(created, inode);
        let mut pending = Vec::with_capacity(MAGIC.len() + env.len() + LENGTH_WIDTH + 2);
        pending.extend_from_slice(MAGIC.as_bytes());
        pending.extend_from_slice(env.as_bytes());
        if undecided {
            pending.extend_from_slice(&[b' '; SMTPUTF8_ROOM]);
        }
        pending.push(b'\n');
        let length_at = pending.len() as u64;
        pending.extend_from_slice(&[b'0'; LENGTH_WIDTH]);
        pending.push(b'\n');
        let smtputf8_undecided = undecided.then(|| envelope.clone());
        Ok(NewQueueFile { file, id, created, path, temp, queue, pending, flushed: 0, length_at, message_len: 0, smtputf8_undecided })
    }

    /// Make the envelope ask for SMTPUTF8 (the file was started with
    /// [`NewQueueFile::create_smtputf8_undecided`]): it is rewritten in place, in its room.
    pub fn request_smtputf8(&mut self) -> Result<(), QueueError> {
        let no_room = |path: &Path| corrupt(path, "envelope written without room for SMTPUTF8");
        let mut envelope = self.smtputf8_undecided.take().ok_or_else(|| no_room(&self.path))?;
        envelope.smtputf8 = true;
        let env = serde_json::to_string(&envelope).map_err(|e| corrupt(&self.path, &e.to_string()))?;
        // The line as it was: the old envelope and its room, up to the newline.
        let line_len = self.length_at as usize - MAGIC.len() - 1;
        if env.len() > line_len {
            return Err(no_room(&self.path));
        }
        let line = format!("{env:line_len$}");
        self.patch(MAGIC.len() as u64, line.as_bytes())
    }

    /// Overwrite bytes written before, in memory or in the file.
    fn patch(&mut self, at: u64, bytes: &[u8]) -> Result<(), QueueError> {
        match at.checked_sub(self.flushed) {
            Some(at) => {
                let at = at as usize;
                self.pending[at..at + bytes.len()].copy_from_slice(bytes);
                Ok(())
            }
            None => {
                use std::os::unix::fs::FileExt;
                self.file.write_all_at(bytes, at).map_err(io_err(&self.path))
            }
        }
    }

    /// The queue ID the file will have once committed.
    pub fn id(&self) -> &QueueId {
        &self.id
    }

    /// When the file was created (the time in its queue ID).
    pub fn created(&self) -> SystemTime {
        self.created
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
        // Still in memory for every small message: then one write for the whole file.
        self.patch(self.length_at, length.as_bytes())?;
        self.pending.extend_from_slice(END);
        self.flush_pending()?;
        self.file.sync_all().map_err(io_err(&self.path))?;
        let (queue, id) = (self.queue, self.id.clone());
        match self.temp.clone() {
            None => name_file(spool, queue, &id, |dest| link_anonymous(&self.file, dest))?,
            Some(temp) => name_file(spool, queue, &id, |dest| rename_noreplace(&temp, dest))?,
        }
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

/// Give a durable file its queue-ID name `id` with `place` (which must not replace an existing
/// name), then make the name durable. The name is taken only if a file with the same inode and
/// creation microsecond already holds it, which needs a file copied in from another file
/// system under its old name: that is an error (the message already names its ID), and the
/// writer's client tries again later.
fn name_file(spool: &Spool, queue: QueueName, id: &QueueId, mut place: impl FnMut(&Path) -> io::Result<()>) -> Result<(), QueueError> {
    let dest = spool.path(queue, id);
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
    placed.map_err(io_err(&dest))?;
    spool.sync_dir(dir).map_err(io_err(&dest))
}

/// Append a recipient result. It is not fsynced here: call [`sync`] before the file moves on
/// (to `deferred`); a file that is removed next needs no sync, since a crash before the removal
/// only means another delivery attempt (at-least-once, as in Postfix).
pub fn append_result(path: &Path, result: &RecipientResult) -> Result<(), QueueError> {
    let line = serde_json::to_string(result).map_err(|e| QueueError::Corrupt { path: path.to_path_buf(), what: e.to_string() })?;
    let mut f: File = OpenOptions::new().append(true).open(path).map_err(io_err(path))?;
    f.write_all(format!("R {line}\n").as_bytes()).map_err(io_err(path))
}

/// Record that a delay notice was sent, so that none is sent again (also after a restart). Not
/// fsynced here, as [`append_result`].
pub fn append_delay_notice(path: &Path, at_us: u64) -> Result<(), QueueError> {
    let line = serde_json::to_string(&DelayNoticeRecord { delay_notice_us: at_us })
        .map_err(|e| QueueError::Corrupt { path: path.to_path_buf(), what: e.to_string() })?;
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
                Recipient { address: "a@example.net".into(), ..Default::default() },
                Recipient { address: "b@other.example".into(), orig: Some("B@other.example".into()), ..Default::default() },
            ],
            arrival_us: 1_800_000_000_000_000,
            client: ClientInfo { name: "localhost".into(), addr: "127.0.0.1".into(), helo: "c".into(), protocol: "ESMTP".into() },
            ..Default::default()
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
        // A torn result append: the partial line is skipped and counted, the rest is intact.
        let mut torn = whole.clone();
        torn.extend_from_slice(b"R {\"index\":0,\"outc");
        let qf = decode(&torn, &path).unwrap();
        assert!(qf.results.is_empty());
        assert_eq!(qf.torn_records, 1);
    }

    fn record(index: usize, outcome: Outcome, text: &str) -> Vec<u8> {
        let r = RecipientResult { index, outcome, dsn: "2.0.0".into(), text: text.into() };
        format!("R {}\n", serde_json::to_string(&r).unwrap()).into_bytes()
    }

    #[test]
    fn torn_records_anywhere_are_skipped_and_the_rest_is_read() {
        struct Case {
            name: &'static str,
            /// What comes between the first good record (recipient 0) and the last (recipient 1).
            middle: Vec<u8>,
            torn: usize,
        }
        let sent0 = record(0, Outcome::Sent, "ok");
        let cut = |n: usize| sent0[..n].to_vec();
        // A reply text that looks like a record start: inside JSON its quotes are escaped.
        let tricky = record(0, Outcome::Deferred, "R {\"index\":1,\"outcome\":\"sent\",\"dsn\":\"2.0.0\",\"text\":\"x\"}");
        let cases = [
            Case { name: "nothing", middle: vec![], torn: 0 },
            // A crash mid-append, then later appends: the next record follows on the same line.
            Case { name: "torn, glued to the next", middle: cut(20), torn: 1 },
            Case { name: "torn inside the record start", middle: cut(3), torn: 1 },
            Case { name: "torn after the prefix", middle: cut(1), torn: 1 },
            Case { name: "torn line of its own", middle: [cut(25), b"\n".to_vec()].concat(), torn: 1 },
            Case { name: "two torn in a row", middle: [cut(10), cut(30)].concat(), torn: 1 },
            Case { name: "zeros the file system left", middle: vec![0; 4096], torn: 1 },
            Case { name: "zeros with newlines", middle: [vec![0; 100], b"\n".to_vec(), vec![0; 100]].concat(), torn: 2 },
            Case { name: "garbage lines", middle: b"R nonsense\nR {}\n\xff\xfe\n".to_vec(), torn: 3 },
            Case { name: "a record for no recipient", middle: record(7, Outcome::Sent, "x"), torn: 1 },
            // One parse per line, not one per record start in it.
            Case { name: "a long line of record starts", middle: b"R {\"a\":[\"".repeat(50_000), torn: 1 },
            Case { name: "a reply text that looks like a record", middle: tricky.clone(), torn: 0 },
            Case { name: "that text torn", middle: tricky[..tricky.len() - 3].to_vec(), torn: 1 },
        ];
        let (_t, spool) = spool();
        let id = write_new(&spool, QueueName::Incoming, &envelope(), b"hello\r\n").unwrap();
        let path = spool.path(QueueName::Incoming, &id);
        let whole = fs::read(&path).unwrap();
        for c in &cases {
            let bytes = [whole.clone(), sent0.clone(), c.middle.clone(), record(1, Outcome::Bounced, "no")].concat();
            let qf = decode(&bytes, &path).unwrap_or_else(|e| panic!("{}: {e}", c.name));
            assert_eq!(qf.torn_records, c.torn, "{}", c.name);
            assert_eq!(
                qf.last_result(0).map(|r| r.outcome),
                Some(if c.name.starts_with("a reply") { Outcome::Deferred } else { Outcome::Sent }),
                "{}",
                c.name
            );
            assert_eq!(qf.last_result(1).map(|r| r.outcome), Some(Outcome::Bounced), "{}: the record after it is read", c.name);
            assert_eq!(qf.message, b"hello\r\n", "{}", c.name);
            // The queue manager's reader sees the same.
            fs::write(&path, &bytes).unwrap();
            let env = read_envelope(&path).unwrap();
            assert_eq!((env.results, env.torn_records, env.message_len), (qf.results, qf.torn_records, 7), "{}", c.name);
        }
    }

    #[test]
    fn a_delay_notice_record_is_read_back_among_the_results() {
        let (_t, spool) = spool();
        let id = write_new(&spool, QueueName::Incoming, &envelope(), b"hello\r\n").unwrap();
        let path = spool.path(QueueName::Incoming, &id);
        assert!(!read_envelope(&path).unwrap().delay_notified);
        append_result(&path, &RecipientResult { index: 0, outcome: Outcome::Deferred, dsn: "4.4.1".into(), text: "no".into() }).unwrap();
        append_delay_notice(&path, 7).unwrap();
        append_result(&path, &RecipientResult { index: 1, outcome: Outcome::Sent, dsn: "2.0.0".into(), text: "ok".into() }).unwrap();
        let env = read_envelope(&path).unwrap();
        assert!(env.delay_notified);
        assert_eq!((env.results.len(), env.torn_records), (2, 0));
        assert!(read(&path).unwrap().delay_notified);
        // Torn, it is skipped like any other record: at worst a second notice.
        let whole = fs::read(&path).unwrap();
        let at = whole.windows(8).position(|w| w == b"R {\"dela").unwrap();
        let torn = [&whole[..at + 10], b"\n".as_slice()].concat();
        let qf = decode(&torn, &path).unwrap();
        assert!(!qf.delay_notified);
        assert_eq!(qf.torn_records, 1);
    }

    fn head_bytes() -> Vec<u8> {
        let env = serde_json::to_string(&envelope()).unwrap();
        format!("{MAGIC}{env}\n{:020}\nhello{}", 5, std::str::from_utf8(END).unwrap()).into_bytes()
    }

    #[test]
    fn dsn_requests_round_trip_and_files_from_before_them_still_read() {
        let mut env = envelope();
        env.ret = Some(Ret::Hdrs);
        env.envid = Some("QQ314159".into());
        env.recipients[0].notify = Notify::parse("SUCCESS,DELAY");
        env.recipients[0].orcpt = Some("rfc822;A@example.net".into());
        env.fullname = Some("Jo Bloggs".into());
        let (_t, spool) = spool();
        let id = write_new(&spool, QueueName::Incoming, &env, b"x").unwrap();
        assert_eq!(read(&spool.path(QueueName::Incoming, &id)).unwrap().envelope, env);
        // An envelope as files had it before DSN support: no DSN fields, nothing requested.
        let old = r#"{"sender":"s@example.org","recipients":[{"address":"a@example.net"}],"arrival_us":5,"client":{"name":"","addr":"","helo":"","protocol":""}}"#;
        let qf = decode(format!("{MAGIC}{old}\n{:020}\nx\nEND\n", 1).as_bytes(), Path::new("q")).unwrap();
        assert_eq!(
            (qf.envelope.ret, qf.envelope.envid, qf.envelope.recipients[0].notify, qf.envelope.recipients[0].orcpt.clone()),
            (None, None, None, None)
        );
        assert_eq!(qf.envelope.fullname, None, "no full name either");
        // A stored NOTIFY that is not RFC 3461 syntax makes the file corrupt, not a guess.
        let bad = old.replace(r#""address":"a@example.net""#, r#""address":"a@example.net","notify":"NEVER,DELAY""#);
        assert!(decode(format!("{MAGIC}{bad}\n{:020}\nx\nEND\n", 1).as_bytes(), Path::new("q")).is_err());
    }

    fn outcome() -> impl proptest::strategy::Strategy<Value = Outcome> {
        proptest::prop_oneof![
            proptest::strategy::Just(Outcome::Sent),
            proptest::strategy::Just(Outcome::Bounced),
            proptest::strategy::Just(Outcome::Deferred)
        ]
    }

    proptest::proptest! {
        /// Whatever follows a queue file's end marker, decoding never fails or panics.
        #[test]
        fn any_tail_never_fails(tail in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let bytes = [head_bytes(), tail].concat();
            proptest::prop_assert!(decode(&bytes, Path::new("q")).is_ok());
        }

        /// Any bytes at all give an error or a file, never a panic.
        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode(&bytes, Path::new("q"));
        }

        /// Records with torn bytes before each (a crash mid-append, zeros, garbage lines) are
        /// all read back, in order.
        #[test]
        fn every_record_survives_torn_bytes_before_it(
            records in proptest::collection::vec((0..2usize, outcome(), ".{0,40}"), 1..8),
            torn in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..60), 8),
        ) {
            let mut bytes = head_bytes();
            let mut want = Vec::new();
            for (i, (index, outcome, text)) in records.into_iter().enumerate() {
                bytes.extend_from_slice(&torn[i]);
                let r = RecipientResult { index, outcome, dsn: "4.0.0".into(), text };
                bytes.extend_from_slice(format!("R {}\n", serde_json::to_string(&r).unwrap()).as_bytes());
                want.push(r);
            }
            let qf = decode(&bytes, Path::new("q")).unwrap();
            proptest::prop_assert_eq!(qf.results, want);
        }
    }

    #[test]
    fn envelope_reader_and_message_prefix() {
        let (_t, spool) = spool();
        let msg = b"Subject: x\r\n\r\nEND\n\nR {}\n".to_vec();
        let id = write_new(&spool, QueueName::Incoming, &envelope(), &msg).unwrap();
        let path = spool.path(QueueName::Incoming, &id);
        append_result(&path, &RecipientResult { index: 1, outcome: Outcome::Sent, dsn: "2.0.0".into(), text: "ok".into() }).unwrap();
        let env = read_envelope(&path).unwrap();
        assert_eq!(env.envelope, envelope());
        assert_eq!(env.message_len, msg.len() as u64);
        assert_eq!(env.pending().map(|(i, _)| i).collect::<Vec<_>>(), vec![0]);
        assert_eq!(read_message_prefix(&path, 9).unwrap(), (msg[..9].to_vec(), msg.len() as u64));
        assert_eq!(read_message_prefix(&path, 1 << 20).unwrap(), (msg.clone(), msg.len() as u64));
        // A file cut anywhere before its end marker is never an envelope either.
        let whole = fs::read(&path).unwrap();
        let end = whole.windows(END.len()).rposition(|w| w == END).unwrap() + END.len();
        for cut in 0..end {
            fs::write(&path, &whole[..cut]).unwrap();
            assert!(read_envelope(&path).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn streamed_messages_larger_than_a_chunk_and_abandoned_files() {
        let (_t, spool) = spool();
        for creation in [Creation::Anonymous, Creation::Temporary] {
            // Pieces of odd sizes, so that the length field is written after the file has grown.
            let message: Vec<u8> = (0..3 * WRITE_CHUNK + 17).map(|i| (i % 251) as u8).collect();
            let mut f = NewQueueFile::create_by(&spool, QueueName::Incoming, &envelope(), creation, false).unwrap();
            for piece in message.chunks(1000 + 7) {
                f.write(piece).unwrap();
            }
            assert_eq!(f.message_len(), message.len() as u64);
            let id = f.commit(&spool).unwrap();
            assert_eq!(read(&spool.path(QueueName::Incoming, &id)).unwrap().message, message, "{creation:?}");
            // A file dropped before its commit leaves nothing behind.
            let mut f = NewQueueFile::create_by(&spool, QueueName::Incoming, &envelope(), creation, false).unwrap();
            f.write(&message).unwrap();
            drop(f);
        }
        let names: Vec<_> = fs::read_dir(spool.queue_dir(QueueName::Incoming)).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "two messages and no temporary file: {names:?}");
    }

    #[test]
    fn smtputf8_asked_for_after_the_envelope_is_written() {
        let (_t, spool) = spool();
        // A small message (the envelope still in memory) and a large one (already on disk).
        for size in [10, 2 * WRITE_CHUNK] {
            for (creation, request) in [(Creation::Anonymous, true), (Creation::Temporary, true), (Creation::Anonymous, false)] {
                let mut f = NewQueueFile::create_by(&spool, QueueName::Incoming, &envelope(), creation, true).unwrap();
                f.write(&vec![b'x'; size]).unwrap();
                if request {
                    f.request_smtputf8().unwrap();
                }
                let id = f.commit(&spool).unwrap();
                let qf = read(&spool.path(QueueName::Incoming, &id)).unwrap();
                assert_eq!(qf.envelope, Envelope { smtputf8: request, ..envelope() }, "{size} {creation:?}");
                assert_eq!(qf.message.len(), size);
            }
        }
        // Without room it is an error, not a torn envelope.
        let mut f = NewQueueFile::create(&spool, QueueName::Incoming, &envelope()).unwrap();
        assert!(matches!(f.request_smtputf8(), Err(QueueError::Corrupt { .. })));
        let mut f = NewQueueFile::create_smtputf8_undecided(&spool, QueueName::Incoming, &envelope()).unwrap();
        f.request_smtputf8().unwrap();
        assert!(matches!(f.request_smtputf8(), Err(QueueError::Corrupt { .. })), "once only");
    }

    #[test]
    fn both_creations_name_a_complete_file_in_a_hashed_queue() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::new(tmp.path().to_path_buf(), &["incoming".into()], 2);
        spool.create_dirs().unwrap();
        for creation in [Creation::Anonymous, Creation::Temporary] {
            let mut f = NewQueueFile::create_by(&spool, QueueName::Incoming, &envelope(), creation, false).unwrap();
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
    fn the_id_is_known_before_the_commit() {
        let (_t, spool) = spool();
        let mut f = NewQueueFile::create(&spool, QueueName::Incoming, &envelope()).unwrap();
        let early = f.id().clone();
        assert_eq!(early, QueueId::generate(f.created(), fs::metadata(format!("/proc/self/fd/{}", f.file.as_raw_fd())).unwrap().ino()));
        f.write(format!("Received: by x id {early}\r\n").as_bytes()).unwrap();
        assert_eq!(f.commit(&spool).unwrap(), early);
        assert!(
            read(&spool.path(QueueName::Incoming, &early)).unwrap().message.starts_with(format!("Received: by x id {early}").as_bytes())
        );
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
