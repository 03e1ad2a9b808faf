//! Delivery status notifications (RFC 3464 multipart/report) with Postfix's texts: failure
//! notices for recipients that bounced or expired, delay notices for ones deferred longer than
//! `delay_warning_time`, success notices for ones relayed to a next hop without DSN. The sender
//! hears only of recipients whose `NOTIFY=` asks for that notice (RFC 3461: without NOTIFY,
//! failures and delays); `ENVID=` and `ORCPT=` appear as `Original-Envelope-Id:` and
//! `Original-Recipient:` (a `utf-8` ORCPT in RFC 6533's 7-bit form, since the report is a
//! `message/delivery-status` part), and `RET=HDRS` returns only the headers. Delay and success notices
//! always return only the headers. A notification to the sender has the null sender; when that one fails
//! in turn, the postmaster gets a copy (a double bounce, when `notify_classes` asks for it)
//! from `double_bounce_sender`, and mail from that address that fails is discarded with a
//! warning, so that notifications never loop. With `notify_classes = bounce` (`delay`) the
//! postmaster also gets a copy of each non-delivery (delay) notice, headers only. The texts
//! are the templates of [`template`]; each notice carries its own `Received:`, `Date:` and
//! `Message-Id:`, as Postfix's post_mail and cleanup give it.
//!
//! The original message is returned whole (`message/rfc822`) when it fits in
//! `bounce_size_limit`, otherwise as its headers only (`text/rfc822-headers`, also cut at the
//! limit), as Postfix does so that truncation never damages MIME structure. It is read from
//! the queue file here, not kept in memory while the message is active. Reply text from other
//! hosts is made printable before it goes into a notification (Postfix's `qmgr_bounce` and
//! bounce service). Building and queueing one reads and writes files: the queue manager runs it
//! on its worker; smtpd's ODMR provider off its session's thread.

pub mod template;

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::config::{ConfigError, ParamError, Params};
use crate::datetime::{from_us, rfc5322, utc_stamp};
use crate::dsn::{Notify, Ret};
use crate::ipc::delivery::DeliveryResult;
use crate::queue::file::{
    ClientInfo, Envelope, NewQueueFile, Outcome, QueueError, Recipient, RecipientResult, append_delay_notice, now_us, read_message_prefix,
};
use crate::queue::{QueueId, QueueName, Spool};
use crate::text::printable;
use crate::{log_info, log_warning};
use template::{Template, Templates};

/// What notices look like and where copies go.
#[derive(Debug, Clone)]
pub struct BounceConfig {
    pub myhostname: String,
    /// `myorigin`: qualifies the notice's `From:` address, as cleanup does for local mail.
    pub myorigin: String,
    /// `mail_name`, in the notice's `Received:` header.
    pub mail_name: String,
    /// `header_from_format = standard`: `Mail Delivery System <MAILER-DAEMON@...>`; otherwise
    /// the obsolete `MAILER-DAEMON@... (Mail Delivery System)`.
    pub from_standard: bool,
    /// The texts: Postfix's built-in templates or `bounce_template_file`'s.
    pub templates: Templates,
    /// `bounce_size_limit`; 0 means no limit.
    pub size_limit: u64,
    /// `notify_classes` has `2bounce` or `bounce`: a failed notification goes to the postmaster.
    pub notify_2bounce: bool,
    /// `notify_classes` has `bounce`: a copy (headers only) of each non-delivery notification
    /// goes to `bounce_notice_recipient`.
    pub notify_bounce: bool,
    /// `bounce_notice_recipient`, qualified with `$myorigin`.
    pub bounce_notice_recipient: String,
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
        let from_standard = !crate::cleanup::header_from_obsolete(p)?;
        let templates = template::load(p).map_err(|e| ConfigError::value("bounce_template_file", e.to_string()))?;
        Ok(BounceConfig {
            myhostname: p.get("myhostname")?,
            myorigin: myorigin.clone(),
            mail_name: p.get("mail_name")?,
            from_standard,
            templates,
            size_limit,
            notify_2bounce: class("2bounce") || class("bounce"),
            notify_bounce: class("bounce"),
            bounce_notice_recipient: qualify(p.get("bounce_notice_recipient")?),
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
    /// `bounce_notice_recipient`, for a copy of a non-delivery notice to the sender
    /// (`notify_classes = bounce`; from `double_bounce_sender`, the message's headers only).
    BounceCopy,
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

impl BounceConfig {
    fn template(&self, report: Report) -> &Template {
        match report {
            Report::Failure => &self.templates.failure,
            Report::Delay => &self.templates.delay,
            Report::Success => &self.templates.success,
        }
    }

    /// The notice's `From:` value: the template's, or Postfix's built-in sender in
    /// `header_from_format`; an unqualified address gets `@$myorigin`, as cleanup gives it.
    fn from(&self, template: &Template) -> String {
        let origin = &self.myorigin;
        match &template.from {
            Some(from) => qualify_header_address(from, origin),
            None if self.from_standard => format!("Mail Delivery System <MAILER-DAEMON@{origin}>"),
            None => format!("MAILER-DAEMON@{origin} (Mail Delivery System)"),
        }
    }
}

/// `value` (`Name <addr>`, `addr (Comment)` or `addr`) with `@origin` appended to an address
/// without a domain.
fn qualify_header_address(value: &str, origin: &str) -> String {
    if let (Some(open), Some(close)) = (value.find('<'), value.rfind('>'))
        && open < close
    {
        let addr = &value[open + 1..close];
        return if addr.contains('@') || addr.is_empty() {
            value.to_string()
        } else {
            format!("{}<{addr}@{origin}>{}", &value[..open], &value[close + 1..])
        };
    }
    let end = value.find(|c: char| c.is_whitespace() || c == '(').unwrap_or(value.len());
    let addr = &value[..end];
    if addr.is_empty() || addr.contains('@') { value.to_string() } else { format!("{addr}@{origin}{}", &value[end..]) }
}

/// What makes a notice one message of its own: its queue ID and when it was made (its
/// `Received:`, `Date:` and `Message-Id:`, as Postfix's post_mail and cleanup write them).
#[derive(Debug, Clone, Copy)]
pub struct Stamp<'a> {
    pub queue_id: &'a QueueId,
    pub at: SystemTime,
}

/// Build the notification text.
pub fn build(
    cfg: &BounceConfig,
    report: Report,
    notice: Notice,
    to: &str,
    original: &Original<'_>,
    recipients: &[RecipientStatus],
    stamp: Stamp<'_>,
) -> Vec<u8> {
    let host = &cfg.myhostname;
    let queue_id = original.queue_id;
    let boundary = format!("{queue_id}.{}/{host}", now_us() / 1_000_000);
    let template = cfg.template(report);
    let to_sender = notice == Notice::Sender;
    let subject = match (&template.postmaster_subject, to_sender) {
        (Some(postmaster), false) => postmaster,
        _ => &template.subject,
    };
    let date = rfc5322(stamp.at);
    let mut out = String::new();
    // post_mail's trace headers, then bounce_header's, then the Message-Id that cleanup adds.
    out.push_str(&format!("Received: by {host} ({})\r\n\tid {}; {date}\r\n", cfg.mail_name, stamp.queue_id));
    out.push_str(&format!("Date: {date}\r\n"));
    out.push_str(&format!("From: {}\r\n", cfg.from(template)));
    out.push_str(&format!("Subject: {subject}\r\n"));
    out.push_str(&format!("To: {}\r\n", safe(to)));
    if let Some(id) = crate::cleanup::scan_headers(original.prefix).1.message_id {
        let id = safe(&id);
        out.push_str(&format!("References: {id}\r\nIn-Reply-To: {id}\r\n"));
    }
    out.push_str(&format!("Auto-Submitted: {}\r\nMIME-Version: 1.0\r\n", if to_sender { "auto-replied" } else { "auto-generated" }));
    out.push_str(&format!("Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n"));
    let eight_bit = to_sender && template.eight_bit();
    if eight_bit {
        out.push_str("Content-Transfer-Encoding: 8bit\r\n");
    }
    out.push_str(&format!("Message-Id: <{}>\r\n", message_id(cfg, stamp)));
    out.push_str("\r\nThis is a MIME-encapsulated message.\r\n\r\n");
    let charset = if to_sender { template.charset.as_str() } else { "us-ascii" };
    out.push_str(&format!("--{boundary}\r\nContent-Description: Notification\r\nContent-Type: text/plain; charset={charset}\r\n"));
    if eight_bit {
        out.push_str("Content-Transfer-Encoding: 8bit\r\n");
    }
    out.push_str("\r\n");
    // The postmaster gets the facts without the boilerplate, as in Postfix's bounce service.
    if to_sender {
        out.push_str(&template.text);
    }
    for r in recipients {
        out.push_str(&format!("\r\n<{}>: {}\r\n", safe(&r.address), safe(&r.text)));
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
            out.push_str(&format!("Original-Recipient: {}\r\n", safe(&crate::dsn::orcpt_field(orcpt))));
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
        && matches!(notice, Notice::Sender | Notice::Postmaster)
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
        Notice::BounceCopy => (cfg.double_bounce_sender.clone(), cfg.bounce_notice_recipient.clone()),
    };
    let env = Envelope {
        sender: env_sender,
        recipients: vec![Recipient { address: to.clone(), ..Default::default() }],
        arrival_us: now_us(),
        client: ClientInfo { name: "localhost".into(), addr: "127.0.0.1".into(), helo: String::new(), protocol: "local".into() },
        ..Default::default()
    };
    // The notice's queue ID is known before its text is written: it names the notice in its
    // Received: and Message-Id: headers.
    let mut file = NewQueueFile::create(spool, QueueName::Incoming, &env)?;
    let id = file.id().clone();
    let stamp = Stamp { queue_id: &id, at: file.created() };
    file.write(&build(cfg, report, notice, &to, original, recipients, stamp))?;
    let id = file.commit(spool)?;
    log_info!("{id}: message-id=<{}>", message_id(cfg, stamp));
    Ok(id)
}

/// The notice's Message-Id (Postfix's cleanup form: creation time, queue ID, `$myhostname`).
fn message_id(cfg: &BounceConfig, stamp: Stamp<'_>) -> String {
    format!("{}.{}@{}", utc_stamp(stamp.at), stamp.queue_id, cfg.myhostname)
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
    // The copies for the postmaster, of every recipient whatever its NOTIFY: of each delay
    // notice with notify_classes = delay, of each non-delivery notice to a sender with
    // notify_classes = bounce (Postfix's bounce_notify_service).
    let copy = match report {
        Report::Delay if cfg.notify_delay => Some(Notice::DelayCopy),
        Report::Failure if notice == Notice::Sender && cfg.notify_bounce => Some(Notice::BounceCopy),
        _ => None,
    };
    if wanted.is_empty() && copy.is_none() {
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
                    Notice::Postmaster | Notice::DelayCopy | Notice::BounceCopy => "postmaster",
                };
                log_info!("{id}: {whom} {} notification: {notice_id}", report.log_name());
                queued = true;
            }
            Err(e) => log_warning!("{id}: cannot queue the {} notification: {e}", report.log_name()),
        };
    if !wanted.is_empty() {
        send(notice, &wanted);
    }
    if let Some(copy) = copy {
        send(copy, recipients);
    }
    queued
}

/// The notices one pass over a message owes: one failure notice, one success notice and the
/// message's one delay notice, each for its recipients (empty: none).
#[derive(Debug, Clone, Default)]
pub struct Due {
    pub failed: Vec<RecipientStatus>,
    pub relayed: Vec<RecipientStatus>,
    pub delayed: Vec<RecipientStatus>,
}

impl Due {
    /// Note one delivery result of `rcpt`: a bounce for the failure notice, a recipient sent
    /// to a next hop that did not take its NOTIFY for the success notice when it asked for
    /// one (Postfix's `smtp_rcpt_done`: a next hop with DSN reports success itself). `relay`
    /// is the next hop that took it (`delivery via ...`), empty when unknown.
    pub fn note(&mut self, rcpt: &Recipient, r: &DeliveryResult, relay: &str) {
        match r.outcome {
            Outcome::Bounced => self.failed.push(RecipientStatus::of(rcpt, &r.dsn, &r.text)),
            Outcome::Sent if !r.dsn_passed_on && Notify::wants(rcpt.notify, Notify::SUCCESS) => {
                let via = if relay.is_empty() { r.text.clone() } else { format!("delivery via {relay}: {}", r.text) };
                self.relayed.push(RecipientStatus::of(rcpt, &r.dsn, &via));
            }
            Outcome::Sent | Outcome::Deferred => {}
        }
    }

    /// Send what is due about message `id` (in `path`, with `envelope`), and record a delay
    /// notice in the queue file so that it is never sent again (the caller syncs the file
    /// before it lets the message go). True when a notification was queued in `incoming`.
    pub fn send(&self, spool: &Spool, cfg: &BounceConfig, id: &QueueId, path: &Path, envelope: &Envelope) -> bool {
        let mut queued = false;
        for (report, recipients) in [(Report::Failure, &self.failed), (Report::Success, &self.relayed), (Report::Delay, &self.delayed)] {
            if !recipients.is_empty() {
                queued |= notify(spool, cfg, report, id, path, envelope, recipients);
            }
        }
        if !self.delayed.is_empty() {
            // Recorded whether or not anyone wanted it: the question is settled for this message.
            if let Err(e) = append_delay_notice(path, now_us()) {
                log_warning!("{id}: record the delay notice: {e}");
            }
        }
        queued
    }
}

/// A message that stays deferred gets one delay notice once it is `delay_warning_time` old
/// (zero: never), as Postfix's queue manager sends one when the message's warning time passes.
pub fn delay_notice_due(delay_warning_time: Duration, age: Duration, already_sent: bool) -> bool {
    !delay_warning_time.is_zero() && age >= delay_warning_time && !already_sent
}

/// The recipients a delay notice reports on: every one still pending, with its last result
/// (or Postfix's text for one never tried).
pub fn delayed_recipients<'a>(
    pending: impl Iterator<Item = (usize, &'a Recipient)>,
    last_result: impl Fn(usize) -> Option<&'a RecipientResult>,
) -> Vec<RecipientStatus> {
    pending
        .map(|(i, r)| match last_result(i) {
            Some(last) => RecipientStatus::of(r, &last.dsn, &last.text),
            None => RecipientStatus::of(r, "4.0.0", "delivery temporarily suspended"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(size_limit: u64, notify_2bounce: bool) -> BounceConfig {
        let dir = Path::new("/nonexistent");
        let main = crate::config::MainCf::parse(
            "myhostname = mx.example\ndelay_warning_time = 4h\nmaximal_queue_lifetime = 5d\n",
            &dir.join("main.cf"),
        )
        .unwrap();
        let params = Params::from_parts(dir, main, &[]);
        BounceConfig {
            myhostname: "mx.example".into(),
            myorigin: "mx.example".into(),
            mail_name: "Postern".into(),
            from_standard: true,
            templates: template::load(&params).unwrap(),
            size_limit,
            notify_2bounce,
            notify_bounce: false,
            bounce_notice_recipient: "postmaster@mx.example".into(),
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
        let notice_id = QueueId::parse("DEF456").unwrap();
        let stamp = Stamp { queue_id: &notice_id, at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000) };
        String::from_utf8(build(cfg, report, notice, "s@example.org", &original, rcpts, stamp)).unwrap()
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
    fn from_header_forms_and_qualification() {
        let mut c = cfg(50000, false);
        let t = c.templates.failure.clone();
        assert_eq!(c.from(&t), "Mail Delivery System <MAILER-DAEMON@mx.example>");
        c.from_standard = false;
        assert_eq!(c.from(&t), "MAILER-DAEMON@mx.example (Mail Delivery System)");
        for (value, want) in [
            ("bounces", "bounces@mx.example"),
            ("bounces (Robot)", "bounces@mx.example (Robot)"),
            ("Robot <bounces>", "Robot <bounces@mx.example>"),
            ("Robot <b@elsewhere.example>", "Robot <b@elsewhere.example>"),
            ("b@elsewhere.example (Robot)", "b@elsewhere.example (Robot)"),
        ] {
            assert_eq!(qualify_header_address(value, "mx.example"), want, "{value}");
        }
    }

    #[test]
    fn a_notice_is_a_message_of_its_own_and_copies_are_auto_generated() {
        let msg = b"Message-ID: <o.1@example.org>\r\nSubject: s\r\n\r\nbody\r\n";
        let text = report(&cfg(50000, false), Notice::Sender, &failed("550 no"), msg);
        assert!(text.starts_with("Received: by mx.example (Postern)\r\n\tid DEF456; Tue, 14 Nov 2023 22:13:20 +0000 (UTC)\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000 (UTC)\r\nFrom: Mail Delivery System <MAILER-DAEMON@mx.example>\r\n"), "{text}");
        assert!(
            text.contains("\r\nReferences: <o.1@example.org>\r\nIn-Reply-To: <o.1@example.org>\r\nAuto-Submitted: auto-replied\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nMessage-Id: <20231114221320.DEF456@mx.example>\r\n\r\nThis is a MIME-encapsulated message."), "{text}");
        assert!(text.contains("It's attached below."), "{text}");
        let copy = report(&cfg(50000, false), Notice::BounceCopy, &failed("550 no"), msg);
        assert!(
            copy.contains("\r\nSubject: Postmaster Copy: Undelivered Mail\r\n") && copy.contains("Auto-Submitted: auto-generated\r\n"),
            "{copy}"
        );
        assert!(!copy.contains("It's attached below.") && !copy.contains("body\r\n"), "no boilerplate, headers only: {copy}");
        assert!(copy.contains("Content-Type: text/rfc822-headers\r\n"), "{copy}");
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
