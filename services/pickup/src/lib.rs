//! pickup - Postern local mail pickup
//!
//! # Synopsis
//! `pickup unix n - n 60 1 pickup` in master.cf.
//!
//! # Description
//! Copies mail that `sendmail` wrote into `maildrop` (durably, so submission works while the mail
//! system is down) into `incoming` as a new queue file owned by the mail system, removes the
//! maildrop file, and tells the queue manager. It runs on every master wakeup and whenever it
//! is triggered (`sendmail` triggers it after each submission).
//!
//! # Security
//! `maildrop` is writable by every local user, so nothing there is trusted until it is checked
//! (`common::queue::maildrop`): a name is looked at with `lstat` and opened with
//! `O_NOFOLLOW|O_NONBLOCK`, and must be a regular file with one link and at most
//! `message_size_limit` plus 4 MB of envelope; it is read within that cap and parsed
//! defensively, and its envelope addresses must be free of control characters. A FIFO, a
//! symbolic link, a hard link, a huge (sparse) file or garbage never stops pickup: such a file
//! goes to `corrupt/` with a warning that names its owner, and pickup goes on with the next.
//! A file that cannot be *read* now (EACCES, EMFILE, ENOMEM, EIO) is not corrupt: it stays where
//! it is and is tried again at the next scan; pickup never moves or removes a file it could not
//! read.
//!
//! Who submitted a message comes from the file's owner, not from its content: the arrival time
//! is pickup's clock, the client information is that of a local submission, and pickup itself
//! prepends Postfix's `Received: by $myhostname ($mail_name, from userid N)` header, with `id`
//! the maildrop file's queue ID and the date. As Postfix's cleanup does for a local submission,
//! it adds what the message lacks at the end of its header section: `Message-Id:
//! <YYYYMMDDhhmmss.QUEUEID@$myhostname>` (the new queue file's ID and creation time, UTC),
//! `Date:`, `From:` (the envelope sender, with the full name `sendmail` recorded, written as
//! `header_from_format` says: `From: Full Name <sender>` by default; a name that is not ASCII
//! in RFC 2047 encoded words of `full_name_encoding_charset`) and
//! `undisclosed_recipients_header` when there is no
//! `To:` or `Cc:` (the `Resent-` forms once a `Resent-` header is there). The body is copied
//! byte for byte. With `sendmail` in `smtputf8_autodetect_classes` (the default), a message
//! whose sender, a recipient or a header is UTF-8 asks for SMTPUTF8 at the next hop.
//!
//! Pending maildrop files are not readable by other local users: `sendmail` writes them with
//! mode 0600 and grants read access to `mail_owner` alone with a POSIX ACL entry; it sets the
//! owner-execute bit last, and pickup takes only files that have it (Postfix's "ready" mode), so
//! a file whose ACL is not in place yet is left for the next scan. See `sendmail` for file
//! systems without ACLs.
//!
//! # Diagnostics
//! `<id>: uid=<uid> from=<sender>` for each message taken, then `<id>: message-id=<...>`;
//! `warning: saving corrupt file "<name>" from queue "maildrop" to queue "corrupt": uid=<uid>: <why>`;
//! `warning: maildrop/<name>: uid=<uid>: <error>; leaving it for a later attempt`.
//!
//! # Bugs
//! With `message_size_limit = 0` there is no size cap: a maildrop file is read whole, as large
//! as it is (the queue file writer takes a whole message). A file that never becomes ready
//! (`sendmail` killed between writing and releasing it) stays in `maildrop` unlisted and
//! untouched, as in Postfix; remove it by hand. SMTPUTF8 autodetection looks at the message's
//! own header section, not at the headers of its MIME parts (Postfix's cleanup looks at those
//! too).
//!
//! # Configuration parameters
//! `message_size_limit`, `myhostname`, `mail_name`, `undisclosed_recipients_header`,
//! `header_from_format`, `full_name_encoding_charset`, `smtputf8_enable`,
//! `smtputf8_autodetect_classes`, `queue_directory`, `local_client_connection_limit`,
//! `local_client_timeout` (for clients of `public/pickup`), `queue_service_name`,
//! `trigger_timeout` (telling the queue manager about new mail, over one kept connection).

mod service;

pub use service::run;

use std::time::SystemTime;

use common::cleanup::{self, FromFormat, FullName, Originator};
use common::config::{ConfigError, Params};
use common::queue::file::{ClientInfo, Envelope, NewQueueFile, QueueError, now_us};
use common::queue::maildrop::{self, MaildropError};
use common::queue::{QueueId, QueueName, Spool};
use common::smtputf8::{self, Autodetect, Source};
use common::{log_info, log_warning};

/// What pickup needs from main.cf.
#[derive(Debug, Clone)]
pub struct PickupConfig {
    /// The largest maildrop file taken (`None`: no limit).
    pub cap: Option<u64>,
    pub myhostname: String,
    pub mail_name: String,
    /// `undisclosed_recipients_header`.
    pub undisclosed_recipients: String,
    /// `smtputf8_autodetect_classes`.
    pub autodetect: Autodetect,
    /// `header_from_format`, `full_name_encoding_charset`.
    pub from_format: FromFormat,
}

impl PickupConfig {
    pub fn from_params(p: &Params) -> Result<PickupConfig, ConfigError> {
        let limit = u64::try_from(p.int("message_size_limit")?).unwrap_or(0);
        Ok(PickupConfig {
            cap: maildrop::size_cap(limit),
            myhostname: p.get("myhostname")?,
            mail_name: p.get("mail_name")?,
            undisclosed_recipients: cleanup::undisclosed_recipients_header(p)?,
            autodetect: Autodetect::from_params(p)?,
            from_format: FromFormat::from_params(p)?,
        })
    }
}

/// Write the incoming queue file for maildrop file `maildrop_id`: pickup's `Received:` header
/// (the user ID, never a name; the maildrop file's ID, as Postfix's pickup writes it), the
/// message with the headers a local submission lacks added at the end of its header section.
/// Returns the new ID and the message-id log texts.
fn copy_to_incoming(
    spool: &Spool,
    cfg: &PickupConfig,
    maildrop_id: &QueueId,
    uid: u32,
    now: SystemTime,
    envelope: &Envelope,
    message: &[u8],
) -> Result<(QueueId, Vec<String>), QueueError> {
    let mut file = NewQueueFile::create(spool, QueueName::Incoming, envelope)?;
    let date = common::datetime::rfc5322(now);
    let received = format!("Received: by {} ({}, from userid {uid})\r\n\tid {maildrop_id}; {date}\r\n", cfg.myhostname, cfg.mail_name);
    let (end, seen) = cleanup::scan_headers(message);
    let origin = Originator {
        queue_id: file.id(),
        created: file.created(),
        arrival: now,
        myhostname: &cfg.myhostname,
        sender: &envelope.sender,
        fullname: envelope.fullname.as_deref().map(|name| FullName { name, format: &cfg.from_format }),
        undisclosed_recipients: &cfg.undisclosed_recipients,
    };
    let done = cleanup::header_end(&seen, true, &origin);
    file.write(received.as_bytes())?;
    file.write(&message[..end])?;
    file.write(done.headers.as_bytes())?;
    file.write(&message[end..])?;
    Ok((file.commit(spool)?, done.log))
}

/// Move every good maildrop file to incoming and every bad one to corrupt; returns how many
/// were moved to incoming.
pub fn pickup_all(spool: &Spool, cfg: &PickupConfig) -> usize {
    let ids = match spool.list(QueueName::Maildrop) {
        Ok(ids) => ids,
        Err(e) => {
            log_warning!("scan {}: {e}", spool.queue_dir(QueueName::Maildrop).display());
            return 0;
        }
    };
    let mut moved = 0;
    for id in ids {
        let path = spool.path(QueueName::Maildrop, &id);
        let dropped = match maildrop::read(&path, cfg.cap) {
            Ok(d) => d,
            Err(MaildropError::Vanished | MaildropError::NotReady) => continue,
            Err(e @ MaildropError::Transient { .. }) => {
                log_warning!("maildrop/{id}: {e}; leaving it for a later attempt");
                continue;
            }
            Err(e @ MaildropError::Bad { .. }) => {
                log_warning!("saving corrupt file \"{id}\" from queue \"maildrop\" to queue \"corrupt\": {e}");
                if let Err(e) = spool.move_file(&id, QueueName::Maildrop, QueueName::Corrupt) {
                    log_warning!("maildrop/{id}: move to corrupt: {e}");
                }
                continue;
            }
        };
        let uid = dropped.uid;
        let now = SystemTime::now();
        // Only the addresses, the DSN requests (`sendmail -N`, `-R`, `-V`) and the full name
        // (`-F`) come from the file; when and from whom is ours to say, and so is
        // whether it asks for SMTPUTF8 (smtputf8_autodetect_classes has `sendmail` by default).
        let sent = &dropped.file;
        let rcpts = sent.envelope.recipients.iter().map(|r| r.address.as_str());
        let smtputf8 = cfg.autodetect.covers(Source::Sendmail) && smtputf8::derived(&sent.envelope.sender, rcpts, &sent.message);
        let envelope = Envelope {
            sender: dropped.file.envelope.sender,
            recipients: dropped.file.envelope.recipients,
            arrival_us: now_us(),
            client: ClientInfo { name: "localhost".into(), addr: "127.0.0.1".into(), helo: String::new(), protocol: "local".into() },
            smtputf8,
            verify_probe: false,
            ret: dropped.file.envelope.ret,
            envid: dropped.file.envelope.envid,
            fullname: dropped.file.envelope.fullname,
        };
        // A copy, not a rename: the new file belongs to the mail system (the submitter owns
        // the maildrop file) and gets a fresh queue ID, as Postfix's cleanup does.
        match copy_to_incoming(spool, cfg, &id, uid, now, &envelope, &dropped.file.message) {
            Ok((new_id, log)) => {
                log_info!("{new_id}: uid={uid} from=<{}>", envelope.sender);
                for text in log {
                    log_info!("{new_id}: {text}");
                }
                if let Err(e) = maildrop::remove(&path, dropped.dev_ino) {
                    log_warning!("remove maildrop/{id}: {e}");
                }
                moved += 1;
            }
            Err(e) => log_warning!("{id}: copy from maildrop to incoming: {e}"),
        }
    }
    moved
}
