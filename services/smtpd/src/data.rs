//! The DATA stream, without I/O: bytes from the client go in, in pieces of any size; message
//! content with CRLF line ends comes out, and the end of the message is found.
//!
//! End of data is `<CR><LF>.<CR><LF>` and nothing else (the defence against SMTP smuggling):
//! a `.` line counts only when it ends in CRLF and so did the line before it. A `.` line that
//! fails either test is dropped, as Postfix ≥ 3.9 does with `smtpd_forbid_bare_newline =
//! normalize`, so that neither this system nor a next hop can ever take it for the end. Other
//! lines that end in a bare LF are stored with CRLF; a bare CR is content (the smtp agent makes
//! it a space on the way out). Dot-stuffing is undone. The output is not buffered here: the
//! caller decides where it goes, so memory per session does not grow with the message.
//!
//! While the header section lasts, the reader also counts `Received:` headers (for
//! `hopcount_limit`) and keeps the `Message-ID:` value (for the log), each from at most
//! [`HEADER_KEEP`] bytes of a header line.

/// How much of one header line is looked at.
pub const HEADER_KEEP: usize = 998;

/// Where the reader is within the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pos {
    /// Nothing of the line seen yet.
    LineStart,
    /// The line so far is `.`.
    Dot,
    /// The line so far is `.<CR>`.
    DotCr,
    /// Inside a line.
    Mid,
    /// Inside a line, after a CR that may start the line end.
    MidCr,
}

/// What [`DataReader::feed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// All input was used; the message goes on.
    More,
    /// The end of data was found after this many input bytes; the rest are commands.
    End(usize),
}

/// The state of one message being received.
#[derive(Debug)]
pub struct DataReader {
    pos: Pos,
    /// Whether the last line ended with CRLF (the start of DATA counts as one).
    prev_crlf: bool,
    /// A line ended in a bare LF somewhere in this message.
    pub bare_lf: bool,
    /// Message bytes produced so far.
    pub size: u64,
    in_headers: bool,
    /// The start of the current header line (at most [`HEADER_KEEP`] bytes).
    header_line: Vec<u8>,
    /// The header the last header line belonged to, for folded values.
    last_header_was_message_id: bool,
    /// `Received:` headers seen.
    pub received: u32,
    pub message_id: Option<String>,
}

impl Default for DataReader {
    fn default() -> Self {
        DataReader::new()
    }
}

impl DataReader {
    pub fn new() -> DataReader {
        DataReader {
            pos: Pos::LineStart,
            prev_crlf: true,
            bare_lf: false,
            size: 0,
            in_headers: true,
            header_line: Vec::new(),
            last_header_was_message_id: false,
            received: 0,
            message_id: None,
        }
    }

    /// Consume `input`, appending the message content it carries to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Feed {
        let start = out.len();
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            i += 1;
            match (self.pos, b) {
                (Pos::LineStart, b'.') => self.pos = Pos::Dot,
                (Pos::LineStart | Pos::Mid, b'\r') | (Pos::Dot, b'\r') => {
                    // A dot at line start is dot-stuffing: it is dropped either way.
                    self.pos = if self.pos == Pos::Dot { Pos::DotCr } else { Pos::MidCr };
                }
                (Pos::LineStart | Pos::Mid, b'\n') => self.end_line(out, false),
                (Pos::MidCr, b'\n') => self.end_line(out, true),
                (Pos::Dot, b'\n') => self.drop_dot_line(false),
                (Pos::DotCr, b'\n') => {
                    if self.prev_crlf {
                        self.size += (out.len() - start) as u64;
                        return Feed::End(i);
                    }
                    self.drop_dot_line(true);
                }
                (Pos::DotCr | Pos::MidCr, b'\r') => {
                    // The earlier CR was bare: content.
                    self.content(out, b'\r');
                    self.pos = Pos::MidCr;
                }
                (Pos::DotCr | Pos::MidCr, _) => {
                    self.content(out, b'\r');
                    self.content(out, b);
                    self.pos = Pos::Mid;
                }
                (Pos::LineStart | Pos::Dot | Pos::Mid, _) => {
                    self.content(out, b);
                    self.pos = Pos::Mid;
                }
            }
        }
        self.size += (out.len() - start) as u64;
        Feed::More
    }

    fn content(&mut self, out: &mut Vec<u8>, b: u8) {
        out.push(b);
        if self.in_headers && self.header_line.len() < HEADER_KEEP {
            self.header_line.push(b);
        }
    }

    /// A line ends: it is stored with CRLF whatever its ending was.
    fn end_line(&mut self, out: &mut Vec<u8>, crlf: bool) {
        out.extend_from_slice(b"\r\n");
        if !crlf {
            self.bare_lf = true;
        }
        self.prev_crlf = crlf;
        self.pos = Pos::LineStart;
        if self.in_headers {
            self.header_done();
        }
    }

    /// A `.` line that is not the end of data (it or the line before ended in a bare LF):
    /// not stored, so that it cannot become an end of data further on.
    fn drop_dot_line(&mut self, crlf: bool) {
        self.bare_lf |= !crlf || !self.prev_crlf;
        self.prev_crlf = crlf;
        self.pos = Pos::LineStart;
    }

    /// Look at a complete header line.
    fn header_done(&mut self) {
        let line = std::mem::take(&mut self.header_line);
        if line.is_empty() {
            self.in_headers = false;
            return;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            // A folded continuation: only a Message-ID still waiting for its value cares.
            if self.last_header_was_message_id && self.message_id.as_deref() == Some("") {
                self.message_id = Some(String::from_utf8_lossy(&line).trim().to_string());
            }
            return;
        }
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            // Not a header: the body has begun (as mail readers take it).
            self.in_headers = false;
            return;
        };
        let name = &line[..colon];
        self.last_header_was_message_id = name.eq_ignore_ascii_case(b"message-id");
        if name.eq_ignore_ascii_case(b"received") {
            self.received += 1;
        } else if self.last_header_was_message_id && self.message_id.is_none() {
            self.message_id = Some(String::from_utf8_lossy(&line[colon + 1..]).trim().to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `input` in pieces of `piece` bytes; the content and where the end was found.
    fn run(input: &[u8], piece: usize) -> (Vec<u8>, Option<usize>, DataReader) {
        let mut r = DataReader::new();
        let mut out = Vec::new();
        let mut at = 0;
        for chunk in input.chunks(piece) {
            if let Feed::End(n) = r.feed(chunk, &mut out) {
                return (out, Some(at + n), r);
            }
            at += chunk.len();
        }
        (out, None, r)
    }

    struct Case {
        name: &'static str,
        input: &'static [u8],
        content: &'static [u8],
        /// Input bytes up to and including the end of data, if it is in the input.
        end: Option<usize>,
        bare_lf: bool,
    }

    #[test]
    fn end_of_data_and_smuggling_sequences() {
        let cases = [
            Case { name: "plain", input: b"a\r\nb\r\n.\r\nQUIT\r\n", content: b"a\r\nb\r\n", end: Some(9), bare_lf: false },
            Case { name: "empty message", input: b".\r\n", content: b"", end: Some(3), bare_lf: false },
            Case { name: "dot-stuffing", input: b"..x\r\n.\r\n", content: b".x\r\n", end: Some(8), bare_lf: false },
            Case { name: "bare LF lines", input: b"a\nb\r\n.\r\n", content: b"a\r\nb\r\n", end: Some(8), bare_lf: true },
            Case { name: "LF.LF", input: b"a\n.\nMAIL FROM:<x>\r\n", content: b"a\r\nMAIL FROM:<x>\r\n", end: None, bare_lf: true },
            Case { name: "LF.CR", input: b"a\n.\rRCPT\r\n", content: b"a\r\n\rRCPT\r\n", end: None, bare_lf: true },
            Case { name: "CR.LF", input: b"a\r.\nRCPT\r\n", content: b"a\r.\r\nRCPT\r\n", end: None, bare_lf: true },
            Case { name: "CR.CR", input: b"a\r.\rRCPT\r\n", content: b"a\r.\rRCPT\r\n", end: None, bare_lf: false },
            Case { name: "LF.CRLF", input: b"a\n.\r\nRCPT\r\n", content: b"a\r\nRCPT\r\n", end: None, bare_lf: true },
            Case { name: "CR.CRLF", input: b"a\r.\r\nRCPT\r\n", content: b"a\r.\r\nRCPT\r\n", end: None, bare_lf: false },
            Case { name: "CRLF.LF", input: b"a\r\n.\nRCPT\r\n", content: b"a\r\nRCPT\r\n", end: None, bare_lf: true },
            Case { name: "CRLF NUL.CRLF", input: b"a\r\n\0.\r\nRCPT\r\n", content: b"a\r\n\0.\r\nRCPT\r\n", end: None, bare_lf: false },
            // After a dropped dot line that ended in CRLF, a real end of data still ends.
            Case { name: "LF.CRLF then .CRLF", input: b"a\n.\r\n.\r\n", content: b"a\r\n", end: Some(8), bare_lf: true },
            Case { name: "CR CR LF", input: b"a\r\r\n.\r\n", content: b"a\r\r\n", end: Some(7), bare_lf: false },
        ];
        for c in &cases {
            for piece in [1, 2, 3, 1000] {
                let (content, end, r) = run(c.input, piece);
                assert_eq!(content, c.content, "{} (pieces of {piece}): content", c.name);
                assert_eq!(end, c.end, "{} (pieces of {piece}): end", c.name);
                assert_eq!(r.bare_lf, c.bare_lf, "{} (pieces of {piece}): bare LF", c.name);
                assert_eq!(r.size, content.len() as u64, "{}: size", c.name);
            }
        }
    }

    #[test]
    fn headers_are_counted_and_message_id_kept() {
        let input =
            b"Received: a\r\nreceived: b\r\n\tfolded\r\nMessage-ID:\r\n <id@x>\r\nSubject: s\r\n\r\nReceived: not a header\r\n.\r\n";
        let (_, end, r) = run(input, 5);
        assert_eq!(end, Some(input.len()));
        assert_eq!(r.received, 2);
        assert_eq!(r.message_id.as_deref(), Some("<id@x>"));
        let (_, _, r) = run(b"Message-ID: <a@b>\r\nMessage-ID: <c@d>\r\n\r\n.\r\n", 1000);
        assert_eq!(r.message_id.as_deref(), Some("<a@b>"));
    }

    #[test]
    fn a_long_line_is_streamed() {
        let mut input = vec![b'x'; 3_000_000];
        input.extend_from_slice(b"\r\n.\r\n");
        let mut r = DataReader::new();
        let mut out = Vec::new();
        let mut most = 0;
        let mut end = None;
        for chunk in input.chunks(8192) {
            out.clear();
            let f = r.feed(chunk, &mut out);
            most = most.max(out.capacity());
            if let Feed::End(n) = f {
                end = Some(n);
            }
        }
        assert!(end.is_some());
        assert_eq!(r.size, 3_000_002);
        assert!(most <= 16384, "output per piece stays piece-sized: {most}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Whatever the client sends and however it arrives: the same content and end, every
        /// stored line ends in CRLF, and an end of data is always CRLF.CRLF.
        #[test]
        fn any_input_any_pieces(input in proptest::collection::vec(proptest::prop_oneof![
            proptest::prelude::Just(b'\r'), proptest::prelude::Just(b'\n'), proptest::prelude::Just(b'.'),
            proptest::prelude::Just(0u8), proptest::prelude::any::<u8>()], 0..300), piece in 1usize..40) {
            let (whole, whole_end, _) = run(&input, input.len().max(1));
            let (pieces, pieces_end, _) = run(&input, piece);
            proptest::prop_assert_eq!(&whole, &pieces);
            proptest::prop_assert_eq!(whole_end, pieces_end);
            for (i, &b) in whole.iter().enumerate() {
                if b == b'\n' {
                    proptest::prop_assert!(i > 0 && whole[i - 1] == b'\r', "bare LF stored at {}", i);
                }
            }
            if let Some(end) = whole_end {
                let seen = &input[..end];
                proptest::prop_assert!(seen == b".\r\n" || seen.ends_with(b"\r\n.\r\n"), "{:?}", seen);
            }
        }
    }
}
