//! One SMTP connection, plain or TLS, for either side: bounded lines in, buffered bytes out,
//! every read and write under a time limit; and SMTP replies for the client side.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// The time limit of every read, write and handshake.
pub const TIMEOUT: Duration = Duration::from_secs(60);
/// Longest command, reply or message line taken (RFC 5321 allows 1,000 octets).
pub const MAX_LINE: usize = 64 * 1024;
/// Most lines in one multi-line reply.
const MAX_REPLY_LINES: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("timed out while {0}")]
    Timeout(&'static str),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("connection closed by the peer")]
    Closed,
    #[error("line longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("malformed reply {0:?}")]
    Malformed(String),
    #[error("multi-line reply of more than {MAX_REPLY_LINES} lines")]
    ReplyTooLong,
    #[error("{0}")]
    Unexpected(String),
    #[error("TLS handshake: {0}")]
    Handshake(std::io::Error),
    #[error("data pipelined after STARTTLS")]
    PipelinedStartTls,
}

pub struct Conn<S> {
    io: BufReader<S>,
    out: Vec<u8>,
    line: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub fn new(stream: S) -> Self {
        Conn { io: BufReader::new(stream), out: Vec::new(), line: Vec::new() }
    }

    /// The next line with its CRLF, or `None` at the end of the stream.
    pub async fn read_line(&mut self) -> Result<Option<&[u8]>, ConnError> {
        self.line.clear();
        let mut bounded = (&mut self.io).take(MAX_LINE as u64);
        let read = bounded.read_until(b'\n', &mut self.line);
        let n = tokio::time::timeout(TIMEOUT, read).await.map_err(|_| ConnError::Timeout("reading"))??;
        if n == 0 {
            return Ok(None);
        }
        if self.line.last() != Some(&b'\n') {
            return Err(if n >= MAX_LINE { ConnError::LineTooLong } else { ConnError::Closed });
        }
        Ok(Some(&self.line))
    }

    /// Whether input the peer sent is waiting in the buffer (then replies can wait too).
    pub fn input_pending(&self) -> bool {
        !self.io.buffer().is_empty()
    }

    /// Queue bytes; they go out at the next [`Conn::flush`].
    pub fn queue(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    pub async fn flush(&mut self) -> Result<(), ConnError> {
        let stream = self.io.get_mut();
        let write = async {
            stream.write_all(&self.out).await?;
            stream.flush().await
        };
        tokio::time::timeout(TIMEOUT, write).await.map_err(|_| ConnError::Timeout("writing"))??;
        self.out.clear();
        Ok(())
    }

    /// Send `bytes` now.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        self.queue(bytes);
        self.flush().await
    }

    /// The stream, for the TLS handshake after STARTTLS. Anything the peer sent after the
    /// STARTTLS line would be plaintext smuggled into the TLS session: refused.
    pub fn into_stream(self) -> Result<S, ConnError> {
        if self.input_pending() {
            return Err(ConnError::PipelinedStartTls);
        }
        Ok(self.io.into_inner())
    }

    /// The code of the next reply (all its lines read).
    pub async fn reply(&mut self) -> Result<u16, ConnError> {
        let mut first = None;
        for _ in 0..MAX_REPLY_LINES {
            let line = self.read_line().await?.ok_or(ConnError::Closed)?;
            let (code, last) = parse_reply_line(line)?;
            if *first.get_or_insert(code) != code {
                return Err(ConnError::Malformed(printable(line.trim_ascii_end())));
            }
            if last {
                return Ok(code);
            }
        }
        Err(ConnError::ReplyTooLong)
    }

    /// Send `command` and require a reply of `want`.
    pub async fn expect(&mut self, command: &[u8], want: u16) -> Result<(), ConnError> {
        self.send(command).await?;
        self.expect_reply(command, want).await
    }

    /// Require that the next reply (to `command`) is `want`.
    pub async fn expect_reply(&mut self, command: &[u8], want: u16) -> Result<(), ConnError> {
        let code = self.reply().await?;
        if code != want {
            let name = printable(command.split(|b| *b == b' ' || *b == b':').next().unwrap_or(command));
            return Err(ConnError::Unexpected(format!("{name}: reply {code}, wanted {want}")));
        }
        Ok(())
    }
}

/// (code, whether this is the reply's last line) of `ddd-text` / `ddd text` / `ddd`.
fn parse_reply_line(line: &[u8]) -> Result<(u16, bool), ConnError> {
    let bare = line.strip_suffix(b"\n").unwrap_or(line);
    let bare = bare.strip_suffix(b"\r").unwrap_or(bare);
    let bad = || ConnError::Malformed(printable(bare));
    let (digits, rest) = bare.split_at_checked(3).ok_or_else(bad)?;
    if !digits.iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&digits[0]) {
        return Err(bad());
    }
    let code = digits.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    match rest.first() {
        None | Some(b' ') => Ok((code, true)),
        Some(b'-') => Ok((code, false)),
        Some(_) => Err(bad()),
    }
}

/// A peer's bytes for an error message: short, without control characters.
fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(100)]).chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines_parse() {
        assert_eq!(parse_reply_line(b"250-PIPELINING\r\n").ok(), Some((250, false)));
        assert_eq!(parse_reply_line(b"250 Ok\r\n").ok(), Some((250, true)));
        assert_eq!(parse_reply_line(b"354\r\n").ok(), Some((354, true)));
        for bad in [&b"25\r\n"[..], b"2x0 Ok\r\n", b"650 Ok\r\n", b"250_Ok\r\n", b"\r\n", b"\xff\xfe\xfd"] {
            assert!(matches!(parse_reply_line(bad), Err(ConnError::Malformed(_))), "{bad:?}");
        }
    }

    async fn replies_of(server_says: &[u8]) -> Vec<Result<u16, String>> {
        let (mut server, client) = tokio::io::duplex(1 << 16);
        let said = server_says.to_vec();
        tokio::spawn(async move { server.write_all(&said).await });
        let mut conn = Conn::new(client);
        let mut out = Vec::new();
        loop {
            match conn.reply().await {
                Ok(c) => out.push(Ok(c)),
                Err(e) => {
                    out.push(Err(e.to_string()));
                    return out;
                }
            }
        }
    }

    #[tokio::test]
    async fn replies_read_whole_and_bad_ones_are_errors() {
        assert_eq!(
            replies_of(b"220 hi\r\n250-a\r\n250-b\r\n250 c\r\n").await,
            vec![Ok(220), Ok(250), Err("connection closed by the peer".into())]
        );
        assert_eq!(replies_of(b"250-a\r\n451 b\r\n").await, vec![Err("malformed reply \"451 b\"".into())]);
        assert_eq!(replies_of(b"250 a\r\n250 unfinished").await, vec![Ok(250), Err("connection closed by the peer".into())]);
        let long = [b"250 ".as_slice(), &vec![b'x'; MAX_LINE]].concat();
        assert_eq!(replies_of(&long).await, vec![Err(format!("line longer than {MAX_LINE} bytes"))]);
        let many = b"250-x\r\n".repeat(MAX_REPLY_LINES + 1);
        assert_eq!(replies_of(&many).await, vec![Err(format!("multi-line reply of more than {MAX_REPLY_LINES} lines"))]);
    }

    #[tokio::test]
    async fn input_after_starttls_is_refused() {
        let (mut peer, ours) = tokio::io::duplex(1 << 10);
        peer.write_all(b"STARTTLS\r\nMAIL FROM:<x>\r\n").await.unwrap();
        let mut conn = Conn::new(ours);
        assert_eq!(conn.read_line().await.unwrap(), Some(&b"STARTTLS\r\n"[..]));
        assert!(matches!(conn.into_stream(), Err(ConnError::PipelinedStartTls)));
    }
}
