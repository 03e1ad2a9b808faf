//! Text from outside made safe to show: in the mail log, in headers, in bounces.

use std::borrow::Cow;

/// Postfix's `printable()`: every control character becomes `replacement`, so that text from a
/// peer cannot start a new log line, a new header or a new SMTP command.
pub fn printable(text: &str, replacement: char) -> Cow<'_, str> {
    if text.chars().any(char::is_control) {
        Cow::Owned(text.chars().map(|c| if c.is_control() { replacement } else { c }).collect())
    } else {
        Cow::Borrowed(text)
    }
}

/// True when `text` holds a control character that [`printable`] would replace.
pub fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// At most `max` bytes of `text`, cut at a character boundary.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_replaced() {
        assert_eq!(printable("mx.example", '?'), "mx.example");
        assert!(matches!(printable("mx.example", '?'), Cow::Borrowed(_)));
        assert_eq!(printable("a\r\nRCPT TO:<x>\0\x7f\x1b", '?'), "a??RCPT TO:<x>???");
        assert_eq!(printable("grüße\u{85}", '?'), "grüße?");
        assert!(has_control("a\rb") && !has_control("für@x.test"));
        for bad in ["a@b>\r\nRCPT TO:<c@d>", "a\0@b", "a\x7f@b", "a\u{85}@b"] {
            assert!(has_control(bad), "{bad:?}");
        }
        assert_eq!(truncate("grüße", 3), "gr");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
