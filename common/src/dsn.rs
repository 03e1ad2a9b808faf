//! Delivery status notification requests (RFC 3461): the `RET` and `ENVID` parameters of MAIL,
//! the `NOTIFY` and `ORCPT` parameters of RCPT, and the xtext encoding they travel in. smtpd
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

/// `ORCPT=addr-type;xtext`: decoded to `addr-type;address` (`rfc822;user@example.com`), as
/// the `Original-Recipient:` field of a notice shows it.
pub fn parse_orcpt(value: &str) -> Option<String> {
    let (kind, addr) = value.split_once(';')?;
    if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return None;
    }
    let addr = xtext_decode(addr).filter(|a| !a.is_empty())?;
    Some(format!("{kind};{addr}"))
}

/// An `ORCPT=` parameter for `orcpt` (`addr-type;address`): the address part as xtext.
pub fn orcpt_param(orcpt: &str) -> String {
    match orcpt.split_once(';') {
        Some((kind, addr)) => format!("ORCPT={kind};{}", xtext_encode(addr)),
        None => format!("ORCPT=rfc822;{}", xtext_encode(orcpt)),
    }
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
        assert_eq!(parse_envid(""), None);
    }
}
