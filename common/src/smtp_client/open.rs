//! A connection ready for MAIL (the smtp agent) or ATRN (the ODMR customer): connect to one
//! address, the greeting and EHLO, STARTTLS as the policy asks, and SASL AUTH when it is due.
//! A failed handshake under `may` is tried once more on a new connection in plaintext, as
//! Postfix does, so that a broken TLS stack at the server does not hold mail up forever.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::{ConfigError, Params};
use crate::log_info;

use super::connection::Connection;
use super::sasl::{ClientSasl, Server, login};
use super::starttls::{Peer, TlsFailure, negotiate};
use super::tls::ClientTls;
use super::tls_policy::{Level, Policy};
use super::transaction::{Failure, Hello, Loop, SessionConfig, deferred, handshake};

/// The client side's settings: what opening a connection needs, and the conversation's limits.
pub struct ClientSettings {
    /// From the `smtp_*` parameters, for every client.
    pub session: SessionConfig,
    /// STARTTLS: the policies and the trusted CAs.
    pub tls: ClientTls,
    /// SASL AUTH.
    pub sasl: ClientSasl,
    /// `{prefix}_connect_timeout`: for the TCP connection.
    pub connect_timeout: Duration,
    /// `{prefix}_helo_timeout`: for the greeting and each reply up to the end of AUTH.
    pub helo_timeout: Duration,
}

impl ClientSettings {
    /// The settings of the parameter family `prefix` (`smtp`, `odmr`); whether AUTH is on and
    /// whether a 5xx to it is made 4xx are the caller's (see [`ClientSasl::from_params`]).
    pub fn from_params(p: &Params, prefix: &str, sasl_enabled: bool, soft_bounce: bool) -> Result<ClientSettings, ConfigError> {
        Ok(ClientSettings {
            session: SessionConfig::from_params(p)?,
            tls: ClientTls::from_params(p, prefix)?,
            sasl: ClientSasl::from_params(p, prefix, sasl_enabled, soft_bounce)?,
            connect_timeout: p.time(&format!("{prefix}_connect_timeout"))?,
            helo_timeout: p.time(&format!("{prefix}_helo_timeout"))?,
        })
    }
}

/// Why no session could be had with one address.
#[derive(Debug)]
pub enum Opening {
    /// No connection (the delivery line says `relay=none`); logged already.
    Connect(Failure),
    /// The server was reached, but the greeting, EHLO, TLS or AUTH failed.
    Session(Failure),
}

impl Opening {
    pub fn failure(&self) -> &Failure {
        match self {
            Opening::Connect(f) | Opening::Session(f) => f,
        }
    }
}

/// A connection to `addr`, with what the server said to the last EHLO. `nexthop` is the
/// password table's second key (the next hop as the queue manager names it).
pub async fn open(
    cfg: &ClientSettings,
    addr: SocketAddr,
    peer: &Peer<'_>,
    nexthop: &str,
    looking: Option<Loop<'_>>,
    policy: &Policy,
) -> Result<(Connection, Hello), Opening> {
    let plain = Policy::level(Level::None);
    let mut policy = policy;
    // At most two rounds: the first, and the plaintext retry.
    for _ in 0..2 {
        let stream = match tokio::time::timeout(cfg.connect_timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let text = format!("connect to {}: {}", peer.relay, io_text(&e));
                log_info!("{text}");
                return Err(Opening::Connect(deferred("4.4.1", text, true)));
            }
            Err(_) => {
                let text = format!("connect to {}: Connection timed out", peer.relay);
                log_info!("{text}");
                return Err(Opening::Connect(deferred("4.4.1", text, true)));
            }
        };
        let _ = stream.set_nodelay(true);
        let mut conn = Connection::new(stream, cfg.helo_timeout);
        let looking = looking.as_ref().map(|l| Loop { nexthop: l.nexthop, relay: l.relay, best: l.best });
        let hello = handshake(&cfg.session, &mut conn, peer.namaddr, looking).await.map_err(Opening::Session)?;
        match negotiate(&cfg.tls, &cfg.session, policy, &mut conn, hello, peer).await {
            Ok(hello) => {
                let server = Server { host: peer.host, nexthop, namaddr: peer.namaddr, relay: peer.relay };
                login(&cfg.sasl, &mut conn, &hello, &server).await.map_err(Opening::Session)?;
                return Ok((conn, hello));
            }
            Err(TlsFailure::Fail(f)) => return Err(Opening::Session(f)),
            Err(TlsFailure::RetryPlain) => policy = &plain,
        }
    }
    Err(Opening::Session(deferred("4.7.5", "Cannot start TLS: handshake failure".into(), false)))
}

fn io_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "Connection refused".into(),
        _ => e.to_string(),
    }
}
