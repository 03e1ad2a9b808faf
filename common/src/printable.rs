//! Text from outside (addresses, remote replies, peer names) made safe for a log line, a bounce
//! or a header, as Postfix's `printable()`: every ASCII control character becomes `?`, so that
//! nothing can start a new log line or hide what follows.

/// `text` with each control character (C0, DEL) replaced by `?`.
pub fn printable(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_control() { '?' } else { c }).collect()
}

/// True when `text` holds a control character that [`printable`] would replace.
pub fn has_control(text: &str) -> bool {
    text.bytes().any(|b| b.is_ascii_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_question_marks() {
        assert_eq!(printable("a@b.test"), "a@b.test");
        assert_eq!(printable("a@b>\r\nRCPT TO:<x@y"), "a@b>??RCPT TO:<x@y");
        assert_eq!(printable("\0\t\x7fé"), "???é");
        assert!(has_control("a\rb") && !has_control("für@x.test"));
    }
}
