//! Non-delivery notifications (RFC 3464 multipart/report) for a message whose recipients
//! bounced or expired. A notification to the sender has the null sender; when that one fails
//! in turn, the postmaster gets a copy (a double bounce, when `notify_classes` asks for it)
//! from `double_bounce_sender`, and mail from that address that fails is discarded with a
//! warning, so that notifications never loop.
//!
//! The original message is returned whole (`message/rfc822`) when it fits in
//! `bounce_size_limit`, otherwise as its headers only (`text/rfc822-headers`, also cut at the
//! limit), as Postfix does so that truncation never damages MIME structure. It is read from
//! the queue file here, not kept in memory while the message is active. Reply text from other
//! hosts is made printable before it goes into a notification (Postfix's `qmgr_bounce` and
//! bounce service). Building and queueing one reads and writes files: the queue manager runs it
//! on its worker; smtpd's ODMR provider off its session's thread.

use std::path::Path;
use std::time::SystemTime;

use crate::config::{ConfigError, ParamError, Params};
use crate::datetime::{from_us, rfc5322};
use crate::queue::file::{ClientInfo, Envelope, QueueError, Recipient, now_us, read_message_prefix, write_new};
use crate::queue::{QueueId, QueueName, Spool};
use crate::text::printable;
use crate::{log_info, log_warning};

/// What non-delivery notifications look like and where failed ones go.
#[derive(Debug, Clone)]
pub struct BounceConfig {
    pub myhostname: String,
    /// `bounce_size_limit`; 0 means no limit.
    pub size_limit: u64,
    /// `notify_classes` has `2bounce` or `bounce`: a failed notification goes to the postmaster.
    pub notify_2bounce: bool,
    /// `2bounce_notice_recipient`, qualified with `$myorigin`.
    pub postmaster: String,
    /// `double_bounce_sender`, qualified with `$myorigin`.
    pub double_bounce_sender: String,
}

impl BounceConfig {
    pub fn from_params(p: &Params) -> Result<BounceConfig, ConfigError> {
        let myorigin = p.get("myorigin")?;
        let qualify = |a: String| if a.contains('@') { a } else { format!("{a}@{myorigin}") };
        let classes = p.list("notify_classes")?;
        let limit = p.int("bounce_size_limit")?;
        let size_limit =
            u64::try_from(limit).map_err(|_| ParamError::Int { name: "bounce_size_limit".into(), value: limit.to_string() })?;
        Ok(BounceConfig {
            myhostname: p.get("myhostname")?,
            size_limit,
            notify_2bounce: classes.iter().any(|c| c.eq_ignore_ascii_case("2bounce") || c.eq_ignore_ascii_case("bounce")),
            postmaster: qualify(p.get("2bounce_notice_recipient")?),
            double_bounce_sender: qualify(p.get("double_bounce_sender")?),
        })
    }
}

/// One failed recipient.
#[derive(Debug, Clone)]
pub struct Failed {
    pub address: String,
    pub dsn: String,
    pub text: String,
}

/// Who a notification goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// The sender of the original message (from the null sender).
    Sender,
    /// The postmaster, for a notification that could not be delivered (from
    /// `double_bounce_sender`).
    Postmaster,
}

/// What to do about failed recipients of a message from `sender` (Postfix's bounce service
/// decisions).
pub fn notice_for(cfg: &BounceConfig, sender: &str) -> Result<Notice, Discard> {
    if sender.eq_ignore_ascii_case(&cfg.double_bounce_sender) {
        Err(Discard::PostmasterNotice)
    } else if sender.is_empty() {
        if cfg.notify_2bounce { Ok(Notice::Postmaster) } else { Err(Discard::NotEnabled) }
    } else {
        Ok(Notice::Sender)
    }
}

/// Why no notification is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discard {
    /// A postmaster notification failed: never a triple bounce.
    PostmasterNotice,
    /// A notification failed and `notify_classes` has neither `2bounce` nor `bounce`.
    NotEnabled,
}

/// The original message as returned in a notification.
#[derive(Debug, Clone)]
pub struct Original<'a> {
    pub queue_id: &'a QueueId,
    pub sender: &'a str,
    pub arrival_us: u64,
    /// The first bytes of the message (see [`read_original`]).
    pub prefix: &'a [u8],
    /// The whole message's length.
    pub size: u64,
}

/// Read what a notification returns of the message in `path`: with a limit, at most one byte
/// more than the limit, so that [`build`] can tell whether the message fits.
pub fn read_original(path: &Path, size_limit: u64) -> Result<(Vec<u8>, u64), QueueError> {
    read_message_prefix(path, if size_limit == 0 { u64::MAX } else { size_limit.saturating_add(1) })
}

/// Text from elsewhere made printable (Postfix's `printable()`): a notification must not
/// carry a peer's CR, LF, escape or NUL bytes.
fn safe(text: &str) -> std::borrow::Cow<'_, str> {
    printable(text, '?')
}

/// The header section of a message (up to and including the line ending before the first
/// empty line), and no more than `limit` bytes of it, cut after a whole line.
fn headers_of(message: &[u8], limit: u64) -> &[u8] {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
        .or_else(|| message.windows(2).position(|w| w == b"\n\n").map(|p| p + 1))
        .unwrap_or(message.len());
    let headers = &message[..end];
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    if limit == 0 || headers.len() <= cap {
        return headers;
    }
    let cut = &headers[..cap];
    &cut[..cut.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1)]
}

/// Build the notification text.
pub fn build(cfg: &BounceConfig, notice: Notice, to: &str, original: &Original<'_>, failed: &[Failed]) -> Vec<u8> {
    let host = &cfg.myhostname;
    let queue_id = original.queue_id;
    let boundary = format!("{queue_id}.{}/{host}", now_us() / 1_000_000);
    let subject = match notice {
        Notice::Sender => "Undelivered Mail Returned to Sender",
        Notice::Postmaster => "Postmaster Copy: Undelivered Mail",
    };
    let mut out = String::new();
    out.push_str(&format!("From: MAILER-DAEMON@{host} (Mail Delivery System)\r\n"));
    out.push_str(&format!("To: {}\r\n", safe(to)));
    out.push_str(&format!("Subject: {subject}\r\n"));
    out.push_str(&format!("Date: {}\r\n", rfc5322(SystemTime::now())));
    out.push_str("Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n");
    out.push_str(&format!("Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\r\n"));
    out.push_str("This is a MIME-encapsulated message.\r\n\r\n");
    out.push_str(&format!("--{boundary}\r\nContent-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"));
    if notice == Notice::Sender {
        out.push_str(&format!("This is the mail system at host {host}.\r\n\r\n"));
        out.push_str("I'm sorry to have to inform you that your message could not\r\nbe delivered to one or more recipients.\r\n\r\n");
    }
    for f in failed {
        out.push_str(&format!("<{}>: {}\r\n", safe(&f.address), safe(&f.text)));
    }
    out.push_str(&format!("\r\n--{boundary}\r\nContent-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n"));
    out.push_str(&format!(
        "Reporting-MTA: dns; {host}\r\nX-Postern-Queue-ID: {queue_id}\r\nX-Postern-Sender: rfc822; {}\r\nArrival-Date: {}\r\n",
        safe(original.sender),
        rfc5322(from_us(original.arrival_us))
    ));
    for f in failed {
        out.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: failed\r\nStatus: {}\r\nDiagnostic-Code: X-Postern; {}\r\n",
            safe(&f.address),
            safe(&f.dsn),
            safe(&f.text)
        ));
    }
    // Postfix returns the complete original only when it fits in the limit; cutting a message
    // short would damage its MIME structure, so a larger one is returned as its headers.
    let whole = cfg.size_limit == 0 || original.size <= cfg.size_limit;
    let (description, kind, content) = if whole {
        ("Undelivered Message", "message/rfc822", original.prefix)
    } else {
        ("Undelivered Message Headers", "text/rfc822-headers", headers_of(original.prefix, cfg.size_limit))
    };
    out.push_str(&format!("\r\n--{boundary}\r\nContent-Description: {description}\r\nContent-Type: {kind}\r\n\r\n"));
    out.push_str(&format!("Return-Path: <{}>\r\n", safe(original.sender)));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(content);
    if !content.ends_with(b"\n") {
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    bytes
}

/// Queue a notification in `incoming`; returns its queue ID.
pub fn queue_notification(
    spool: &Spool,
    cfg: &BounceConfig,
    notice: Notice,
    original: &Original<'_>,
    failed: &[Failed],
) -> Result<QueueId, QueueError> {
    let (env_sender, to) = match notice {
        Notice::Sender => (String::new(), original.sender.to_string()),
        Notice::Postmaster => (cfg.double_bounce_sender.clone(), cfg.postmaster.clone()),
    };
    let body = build(cfg, notice, &to, original, failed);
    let env = Envelope {
        sender: env_sender,
        recipients: vec![Recipient { address: to, ..Default::default() }],
        arrival_us: now_us(),
        client: ClientInfo { name: "localhost".into(), addr: "127.0.0.1".into(), helo: String::new(), protocol: "local".into() },
        ..Default::default()
    };
    write_new(spool, QueueName::Incoming, &env, &body)
}

/// Return failed recipients of message `id` (in `path`) to the sender, or to the postmaster
/// when the failed message was itself a notification (a double bounce), never silently
/// dropped: the queue manager's worker for what it delivered, smtpd's ODMR provider for what it
/// delivered from `deferred` itself. True when a notification was queued in `incoming` (the
/// caller triggers an incoming scan when the queue manager is not itself).
pub fn notify(spool: &Spool, cfg: &BounceConfig, id: &QueueId, path: &Path, sender: &str, arrival_us: u64, failed: &[Failed]) -> bool {
    let notice = match notice_for(cfg, sender) {
        Ok(n) => n,
        Err(Discard::PostmasterNotice) => {
            log_warning!("{id}: undeliverable postmaster notification discarded");
            return false;
        }
        Err(Discard::NotEnabled) => {
            log_info!("{id}: undeliverable non-delivery notification discarded (notify_classes has no 2bounce)");
            return false;
        }
    };
    // Read only now, and at most bounce_size_limit bytes (plus one to tell whether the
    // message fits): the body is not kept while the message is active.
    let (prefix, size) = read_original(path, cfg.size_limit).unwrap_or_else(|e| {
        log_warning!("{id}: read the original message for the notification: {e}");
        (Vec::new(), 0)
    });
    let original = Original { queue_id: id, sender, arrival_us, prefix: &prefix, size };
    match queue_notification(spool, cfg, notice, &original, failed) {
        Ok(bounce_id) => {
            let whom = if notice == Notice::Sender { "sender" } else { "postmaster" };
            log_info!("{id}: {whom} non-delivery notification: {bounce_id}");
            true
        }
        Err(e) => {
            log_warning!("{id}: cannot queue the non-delivery notification: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(size_limit: u64, notify_2bounce: bool) -> BounceConfig {
        BounceConfig {
            myhostname: "mx.example".into(),
            size_limit,
            notify_2bounce,
            postmaster: "postmaster@mx.example".into(),
            double_bounce_sender: "double-bounce@mx.example".into(),
        }
    }

    fn report(cfg: &BounceConfig, notice: Notice, failed: &[Failed], msg: &[u8]) -> String {
        let id = QueueId::parse("ABC123").unwrap();
        let original = Original { queue_id: &id, sender: "s@example.org", arrival_us: 0, prefix: msg, size: msg.len() as u64 };
        String::from_utf8(build(cfg, notice, "s@example.org", &original, failed)).unwrap()
    }

    fn failed(text: &str) -> [Failed; 1] {
        [Failed { address: "u@example.net".into(), dsn: "5.1.1".into(), text: text.into() }]
    }

    #[test]
    fn report_shape_and_whole_original_within_the_limit() {
        let msg = b"Subject: hi\r\nFrom: s@example.org\r\n\r\nsmall body\r\n";
        let text = report(&cfg(50000, false), Notice::Sender, &failed("host said: 550 no such user"), msg);
        assert!(text.contains("Content-Type: multipart/report; report-type=delivery-status;"));
        assert!(text.contains("Final-Recipient: rfc822; u@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n"));
        assert!(text.contains("Content-Description: Undelivered Message\r\nContent-Type: message/rfc822\r\n\r\nReturn-Path: <s@example.org>\r\nSubject: hi\r\n"));
        assert!(text.contains("small body\r\n"), "{text}");
    }

    #[test]
    fn bounce_size_limit_returns_headers_only_and_caps_them() {
        struct Case {
            name: &'static str,
            limit: u64,
            message: Vec<u8>,
            want_whole: bool,
        }
        let headers = b"Subject: big\r\nFrom: s@example.org\r\n\r\n".to_vec();
        let big = [headers.clone(), vec![b'x'; 60000]].concat();
        let cases = [
            Case { name: "default limit, large message", limit: 50000, message: big.clone(), want_whole: false },
            Case { name: "exactly the limit", limit: big.len() as u64, message: big.clone(), want_whole: true },
            Case { name: "no limit", limit: 0, message: big.clone(), want_whole: true },
            Case { name: "small message", limit: 50000, message: [headers.clone(), vec![b'x'; 1000]].concat(), want_whole: true },
        ];
        for c in &cases {
            let text = report(&cfg(c.limit, false), Notice::Sender, &failed("550 no"), &c.message);
            assert_eq!(text.contains("Content-Type: message/rfc822"), c.want_whole, "{}", c.name);
            assert_eq!(text.contains("Content-Type: text/rfc822-headers"), !c.want_whole, "{}", c.name);
            assert!(text.contains("Subject: big\r\n"), "{}", c.name);
            assert_eq!(text.contains(&"x".repeat(100)), c.want_whole, "{}", c.name);
            if c.limit > 0 {
                assert!(text.len() < c.limit as usize + 4000, "{}: {} bytes", c.name, text.len());
            }
        }
        // Headers larger than the limit are cut after a whole line.
        let long = [b"Subject: long\r\n".to_vec(), b"X-Filler: yyyyyyyyyy\r\n".repeat(100), b"\r\nbody\r\n".to_vec()].concat();
        let text = report(&cfg(100, false), Notice::Sender, &failed("550 no"), &long);
        let part = text.split("text/rfc822-headers\r\n\r\n").nth(1).unwrap();
        let returned = part.split("\r\n--").next().unwrap();
        assert!(returned.len() <= 100 + "Return-Path: <s@example.org>\r\n".len() + 2, "{returned:?}");
        assert!(returned.ends_with("yyyy\r\n"), "{returned:?}");
    }

    #[test]
    fn remote_reply_text_is_made_printable() {
        let text = report(&cfg(50000, false), Notice::Sender, &failed("550 evil\r\nX-Injected: yes\x1b[31m\0"), b"Subject: s\r\n\r\n");
        assert!(!text.contains("\r\nX-Injected"), "{text}");
        assert!(text.contains("550 evil??X-Injected: yes?[31m?"), "{text}");
        assert!(!text.contains('\x1b') && !text.contains('\0'));
    }

    #[test]
    fn who_gets_a_notification() {
        let on = cfg(50000, true);
        assert_eq!(notice_for(&on, "s@example.org"), Ok(Notice::Sender));
        assert_eq!(notice_for(&on, ""), Ok(Notice::Postmaster));
        assert_eq!(notice_for(&on, "Double-Bounce@mx.example"), Err(Discard::PostmasterNotice));
        assert_eq!(notice_for(&cfg(50000, false), ""), Err(Discard::NotEnabled));
        let text = report(&on, Notice::Postmaster, &failed("550 no"), b"Subject: s\r\n\r\n");
        assert!(text.contains("Subject: Postmaster Copy: Undelivered Mail\r\n"));
    }
}
