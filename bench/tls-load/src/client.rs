//! The load client: concurrent STARTTLS sessions to 127.0.0.1 that send mail one message at a
//! time, or only shake hands. Failures are tallied, and the run goes on.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use serde_json::json;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::args::{HandshakeLoad, MailLoad};
use crate::conn::{Conn, ConnError, TIMEOUT};
use crate::{Report, SetupError};

const EHLO: &[u8] = b"EHLO tls-load.bench\r\n";
const SENDER: &str = "sender@bench.test";
const RECIPIENT: &str = "u@d1.example.test";

/// `load.messages` messages over `load.sessions` concurrent STARTTLS sessions.
pub async fn mail(load: MailLoad) -> Result<Report, SetupError> {
    let tls = connector()?;
    let body: Arc<[u8]> = message(load.size).into();
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..load.sessions {
        let share = load.messages / load.sessions + usize::from(i < load.messages % load.sessions);
        if share > 0 {
            let (tls, body, tally) = (tls.clone(), body.clone(), tally.clone());
            tasks.spawn(async move { mail_session(&tls, load.port, share, &body, &tally).await });
        }
    }
    tally.join(tasks).await;
    let seconds = started.elapsed().as_secs_f64();
    let accepted = tally.done.load(Ordering::Relaxed);
    let errors = tally.errors.load(Ordering::Relaxed);
    Ok(Report {
        json: json!({"mode": "mail", "seconds": seconds, "sessions": load.sessions, "messages": load.messages, "size": load.size,
                     "accepted": accepted, "errors": errors, "first_error": tally.first_error()}),
        ok: errors == 0 && accepted == load.messages,
    })
}

/// `load.count` sessions of connect, EHLO, STARTTLS, EHLO, QUIT, `load.sessions` at a time.
pub async fn handshakes(load: HandshakeLoad) -> Result<Report, SetupError> {
    let tls = connector()?;
    let left = Arc::new(AtomicUsize::new(load.count));
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..load.sessions.min(load.count) {
        let (tls, left, tally) = (tls.clone(), left.clone(), tally.clone());
        tasks.spawn(async move {
            while left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok() {
                let session = async {
                    let mut conn = starttls(&tls, load.port).await?;
                    conn.expect(b"QUIT\r\n", 221).await
                };
                match session.await {
                    Ok(()) => tally.done(),
                    Err(e) => tally.error(&e),
                }
            }
        });
    }
    tally.join(tasks).await;
    let seconds = started.elapsed().as_secs_f64();
    let completed = tally.done.load(Ordering::Relaxed);
    let errors = tally.errors.load(Ordering::Relaxed);
    Ok(Report {
        json: json!({"mode": "handshakes", "seconds": seconds, "sessions": load.sessions, "count": load.count,
                     "completed": completed, "errors": errors, "first_error": tally.first_error()}),
        ok: errors == 0 && completed == load.count,
    })
}

/// One session sending `share` messages; a refused message is an error and the session goes
/// on after RSET, a broken session is one error and ends.
async fn mail_session(tls: &TlsConnector, port: u16, share: usize, body: &[u8], tally: &Tally) {
    let mut conn = match starttls(tls, port).await {
        Ok(c) => c,
        Err(e) => return tally.error(&e),
    };
    for _ in 0..share {
        match send_message(&mut conn, body).await {
            Ok(()) => tally.done(),
            Err(e @ ConnError::Unexpected(_)) => {
                tally.error(&e);
                if let Err(e) = conn.expect(b"RSET\r\n", 250).await {
                    return tally.error(&e);
                }
            }
            Err(e) => return tally.error(&e),
        }
    }
    if let Err(e) = conn.expect(b"QUIT\r\n", 221).await {
        tally.error(&e);
    }
}

async fn send_message(conn: &mut Conn<TlsStream<TcpStream>>, body: &[u8]) -> Result<(), ConnError> {
    conn.expect(format!("MAIL FROM:<{SENDER}>\r\n").as_bytes(), 250).await?;
    conn.expect(format!("RCPT TO:<{RECIPIENT}>\r\n").as_bytes(), 250).await?;
    conn.expect(b"DATA\r\n", 354).await?;
    conn.send(body).await?;
    conn.expect_reply(b"end of DATA", 250).await
}

/// Connect, EHLO, STARTTLS, handshake, EHLO again.
async fn starttls(tls: &TlsConnector, port: u16) -> Result<Conn<TlsStream<TcpStream>>, ConnError> {
    let connect = TcpStream::connect((Ipv4Addr::LOCALHOST, port));
    let tcp = tokio::time::timeout(TIMEOUT, connect).await.map_err(|_| ConnError::Timeout("connecting"))??;
    // Commands go out one at a time: no waiting for delayed ACKs (smtp-source does the same).
    tcp.set_nodelay(true)?;
    let mut plain = Conn::new(tcp);
    plain.expect_reply(b"greeting", 220).await?;
    plain.expect(EHLO, 250).await?;
    plain.expect(b"STARTTLS\r\n", 220).await?;
    let handshake = tls.connect(ServerName::IpAddress(Ipv4Addr::LOCALHOST.into()), plain.into_stream()?);
    let stream = tokio::time::timeout(TIMEOUT, handshake).await.map_err(|_| ConnError::Timeout("in the TLS handshake"))?;
    let mut conn = Conn::new(stream.map_err(ConnError::Handshake)?);
    conn.expect(EHLO, 250).await?;
    Ok(conn)
}

/// A message of about `size` bytes (at least one body line), dot-terminated.
fn message(size: usize) -> Vec<u8> {
    let mut m = format!("From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: tls bench\r\n\r\n").into_bytes();
    let line = [[b'X'; 76].as_slice(), b"\r\n"].concat();
    loop {
        m.extend_from_slice(&line);
        if m.len() + line.len() > size {
            break;
        }
    }
    m.extend_from_slice(b".\r\n");
    m
}

/// The TLS client: no certificate check (the systems use throwaway self-signed ones), but the
/// handshake signatures are verified as any client would; no resumption, so every handshake
/// is a full one.
fn connector() -> Result<TlsConnector, SetupError> {
    let provider = common::tls::provider();
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    Ok(TlsConnector::from(Arc::new(config)))
}

#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What the sessions achieved: successes, failures, and the first failure's text.
#[derive(Default)]
struct Tally {
    done: AtomicUsize,
    errors: AtomicUsize,
    first: Mutex<Option<String>>,
}

impl Tally {
    fn done(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    fn error(&self, e: &dyn std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.first.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert_with(|| e.to_string());
    }

    fn first_error(&self) -> Option<String> {
        self.first.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Wait for every session; one that panicked counts as an error.
    async fn join(&self, mut tasks: JoinSet<()>) {
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r {
                self.error(&e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_about_the_size_asked_for() {
        for size in [0, 100, 4096, 100_000] {
            let m = message(size);
            assert!(m.ends_with(b"XX\r\n.\r\n"));
            assert!(m.len() <= size.max(200) + 3 && m.len() + 78 > size, "{size}: {}", m.len());
            assert!(!m.windows(3).any(|w| w == b"\n.X"), "no line starts with a dot");
        }
    }
}
