//! The message as it goes on the wire after DATA: the one place that turns queue-file bytes
//! into SMTP text, so that every path (new connection or reused one) obeys the same rules.
//!
//! - Lines end in `<CR><LF>` and nothing else. A line in the queue file ends in `<LF>` or
//!   `<CR><LF>` (as Postfix's record boundary is a newline); a `<CR>` that is not followed by
//!   `<LF>` is a stray one and becomes a space, as Postfix's `cleanup_replace_stray_cr_lf`
//!   does. So no sequence such as `<LF>.<LF>` or `<CR>.<CR>` can reach the next hop, where it
//!   might end the message early (SMTP smuggling).
//! - Every line that starts with `.` gets another `.` (RFC 5321 4.5.2).
//! - A line longer than `smtp_line_length_limit` is broken with `<CR><LF><SPACE>`, as
//!   Postfix's `smtp_text_out` does: the limit counts the line's own bytes (not the stuffed dot),
//!   and a continuation line starts with the space, which counts.
//! - A message that does not end in a line end gets one; then `.<CR><LF>`.
//!
//! The encoder is sans-IO and works on pieces of any size, so the caller can send a large
//! message in chunks without a second whole-message copy.

/// The wire encoding state between two pieces of a message.
#[derive(Debug)]
pub struct DataEncoder {
    /// `smtp_line_length_limit`; 0 means no limit.
    limit: usize,
    /// Bytes on the current output line, without its stuffed dot.
    line_len: usize,
    /// The next byte starts a line of the message (not a continuation we made).
    at_line_start: bool,
    /// Bytes were written on the current output line (it needs a line end at the finish).
    mid_line: bool,
    /// The last byte of the previous piece was a `<CR>`; whether it is stray depends on the next.
    pending_cr: bool,
    /// A line was broken (Postfix logs that once per message).
    broke_line: bool,
}

impl DataEncoder {
    pub fn new(limit: usize) -> DataEncoder {
        DataEncoder { limit, line_len: 0, at_line_start: true, mid_line: false, pending_cr: false, broke_line: false }
    }

    /// True when a line longer than the limit was broken.
    pub fn broke_line(&self) -> bool {
        self.broke_line
    }

    /// Append the wire form of the next `piece` of the message to `out`.
    pub fn encode(&mut self, piece: &[u8], out: &mut Vec<u8>) {
        out.reserve(piece.len() + piece.len() / 64 + 8);
        for &b in piece {
            if self.pending_cr {
                self.pending_cr = false;
                if b == b'\n' {
                    self.end_line(out);
                    continue;
                }
                self.text_byte(b' ', out);
            }
            match b {
                b'\r' => self.pending_cr = true,
                b'\n' => self.end_line(out),
                _ => self.text_byte(b, out),
            }
        }
    }

    /// Append the end of the message: a last line end if needed and `.<CR><LF>`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.pending_cr) {
            self.text_byte(b' ', out);
        }
        if self.mid_line {
            self.end_line(out);
        }
        out.extend_from_slice(b".\r\n");
    }

    fn end_line(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"\r\n");
        self.line_len = 0;
        self.at_line_start = true;
        self.mid_line = false;
    }

    fn text_byte(&mut self, b: u8, out: &mut Vec<u8>) {
        if self.at_line_start {
            self.at_line_start = false;
            if b == b'.' {
                out.push(b'.');
            }
        } else if self.limit > 0 && self.line_len >= self.limit {
            // The line goes on past the limit: fold it, as a header would be folded.
            out.extend_from_slice(b"\r\n ");
            self.line_len = 1;
            self.broke_line = true;
        }
        out.push(b);
        self.line_len += 1;
        self.mid_line = true;
    }
}

/// The whole wire form of `message` at once (for tests and small messages).
pub fn data_bytes(message: &[u8], limit: usize) -> Vec<u8> {
    let mut e = DataEncoder::new(limit);
    let mut out = Vec::new();
    e.encode(message, &mut out);
    e.finish(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Case {
        name: &'static str,
        input: &'static [u8],
        want: &'static [u8],
    }

    #[test]
    fn line_ends_stray_cr_and_dot_stuffing() {
        let cases = [
            Case { name: "bare LF", input: b"a\nb\n", want: b"a\r\nb\r\n.\r\n" },
            Case { name: "CRLF kept", input: b"a\r\nb\r\n", want: b"a\r\nb\r\n.\r\n" },
            Case { name: "dot lines", input: b"a\n.b\r\n..c\nd", want: b"a\r\n..b\r\n...c\r\nd\r\n.\r\n" },
            Case { name: "lone dot", input: b".\r\n", want: b"..\r\n.\r\n" },
            Case { name: "empty", input: b"", want: b".\r\n" },
            Case { name: "no final newline", input: b"x", want: b"x\r\n.\r\n" },
            Case { name: "stray CR", input: b"a\rb\r\n", want: b"a b\r\n.\r\n" },
            Case { name: "CR CR LF", input: b"a\r\r\n", want: b"a \r\n.\r\n" },
            Case { name: "CR at the end", input: b"a\r", want: b"a \r\n.\r\n" },
            Case { name: "LF.LF", input: b"a\n.\nb", want: b"a\r\n..\r\nb\r\n.\r\n" },
            Case { name: "LF.CR", input: b"a\n.\rb", want: b"a\r\n.. b\r\n.\r\n" },
            Case { name: "CR.LF", input: b"a\r.\nb", want: b"a .\r\nb\r\n.\r\n" },
            Case { name: "CR.CR", input: b"a\r.\rb", want: b"a . b\r\n.\r\n" },
            Case { name: "LF.CRLF", input: b"a\n.\r\nb", want: b"a\r\n..\r\nb\r\n.\r\n" },
            Case { name: "CR.CRLF", input: b"a\r.\r\nb", want: b"a .\r\nb\r\n.\r\n" },
            Case { name: "CRLF.LF", input: b"a\r\n.\nb", want: b"a\r\n..\r\nb\r\n.\r\n" },
            Case { name: "CRLF NUL.CRLF", input: b"a\r\n\x00.\r\nb", want: b"a\r\n\x00.\r\nb\r\n.\r\n" },
        ];
        for c in cases {
            assert_eq!(data_bytes(c.input, 998), c.want.to_vec(), "{}", c.name);
        }
    }

    #[test]
    fn long_lines_fold_as_postfix_does() {
        // Exactly the limit: unchanged. One more byte: folded with CRLF SPACE.
        assert_eq!(data_bytes(b"abcd\n", 4), b"abcd\r\n.\r\n".to_vec());
        assert_eq!(data_bytes(b"abcde\n", 4), b"abcd\r\n e\r\n.\r\n".to_vec());
        // A continuation holds the space and limit-1 bytes.
        assert_eq!(data_bytes(b"abcdefghij", 4), b"abcd\r\n efg\r\n hij\r\n.\r\n".to_vec());
        // The stuffed dot does not count.
        assert_eq!(data_bytes(b".bcde", 4), b"..bcd\r\n e\r\n.\r\n".to_vec());
        // Zero disables the limit.
        assert_eq!(data_bytes(&[b'x'; 3000], 0).len(), 3000 + 5);
        let mut e = DataEncoder::new(4);
        e.encode(b"abcd\n", &mut Vec::new());
        assert!(!e.broke_line());
        e.encode(b"abcde\n", &mut Vec::new());
        assert!(e.broke_line());
    }

    #[test]
    fn pieces_encode_like_the_whole() {
        let msg: &[u8] = b"H: v\r\n\r\n.a\r.\r\r\n\n.\n\r\nxxxxxxxxxxxxxxxxxxxxxxxxx\r";
        let whole = data_bytes(msg, 7);
        for size in 1..msg.len() {
            let mut e = DataEncoder::new(7);
            let mut out = Vec::new();
            for piece in msg.chunks(size) {
                e.encode(piece, &mut out);
            }
            e.finish(&mut out);
            assert_eq!(out, whole, "pieces of {size}");
        }
    }

    /// Whatever the input, the output has only CRLF line ends, no line longer than the
    /// limit (plus a stuffed dot), and exactly one end of data: at the very end.
    #[test]
    fn any_input_is_clean_on_the_wire() {
        use proptest::prelude::*;
        let bytes = proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), Just(0u8), any::<u8>()], 0..300);
        proptest!(ProptestConfig::with_cases(256), |(msg in bytes, limit in prop_oneof![Just(0usize), 2usize..20])| {
            let out = data_bytes(&msg, limit);
            for (i, &b) in out.iter().enumerate() {
                if b == b'\r' { prop_assert_eq!(out.get(i + 1), Some(&b'\n')); }
                if b == b'\n' { prop_assert!(i > 0 && out[i - 1] == b'\r'); }
            }
            let lines: Vec<&[u8]> = out.split(|&b| b == b'\n').collect();
            let ends = lines.iter().filter(|l| *l == b".\r").count();
            prop_assert_eq!(ends, 1);
            prop_assert_eq!(lines[lines.len() - 2], b".\r");
            if limit > 0 {
                for l in &lines {
                    let l = l.strip_suffix(b"\r").unwrap_or(l);
                    let own = if l.starts_with(b"..") { l.len() - 1 } else { l.len() };
                    prop_assert!(own <= limit, "{:?}", l);
                }
            }
        });
    }
}
