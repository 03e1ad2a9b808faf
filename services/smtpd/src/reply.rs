//! An SMTP reply as the session decides it: the code, the RFC 3463 enhanced status code when
//! the reply has one, and the text (one element per line of a multi-line reply). It becomes
//! text only on the wire, so nothing downstream sniffs strings for a leading digit.

use std::fmt;

/// One SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// `5.5.2` and the like; `None` for replies that carry none (greeting, HELO, ETRN).
    pub enhanced: Option<String>,
    /// The text of each line.
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply with an enhanced status code: `Reply::new(250, "2.0.0", "Ok")`.
    pub fn new(code: u16, enhanced: &str, text: impl Into<String>) -> Reply {
        Reply { code, enhanced: Some(enhanced.to_string()), lines: vec![text.into()] }
    }

    /// A one-line reply without one: `Reply::plain(221, "Bye")`.
    pub fn plain(code: u16, text: impl Into<String>) -> Reply {
        Reply { code, enhanced: None, lines: vec![text.into()] }
    }

    /// A multi-line reply without enhanced codes (EHLO).
    pub fn lines(code: u16, lines: Vec<String>) -> Reply {
        Reply { code, enhanced: None, lines }
    }

    /// Text such as `450 4.7.1 try again later` or `554 no mail for you` (an access table's
    /// action); `None` unless it starts with a 4xx or 5xx code.
    pub fn parse_rejection(text: &str) -> Option<Reply> {
        let (code, rest) = text.split_once(' ').unwrap_or((text, ""));
        let code: u16 = code.parse().ok().filter(|c| (400..600).contains(c))?;
        let enhanced = rest.split_once(' ').map_or(rest, |(e, _)| e);
        let is_enhanced =
            enhanced.split('.').count() == 3 && enhanced.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        Some(match (is_enhanced, rest.split_once(' ')) {
            (true, Some((e, t))) => Reply::new(code, e, t),
            (true, None) => Reply::new(code, enhanced, ""),
            (false, _) => Reply::plain(code, rest),
        })
    }

    /// 2xx or 3xx: the command succeeded (for the disconnect line's counts).
    pub fn is_success(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// 4xx or 5xx: the command failed (counts towards the error limits).
    pub fn is_error(&self) -> bool {
        (400..600).contains(&self.code)
    }

    /// The first line's text, enhanced code included: what log lines quote.
    pub fn first_line(&self) -> String {
        self.line(0, ' ')
    }

    fn line(&self, i: usize, sep: char) -> String {
        let text = self.lines.get(i).map_or("", String::as_str);
        let mut out = format!("{}{sep}", self.code);
        if let Some(e) = &self.enhanced {
            out.push_str(e);
            if !text.is_empty() {
                out.push(' ');
            }
        }
        out.push_str(text);
        out
    }
}

/// The reply as sent, lines joined with CRLF (without the last one).
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.lines.len().max(1);
        for i in 0..n {
            if i > 0 {
                f.write_str("\r\n")?;
            }
            f.write_str(&self.line(i, if i + 1 == n { ' ' } else { '-' }))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_forms() {
        assert_eq!(Reply::new(250, "2.0.0", "Ok").to_string(), "250 2.0.0 Ok");
        assert_eq!(Reply::plain(221, "Bye").to_string(), "221 Bye");
        assert_eq!(Reply::lines(250, vec!["mx.test".into(), "PIPELINING".into()]).to_string(), "250-mx.test\r\n250 PIPELINING");
        assert!(Reply::new(354, "2.0.0", "go").is_success() && !Reply::new(354, "2.0.0", "go").is_error());
        assert!(Reply::plain(421, "x").is_error());
        assert_eq!(Reply::parse_rejection("450 4.7.1 try again later"), Some(Reply::new(450, "4.7.1", "try again later")));
        assert_eq!(Reply::parse_rejection("554 no mail for you"), Some(Reply::plain(554, "no mail for you")));
        assert_eq!(Reply::parse_rejection("250 fine"), None);
        assert_eq!(Reply::parse_rejection("hello"), None);
    }
}
