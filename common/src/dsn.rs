//! Delivery status notification requests (RFC 3461): the `RET` and `ENVID` parameters of MAIL,
//! the `NOTIFY` and `ORCPT` parameters of RCPT, and the xtext encoding they travel in (for an
//! ORCPT of the `utf-8` address type, RFC 6533's `\x{HEX}` form instead). smtpd
//! parses them from clients, the queue file keeps them, the smtp client passes them on to a next
//! hop that offers DSN, and the queue manager asks them which notices a sender wants.

use serde::{Deserialize, Serialize};

/// `RET=`: what of the message a failure notice returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Ret {
    /// The whole message.
    Full,
    /// Its headers only.
    Hdrs,
}

impl Ret {
    /// The keyword, in any case (RFC 3461 4.3).
    pub fn parse(value: &str) -> Option<Ret> {
        if value.eq_ignore_ascii_case("FULL") {
            Some(Ret::Full)
        } else if value.eq_ignore_ascii_case("HDRS") {
            Some(Ret::Hdrs)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Ret::Full => "FULL",
            Ret::Hdrs => "HDRS",
        }
    }

    /// Postfix's number for it (`dsn_return_flags:` in postcat output).
    pub fn code(self) -> u8 {
        match self {
            Ret::Full => 1,
            Ret::Hdrs => 2,
        }
    }
}

/// `NOTIFY=`: which notices a recipient's sender wants. Stored in the queue file as the
/// keyword list (`SUCCESS,DELAY`), so that the file stays readable with `postcat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Notify(u8);

impl Notify {
    pub const NEVER: Notify = Notify(1);
    pub const SUCCESS: Notify = Notify(2);
    pub const FAILURE: Notify = Notify(4);
    pub const DELAY: Notify = Notify(8);

    const WORDS: [(&'static str, Notify); 4] =
        [("NEVER", Notify::NEVER), ("SUCCESS", Notify::SUCCESS), ("FAILURE", Notify::FAILURE), ("DELAY", Notify::DELAY)];

    /// `NEVER`, or a comma-separated list of `SUCCESS`, `FAILURE` and `DELAY` (any case, each at
    /// most once); NEVER with anything else is a syntax error (RFC 3461 4.1).
    pub fn parse(value: &str) -> Option<Notify> {
        let mut mask = 0u8;
        for word in value.split(',') {
            let (_, bit) = Notify::WORDS.iter().find(|(w, _)| w.eq_ignore_ascii_case(word))?;
            if mask & bit.0 != 0 {
                return None;
            }
            mask |= bit.0;
        }
        (mask != 0 && (mask == Notify::NEVER.0 || mask & Notify::NEVER.0 == 0)).then_some(Notify(mask))
    }

    /// Postfix's bit mask for it (`dsn_notify_flags:` in postcat output): the same bits.
    pub fn bits(self) -> u8 {
        self.0
    }

    pub fn has(self, class: Notify) -> bool {
        self.0 & class.0 != 0
    }

    /// A recipient's sender wants a notice of `class`: without a NOTIFY parameter, failure and
    /// delay notices are sent and success notices are not (RFC 3461 4.1).
    pub fn wants(notify: Option<Notify>, class: Notify) -> bool {
        match notify {
            Some(n) => n.has(class),
            None => class != Notify::SUCCESS,
        }
    }
}

impl std::fmt::Display for Notify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let words: Vec<&str> = Notify::WORDS.iter().filter(|(_, b)| self.has(*b)).map(|(w, _)| *w).collect();
        f.write_str(&words.join(","))
    }
}

impl From<Notify> for String {
    fn from(n: Notify) -> String {
        n.to_string()
    }
}

impl TryFrom<String> for Notify {
    type Error = String;
    fn try_from(s: String) -> Result<Notify, String> {
        Notify::parse(&s).ok_or_else(|| format!("bad NOTIFY value: {s}"))
    }
}

/// Decode xtext (RFC 3461 4): `+XX` is the byte with hex value XX, other characters stand for
/// themselves and must be printable ASCII other than `+` and `=`. `None` for bad syntax, and
/// for a decoded text that is not printable ASCII (it goes into notices and log lines).
pub fn xtext_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = match bytes[i] {
            b'+' => {
                let hex = text.get(i + 1..i + 3).filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))?;
                i += 2;
                u8::from_str_radix(hex, 16).ok()?
            }
            b'=' => return None,
            b @ 0x21..=0x7e => b,
            _ => return None,
        };
        if !(0x20..=0x7e).contains(&b) {
            return None;
        }
        out.push(char::from(b));
        i += 1;
    }
    Some(out)
}

/// Encode `text` as xtext: bytes outside `!`..`~`, and `+` and `=`, as `+XX`.
pub fn xtext_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x21..=0x7e).contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// `ENVID=`: xtext that decodes to printable text.
pub fn parse_envid(value: &str) -> Option<String> {
    xtext_decode(value).filter(|v| !v.is_empty())
}

/// Decode RFC 6533's utf-8-addr-xtext and utf-8-addr-unitext, as Postfix's `uxtext_unquote`:
/// `\x{HEX}` is the character with that code point, other characters (UTF-8 too) stand for
/// themselves. `None` for a bad escape, and for a decoded text with a control character.
pub fn uxtext_decode(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let c = match rest.strip_prefix("\\x{") {
            Some(escape) => {
                let (hex, after) = escape.split_once('}')?;
                if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                rest = after;
                char::from_u32(u32::from_str_radix(hex, 16).ok()?)?
            }
            // A `\` that starts no escape, as Postfix takes it, is itself.
            None => {
                rest = &rest[c.len_utf8()..];
                c
            }
        };
        if c.is_control() {
            return None;
        }
        out.push(c);
    }
    Some(out)
}

/// Encode `text` as utf-8-addr-xtext (RFC 6533 3), as Postfix's smtp client does for every
/// next hop: printable ASCII other than `\`, `+` and `=` as it is, everything else as
/// `\x{HEX}`. Being 7-bit, it is valid utf-8-addr-unitext too, so it suits a next hop with
/// or without SMTPUTF8.
pub fn uxtext_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_graphic() && !matches!(c, '\\' | '+' | '=') {
            out.push(c);
        } else {
            out.push_str(&format!("\\x{{{:02X}}}", u32::from(c)));
        }
    }
    out
}

/// The `utf-8` address type (RFC 6533), in any case.
fn is_utf8_type(kind: &str) -> bool {
    kind.eq_ignore_ascii_case("utf-8")
}

/// `ORCPT=addr-type;xtext`: decoded to `addr-type;address` (`rfc822;user@example.com`), as
/// the `Original-Recipient:` field of a notice shows it. The `utf-8` type's address is
/// utf-8-addr-xtext or -unitext (`utf-8;j\x{F6}rg@example.com`), and may be UTF-8 once decoded.
pub fn parse_orcpt(value: &str) -> Option<String> {
    let (kind, addr) = value.split_once(';')?;
    if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return None;
    }
    let addr = if is_utf8_type(kind) { uxtext_decode(addr) } else { xtext_decode(addr) };
    let addr = addr.filter(|a| !a.is_empty())?;
    Some(format!("{kind};{addr}"))
}

/// `orcpt` (`addr-type;address`) with its address encoded as its type wants: xtext, or
/// utf-8-addr-xtext for the `utf-8` type. Without a type, `rfc822`.
fn encode_orcpt(orcpt: &str) -> String {
    match orcpt.split_once(';') {
        Some((kind, addr)) if is_utf8_type(kind) => format!("{kind};{}", uxtext_encode(addr)),
        Some((kind, addr)) => format!("{kind};{}", xtext_encode(addr)),
        None => format!("rfc822;{}", xtext_encode(orcpt)),
    }
}

/// An `ORCPT=` parameter for `orcpt` (`addr-type;address`).
pub fn orcpt_param(orcpt: &str) -> String {
    format!("ORCPT={}", encode_orcpt(orcpt))
}

/// The `Original-Recipient:` value of a notice for `orcpt`: as it was decoded, except that a
/// `utf-8` address goes in 7-bit form (utf-8-addr-xtext), as RFC 6533 3 wants it in a
/// `message/delivery-status` part, which Postern's notices always are.
pub fn orcpt_field(orcpt: &str) -> String {
    match orcpt.split_once(';') {
        Some((kind, _)) if is_utf8_type(kind) => encode_orcpt(orcpt),
        _ => orcpt.to_string(),
    }
}

/// An ORCPT for an address that came without one: `utf-8` when it is not ASCII (as Postfix's
/// smtp client adds one), else `rfc822`.
pub fn orcpt_of(address: &str) -> String {
    format!("{};{address}", if address.is_ascii() { "rfc822" } else { "utf-8" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_syntax() {
        struct Case {
            text: &'static str,
            want: Option<&'static str>,
        }
        let cases = [
            Case { text: "NEVER", want: Some("NEVER") },
            Case { text: "never", want: Some("NEVER") },
            Case { text: "SUCCESS", want: Some("SUCCESS") },
            Case { text: "delay,Failure,SUCCESS", want: Some("SUCCESS,FAILURE,DELAY") },
            Case { text: "NEVER,SUCCESS", want: None },
            Case { text: "SUCCESS,SUCCESS", want: None },
            Case { text: "", want: None },
            Case { text: "SUCCESS,", want: None },
            Case { text: "ALWAYS", want: None },
            Case { text: "SUCCESS FAILURE", want: None },
        ];
        for c in &cases {
            assert_eq!(Notify::parse(c.text).map(|n| n.to_string()).as_deref(), c.want, "{}", c.text);
        }
        assert!(Notify::wants(None, Notify::FAILURE) && Notify::wants(None, Notify::DELAY));
        assert!(!Notify::wants(None, Notify::SUCCESS));
        assert!(!Notify::wants(Notify::parse("NEVER"), Notify::FAILURE));
        assert!(Notify::wants(Notify::parse("SUCCESS,DELAY"), Notify::DELAY));
        assert!(!Notify::wants(Notify::parse("SUCCESS,DELAY"), Notify::FAILURE));
    }

    #[test]
    fn notify_in_json_and_bad_stored_values() {
        let n = Notify::parse("failure,delay").unwrap();
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"FAILURE,DELAY\"");
        assert_eq!(serde_json::from_str::<Notify>("\"FAILURE,DELAY\"").unwrap(), n);
        assert!(serde_json::from_str::<Notify>("\"NEVER,DELAY\"").is_err());
    }

    #[test]
    fn ret_syntax() {
        assert_eq!(Ret::parse("hdrs"), Some(Ret::Hdrs));
        assert_eq!(Ret::parse("FULL"), Some(Ret::Full));
        assert_eq!(Ret::parse("HEADERS"), None);
        assert_eq!(Ret::parse(""), None);
    }

    #[test]
    fn xtext_both_ways() {
        struct Case {
            xtext: &'static str,
            want: Option<&'static str>,
        }
        let cases = [
            Case { xtext: "QQ123@host", want: Some("QQ123@host") },
            Case { xtext: "a+2Bb+3Dc", want: Some("a+b=c") },
            Case { xtext: "sp+20ace", want: Some("sp ace") },
            Case { xtext: "lower+2b", want: Some("lower+") },
            Case { xtext: "bad=", want: None },
            Case { xtext: "cut+2", want: None },
            Case { xtext: "cut+", want: None },
            Case { xtext: "nothex+GG", want: None },
            Case { xtext: "nul+00", want: None },
            Case { xtext: "cr+0D+0A", want: None },
            Case { xtext: "high+FF", want: None },
            Case { xtext: "space inside", want: None },
            Case { xtext: "utf8é", want: None },
        ];
        for c in &cases {
            assert_eq!(xtext_decode(c.xtext).as_deref(), c.want, "{}", c.xtext);
        }
        for text in ["plain@example.com", "a+b=c d", "~!\"#"] {
            assert_eq!(xtext_decode(&xtext_encode(text)).as_deref(), Some(text));
        }
        assert_eq!(xtext_encode("a+b=c d"), "a+2Bb+3Dc+20d");
    }

    #[test]
    fn orcpt_syntax_and_param() {
        assert_eq!(parse_orcpt("rfc822;u+2Bx@example.com").as_deref(), Some("rfc822;u+x@example.com"));
        assert_eq!(parse_orcpt("RFC822;u@example.com").as_deref(), Some("RFC822;u@example.com"));
        assert_eq!(parse_orcpt("u@example.com"), None);
        assert_eq!(parse_orcpt(";u@example.com"), None);
        assert_eq!(parse_orcpt("rfc822;"), None);
        assert_eq!(parse_orcpt("rfc 822;u@x"), None);
        assert_eq!(parse_orcpt("rfc822;u=x"), None);
        assert_eq!(orcpt_param("rfc822;u+x@example.com"), "ORCPT=rfc822;u+2Bx@example.com");
        assert_eq!(parse_envid("QQ314159"), Some("QQ314159".into()));
        assert_eq!(orcpt_of("j\u{f6}rg@example.com"), "utf-8;j\u{f6}rg@example.com");
        assert_eq!(orcpt_of("u@example.com"), "rfc822;u@example.com");
    }

    #[test]
    fn utf8_orcpt_both_ways() {
        struct Case {
            param: &'static str,
            want: Option<&'static str>,
        }
        let cases = [
            Case { param: "utf-8;j\\x{F6}rg@example.com", want: Some("utf-8;j\u{f6}rg@example.com") },
            Case { param: "UTF-8;j\\x{f6}rg@b\\x{FC}cher.example", want: Some("UTF-8;j\u{f6}rg@b\u{fc}cher.example") },
            // unitext: UTF-8 as it is.
            Case { param: "utf-8;j\u{f6}rg@example.com", want: Some("utf-8;j\u{f6}rg@example.com") },
            Case { param: "utf-8;\\x{1F600}@example.com", want: Some("utf-8;\u{1f600}@example.com") },
            Case { param: "utf-8;a\\x{2B}b@example.com", want: Some("utf-8;a+b@example.com") },
            // `+` is not an escape in this type.
            Case { param: "utf-8;a+2Bb@example.com", want: Some("utf-8;a+2Bb@example.com") },
            Case { param: "utf-8;a\\b@example.com", want: Some("utf-8;a\\b@example.com") },
            Case { param: "utf-8;a\\x{}b", want: None },
            Case { param: "utf-8;a\\x{GG}b", want: None },
            Case { param: "utf-8;a\\x{F6", want: None },
            Case { param: "utf-8;a\\x{110000}", want: None },
            Case { param: "utf-8;a\\x{D800}", want: None },
            Case { param: "utf-8;nul\\x{0}", want: None },
            Case { param: "utf-8;cr\\x{0D}", want: None },
            Case { param: "utf-8;", want: None },
            // The rfc822 type stays xtext.
            Case { param: "rfc822;j\\x{F6}rg@example.com", want: Some("rfc822;j\\x{F6}rg@example.com") },
        ];
        for c in &cases {
            assert_eq!(parse_orcpt(c.param).as_deref(), c.want, "{}", c.param);
        }
        let stored = "utf-8;j\u{f6}r+g=\\ \u{1f600}@example.com";
        assert_eq!(orcpt_param(stored), "ORCPT=utf-8;j\\x{F6}r\\x{2B}g\\x{3D}\\x{5C}\\x{20}\\x{1F600}@example.com");
        assert_eq!(parse_orcpt(orcpt_param(stored).strip_prefix("ORCPT=").unwrap()).as_deref(), Some(stored));
        assert_eq!(orcpt_field("utf-8;j\u{f6}rg@example.com"), "utf-8;j\\x{F6}rg@example.com");
        assert_eq!(orcpt_field("rfc822;a+b@example.com"), "rfc822;a+b@example.com");
        assert_eq!(parse_envid(""), None);
    }
}
