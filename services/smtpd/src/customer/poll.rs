//! One poll of the provider: connect (each of its addresses in turn until one answers), EHLO,
//! STARTTLS and AUTH as the smtp agent opens a connection ([`common::smtp_client::open`]),
//! then `ATRN`. On `250` the roles swap: this process greets the provider and serves it as
//! smtpd serves any client ([`crate::conn::serve_reversed`]), so each message it sends is
//! queued through smtpd's queue writer and checks, durable before the `250`. Any other reply,
//! or a failure before it, is logged; the next poll tries again.

use std::net::SocketAddr;

use common::daemon::SessionLimit;
use common::smtp_client::connection::{Connection, Reply};
use common::smtp_client::open::{Opening, open};
use common::smtp_client::starttls::Peer;
use common::smtp_client::tls_policy::Invalid;
use common::smtp_client::transaction::broken;
use common::tls::names::SignatureSeen;
use common::tls::{SmtpStream, TlsInfo};
use common::{log_info, log_warning};

use super::config::CustomerConfig;

/// Poll the provider once.
pub async fn poll(cfg: &CustomerConfig, sessions: &SessionLimit) {
    let host = cfg.provider.host.as_str();
    let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host, cfg.provider.port)).await {
        Ok(a) => a.collect(),
        Err(e) => {
            log_info!("ATRN to {}: domains={}: poll failed (Host or domain name not found: {host}: {e})", cfg.nexthop, cfg.shown_domains());
            return;
        }
    };
    let policy = match cfg.client.tls.policy(&cfg.nexthop) {
        Ok(p) => p,
        Err(Invalid) => {
            log_warning!("ATRN to {}: client TLS configuration problem", cfg.nexthop);
            return;
        }
    };
    for addr in addrs {
        let namaddr = format!("{host}[{}]", addr.ip());
        let relay = format!("{namaddr}:{}", addr.port());
        let peer = Peer { host, nexthop: host, namaddr: &namaddr, relay: &relay };
        let conn = match open(&cfg.client, addr, &peer, &cfg.nexthop, None, &policy).await {
            Ok((conn, _)) => conn,
            // Logged by `open`; the next address may answer.
            Err(Opening::Connect(_)) => continue,
            Err(Opening::Session(f)) => {
                log_info!("ATRN to {relay}: domains={}: poll failed ({})", cfg.shown_domains(), f.text);
                return;
            }
        };
        return atrn(cfg, conn, addr, &namaddr, &relay, sessions).await;
    }
    log_info!("ATRN to {}: domains={}: poll failed (no provider address answered)", cfg.nexthop, cfg.shown_domains());
}

/// ATRN on an open connection, and what its reply means.
async fn atrn(cfg: &CustomerConfig, mut conn: Connection, addr: SocketAddr, namaddr: &str, relay: &str, sessions: &SessionLimit) {
    let domains = cfg.shown_domains();
    let reply = match conn.command(&cfg.atrn()).await {
        Ok(r) => r,
        Err(e) => {
            log_info!("ATRN to {relay}: domains={domains}: poll failed ({})", broken(e, namaddr, "sending ATRN").text);
            return;
        }
    };
    if reply.code != 250 {
        let said = said(namaddr, &reply);
        if reply.code == 453 {
            log_info!("ATRN to {relay}: domains={domains}: no mail ({said})");
        } else {
            log_info!("ATRN to {relay}: domains={domains}: refused ({said}); trying again at the next poll");
        }
        conn.timeout = cfg.client.session.timeouts.quit;
        let _ = conn.command("QUIT").await;
        return;
    }
    // The provider must wait for our greeting: bytes sent ahead of it would be read as
    // commands the provider never meant to pipeline.
    let Some(stream) = conn.into_socket() else {
        log_info!("ATRN to {relay}: domains={domains}: poll failed (host {namaddr} talked before the greeting)");
        return;
    };
    log_info!("ATRN to {relay}: domains={domains}: reversing the connection");
    let tls = tls_info(&stream);
    crate::conn::serve_reversed(stream, addr, tls, &cfg.smtpd, sessions).await;
}

/// `host H[A] said: 453 4.2.0 You have no mail`, as Postfix's delivery lines quote replies.
fn said(namaddr: &str, reply: &Reply) -> String {
    format!("host {namaddr} said: {}", reply.text())
}

/// What the handshake negotiated, for the session's `Received:` header (with `ESMTPS`). The
/// provider's signature was checked by the connector, not recorded: it is left out.
fn tls_info(stream: &SmtpStream) -> Option<TlsInfo> {
    match stream {
        SmtpStream::Tls(tls) => Some(TlsInfo::of(tls.get_ref().1, &SignatureSeen::default())),
        SmtpStream::Plain(_) | SmtpStream::Detached => None,
    }
}
