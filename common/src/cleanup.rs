//! What Postfix's cleanup does with the header section of a new message, without I/O, for
//! every program that makes a queue file from a message (smtpd, pickup): tell header lines from
//! the first body line, note the headers that matter (`Received:` for `hopcount_limit`, the
//! Message-ID for the log, the originator, date and destination headers and their `Resent-`
//! forms), and write the headers that a local submission lacks.
//!
//! Postfix adds the missing headers at the end of the header section, in this order:
//! `Message-Id: <YYYYMMDDhhmmss.QUEUEID@myhostname>` (the queue file's creation time, UTC),
//! `Date:` (the arrival time), `From:` (the envelope sender, `MAILER-DAEMON` for the null
//! sender, with the submitter's full name when there is one) and `undisclosed_recipients_header`
//! when no `To:` or `Cc:` is there. Once a `Resent-` header is seen, the `Resent-` forms are
//! the ones checked and added. Every message gets a `message-id=` log line, `<>` when it has
//! none.

use std::time::SystemTime;

use crate::config::{ConfigError, Params};
use crate::queue::QueueId;

/// `undisclosed_recipients_header`: empty, or a whole header.
pub fn undisclosed_recipients_header(p: &Params) -> Result<String, ConfigError> {
    const NAME: &str = "undisclosed_recipients_header";
    let text = p.get(NAME)?;
    if !text.is_empty() && classify(text.as_bytes(), true, false) != Some(LineKind::Header) {
        return Err(ConfigError::value(NAME, format!("bad header text \"{text}\" -- need \"headername: headervalue\"")));
    }
    Ok(text)
}

/// How much of one header line is looked at: RFC 5322's line length limit.
pub const HEADER_KEEP: usize = 998;

/// What a line of the header section is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// `Name: value`.
    Header,
    /// A folded continuation of the header before it.
    Continuation,
    /// Not a header: the header section ends before this line (an empty line, or the first
    /// body line of a message whose sender left out the empty line).
    End,
}

/// A byte allowed in a header field name (RFC 5322 `ftext`).
fn ftext(b: u8) -> bool {
    (33..=126).contains(&b) && b != b':'
}

/// What a line is, from its first bytes (its content without the line end); `None` while
/// those bytes do not tell yet. `complete` says the line ended there. `after_header` says a
/// header came before (a folded line needs one).
pub fn classify(prefix: &[u8], complete: bool, after_header: bool) -> Option<LineKind> {
    let Some(&first) = prefix.first() else { return complete.then_some(LineKind::End) };
    if first == b' ' || first == b'\t' {
        return Some(if after_header { LineKind::Continuation } else { LineKind::End });
    }
    let name = prefix.iter().take_while(|&&b| ftext(b)).count();
    if name == 0 {
        return Some(LineKind::End);
    }
    // The name may be followed by white space before its colon (RFC 822's obsolete syntax).
    let rest = &prefix[name..];
    let space = rest.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    match rest.get(space) {
        Some(b':') => Some(LineKind::Header),
        Some(_) => Some(LineKind::End),
        // A name as long as a whole line without its colon is no header name.
        None if complete || prefix.len() >= HEADER_KEEP => Some(LineKind::End),
        None => None,
    }
}

/// The headers cleanup looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Received,
    MessageId,
    Date,
    From,
    To,
    Cc,
    ResentMessageId,
    ResentDate,
    ResentFrom,
    ResentTo,
    ResentCc,
    /// Another `Resent-` header (Sender, Bcc, Reply-To): it makes the message resent.
    ResentOther,
}

impl Known {
    fn of(name: &[u8]) -> Option<Known> {
        let lower = name.to_ascii_lowercase();
        Some(match lower.as_slice() {
            b"received" => Known::Received,
            b"message-id" => Known::MessageId,
            b"date" => Known::Date,
            b"from" => Known::From,
            b"to" => Known::To,
            b"cc" => Known::Cc,
            b"resent-message-id" => Known::ResentMessageId,
            b"resent-date" => Known::ResentDate,
            b"resent-from" => Known::ResentFrom,
            b"resent-to" => Known::ResentTo,
            b"resent-cc" => Known::ResentCc,
            b"resent-sender" | b"resent-bcc" | b"resent-reply-to" => Known::ResentOther,
            _ => return None,
        })
    }
}

/// What the header section held, line by line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderSeen {
    /// `Received:` headers (for `hopcount_limit`).
    pub received: u32,
    /// The first Message-ID's value, unfolded and trimmed (for the log).
    pub message_id: Option<String>,
    /// The first Resent-Message-ID's value.
    pub resent_message_id: Option<String>,
    seen: Vec<Known>,
    /// The header the last line belonged to, for a value folded onto the next line.
    last: Option<Known>,
    /// At least one header line came.
    any: bool,
}

impl HeaderSeen {
    /// Whether a header came before (for [`classify`]).
    pub fn after_header(&self) -> bool {
        self.any
    }

    fn has(&self, k: Known) -> bool {
        self.seen.contains(&k)
    }

    /// The message has a `Resent-` header: cleanup checks and adds the resent forms.
    fn resent(&self) -> bool {
        self.seen.iter().any(|k| {
            matches!(
                k,
                Known::ResentMessageId | Known::ResentDate | Known::ResentFrom | Known::ResentTo | Known::ResentCc | Known::ResentOther
            )
        })
    }

    /// Note one header or continuation line (its content, at most [`HEADER_KEEP`] bytes of it).
    pub fn note(&mut self, line: &[u8], kind: LineKind) {
        match kind {
            LineKind::End => {}
            LineKind::Continuation => {
                // Only an ID still waiting for its value cares.
                let value = String::from_utf8_lossy(line).trim().to_string();
                match self.last {
                    Some(Known::MessageId) if self.message_id.as_deref() == Some("") => self.message_id = Some(value),
                    Some(Known::ResentMessageId) if self.resent_message_id.as_deref() == Some("") => self.resent_message_id = Some(value),
                    _ => {}
                }
            }
            LineKind::Header => {
                self.any = true;
                let Some(colon) = line.iter().position(|&b| b == b':') else { return };
                let name = line[..colon].trim_ascii_end();
                let value = || String::from_utf8_lossy(&line[colon + 1..]).trim().to_string();
                self.last = Known::of(name);
                let Some(k) = self.last else { return };
                match k {
                    Known::Received => self.received += 1,
                    Known::MessageId if self.message_id.is_none() => self.message_id = Some(value()),
                    Known::ResentMessageId if self.resent_message_id.is_none() => self.resent_message_id = Some(value()),
                    _ => {}
                }
                if !self.seen.contains(&k) {
                    self.seen.push(k);
                }
            }
        }
    }
}

/// What the missing headers are made of.
#[derive(Debug, Clone)]
pub struct Originator<'a> {
    pub queue_id: &'a QueueId,
    /// When the queue file was made (the time in the Message-ID, as in its queue ID).
    pub created: SystemTime,
    /// When the message arrived (the Date:).
    pub arrival: SystemTime,
    pub myhostname: &'a str,
    /// The envelope sender (empty: the null sender).
    pub sender: &'a str,
    /// The submitter's full name (`sendmail -F`, `NAME`, or the password file's).
    pub fullname: Option<FullName<'a>>,
    /// `undisclosed_recipients_header` (empty: none).
    pub undisclosed_recipients: &'a str,
}

/// A full name for the `From:` header, and how to write it.
#[derive(Debug, Clone, Copy)]
pub struct FullName<'a> {
    /// As given (controls and all: it is cleaned up here).
    pub name: &'a str,
    pub format: &'a FromFormat,
}

/// What cleanup adds and logs at the end of the header section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderEnd {
    /// The headers to insert, each line ending in CRLF (empty: none).
    pub headers: String,
    /// The `message-id=` (and `resent-message-id=`) texts for the log, in Postfix's order.
    pub log: Vec<String>,
}

/// Postfix's `cleanup_header_done_callback`: with `add_missing` (a local submission, or
/// `always_add_missing_headers`) the headers the message lacks; the log texts in any case.
pub fn header_end(seen: &HeaderSeen, add_missing: bool, o: &Originator<'_>) -> HeaderEnd {
    let mut log = Vec::new();
    if let Some(id) = &seen.message_id {
        log.push(format!("message-id={id}"));
    }
    if let Some(id) = &seen.resent_message_id {
        log.push(format!("resent-message-id={id}"));
    }
    let mut headers = String::new();
    let resent = seen.resent();
    let (prefix, pick) = if resent { ("Resent-", 1) } else { ("", 0) };
    let has = |plain: Known, re: Known| seen.has([plain, re][pick]);
    let mut have_message_id = seen.has(Known::MessageId);
    if add_missing {
        if !has(Known::MessageId, Known::ResentMessageId) {
            let id = format!("{}.{}@{}", crate::datetime::utc_stamp(o.created), o.queue_id, o.myhostname);
            headers.push_str(&format!("{prefix}Message-Id: <{id}>\r\n"));
            log.push(format!("{}message-id=<{id}>", if resent { "resent-" } else { "" }));
            have_message_id |= !resent;
        }
        if !has(Known::Date, Known::ResentDate) {
            headers.push_str(&format!("{prefix}Date: {}\r\n", crate::datetime::rfc5322(o.arrival)));
        }
        if !has(Known::From, Known::ResentFrom) {
            headers.push_str(&from_value(prefix, o));
            headers.push_str("\r\n");
        }
        let visible = [Known::To, Known::Cc, Known::ResentTo, Known::ResentCc].iter().any(|k| seen.has(*k));
        if !visible && !o.undisclosed_recipients.is_empty() {
            headers.push_str(o.undisclosed_recipients);
            headers.push_str("\r\n");
        }
    }
    if !have_message_id {
        log.push("message-id=<>".into());
    }
    HeaderEnd { headers, log }
}

/// The `From:` header cleanup adds, before folding: `From: addr`, or with a full name
/// `From: name\n<addr>` (`header_from_format = standard`) or `From: addr\n(name)`
/// (`obsolete`); the null sender is `MAILER-DAEMON`, never with a name.
fn from_value(prefix: &str, o: &Originator<'_>) -> String {
    let addr = if o.sender.is_empty() { "MAILER-DAEMON" } else { o.sender };
    let name = o.fullname.filter(|_| !o.sender.is_empty()).and_then(|f| Some((fullname_text(f.name, f.format)?, f.format.obsolete)));
    let header = match name {
        Some((name, true)) => format!("{prefix}From: {addr}\n({name})"),
        Some((name, false)) => format!("{prefix}From: {name}\n<{addr}>"),
        None => format!("{prefix}From: {addr}"),
    };
    fold_header(&header)
}

/// Postfix's `cleanup_fold_header`: the pieces between `\n`s go on one line as long as it
/// stays under 70 bytes, else a piece starts a new line (with a TAB).
fn fold_header(header: &str) -> String {
    let mut out = String::with_capacity(header.len() + 8);
    let mut line_len = 0;
    for (i, piece) in header.split('\n').enumerate() {
        if i > 0 {
            if line_len + 1 + piece.len() < 70 {
                out.push(' ');
                line_len += 1;
            } else {
                out.push_str("\r\n\t");
                line_len = 0;
            }
        }
        out.push_str(piece);
        line_len += piece.len();
    }
    out
}

/// How cleanup writes a full name into the `From:` header it adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromFormat {
    /// `header_from_format = obsolete`: `From: address (Full Name)`; `standard`: `From: Full
    /// Name <address>`.
    pub obsolete: bool,
    /// `full_name_encoding_charset`: the charset RFC 2047 encoded words name for a full name
    /// that is not ASCII.
    pub charset: String,
}

impl Default for FromFormat {
    fn default() -> Self {
        FromFormat { obsolete: false, charset: "utf-8".into() }
    }
}

/// RFC 822's specials (Postfix's `LEX_822_SPECIALS`).
const RFC822_SPECIALS: &str = "()<>@,;:\\\".[]";

/// Bytes that RFC 2047 forbids in a charset name.
const RFC2047_ESPECIALS: &str = "()<>@,;:\\\"/[]?.=";

/// An encoded word is at most this long (RFC 2047 2).
const ENCODED_WORD_MAX: usize = 75;

impl FromFormat {
    pub fn from_params(p: &Params) -> Result<FromFormat, ConfigError> {
        const CHARSET: &str = "full_name_encoding_charset";
        let obsolete = header_from_obsolete(p)?;
        // Postfix finds a bad charset only when it encodes a name, and then writes none; a
        // setting that can never work is refused here instead.
        let charset = p.get(CHARSET)?;
        let token = |c: char| c.is_ascii_graphic() && !RFC2047_ESPECIALS.contains(c);
        if charset.is_empty() || charset.len() > ENCODED_WORD_MAX / 2 || !charset.chars().all(token) {
            return Err(ConfigError::value(CHARSET, format!("invalid charset name: \"{charset}\"")));
        }
        Ok(FromFormat { obsolete, charset })
    }
}

/// `header_from_format` (any case, as Postfix reads it): `obsolete` (`From: address (Full
/// Name)`) rather than `standard` (`From: Full Name <address>`); for every `From:` Postern
/// writes, cleanup's and the notifications'.
pub fn header_from_obsolete(p: &Params) -> Result<bool, ConfigError> {
    const NAME: &str = "header_from_format";
    let format = p.get(NAME)?;
    let format = format.trim();
    if format.eq_ignore_ascii_case("standard") {
        Ok(false)
    } else if format.eq_ignore_ascii_case("obsolete") {
        Ok(true)
    } else {
        Err(ConfigError::value(NAME, format!("invalid setting: \"{NAME} = {format}\" (specify standard or obsolete)")))
    }
}

/// The full name as header text, as Postfix's cleanup makes it: controls become spaces, runs
/// of spaces one, none at the ends; ASCII goes in as a phrase (quoted when it has a special)
/// or a comment (with balanced parentheses), other text as RFC 2047 encoded words (pieces
/// separated by `\n`, where the header may be folded). `None` when nothing is left.
pub fn fullname_text(raw: &str, format: &FromFormat) -> Option<String> {
    let mut clean = String::with_capacity(raw.len());
    for c in raw.chars().map(|c| if c.is_ascii_control() { ' ' } else { c }) {
        if c != ' ' || !(clean.is_empty() || clean.ends_with(' ')) {
            clean.push(c);
        }
    }
    let clean = clean.trim_end_matches(' ');
    if clean.is_empty() {
        return None;
    }
    if !clean.is_ascii() {
        return rfc2047_encode(clean, !format.obsolete, &format.charset);
    }
    if format.obsolete {
        return ascii_comment(clean);
    }
    // RFC 822's specials, and `%!` (address operators once), make a quoted string.
    if !clean.contains(|c: char| c == '%' || c == '!' || RFC822_SPECIALS.contains(c)) {
        return Some(clean.to_string());
    }
    let mut quoted = String::from("\"");
    for c in clean.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    Some(quoted)
}

/// Comment text: `\` escapes stay (a lone one at the end goes), a `)` without its `(` is
/// dropped and the missing `)`s are added.
fn ascii_comment(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len() + 2);
    let mut open = 0usize;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next) => {
                    out.push(c);
                    out.push(next);
                    continue;
                }
                None => break,
            },
            '(' => open += 1,
            ')' if open == 0 => continue,
            ')' => open -= 1,
            _ => {}
        }
        out.push(c);
    }
    out.extend(std::iter::repeat_n(')', open));
    (!out.trim().is_empty()).then_some(out)
}

/// Postfix's `rfc2047_encode`: quoted-printable words when the text is short or mostly needs
/// no encoding, else base64; each word at most 75 bytes, words separated by `\n`. In a phrase
/// the Q encoding spares only letters, digits and `!*+-/`; in a comment it also spares what a
/// comment may hold except `()\`. A phrase that starts with `"` is not encoded (`None`).
fn rfc2047_encode(text: &str, phrase: bool, charset: &str) -> Option<String> {
    use base64::Engine;
    const ALWAYS: &str = " =?_";
    // RFC 2047 5: in a phrase even some of atext must be encoded (erratum 4).
    let specials = if phrase { format!("{ALWAYS}{RFC822_SPECIALS}#$%&'?^`{{|}}~") } else { format!("{ALWAYS}()\\") };
    if phrase && text.starts_with('"') {
        return None;
    }
    let bytes = text.as_bytes();
    let encode = |b: u8| !b.is_ascii() || b.is_ascii_control() || specials.as_bytes().contains(&b);
    let base64 = bytes.len() >= 20 && bytes.iter().filter(|&&b| encode(b) || b.is_ascii_whitespace()).count() >= bytes.len() / 2;
    let prolog = format!("=?{charset}?{}?", if base64 { 'B' } else { 'Q' });
    let room = ENCODED_WORD_MAX - 2 - prolog.len();
    let mut out = String::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&prolog);
        if base64 {
            let take = (3 * (room / 4)).min(rest.len());
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(&rest[..take]));
            rest = &rest[take..];
        } else {
            let mut left = room;
            while let Some((&b, tail)) = rest.split_first() {
                let piece = match b {
                    b' ' => "_".to_string(),
                    b if encode(b) => format!("={b:02X}"),
                    b => char::from(b).to_string(),
                };
                if piece.len() > left {
                    break;
                }
                left -= piece.len();
                out.push_str(&piece);
                rest = tail;
            }
        }
        out.push_str("?=");
    }
    Some(out)
}

/// Where the header section of a whole message ends: the offset of the line that ends it
/// (the empty line, or the first body line), or the message's length when all of it is
/// header; with what it held. Lines may end in CRLF or LF.
pub fn scan_headers(message: &[u8]) -> (usize, HeaderSeen) {
    let mut seen = HeaderSeen::default();
    let mut at = 0;
    while at < message.len() {
        let end = message[at..].iter().position(|&b| b == b'\n').map_or(message.len(), |i| at + i + 1);
        let line = message[at..end].strip_suffix(b"\n").unwrap_or(&message[at..end]);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let keep = &line[..line.len().min(HEADER_KEEP)];
        let kind = classify(keep, true, seen.after_header()).unwrap_or(LineKind::End);
        if kind == LineKind::End {
            return (at, seen);
        }
        seen.note(keep, kind);
        at = end;
    }
    (message.len(), seen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn lines_are_told_apart_from_their_first_bytes() {
        let cases: &[(&[u8], bool, bool, Option<LineKind>)] = &[
            (b"Subject: x", true, false, Some(LineKind::Header)),
            (b"Subject:", false, false, Some(LineKind::Header)),
            (b"Subject : old style", true, false, Some(LineKind::Header)),
            (b"Subj", false, false, None),
            (b"Subj", true, false, Some(LineKind::End)),
            (b"", false, true, None),
            (b"", true, true, Some(LineKind::End)),
            (b" folded", false, true, Some(LineKind::Continuation)),
            (b"\tfolded", false, false, Some(LineKind::End)),
            (b"hello world: x", false, true, Some(LineKind::End)),
            (b":no name", false, true, Some(LineKind::End)),
            (b"caf\xc3\xa9: x", false, true, Some(LineKind::End)),
            (b"Name\r: x", false, true, Some(LineKind::End)),
        ];
        for (prefix, complete, after, want) in cases {
            assert_eq!(classify(prefix, *complete, *after), *want, "{:?}", String::from_utf8_lossy(prefix));
        }
        assert_eq!(classify(&[b'x'; HEADER_KEEP], false, true), Some(LineKind::End), "a name longer than a line");
    }

    fn originator(id: &QueueId) -> Originator<'_> {
        Originator {
            queue_id: id,
            created: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            arrival: UNIX_EPOCH + Duration::from_secs(1_800_000_001),
            myhostname: "mx.test",
            sender: "me@example.org",
            fullname: None,
            undisclosed_recipients: "",
        }
    }

    #[test]
    fn missing_headers_in_postfix_order_and_formats() {
        let id = QueueId::parse("ABC123").unwrap();
        let (end, seen) = scan_headers(b"Subject: s\r\nTo: a@b\r\n\r\nbody: not a header\r\n");
        assert_eq!(end, 21);
        let done = header_end(&seen, true, &originator(&id));
        let date = crate::datetime::rfc5322(UNIX_EPOCH + Duration::from_secs(1_800_000_001));
        assert_eq!(done.headers, format!("Message-Id: <20270115080000.ABC123@mx.test>\r\nDate: {date}\r\nFrom: me@example.org\r\n"));
        assert_eq!(done.log, ["message-id=<20270115080000.ABC123@mx.test>"]);
        // Not a local submission: nothing added, and the log says there was no ID.
        assert_eq!(header_end(&seen, false, &originator(&id)), HeaderEnd { headers: String::new(), log: vec!["message-id=<>".into()] });
    }

    #[test]
    fn present_headers_are_kept_and_logged() {
        let id = QueueId::parse("ABC123").unwrap();
        let (_, seen) =
            scan_headers(b"Received: a\nreceived: b\n\tfolded\nMessage-ID:\n <id@x>\nDATE: d\nfrom: f\nSubject: s\n\nReceived: no");
        assert_eq!(seen.received, 2);
        let mut o = originator(&id);
        o.undisclosed_recipients = "To: undisclosed-recipients:;";
        let done = header_end(&seen, true, &o);
        assert_eq!(done.headers, "To: undisclosed-recipients:;\r\n");
        assert_eq!(done.log, ["message-id=<id@x>"]);
    }

    #[test]
    fn resent_headers_are_checked_and_added_once_resent() {
        let id = QueueId::parse("ABC123").unwrap();
        let (_, seen) = scan_headers(b"Message-ID: <orig@x>\r\nDate: d\r\nFrom: f\r\nResent-To: t@x\r\n\r\n");
        let done = header_end(&seen, true, &originator(&id));
        assert!(done.headers.starts_with("Resent-Message-Id: <20270115080000.ABC123@mx.test>\r\nResent-Date: "), "{}", done.headers);
        assert!(done.headers.ends_with("Resent-From: me@example.org\r\n"), "{}", done.headers);
        assert_eq!(done.log, ["message-id=<orig@x>", "resent-message-id=<20270115080000.ABC123@mx.test>"]);
    }

    #[test]
    fn from_with_a_full_name_and_the_null_sender() {
        let id = QueueId::parse("ABC123").unwrap();
        let (_, seen) = scan_headers(b"Subject: s\n\n");
        let mut o = originator(&id);
        let (standard, obsolete) = (FromFormat::default(), FromFormat { obsolete: true, ..FromFormat::default() });
        let name = |name, format| Some(FullName { name, format });
        let from = |o: &Originator<'_>| header_end(&seen, true, o).headers.split_once("\r\nFrom: ").unwrap().1.to_string();
        o.fullname = name("Jane Doe", &standard);
        assert_eq!(from(&o), "Jane Doe <me@example.org>\r\n");
        o.fullname = name("J. \"Q\" Doe\r\nBcc: x", &standard);
        assert_eq!(from(&o), "\"J. \\\"Q\\\" Doe Bcc: x\" <me@example.org>\r\n");
        let long = "A Rather Long Full Name That Goes On And On And On";
        o.fullname = name(long, &standard);
        assert_eq!(from(&o), format!("{long}\r\n\t<me@example.org>\r\n"));
        o.fullname = name(" \t ", &standard);
        assert_eq!(from(&o), "me@example.org\r\n", "nothing left of the name");
        o.fullname = name("Jane (the) Doe)", &obsolete);
        assert_eq!(from(&o), "me@example.org (Jane (the) Doe)\r\n");
        o.fullname = name("Jane", &obsolete);
        o.sender = "";
        assert_eq!(from(&o), "MAILER-DAEMON\r\n");
    }

    #[test]
    fn from_format_settings() {
        let dir = tempfile::tempdir().unwrap();
        let params = |text: &str| {
            let main = crate::config::MainCf::parse(text, &dir.path().join("main.cf")).unwrap();
            Params::from_parts(dir.path(), main, &[])
        };
        assert_eq!(FromFormat::from_params(&params("")).unwrap(), FromFormat::default());
        let f = FromFormat::from_params(&params("header_from_format = Obsolete\nfull_name_encoding_charset = iso-8859-1\n")).unwrap();
        assert_eq!(f, FromFormat { obsolete: true, charset: "iso-8859-1".into() });
        let e = FromFormat::from_params(&params("header_from_format = fancy\n")).unwrap_err().to_string();
        assert!(e.contains("header_from_format") && e.contains("invalid setting"), "{e}");
        for bad in ["", "utf?8", "a b", &"x".repeat(38)] {
            let e = FromFormat::from_params(&params(&format!("full_name_encoding_charset = {bad}\n"))).unwrap_err().to_string();
            assert!(e.contains("full_name_encoding_charset"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn full_names_as_postfix_writes_them() {
        struct Case {
            name: &'static str,
            obsolete: bool,
            want: Option<&'static str>,
        }
        let cases = [
            Case { name: "abc def", obsolete: false, want: Some("abc def") },
            Case { name: "  abc \t\x07 def ", obsolete: false, want: Some("abc def") },
            Case { name: "foo@bar", obsolete: false, want: Some("\"foo@bar\"") },
            Case { name: "50% off", obsolete: false, want: Some("\"50% off\"") },
            Case { name: "back\\slash", obsolete: false, want: Some("\"back\\\\slash\"") },
            Case { name: "O'Brien", obsolete: false, want: Some("O'Brien") },
            Case { name: " ", obsolete: false, want: None },
            Case { name: "", obsolete: true, want: None },
            Case { name: ")foo )bar", obsolete: true, want: Some("foo bar") },
            Case { name: "(foo (bar", obsolete: true, want: Some("(foo (bar))") },
            Case { name: "foo\\bar", obsolete: true, want: Some("foo\\bar") },
            Case { name: "foo\\", obsolete: true, want: Some("foo") },
            Case { name: "foo\\\\", obsolete: true, want: Some("foo\\\\") },
            // Not ASCII: RFC 2047 words, Q for short text.
            Case { name: "J\u{f6}rg M\u{fc}ller", obsolete: false, want: Some("=?utf-8?Q?J=C3=B6rg_M=C3=BCller?=") },
            Case { name: "J\u{f6}rg (x)", obsolete: true, want: Some("=?utf-8?Q?J=C3=B6rg_=28x=29?=") },
            Case { name: "J\u{f6}rg #1", obsolete: false, want: Some("=?utf-8?Q?J=C3=B6rg_=231?=") },
            Case { name: "\"J\u{f6}rg\"", obsolete: false, want: None },
            // Mostly encoded and not short (19 bytes would be): base64.
            Case {
                name: "\u{41f}\u{451}\u{442}\u{440} \u{418}\u{43b}\u{44c}\u{438}\u{447} \u{427}\u{430}\u{439}\u{43a}\u{43e}\u{432}\u{441}\u{43a}\u{438}\u{439}",
                obsolete: false,
                want: Some("=?utf-8?B?0J/RkdGC0YAg0JjQu9GM0LjRhyDQp9Cw0LnQutC+0LLRgdC60LjQuQ==?="),
            },
        ];
        for c in &cases {
            let format = FromFormat { obsolete: c.obsolete, ..FromFormat::default() };
            assert_eq!(fullname_text(c.name, &format).as_deref(), c.want, "{:?}", c.name);
        }
        // Long text: words of at most 75 bytes, separated where the header may fold.
        let long = "\u{e9}".repeat(40);
        let words = fullname_text(&long, &FromFormat::default()).unwrap();
        assert!(words.split('\n').all(|w| w.len() <= 75 && w.starts_with("=?utf-8?B?") && w.ends_with("?=")), "{words}");
        let decoded: Vec<u8> = words
            .split('\n')
            .flat_map(|w| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.decode(&w[10..w.len() - 2]).unwrap()
            })
            .collect();
        assert_eq!(decoded, long.as_bytes());
        let q = fullname_text(&format!("{}\u{e9}", "a".repeat(70)), &FromFormat::default()).unwrap();
        assert_eq!(q, format!("=?utf-8?Q?{}?=\n=?utf-8?Q?{}=C3=A9?=", "a".repeat(63), "a".repeat(7)));
    }

    #[test]
    fn a_message_without_an_empty_line_or_a_body() {
        assert_eq!(scan_headers(b"Subject: s\r\nFrom: f\r\n").0, 21);
        assert_eq!(scan_headers(b"Subject: s\nthe body, without an empty line\n").0, 11);
        assert_eq!(scan_headers(b"").0, 0);
    }
}
