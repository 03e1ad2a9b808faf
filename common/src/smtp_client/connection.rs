//! One SMTP client connection: checked command lines out, RFC 5321 multi-line replies in,
//! message text through the one encoder; every read and write has a time limit. The stream is
//! one the client opened, plain TCP or TLS ([`SmtpStream`], STARTTLS turns the one into the
//! other under the same connection), or one a customer opened to smtpd (ODMR), so the
//! transaction code is one for all of them.

use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::text::printable;
use crate::tls::names::SignatureSeen;
use crate::tls::{SmtpStream, TlsInfo};

use super::data::DataEncoder;

/// Longest reply line we accept (RFC 5321 says 512; be generous, never unbounded).
const MAX_REPLY_LINE: usize = 4096;
/// Most lines in one multi-line reply.
const MAX_REPLY_LINES: usize = 100;

/// Why a conversation broke off.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server did not answer in time.
    #[error("conversation timed out")]
    Timeout,
    /// The connection failed or was closed.
    #[error("lost connection: {0}")]
    Io(#[from] std::io::Error),
    /// The server sent something that is not an SMTP reply.
    #[error("malformed reply: {0}")]
    Malformed(String),
    /// A command would have carried CR, LF or NUL (an address with control characters): it
    /// was not sent, so it cannot turn into more commands on this or a reused connection.
    #[error("refusing to send a command with a control character: {0}")]
    UnsafeCommand(String),
}

/// An SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// `250 2.0.0 Ok`, the lines joined by spaces as Postfix logs them.
    pub fn text(&self) -> String {
        self.lines.iter().map(|l| format!("{} {l}", self.code)).next().map_or_else(String::new, |first| {
            let rest: Vec<&str> = self.lines.iter().skip(1).map(String::as_str).collect();
            if rest.is_empty() { first } else { format!("{first} {}", rest.join(" ")) }
        })
    }

    pub fn class(&self) -> u16 {
        self.code / 100
    }

    /// The enhanced status code of the reply, or one derived from its class.
    pub fn dsn(&self) -> String {
        let first = self.lines.first().map(String::as_str).unwrap_or("");
        let cand = first.split_whitespace().next().unwrap_or("");
        let parts: Vec<&str> = cand.split('.').collect();
        if parts.len() == 3
            && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            && parts[0] == (self.class()).to_string()
        {
            return cand.to_string();
        }
        format!("{}.0.0", self.class())
    }
}

/// Parse one reply line: (code, is_last, text).
pub fn parse_reply_line(line: &str) -> Result<(u16, bool, String), ClientError> {
    let line = line.trim_end_matches(['\r', '\n']);
    let bad = || ClientError::Malformed(line.chars().take(100).collect());
    if line.len() < 3 || !line.as_bytes()[..3].iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let code: u16 = line[..3].parse().map_err(|_| bad())?;
    if !(200..600).contains(&code) {
        return Err(bad());
    }
    match line.as_bytes().get(3) {
        None => Ok((code, true, String::new())),
        // The text reaches log lines and bounces: no control characters from the peer.
        Some(b' ') => Ok((code, true, printable(&line[4..], '?').into_owned())),
        Some(b'-') => Ok((code, false, printable(&line[4..], '?').into_owned())),
        Some(_) => Err(bad()),
    }
}

/// What a connection runs over (any plain-or-TLS stream with its read buffer).
pub trait Stream: AsyncBufRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncBufRead + AsyncWrite + Unpin + Send> Stream for T {}

/// The connection under the conversation.
enum Transport {
    /// One this client opened: TCP, turned into TLS by STARTTLS. Reads go through the
    /// buffer, writes straight to the stream under it.
    Own(BufReader<SmtpStream>),
    /// One a customer opened to smtpd (ODMR, RFC 2645), already TLS or not, with whatever
    /// smtpd had buffered: STARTTLS is not the client's to do on it.
    Over { stream: Box<dyn Stream>, tls: bool },
}

/// One SMTP connection.
pub struct Connection {
    transport: Transport,
    pub timeout: Duration,
    /// The server offered SMTPUTF8 in its last EHLO reply.
    pub smtputf8: bool,
    /// The server offered PIPELINING (RFC 2920) in its last EHLO reply.
    pub pipelining: bool,
}

/// Why a TLS handshake failed (the connection is unusable then).
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("TLS already active")]
    AlreadyTls,
    /// A connection the client did not open (ODMR): its TLS is the server side's business.
    #[error("STARTTLS is not available on a reversed connection")]
    NotOurs,
    /// The server sent more after its reply to STARTTLS: in plaintext that would be read as if
    /// it came under TLS (the client side of CVE-2011-0411).
    #[error("unexpected plaintext after the STARTTLS reply")]
    Pipelined,
    #[error("Connection timed out")]
    Timeout,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Connection {
    pub fn new(stream: TcpStream, timeout: Duration) -> Connection {
        Connection { transport: Transport::Own(BufReader::new(SmtpStream::Plain(stream))), timeout, smtputf8: false, pipelining: false }
    }

    /// A connection over a stream someone else opened (smtpd's reversed ODMR session);
    /// `tls`: it runs inside a TLS session already.
    pub fn over(stream: Box<dyn Stream>, tls: bool, timeout: Duration) -> Connection {
        Connection { transport: Transport::Over { stream, tls }, timeout, smtputf8: false, pipelining: false }
    }

    /// The stream back, for a close the caller does its own way.
    pub fn into_stream(self) -> Box<dyn Stream> {
        match self.transport {
            Transport::Own(r) => Box::new(r),
            Transport::Over { stream, .. } => stream,
        }
    }

    /// The stream under a connection this client opened, for the roles to swap (the ODMR
    /// customer after `250` to ATRN). `None` when the server has sent more than its replies
    /// (nothing may be read ahead of the customer's greeting) or the connection is not ours.
    pub fn into_socket(self) -> Option<SmtpStream> {
        match self.transport {
            Transport::Own(r) if r.buffer().is_empty() => Some(r.into_inner()),
            _ => None,
        }
    }

    /// The conversation is under TLS.
    pub fn is_tls(&self) -> bool {
        match &self.transport {
            Transport::Own(r) => r.get_ref().is_tls(),
            Transport::Over { tls, .. } => *tls,
        }
    }

    fn stream(&mut self) -> &mut dyn Stream {
        match &mut self.transport {
            Transport::Own(r) => r,
            Transport::Over { stream, .. } => stream.as_mut(),
        }
    }

    /// The TLS handshake after the server's 220 to STARTTLS, within `timeout`, and what it
    /// negotiated (the server's signature is recorded by the connector's verifier in `seen`).
    pub async fn start_tls(
        &mut self,
        connector: &TlsConnector,
        name: rustls::pki_types::ServerName<'static>,
        seen: &SignatureSeen,
        timeout: Duration,
    ) -> Result<TlsInfo, HandshakeError> {
        let Transport::Own(reader) = &mut self.transport else {
            return Err(HandshakeError::NotOurs);
        };
        if !reader.buffer().is_empty() {
            return Err(HandshakeError::Pipelined);
        }
        let old = std::mem::replace(reader, BufReader::new(SmtpStream::Detached));
        let SmtpStream::Plain(tcp) = old.into_inner() else {
            return Err(HandshakeError::AlreadyTls);
        };
        let tls = tokio::time::timeout(timeout, connector.connect(name, tcp)).await.map_err(|_| HandshakeError::Timeout)??;
        let info = TlsInfo::of(tls.get_ref().1, seen);
        *reader = BufReader::new(SmtpStream::Tls(Box::new(tls.into())));
        Ok(info)
    }

    pub async fn read_reply(&mut self) -> Result<Reply, ClientError> {
        let mut lines = Vec::new();
        let mut code = 0;
        loop {
            let mut buf = Vec::new();
            let n = tokio::time::timeout(self.timeout, read_line_bounded(self.stream(), &mut buf))
                .await
                .map_err(|_| ClientError::Timeout)??;
            if n == 0 {
                return Err(ClientError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            let (c, last, text) = parse_reply_line(&String::from_utf8_lossy(&buf))?;
            if code != 0 && c != code {
                return Err(ClientError::Malformed(format!("reply code changed from {code} to {c}")));
            }
            code = c;
            lines.push(text);
            if last {
                return Ok(Reply { code, lines });
            }
            if lines.len() >= MAX_REPLY_LINES {
                return Err(ClientError::Malformed("reply has too many lines".into()));
            }
        }
    }

    /// The only raw write: callers go through [`Connection::command`] (checked command
    /// lines) or [`Connection::send_message`] (encoded message text).
    async fn send(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let timeout = self.timeout;
        let stream = self.stream();
        // The flush pushes out what rustls or a buffered stream (smtpd's) still holds.
        let write = async {
            stream.write_all(bytes).await?;
            stream.flush().await
        };
        tokio::time::timeout(timeout, write).await.map_err(|_| ClientError::Timeout)??;
        Ok(())
    }

    /// Send a command line and read its reply. A line with CR, LF or NUL is refused before a
    /// byte is written (defence in depth behind the address checks of the caller).
    pub async fn command(&mut self, line: &str) -> Result<Reply, ClientError> {
        self.send_commands(&[line]).await?;
        self.read_reply().await
    }

    /// Send command lines in one write without reading replies (a pipelined group, RFC 2920);
    /// the caller reads one reply per line. Checked as [`Connection::command`] checks its line.
    pub async fn send_commands(&mut self, lines: &[&str]) -> Result<(), ClientError> {
        let mut bytes = Vec::with_capacity(lines.iter().map(|l| l.len() + 2).sum());
        for line in lines {
            if line.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
                return Err(ClientError::UnsafeCommand(printable(line, '?').into_owned()));
            }
            bytes.extend_from_slice(line.as_bytes());
            bytes.extend_from_slice(b"\r\n");
        }
        self.send(&bytes).await
    }

    /// Send the message after a 354 reply, in pieces, through the one encoder that makes it
    /// clean SMTP text (see [`super::data`]), ending with `.<CR><LF>`. Returns whether a long
    /// line was broken.
    pub async fn send_message(&mut self, message: &[u8], line_limit: usize) -> Result<bool, ClientError> {
        const PIECE: usize = 64 * 1024;
        let mut encoder = DataEncoder::new(line_limit);
        let mut out = Vec::with_capacity(PIECE + PIECE / 8);
        for piece in message.chunks(PIECE) {
            out.clear();
            encoder.encode(piece, &mut out);
            self.send(&out).await?;
        }
        out.clear();
        encoder.finish(&mut out);
        self.send(&out).await?;
        Ok(encoder.broke_line())
    }
}

async fn read_line_bounded(r: &mut (impl AsyncBufRead + Unpin + ?Sized), buf: &mut Vec<u8>) -> Result<usize, ClientError> {
    let mut total = 0;
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return Ok(total);
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        buf.extend_from_slice(&available[..take]);
        r.consume(take);
        total += take;
        if done {
            return Ok(total);
        }
        if buf.len() > MAX_REPLY_LINE {
            return Err(ClientError::Malformed("reply line too long".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines() {
        assert_eq!(parse_reply_line("250-PIPELINING\r\n").unwrap(), (250, false, "PIPELINING".into()));
        assert_eq!(parse_reply_line("250 2.0.0 Ok").unwrap(), (250, true, "2.0.0 Ok".into()));
        assert_eq!(parse_reply_line("354").unwrap(), (354, true, String::new()));
        for bad in ["", "25", "abc hello", "250xOk", "999 nope", "\u{0}\u{1}\u{2}"] {
            assert!(parse_reply_line(bad).is_err(), "{bad:?}");
        }
        let r = Reply { code: 550, lines: vec!["5.1.1 <u@x>: no such user".into(), "more".into()] };
        assert_eq!(r.text(), "550 5.1.1 <u@x>: no such user more");
        assert_eq!(r.dsn(), "5.1.1");
        assert_eq!(Reply { code: 451, lines: vec!["try later".into()] }.dsn(), "4.0.0");
    }

    /// A command line with CR, LF or NUL never reaches the peer, not even its harmless start;
    /// the connection stays usable.
    #[tokio::test]
    async fn commands_with_line_breaks_are_not_written() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 256];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
                if n == 0 || got.ends_with(b"\r\n") {
                    break;
                }
            }
            s.write_all(b"250 2.0.0 Ok\r\n").await.unwrap();
            got
        });
        let mut c = Connection::new(tokio::net::TcpStream::connect(addr).await.unwrap(), Duration::from_secs(5));
        for bad in ["MAIL FROM:<a@client.test>\r\nRCPT TO:<injected@x>", "RCPT TO:<a@x>\nDATA", "MAIL FROM:<a\r@x>", "RCPT TO:<a\0@x>"] {
            match c.command(bad).await {
                Err(ClientError::UnsafeCommand(shown)) => assert!(!shown.contains(['\r', '\n', '\0']), "{shown:?}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        assert_eq!(c.command("NOOP").await.unwrap().code, 250);
        assert_eq!(server.await.unwrap(), b"NOOP\r\n".to_vec());
    }

    /// The stream is handed over for the roles to swap only when nothing the server sent is
    /// still unread: bytes sent ahead of the customer's greeting would be taken as commands.
    #[tokio::test]
    async fn the_socket_is_handed_over_only_with_nothing_read_ahead() {
        for (answer, clean) in
            [(&b"250 2.0.0 OK now reversing the connection\r\n"[..], true), (b"250 2.0.0 OK\r\nMAIL FROM:<a@b>\r\n", false)]
        {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 64];
                let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
                s.write_all(answer).await.unwrap();
                s
            });
            let mut c = Connection::new(tokio::net::TcpStream::connect(addr).await.unwrap(), Duration::from_secs(5));
            assert_eq!(c.command("ATRN a.example").await.unwrap().code, 250);
            // Both lines of the second answer have arrived before the socket is asked for.
            let _peer = server.await.unwrap();
            if !clean {
                let _ = tokio::time::timeout(Duration::from_millis(200), c.stream().fill_buf()).await;
            }
            assert_eq!(c.into_socket().is_some(), clean, "{:?}", String::from_utf8_lossy(answer));
        }
    }

    /// The next hop's reply lines are outside input: any bytes give a reply or an error, never
    /// a panic, and the text that comes out has no control characters.
    #[test]
    fn any_reply_line_parses_or_fails_cleanly() {
        use proptest::prelude::*;
        proptest!(ProptestConfig::with_cases(512), |(code in 0u16..1000, sep in prop_oneof![Just(' '), Just('-'), any::<char>()], text in any::<String>(), junk in any::<String>())| {
            let _ = parse_reply_line(&junk);
            let line = format!("{code:03}{sep}{text}\r\n");
            if let Ok((c, last, t)) = parse_reply_line(&line) {
                prop_assert_eq!(c, code);
                prop_assert!((200..600).contains(&c));
                // A bare code is a last line too: a CR or LF separator with no text after it
                // is only the line end.
                let bare = line.trim_end_matches(['\r', '\n']).len() == 3;
                prop_assert_eq!(last, sep == ' ' || bare);
                prop_assert!(!t.chars().any(|ch| ch.is_ascii_control()), "{:?}", t);
            }
        });
    }
}
