//! The DATA stream: any bytes in any pieces; the first byte chooses the piece size. Checked:
//! no panic, the same result whole and in pieces, CRLF-only content, CRLF.CRLF ends only.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtpd::data::{DataReader, Feed};

fn run(input: &[u8], piece: usize) -> (Vec<u8>, Option<usize>) {
    let mut r = DataReader::new();
    let mut out = Vec::new();
    let mut at = 0;
    for chunk in input.chunks(piece) {
        if let Feed::End(n) = r.feed(chunk, &mut out) {
            return (out, Some(at + n));
        }
        at += chunk.len();
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else { return };
    let whole = run(input, input.len().max(1));
    assert_eq!(whole, run(input, usize::from(first % 32) + 1));
    assert!(whole.0.iter().enumerate().all(|(i, &b)| b != b'\n' || (i > 0 && whole.0[i - 1] == b'\r')));
    if let Some(end) = whole.1 {
        assert!(&input[..end] == b".\r\n" || input[..end].ends_with(b"\r\n.\r\n"));
    }
});
