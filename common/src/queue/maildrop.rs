//! Maildrop files: written by any local user (`sendmail`, or by hand), so nothing about one is
//! trusted until it is checked here. pickup (which takes the files) and showq (which lists
//! them) both read them through [`read`]:
//!
//! - the name is looked at with `lstat` first, so that nothing but a regular file is ever
//!   opened (opening a device or a FIFO can have side effects or block);
//! - the file is opened with `O_NOFOLLOW | O_NONBLOCK` and checked again with `fstat`, which
//!   must show the same inode, a regular file and exactly one link;
//! - it is read within a size cap (the message size limit plus [`ENVELOPE_SLACK`]), so that a
//!   huge or growing file never costs more memory than a legitimate one;
//! - it is parsed by the queue file decoder, and its envelope addresses must be printable.
//!
//! Outcomes are kept apart on purpose: a file that cannot be *read* now ([`MaildropError::Transient`]:
//! EACCES, EMFILE, ENOMEM, EIO, ...) stays where it is and is tried again later; only a file
//! that is *not a message* ([`MaildropError::Bad`]) may be moved aside to `corrupt/`.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::file::{self, QueueFile};
use crate::text::{has_control, printable};

/// Room for the envelope on top of the message in a maildrop file: the header line, the
/// envelope as one line of JSON (a few tens of thousands of recipients), the length line and
/// the end marker. `sendmail` refuses to write an envelope larger than this.
pub const ENVELOPE_SLACK: u64 = 4 << 20;

/// The mode bit that says a maildrop file is complete and readable by pickup (owner execute,
/// Postfix's `MAIL_QUEUE_STAT_READY`).
pub const READY: u32 = 0o100;

/// Why a maildrop file was not taken.
#[derive(Debug, thiserror::Error)]
pub enum MaildropError {
    /// The name is gone (another pickup took it, or its owner removed it).
    #[error("file vanished")]
    Vanished,
    /// The file could not be read now (EACCES, EMFILE, ENOMEM, EIO, ...): it is left alone and
    /// tried again later, never moved or removed.
    #[error("uid={uid}: {source}")]
    Transient { uid: u32, source: io::Error },
    /// The file is not released yet (its owner-execute bit is not set: `sendmail` is still
    /// granting pickup access): it is skipped silently, as Postfix skips a file not in its
    /// "ready" mode.
    #[error("file not ready")]
    NotReady,
    /// The file is not a message and never will be (not a regular file, linked twice, too
    /// large, unparsable, hostile addresses): it goes to `corrupt/`.
    #[error("uid={uid}: {what}")]
    Bad { uid: u32, what: String },
}

/// A maildrop file that passed every check.
#[derive(Debug)]
pub struct Dropped {
    /// Who submitted it: the owner of the file, never anything in its content.
    pub uid: u32,
    pub file: QueueFile,
    /// Device and inode, to remove the same file that was read and not a replacement.
    pub dev_ino: (u64, u64),
}

/// The largest maildrop file taken for `message_size_limit` (0 = no limit, as in Postfix).
pub fn size_cap(message_size_limit: u64) -> Option<u64> {
    (message_size_limit > 0).then(|| message_size_limit.saturating_add(ENVELOPE_SLACK))
}

fn kind(m: &Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_symlink() {
        "symbolic link"
    } else if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() || t.is_char_device() {
        "device"
    } else {
        "not a regular file"
    }
}

/// Check what `m` describes: a regular file with one link, within `cap`.
fn check_meta(m: &Metadata, cap: Option<u64>) -> Result<(), MaildropError> {
    let bad = |what: String| MaildropError::Bad { uid: m.uid(), what };
    if !m.file_type().is_file() {
        return Err(bad(format!("not a regular file ({})", kind(m))));
    }
    // A second name means someone else can still change or read the content (or the file is
    // not the submitter's to give: a hard link to a file of another user).
    if m.nlink() != 1 {
        return Err(bad(format!("file has {} links", m.nlink())));
    }
    if let Some(cap) = cap
        && m.size() > cap
    {
        return Err(bad(format!("file size {} exceeds the limit of {cap} bytes", m.size())));
    }
    Ok(())
}

/// Open, check, read and parse the maildrop file at `path`, reading at most `cap` bytes.
pub fn read(path: &Path, cap: Option<u64>) -> Result<Dropped, MaildropError> {
    // Look before opening: never open a FIFO, device or symlink at all.
    let before = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(MaildropError::Vanished),
        Err(source) => return Err(MaildropError::Transient { uid: u32::MAX, source }),
    };
    let uid = before.uid();
    check_meta(&before, cap)?;
    if before.mode() & READY == 0 {
        return Err(MaildropError::NotReady);
    }
    let mut f: File = match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(MaildropError::Vanished),
        // The name was swapped for a symlink since the lstat.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(MaildropError::Bad { uid, what: "symbolic link".into() }),
        Err(source) => return Err(MaildropError::Transient { uid, source }),
    };
    let m = f.metadata().map_err(|source| MaildropError::Transient { uid, source })?;
    if (m.dev(), m.ino()) != (before.dev(), before.ino()) {
        // Replaced between lstat and open: look again at the next scan.
        return Err(MaildropError::Transient { uid, source: io::Error::other("file replaced while opening") });
    }
    check_meta(&m, cap)?;
    // The owner can still append while we read: never take more than the cap.
    let limit = cap.unwrap_or(u64::MAX);
    let mut bytes = Vec::new();
    // The size is only a hint for the allocation; a failed allocation is a transient error.
    let hint = usize::try_from(m.size().min(limit)).unwrap_or(usize::MAX);
    bytes.try_reserve_exact(hint).map_err(|e| MaildropError::Transient { uid, source: io::Error::new(io::ErrorKind::OutOfMemory, e) })?;
    (&mut f).take(limit.saturating_add(1)).read_to_end(&mut bytes).map_err(|source| MaildropError::Transient { uid, source })?;
    if bytes.len() as u64 > limit {
        return Err(MaildropError::Bad { uid, what: format!("file grew past the limit of {limit} bytes") });
    }
    let qf = file::decode(&bytes, path).map_err(|e| MaildropError::Bad { uid, what: e.to_string() })?;
    check_envelope(&qf).map_err(|what| MaildropError::Bad { uid, what })?;
    Ok(Dropped { uid, file: qf, dev_ino: (m.dev(), m.ino()) })
}

/// Envelope addresses with control characters could inject commands or log lines later on.
fn check_envelope(qf: &QueueFile) -> Result<(), String> {
    let env = &qf.envelope;
    if has_control(&env.sender) {
        return Err(format!("malformed sender address: {}", printable(&env.sender, '?')));
    }
    if let Some(envid) = env.envid.as_ref().filter(|e| has_control(e)) {
        return Err(format!("malformed envelope ID: {}", printable(envid, '?')));
    }
    if env.recipients.is_empty() {
        return Err("no recipients".into());
    }
    for r in &env.recipients {
        for a in std::iter::once(&r.address).chain(r.orig.as_ref()).chain(r.orcpt.as_ref()) {
            if has_control(a) {
                return Err(format!("malformed recipient address: {}", printable(a, '?')));
            }
        }
    }
    Ok(())
}

/// How [`release`] made a maildrop file readable by pickup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Readable by its owner and `mail_owner` only (a POSIX ACL entry), or the owner is the
    /// mail system's own user.
    Private,
    /// The file system has no POSIX ACLs: the file had to be made readable by everyone (its
    /// name is still not listable by other users).
    WorldReadable,
}

/// POSIX ACL extended attribute layout (`system.posix_acl_access`, little-endian): a version,
/// then entries of tag, permissions and ID, in tag order.
const ACL_XATTR: &std::ffi::CStr = c"system.posix_acl_access";
const ACL_VERSION: u32 = 2;
const ACL_USER_OBJ: u16 = 0x01;
const ACL_USER: u16 = 0x02;
const ACL_GROUP_OBJ: u16 = 0x04;
const ACL_MASK: u16 = 0x10;
const ACL_OTHER: u16 = 0x20;
const ACL_UNDEFINED_ID: u32 = u32::MAX;

fn acl_owner_and(reader_uid: u32) -> Vec<u8> {
    let mut out = ACL_VERSION.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (ACL_USER_OBJ, 7u16, ACL_UNDEFINED_ID),
        (ACL_USER, 4, reader_uid),
        (ACL_GROUP_OBJ, 0, ACL_UNDEFINED_ID),
        (ACL_MASK, 4, ACL_UNDEFINED_ID),
        (ACL_OTHER, 0, ACL_UNDEFINED_ID),
    ] {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    out
}

/// Make the maildrop file at `path` (written private, mode 0600, by `write_new`) readable by
/// pickup, which runs as `reader_uid` (`mail_owner`), and mark it ready. With an ACL the mode
/// becomes 0740 (owner rwx, mask r, others nothing) in one step, so pickup never sees a ready
/// file it cannot read.
pub fn release(path: &Path, reader_uid: u32) -> io::Result<Release> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::PermissionsExt;
    let f = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path)?;
    let owner = f.metadata()?.uid();
    if owner == reader_uid {
        f.set_permissions(fs::Permissions::from_mode(0o700))?;
        return Ok(Release::Private);
    }
    let acl = acl_owner_and(reader_uid);
    // SAFETY: the descriptor is open for the call; name and value are valid for their lengths.
    let rc = unsafe { libc::fsetxattr(f.as_raw_fd(), ACL_XATTR.as_ptr(), acl.as_ptr().cast(), acl.len(), 0) };
    if rc == 0 {
        return Ok(Release::Private);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
        return Err(e);
    }
    f.set_permissions(fs::Permissions::from_mode(0o744))?;
    Ok(Release::WorldReadable)
}

/// Remove the maildrop file at `path` if it is still the file that was read (`dev_ino`).
pub fn remove(path: &Path, dev_ino: (u64, u64)) -> io::Result<()> {
    let m = fs::symlink_metadata(path)?;
    if (m.dev(), m.ino()) != dev_ino {
        return Err(io::Error::other("file replaced since it was read"));
    }
    fs::remove_file(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::file::{ClientInfo, Envelope, Recipient};
    use crate::queue::{QueueName, Spool};

    fn spool() -> (tempfile::TempDir, Spool) {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::new(tmp.path().to_path_buf(), &[], 1);
        spool.create_dirs().unwrap();
        (tmp, spool)
    }

    fn envelope(sender: &str, rcpt: &str) -> Envelope {
        Envelope {
            sender: sender.into(),
            recipients: vec![Recipient { address: rcpt.into(), ..Default::default() }],
            arrival_us: 1,
            client: ClientInfo::default(),
            ..Default::default()
        }
    }

    #[test]
    fn what_is_taken_and_what_is_not() {
        let (t, spool) = spool();
        let me = nix::unistd::geteuid().as_raw();
        let good = file::write_new(&spool, QueueName::Maildrop, &envelope("a@x.example", "b@y.example"), b"hi\r\n").unwrap();
        let good_path = spool.path(QueueName::Maildrop, &good);
        assert!(matches!(read(&good_path, None), Err(MaildropError::NotReady)), "written private, not ready");
        assert_eq!(fs::metadata(&good_path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(release(&good_path, me).unwrap(), Release::Private);
        let d = read(&good_path, size_cap(100)).unwrap();
        assert_eq!(d.file.message, b"hi\r\n");
        let dir = spool.queue_dir(QueueName::Maildrop);
        let fifo = dir.join("FIFO");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        std::os::unix::fs::symlink(spool.path(QueueName::Maildrop, &good), dir.join("LINK")).unwrap();
        fs::hard_link(spool.path(QueueName::Maildrop, &good), t.path().join("other")).unwrap();
        let sparse = File::create(dir.join("SPARSE")).unwrap();
        sparse.set_len(100 << 30).unwrap();
        let mut poisoned = b"POSTERN-QUEUE 1\n{\"sender\":\"a@x\",\"recipients\":[{\"address\":\"b@y\"}],\"arrival_us\":1}\n".to_vec();
        poisoned.extend_from_slice(format!("{}\nhi\nEND\n", usize::MAX).as_bytes());
        fs::write(dir.join("POISON"), &poisoned).unwrap();
        release(&dir.join("POISON"), me).unwrap();
        let injected = file::write_new(&spool, QueueName::Maildrop, &envelope("a@x>\r\nRCPT TO:<evil@z>", "b@y"), b"x").unwrap();
        release(&spool.path(QueueName::Maildrop, &injected), me).unwrap();
        let cases: &[(&str, &str)] = &[
            ("FIFO", "not a regular file (fifo)"),
            ("LINK", "not a regular file (symbolic link)"),
            (good.as_str(), "file has 2 links"),
            ("SPARSE", "exceeds the limit"),
            ("POISON", "corrupt queue file"),
            (injected.as_str(), "malformed sender address: a@x>??RCPT TO:<evil@z>"),
        ];
        for (name, want) in cases {
            match read(&dir.join(name), size_cap(1000)) {
                Err(MaildropError::Bad { what, .. }) => assert!(what.contains(want), "{name}: {what}"),
                other => panic!("{name}: {other:?}"),
            }
        }
        assert!(matches!(read(&dir.join("NOSUCH"), None), Err(MaildropError::Vanished)));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Whatever a local user writes, reading it ends in a message or an error, never a
        /// panic; a cut or mutated good file is never taken for a different envelope.
        #[test]
        fn any_file_content_never_panics(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
            cut in 0usize..400,
            flip in 0usize..400,
        ) {
            let (_t, spool) = spool();
            let dir = spool.queue_dir(QueueName::Maildrop);
            let me = nix::unistd::geteuid().as_raw();
            let id = file::write_new(&spool, QueueName::Maildrop, &envelope("a@x.example", "b@y.example"), &bytes).unwrap();
            let good = fs::read(spool.path(QueueName::Maildrop, &id)).unwrap();
            let mut mutated = good.clone();
            if let Some(b) = mutated.get_mut(flip) {
                *b ^= 0x5a;
            }
            for (name, content) in [("RANDOM", bytes.clone()), ("CUT", good[..cut.min(good.len())].to_vec()), ("FLIPPED", mutated)] {
                let path = dir.join(name);
                fs::write(&path, &content).unwrap();
                release(&path, me).unwrap();
                if let Ok(d) = read(&path, size_cap(1000)) {
                    proptest::prop_assert!(check_envelope(&d.file).is_ok());
                }
            }
        }
    }

    #[test]
    fn the_acl_grants_the_reader_alone() {
        let acl = acl_owner_and(1234);
        assert_eq!(acl.len(), 4 + 5 * 8);
        assert_eq!(&acl[12..20], &[0x02, 0, 4, 0, 0xd2, 0x04, 0, 0], "user:1234:r--");
        // Where the file system has ACLs, another user's file ends up 0740, else 0744.
        let (_t, spool) = spool();
        let id = file::write_new(&spool, QueueName::Maildrop, &envelope("a@x", "b@y"), b"x").unwrap();
        let path = spool.path(QueueName::Maildrop, &id);
        let how = release(&path, nix::unistd::geteuid().as_raw().wrapping_add(1)).unwrap();
        let want = if how == Release::Private { 0o740 } else { 0o744 };
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, want);
    }
}
