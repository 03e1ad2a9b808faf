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
//! While the header section lasts, the reader notes its headers ([`HeaderSeen`]: `Received:`
//! for `hopcount_limit`, the Message-ID for the log, what a local submission lacks), each
//! from at most [`HEADER_KEEP`] bytes of a line. It also finds where the section ends, so that
//! cleanup's missing headers go in there: the bytes of a line are held back until they tell
//! whether it is a header (at most [`HEADER_KEEP`] of them), and when the line ends the
//! section, [`Feed::HeaderEnd`] hands control back before any of it is output. Whether a
//! header line has a byte that is not ASCII is noted too, for SMTPUTF8 autodetection.

use common::cleanup::{HEADER_KEEP, HeaderSeen, LineKind, classify};

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
    /// The header section ended after this many input bytes: what goes at its end is to be
    /// output now, then the rest of the input fed.
    HeaderEnd(usize),
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
    /// What the current line of the header section is, once its first bytes told.
    line_kind: Option<LineKind>,
    /// Output held back while the current line's kind is not known (and, once it ended the
    /// header section, until the next feed).
    held: Vec<u8>,
    /// The header section ended on the byte just read.
    ended_headers: bool,
    /// What the header section held.
    pub headers: HeaderSeen,
    /// A header or continuation line has a byte that is not ASCII (for SMTPUTF8
    /// autodetection, as Postfix's cleanup looks at every header it writes out).
    pub header_not_ascii: bool,
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
            line_kind: None,
            held: Vec::new(),
            ended_headers: false,
            headers: HeaderSeen::default(),
            header_not_ascii: false,
        }
    }

    /// The message is still in its header section (it may end there, without a body).
    pub fn in_headers(&self) -> bool {
        self.in_headers
    }

    /// Consume `input`, appending the message content it carries to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Feed {
        let start = out.len();
        // The line that ended the header section goes out after what the caller put there
        // (while the section lasts, `held` is the undecided start of the current line).
        if !self.in_headers {
            out.append(&mut self.held);
        }
        let mut i = 0;
        while i < input.len() {
            if self.pos == Pos::Mid && !self.in_headers {
                // Inside a body line nothing but a CR or an LF matters: the bytes up to the
                // next one go out as they are, in one piece.
                let rest = &input[i..];
                let n = rest.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(rest.len());
                out.extend_from_slice(&rest[..n]);
                i += n;
                if i == input.len() {
                    break;
                }
            }
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
            if std::mem::take(&mut self.ended_headers) {
                self.size += (out.len() - start) as u64;
                return Feed::HeaderEnd(i);
            }
        }
        self.size += (out.len() - start) as u64;
        Feed::More
    }

    /// Output, or hold back while the line may still end the header section.
    fn emit(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        if (self.in_headers && self.line_kind.is_none()) || self.ended_headers {
            self.held.extend_from_slice(bytes);
        } else {
            out.extend_from_slice(bytes);
        }
    }

    /// The current line's kind, once its bytes tell (`complete`: the line has ended).
    fn decide(&mut self, out: &mut Vec<u8>, complete: bool) {
        if !self.in_headers || self.line_kind.is_some() {
            return;
        }
        match classify(&self.header_line, complete, self.headers.after_header()) {
            None => {}
            Some(LineKind::End) => {
                // `held` stays: it goes out after what the caller adds at the section's end.
                self.in_headers = false;
                self.ended_headers = true;
                self.header_line.clear();
            }
            Some(kind) => {
                self.line_kind = Some(kind);
                out.append(&mut self.held);
            }
        }
    }

    fn content(&mut self, out: &mut Vec<u8>, b: u8) {
        if self.in_headers && self.header_line.len() < HEADER_KEEP {
            self.header_line.push(b);
        }
        let pending = self.in_headers && self.line_kind.is_none();
        self.emit(out, &[b]);
        if pending {
            self.decide(out, false);
        }
        // A byte that is not ASCII ends an undecided line's chance of being a header (no
        // header name has one), so the kind is known here.
        self.header_not_ascii |= !b.is_ascii() && self.in_headers && self.line_kind.is_some();
    }

    /// A line ends: it is stored with CRLF whatever its ending was.
    fn end_line(&mut self, out: &mut Vec<u8>, crlf: bool) {
        self.decide(out, true);
        self.emit(out, b"\r\n");
        if !crlf {
            self.bare_lf = true;
        }
        self.prev_crlf = crlf;
        self.pos = Pos::LineStart;
        if let (true, Some(kind)) = (self.in_headers, self.line_kind.take()) {
            let line = std::mem::take(&mut self.header_line);
            self.headers.note(&line, kind);
        }
    }

    /// A `.` line that is not the end of data (it or the line before ended in a bare LF):
    /// not stored, so that it cannot become an end of data further on.
    fn drop_dot_line(&mut self, crlf: bool) {
        self.bare_lf |= !crlf || !self.prev_crlf;
        self.prev_crlf = crlf;
        self.pos = Pos::LineStart;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `input` in pieces of `piece` bytes; the content and where the end was found.
    fn run(input: &[u8], piece: usize) -> (Vec<u8>, Option<usize>, DataReader) {
        run_marked(input, piece, b"")
    }

    /// As [`run`], with `marker` put where the header section ends, as the connection puts
    /// cleanup's missing headers there.
    fn run_marked(input: &[u8], piece: usize, marker: &[u8]) -> (Vec<u8>, Option<usize>, DataReader) {
        let mut r = DataReader::new();
        let mut out = Vec::new();
        let mut at = 0;
        for chunk in input.chunks(piece) {
            let mut rest = chunk;
            loop {
                match r.feed(rest, &mut out) {
                    Feed::End(n) => {
                        if r.in_headers() {
                            out.extend_from_slice(marker);
                        }
                        return (out, Some(at + n), r);
                    }
                    Feed::HeaderEnd(n) => {
                        out.extend_from_slice(marker);
                        rest = &rest[n..];
                        at += n;
                    }
                    Feed::More => {
                        at += rest.len();
                        break;
                    }
                }
            }
        }
        // What was held back goes out with the next input.
        r.feed(b"", &mut out);
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
    fn headers_that_are_not_ascii_are_noted_and_bodies_are_not() {
        let cases: &[(&[u8], bool)] = &[
            (b"Subject: caf\xc3\xa9\r\n\r\nbody\r\n.\r\n", true),
            (b"Subject: x\r\n caf\xc3\xa9\r\n\r\nbody\r\n.\r\n", true),
            (b"Subject: x\r\n\r\ncaf\xc3\xa9\r\n.\r\n", false),
            // No empty line: the first line that is no header starts the body.
            (b"Subject: x\r\ncaf\xc3\xa9: not a header\r\n.\r\n", false),
            (b"\xc3\xa9 body at once\r\n.\r\n", false),
            (b"Subject: x\r\n\r\n.\r\n", false),
        ];
        for (input, want) in cases {
            for piece in [1, 3, 1000] {
                let (_, end, r) = run(input, piece);
                assert!(end.is_some());
                assert_eq!(r.header_not_ascii, *want, "{:?} in pieces of {piece}", String::from_utf8_lossy(input));
            }
        }
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
        assert_eq!(r.headers.received, 2);
        assert_eq!(r.headers.message_id.as_deref(), Some("<id@x>"));
        let (_, _, r) = run(b"Message-ID: <a@b>\r\nMessage-ID: <c@d>\r\n\r\n.\r\n", 1000);
        assert_eq!(r.headers.message_id.as_deref(), Some("<a@b>"));
    }

    #[test]
    fn the_end_of_the_header_section_is_found_in_any_pieces() {
        let x = "X-Added: yes\r\n";
        let cases: &[(&str, &[u8], String)] = &[
            ("empty line", b"Subject: s\r\n\r\nbody\r\n.\r\n", format!("Subject: s\r\n{x}\r\nbody\r\n")),
            ("folded", b"Subject: s\r\n more\r\n\r\nb\r\n.\r\n", format!("Subject: s\r\n more\r\n{x}\r\nb\r\n")),
            ("no empty line", b"Subject: s\r\nbody, a line\r\n.\r\n", format!("Subject: s\r\n{x}body, a line\r\n")),
            ("bare LF", b"Subject: s\n\nbody\r\n.\r\n", format!("Subject: s\r\n{x}\r\nbody\r\n")),
            ("headers only", b"Subject: s\r\n.\r\n", format!("Subject: s\r\n{x}")),
            ("empty message", b".\r\n", x.to_string()),
            ("body only", b"hello\r\n.\r\n", format!("{x}hello\r\n")),
            ("dot-stuffed body", b"..hello\r\n.\r\n", format!("{x}.hello\r\n")),
            ("bare CR", b"Sub\rject: s\r\n.\r\n", format!("{x}Sub\rject: s\r\n")),
        ];
        for (name, input, want) in cases {
            for piece in [1, 2, 5, 1000] {
                let (content, end, r) = run_marked(input, piece, x.as_bytes());
                assert_eq!(String::from_utf8_lossy(&content), *want, "{name} (pieces of {piece})");
                assert_eq!(end, Some(input.len()), "{name}");
                assert_eq!(r.size as usize, want.len() - x.len(), "{name}: the size counts the client's bytes");
            }
        }
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
            let mut rest = chunk;
            loop {
                match r.feed(rest, &mut out) {
                    Feed::End(n) => end = Some(n),
                    Feed::HeaderEnd(n) => {
                        rest = &rest[n..];
                        continue;
                    }
                    Feed::More => {}
                }
                break;
            }
            most = most.max(out.capacity());
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
