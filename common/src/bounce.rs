//! Delivery status notifications (RFC 3464 multipart/report) with Postfix's texts: failure
//! notices for recipients that bounced or expired, delay notices for ones deferred longer than
//! `delay_warning_time`, success notices for ones relayed to a next hop without DSN. The sender
//! hears only of recipients whose `NOTIFY=` asks for that notice (RFC 3461: without NOTIFY,
//! failures and delays); `ENVID=` and `ORCPT=` appear as `Original-Envelope-Id:` and
//! `Original-Recipient:`, and `RET=HDRS` returns only the headers. Delay and success notices
//! always return only the headers. A notification to the sender has the null sender; when that one fails
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
use std::time::{Duration, SystemTime};

use crate::config::{ConfigError, ParamError, Params};
use crate::datetime::{from_us, rfc5322};
use crate::dsn::{Notify, Ret};
use crate::queue::file::{ClientInfo, Envelope, QueueError, Recipient, now_us, read_message_prefix, write_new};
use crate::queue::{QueueId, QueueName, Spool};
use crate::text::printable;
use crate::{log_info, log_warning};

/// What notices look like and where copies go.
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
    /// `notify_classes` has `delay`: a copy of each delay notice goes to `delay_notice_recipient`.
    pub notify_delay: bool,
    /// `delay_notice_recipient`, qualified with `$myorigin`.
    pub delay_notice_recipient: String,
    /// `delay_warning_time` (zero: no delay notices), for the delay notice's text.
    pub delay_warning_time: Duration,
    /// `maximal_queue_lifetime`, for the delay notice's text and `Will-Retry-Until:`.
    pub maximal_queue_lifetime: Duration,
}

impl BounceConfig {
    pub fn from_params(p: &Params) -> Result<BounceConfig, ConfigError> {
        let myorigin = p.get("myorigin")?;
        let qualify = |a: String| if a.contains('@') { a } else { format!("{a}@{myorigin}") };
        let classes = p.list("notify_classes")?;
        let class = |name: &str| classes.iter().any(|c| c.eq_ignore_ascii_case(name));
        let limit = p.int("bounce_size_limit")?;
        let size_limit =
            u64::try_from(limit).map_err(|_| ParamError::Int { name: "bounce_size_limit".into(), value: limit.to_string() })?;
        Ok(BounceConfig {
            myhostname: p.get("myhostname")?,
            size_limit,
            notify_2bounce: class("2bounce") || class("bounce"),
            postmaster: qualify(p.get("2bounce_notice_recipient")?),
            double_bounce_sender: qualify(p.get("double_bounce_sender")?),
            notify_delay: class("delay"),
            delay_notice_recipient: qualify(p.get("delay_notice_recipient")?),
            delay_warning_time: p.time("delay_warning_time")?,
            maximal_queue_lifetime: p.time("maximal_queue_lifetime")?,
        })
    }
}

/// Which notice: Postfix's failure, delay and success templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// Recipients that bounced or expired (`Action: failed`).
    Failure,
    /// Recipients still deferred past `delay_warning_time` (`Action: delayed`).
    Delay,
    /// Recipients handed to a next hop that does not offer DSN (`Action: relayed`).
    Success,
}

impl Report {
    /// The NOTIFY keyword a sender asks for this notice with.
    fn class(self) -> Notify {
        match self {
            Report::Failure => Notify::FAILURE,
            Report::Delay => Notify::DELAY,
            Report::Success => Notify::SUCCESS,
        }
    }

    fn action(self) -> &'static str {
        match self {
            Report::Failure => "failed",
            Report::Delay => "delayed",
            Report::Success => "relayed",
        }
    }

    /// The word in the log line (`sender non-delivery notification: ID`).
    fn log_name(self) -> &'static str {
        match self {
            Report::Failure => "non-delivery",
            Report::Delay => "delay",
            Report::Success => "delivery status",
        }
    }
}

/// One recipient a notice reports on.
#[derive(Debug, Clone)]
pub struct RecipientStatus {
    pub address: String,
    /// The recipient's `NOTIFY=`: which notices its sender wants.
    pub notify: Option<Notify>,
    /// Its `ORCPT=` (`rfc822;address`), for `Original-Recipient:`.
    pub orcpt: Option<String>,
    pub dsn: String,
    pub text: String,
}

impl RecipientStatus {
    /// `rcpt` with the status `dsn` and `text`.
    pub fn of(rcpt: &Recipient, dsn: &str, text: &str) -> RecipientStatus {
        RecipientStatus {
            address: rcpt.address.clone(),
            notify: rcpt.notify,
            orcpt: rcpt.orcpt.clone(),
            dsn: dsn.into(),
            text: text.into(),
        }
    }
}

/// Who a notification goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// The sender of the original message (from the null sender).
    Sender,
    /// The postmaster, for a notification that could not be delivered (from
    /// `double_bounce_sender`).
    Postmaster,
    /// `delay_notice_recipient`, for a copy of a delay notice (`notify_classes = delay`; from
    /// `double_bounce_sender`).
    DelayCopy,
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
    /// MAIL's `ENVID=`, for `Original-Envelope-Id:`.
    pub envid: Option<&'a str>,
    /// MAIL's `RET=`: `HDRS` returns the headers only in a failure notice.
    pub ret: Option<Ret>,
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

/// The subject of a notice (Postfix's template subjects).
fn subject(report: Report, notice: Notice) -> &'static str {
    match (report, notice) {
        (Report::Failure, Notice::Sender) => "Undelivered Mail Returned to Sender",
        (Report::Failure, _) => "Postmaster Copy: Undelivered Mail",
        (Report::Delay, Notice::Sender) => "Delayed Mail (still being retried)",
        (Report::Delay, _) => "Postmaster Warning: Delayed Mail",
        (Report::Success, _) => "Successful Mail Delivery Report",
    }
}

/// The explanation at the top of a notice to the sender (the postmaster gets none).
fn preamble(cfg: &BounceConfig, report: Report) -> String {
    let host = &cfg.myhostname;
    match report {
        Report::Failure => format!(
            "This is the mail system at host {host}.\r\n\r\nI'm sorry to have to inform you that your message could not\r\nbe delivered to one or more recipients.\r\n\r\n"
        ),
        Report::Delay => format!(
            "This is the mail system at host {host}.\r\n\r\n\
             ####################################################################\r\n\
             # THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\r\n\
             ####################################################################\r\n\r\n\
             Your message could not be delivered for more than {} hour(s).\r\n\
             It will be retried until it is {} day(s) old.\r\n\r\n",
            cfg.delay_warning_time.as_secs() / 3600,
            cfg.maximal_queue_lifetime.as_secs() / 86400
        ),
        Report::Success => format!(
            "This is the mail system at host {host}.\r\n\r\n\
             Your message was successfully delivered to the destination(s)\r\n\
             listed below. If the message was delivered to mailbox you will\r\n\
             receive no further notifications. Otherwise you may still receive\r\n\
             notifications of mail delivery errors from other systems.\r\n\r\n"
        ),
    }
}

/// Build the notification text.
pub fn build(
    cfg: &BounceConfig,
    report: Report,
    notice: Notice,
    to: &str,
    original: &Original<'_>,
    recipients: &[RecipientStatus],
) -> Vec<u8> {
    let host = &cfg.myhostname;
    let queue_id = original.queue_id;
    let boundary = format!("{queue_id}.{}/{host}", now_us() / 1_000_000);
    let mut out = String::new();
    out.push_str(&format!("From: MAILER-DAEMON@{host} (Mail Delivery System)\r\n"));
    out.push_str(&format!("To: {}\r\n", safe(to)));
    out.push_str(&format!("Subject: {}\r\n", subject(report, notice)));
    out.push_str(&format!("Date: {}\r\n", rfc5322(SystemTime::now())));
    out.push_str("Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n");
    out.push_str(&format!("Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\r\n"));
    out.push_str("This is a MIME-encapsulated message.\r\n\r\n");
    out.push_str(&format!("--{boundary}\r\nContent-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"));
    if notice == Notice::Sender {
        out.push_str(&preamble(cfg, report));
    }
    for r in recipients {
        out.push_str(&format!("<{}>: {}\r\n", safe(&r.address), safe(&r.text)));
    }
    out.push_str(&format!("\r\n--{boundary}\r\nContent-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n"));
    out.push_str(&format!("Reporting-MTA: dns; {host}\r\n"));
    if let Some(envid) = original.envid {
        out.push_str(&format!("Original-Envelope-Id: {}\r\n", safe(envid)));
    }
    out.push_str(&format!(
        "X-Postern-Queue-ID: {queue_id}\r\nX-Postern-Sender: rfc822; {}\r\nArrival-Date: {}\r\n",
        safe(original.sender),
        rfc5322(from_us(original.arrival_us))
    ));
    for r in recipients {
        out.push_str(&format!("\r\nFinal-Recipient: rfc822; {}\r\n", safe(&r.address)));
        if let Some(orcpt) = &r.orcpt {
            out.push_str(&format!("Original-Recipient: {}\r\n", safe(orcpt)));
        }
        out.push_str(&format!(
            "Action: {}\r\nStatus: {}\r\nDiagnostic-Code: X-Postern; {}\r\n",
            report.action(),
            safe(&r.dsn),
            safe(&r.text)
        ));
        if report == Report::Delay {
            let until = from_us(original.arrival_us) + cfg.maximal_queue_lifetime;
            out.push_str(&format!("Will-Retry-Until: {}\r\n", rfc5322(until)));
        }
    }
    // Postfix returns the complete original only when it fits in the limit; cutting a message
    // short would damage its MIME structure, so a larger one is returned as its headers. Only a
    // failure notice to the sender returns more than the headers, and not with RET=HDRS.
    let whole = (cfg.size_limit == 0 || original.size <= cfg.size_limit)
        && report == Report::Failure
        && notice != Notice::DelayCopy
        && original.ret != Some(Ret::Hdrs);
    let undelivered = if report == Report::Success { "" } else { "Undelivered " };
    let (description, kind, content) = if whole {
        ("Message", "message/rfc822", original.prefix)
    } else {
        ("Message Headers", "text/rfc822-headers", headers_of(original.prefix, cfg.size_limit))
    };
    out.push_str(&format!("\r\n--{boundary}\r\nContent-Description: {undelivered}{description}\r\nContent-Type: {kind}\r\n\r\n"));
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
    report: Report,
    notice: Notice,
    original: &Original<'_>,
    recipients: &[RecipientStatus],
) -> Result<QueueId, QueueError> {
    let (env_sender, to) = match notice {
        Notice::Sender => (String::new(), original.sender.to_string()),
        Notice::Postmaster => (cfg.double_bounce_sender.clone(), cfg.postmaster.clone()),
        Notice::DelayCopy => (cfg.double_bounce_sender.clone(), cfg.delay_notice_recipient.clone()),
    };
    let body = build(cfg, report, notice, &to, original, recipients);
    let env = Envelope {
        sender: env_sender,
        recipients: vec![Recipient { address: to, ..Default::default() }],
        arrival_us: now_us(),
        client: ClientInfo { name: "localhost".into(), addr: "127.0.0.1".into(), helo: String::new(), protocol: "local".into() },
        ..Default::default()
    };
    write_new(spool, QueueName::Incoming, &env, &body)
}

/// Report on recipients of message `id` (in `path`, with `envelope`): a failure notice to the
/// sender, or to the postmaster when the failed message was itself a notification (a double
/// bounce), never silently dropped; a delay notice to the sender (and its copy to
/// `delay_notice_recipient` with `notify_classes = delay`); a success notice to the sender. The
/// sender hears only of recipients whose NOTIFY asks for the notice (RFC 3461; without NOTIFY,
/// failure and delay). Run by the queue manager's worker, and by smtpd's ODMR provider for what
/// it delivered from `deferred` itself. True when a notification was queued in `incoming` (the
/// caller triggers an incoming scan when the queue manager is not itself).
pub fn notify(
    spool: &Spool,
    cfg: &BounceConfig,
    report: Report,
    id: &QueueId,
    path: &Path,
    envelope: &Envelope,
    recipients: &[RecipientStatus],
) -> bool {
    let sender = envelope.sender.as_str();
    let notice = match (report, notice_for(cfg, sender)) {
        (Report::Failure, Ok(n)) => n,
        (Report::Failure, Err(Discard::PostmasterNotice)) => {
            log_warning!("{id}: undeliverable postmaster notification discarded");
            return false;
        }
        (Report::Failure, Err(Discard::NotEnabled)) => {
            log_info!("{id}: undeliverable non-delivery notification discarded (notify_classes has no 2bounce)");
            return false;
        }
        // Delays and successes of a notification are nobody's business.
        (_, Ok(Notice::Sender)) => Notice::Sender,
        (_, _) => return false,
    };
    let wanted: Vec<RecipientStatus> = if notice == Notice::Sender {
        recipients.iter().filter(|r| Notify::wants(r.notify, report.class())).cloned().collect()
    } else {
        recipients.to_vec()
    };
    let copy = report == Report::Delay && cfg.notify_delay;
    if wanted.is_empty() && !copy {
        return false;
    }
    // Read only now, and at most bounce_size_limit bytes (plus one to tell whether the
    // message fits): the body is not kept while the message is active.
    let (prefix, size) = read_original(path, cfg.size_limit).unwrap_or_else(|e| {
        log_warning!("{id}: read the original message for the notification: {e}");
        (Vec::new(), 0)
    });
    let original = Original {
        queue_id: id,
        sender,
        arrival_us: envelope.arrival_us,
        envid: envelope.envid.as_deref(),
        ret: envelope.ret,
        prefix: &prefix,
        size,
    };
    let mut queued = false;
    let mut send =
        |notice: Notice, recipients: &[RecipientStatus]| match queue_notification(spool, cfg, report, notice, &original, recipients) {
            Ok(notice_id) => {
                let whom = match notice {
                    Notice::Sender => "sender",
                    Notice::Postmaster | Notice::DelayCopy => "postmaster",
                };
                log_info!("{id}: {whom} {} notification: {notice_id}", report.log_name());
                queued = true;
            }
            Err(e) => log_warning!("{id}: cannot queue the {} notification: {e}", report.log_name()),
        };
    if !wanted.is_empty() {
        send(notice, &wanted);
    }
    if copy {
        send(Notice::DelayCopy, recipients);
    }
    queued
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
            notify_delay: false,
            delay_notice_recipient: "postmaster@mx.example".into(),
            delay_warning_time: Duration::from_secs(4 * 3600),
            maximal_queue_lifetime: Duration::from_secs(5 * 86400),
        }
    }

    fn report(cfg: &BounceConfig, notice: Notice, failed: &[RecipientStatus], msg: &[u8]) -> String {
        notice_text(cfg, Report::Failure, notice, failed, msg, None)
    }

    fn notice_text(cfg: &BounceConfig, report: Report, notice: Notice, rcpts: &[RecipientStatus], msg: &[u8], ret: Option<Ret>) -> String {
        let id = QueueId::parse("ABC123").unwrap();
        let original = Original {
            queue_id: &id,
            sender: "s@example.org",
            arrival_us: 0,
            envid: Some("QQ314159"),
            ret,
            prefix: msg,
            size: msg.len() as u64,
        };
        String::from_utf8(build(cfg, report, notice, "s@example.org", &original, rcpts)).unwrap()
    }

    fn failed(text: &str) -> [RecipientStatus; 1] {
        [RecipientStatus { address: "u@example.net".into(), notify: None, orcpt: None, dsn: "5.1.1".into(), text: text.into() }]
    }

    #[test]
    fn dsn_fields_ret_hdrs_and_the_three_reports() {
        let msg = b"Subject: hi\r\n\r\nthe body\r\n";
        let rcpt = [RecipientStatus {
            address: "u@example.net".into(),
            notify: Notify::parse("SUCCESS,FAILURE,DELAY"),
            orcpt: Some("rfc822;U@example.net".into()),
            dsn: "5.1.1".into(),
            text: "550 no".into(),
        }];
        let text = notice_text(&cfg(50000, false), Report::Failure, Notice::Sender, &rcpt, msg, Some(Ret::Hdrs));
        assert!(
            text.contains("Reporting-MTA: dns; mx.example\r\nOriginal-Envelope-Id: QQ314159\r\nX-Postern-Queue-ID: ABC123\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Final-Recipient: rfc822; u@example.net\r\nOriginal-Recipient: rfc822;U@example.net\r\nAction: failed\r\n"),
            "{text}"
        );
        assert!(text.contains("Content-Description: Undelivered Message Headers\r\nContent-Type: text/rfc822-headers\r\n"), "{text}");
        assert!(!text.contains("the body"), "RET=HDRS: {text}");
        let full = notice_text(&cfg(50000, false), Report::Failure, Notice::Sender, &rcpt, msg, Some(Ret::Full));
        assert!(full.contains("the body"), "{full}");

        let delay = notice_text(&cfg(50000, false), Report::Delay, Notice::Sender, &rcpt, msg, None);
        assert!(delay.contains("Subject: Delayed Mail (still being retried)\r\n"), "{delay}");
        assert!(delay.contains("delivered for more than 4 hour(s).\r\nIt will be retried until it is 5 day(s) old."), "{delay}");
        assert!(delay.contains("Action: delayed\r\n") && delay.contains("Will-Retry-Until: "), "{delay}");
        assert!(delay.contains("Content-Description: Undelivered Message Headers\r\n") && !delay.contains("the body"), "{delay}");

        let success = notice_text(&cfg(50000, false), Report::Success, Notice::Sender, &rcpt, msg, None);
        assert!(success.contains("Subject: Successful Mail Delivery Report\r\n"), "{success}");
        assert!(success.contains("Your message was successfully delivered to the destination(s)"), "{success}");
        assert!(success.contains("Action: relayed\r\n") && !success.contains("Will-Retry-Until"), "{success}");
        assert!(success.contains("Content-Description: Message Headers\r\nContent-Type: text/rfc822-headers\r\n"), "{success}");
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
