//! The sink: an SMTP server offering STARTTLS and PIPELINING that takes any mail and counts
//! it, plain and over TLS apart, so a benchmark can tell that the next hop's mail was
//! encrypted. A task per connection; replies are written only when the client's pipelined
//! commands have all been read, so a pipelined transaction costs one write.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio_rustls::TlsAcceptor;

use crate::args::SinkConfig;
use crate::conn::{Conn, ConnError, TIMEOUT};
use crate::{Report, SetupError};

const GREETING: &[u8] = b"220 sink.bench ESMTP tls-load\r\n";
const EHLO_PLAIN: &[u8] = b"250-sink.bench\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 STARTTLS\r\n";
const EHLO_TLS: &[u8] = b"250-sink.bench\r\n250-PIPELINING\r\n250 8BITMIME\r\n";

/// Serve until SIGTERM or SIGINT; the report is what was received.
pub async fn run(cfg: SinkConfig) -> Result<Report, SetupError> {
    let acceptor = acceptor(&cfg)?;
    let mut term = signal(SignalKind::terminate()).map_err(SetupError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(SetupError::Signal)?;
    let listener = TcpListener::bind(cfg.listen).await.map_err(|e| SetupError::Listen(cfg.listen, e))?;
    let counts = Arc::new(Counts::default());
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    let (acceptor, counts) = (acceptor.clone(), counts.clone());
                    tokio::spawn(async move { serve(tcp, &acceptor, &counts).await });
                }
                // Out of descriptors, or a connection reset before it was accepted: note it
                // and give the sessions a moment to finish.
                Err(_) => {
                    Counts::add(&counts.accept_errors);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    Ok(Report { json: counts.json(), ok: true })
}

fn acceptor(cfg: &SinkConfig) -> Result<TlsAcceptor, SetupError> {
    let certs = common::tls::pem::read_certs(&cfg.cert).map_err(|e| SetupError::Pem(format!("{}: {e}", cfg.cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(&cfg.key)
        .map_err(|e| SetupError::Pem(format!("{}: {}", cfg.key.display(), common::tls::pem::pem_error(&e))))?;
    let config = ServerConfig::builder_with_provider(common::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn serve(tcp: TcpStream, acceptor: &TlsAcceptor, counts: &Counts) {
    Counts::add(&counts.sessions);
    let session = async {
        // Replies are batched already; no waiting for delayed ACKs.
        tcp.set_nodelay(true)?;
        let mut plain = Conn::new(tcp);
        plain.queue(GREETING);
        if converse(&mut plain, false, counts).await? == End::Quit {
            return Ok(());
        }
        let handshake = acceptor.accept(plain.into_stream()?);
        let tls = tokio::time::timeout(TIMEOUT, handshake).await.map_err(|_| ConnError::Timeout("in the TLS handshake"))?;
        let mut tls = Conn::new(tls.map_err(ConnError::Handshake)?);
        Counts::add(&counts.tls_sessions);
        converse(&mut tls, true, counts).await.map(|_| ())
    };
    let outcome: Result<(), ConnError> = session.await;
    if outcome.is_err() {
        Counts::add(&counts.errors);
    }
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    /// QUIT, or the client closed the connection.
    Quit,
    /// STARTTLS was answered with 220: the handshake comes next.
    StartTls,
}

/// Commands and replies until the session ends or turns to TLS.
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(conn: &mut Conn<S>, tls: bool, counts: &Counts) -> Result<End, ConnError> {
    loop {
        if !conn.input_pending() {
            conn.flush().await?;
        }
        let Some(line) = conn.read_line().await? else {
            return Ok(End::Quit);
        };
        match Verb::of(line) {
            Verb::Ehlo => conn.queue(if tls { EHLO_TLS } else { EHLO_PLAIN }),
            Verb::Helo => conn.queue(b"250 sink.bench\r\n"),
            Verb::StartTls if tls => conn.queue(b"554 5.5.1 Error: TLS already active\r\n"),
            Verb::StartTls => {
                conn.send(b"220 2.0.0 Ready to start TLS\r\n").await?;
                return Ok(End::StartTls);
            }
            Verb::Mail => conn.queue(b"250 2.1.0 Ok\r\n"),
            Verb::Rcpt => conn.queue(b"250 2.1.5 Ok\r\n"),
            Verb::Rset | Verb::Noop => conn.queue(b"250 2.0.0 Ok\r\n"),
            Verb::Data => {
                conn.send(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                while conn.read_line().await?.ok_or(ConnError::Closed)? != b".\r\n" {}
                Counts::add(if tls { &counts.tls_messages } else { &counts.plain_messages });
                conn.queue(b"250 2.0.0 Ok: queued\r\n");
            }
            Verb::Quit => {
                conn.send(b"221 2.0.0 Bye\r\n").await?;
                return Ok(End::Quit);
            }
            Verb::Other => conn.queue(b"502 5.5.2 Error: command not recognized\r\n"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Ehlo,
    Helo,
    StartTls,
    Mail,
    Rcpt,
    Data,
    Rset,
    Noop,
    Quit,
    Other,
}

impl Verb {
    fn of(line: &[u8]) -> Verb {
        let word = line.split(|b| b.is_ascii_whitespace()).next().unwrap_or_default();
        let is = |name: &str| word.eq_ignore_ascii_case(name.as_bytes());
        // MAIL FROM: and RCPT TO: carry their colon in the first word only when written
        // without a space; either way the verb is the first four letters.
        let head = word.get(..4).unwrap_or(word);
        let starts = |name: &str| head.eq_ignore_ascii_case(name.as_bytes());
        match () {
            _ if is("EHLO") => Verb::Ehlo,
            _ if is("HELO") => Verb::Helo,
            _ if is("STARTTLS") => Verb::StartTls,
            _ if starts("MAIL") => Verb::Mail,
            _ if starts("RCPT") => Verb::Rcpt,
            _ if is("DATA") => Verb::Data,
            _ if is("RSET") => Verb::Rset,
            _ if is("NOOP") => Verb::Noop,
            _ if is("QUIT") => Verb::Quit,
            _ => Verb::Other,
        }
    }
}

#[derive(Default)]
struct Counts {
    sessions: AtomicUsize,
    tls_sessions: AtomicUsize,
    plain_messages: AtomicUsize,
    tls_messages: AtomicUsize,
    /// Sessions that ended on an error (a bad line, a failed handshake, a time limit).
    errors: AtomicUsize,
    accept_errors: AtomicUsize,
}

impl Counts {
    fn add(counter: &AtomicUsize) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn json(&self) -> serde_json::Value {
        let n = |c: &AtomicUsize| c.load(Ordering::Relaxed);
        json!({"mode": "sink", "sessions": n(&self.sessions), "tls_sessions": n(&self.tls_sessions),
               "plain_messages": n(&self.plain_messages), "tls_messages": n(&self.tls_messages),
               "errors": n(&self.errors), "accept_errors": n(&self.accept_errors)})
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn verbs() {
        assert_eq!(Verb::of(b"ehlo x\r\n"), Verb::Ehlo);
        assert_eq!(Verb::of(b"MAIL FROM:<a@b>\r\n"), Verb::Mail);
        assert_eq!(Verb::of(b"rcpt to:<a@b>\r\n"), Verb::Rcpt);
        assert_eq!(Verb::of(b"DATA\r\n"), Verb::Data);
        assert_eq!(Verb::of(b"STARTTLS\r\n"), Verb::StartTls);
        assert_eq!(Verb::of(b"DATAX\r\n"), Verb::Other);
        assert_eq!(Verb::of(b"\r\n"), Verb::Other);
        assert_eq!(Verb::of(b"\xff\r\n"), Verb::Other);
    }

    /// A pipelined plaintext transaction gets its replies in one batch and is counted; the
    /// session then ends at QUIT.
    #[tokio::test]
    async fn pipelined_transaction_is_taken_and_counted() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let counts = Counts::default();
        client.write_all(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhello\r\n..dot\r\n.\r\nQUIT\r\n").await.unwrap();
        let end = converse(&mut Conn::new(server), false, &counts).await.unwrap();
        assert_eq!(end, End::Quit);
        let mut replies = String::new();
        client.read_to_string(&mut replies).await.unwrap();
        assert_eq!(
            replies,
            "250-sink.bench\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 STARTTLS\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n\
             354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued\r\n221 2.0.0 Bye\r\n"
        );
        assert_eq!(counts.plain_messages.load(Ordering::Relaxed), 1);
        assert_eq!(counts.tls_messages.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn starttls_ends_the_plain_part_and_a_cut_message_is_an_error() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let counts = Counts::default();
        let mut conn = Conn::new(server);
        client.write_all(b"STARTTLS\r\n").await.unwrap();
        assert_eq!(converse(&mut conn, false, &counts).await.unwrap(), End::StartTls);
        client.write_all(b"STARTTLS\r\nDATA\r\nunfinished\r\n").await.unwrap();
        client.shutdown().await.unwrap();
        assert!(matches!(converse(&mut conn, true, &counts).await, Err(ConnError::Closed)));
        assert_eq!(counts.tls_messages.load(Ordering::Relaxed), 0);
    }
}
