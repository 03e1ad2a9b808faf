//! STARTTLS in one session, after EHLO, as Postfix's `smtp_start_tls` decides it: under a
//! level that requires TLS the mail never goes out in plaintext (a server without STARTTLS,
//! one that refuses it, a failed handshake, or a certificate the policy does not accept all
//! defer with Postfix's reasons); under `may` a refused STARTTLS goes on in plaintext and a
//! failed handshake is retried on a new plaintext connection (the caller's part).

use common::log_info;

use crate::client::Connection;
use crate::tls::ClientTls;
use crate::tls_policy::{Level, Policy};
use crate::transaction::{Failure, Hello, SessionConfig, broken, deferred, hello};

/// Who the server is, for names and texts.
pub struct Peer<'a> {
    /// The MX host name, or the host of `[host]`: `hostname` in the match patterns.
    pub host: &'a str,
    /// The next hop domain (or host): `nexthop` in the match patterns.
    pub nexthop: &'a str,
    /// `host[addr]`, for reasons.
    pub namaddr: &'a str,
    /// `host[addr]:port`, for log lines.
    pub relay: &'a str,
}

/// How the TLS step ended when it did not end well.
#[derive(Debug)]
pub enum TlsFailure {
    /// The delivery through this server fails with this reason.
    Fail(Failure),
    /// The handshake failed under `may`: try the same server again in plaintext.
    RetryPlain,
}

/// After EHLO: STARTTLS if the policy says so and the server offers it, the handshake, the
/// certificate check, and EHLO again under TLS (RFC 3207 discards what was said before).
/// Returns the EHLO knowledge that now holds.
pub async fn negotiate(
    tls: &ClientTls,
    session: &SessionConfig,
    policy: &Policy,
    conn: &mut Connection,
    before: Hello,
    peer: &Peer<'_>,
) -> Result<Hello, TlsFailure> {
    let level = policy.level;
    // The EHLO under TLS has the time limit of the first.
    let helo_timeout = conn.timeout;
    if level == Level::None {
        return Ok(before);
    }
    let required = level.requires_tls();
    if !before.offers("STARTTLS") {
        if required {
            return Err(TlsFailure::Fail(deferred(
                "4.7.4",
                format!("TLS is required, but was not offered by host {}", peer.namaddr),
                true,
            )));
        }
        return Ok(before);
    }
    let (connector, name, check) = match tls.connector(policy, peer.host, peer.nexthop) {
        Ok(c) => c,
        Err(why) => {
            common::log_warning!("{}: {why}", peer.relay);
            if required {
                return Err(TlsFailure::Fail(deferred("4.7.5", "TLS is required, but our TLS engine is unavailable".into(), true)));
            }
            return Ok(before);
        }
    };
    conn.timeout = tls.starttls_timeout;
    let reply = conn.command("STARTTLS").await.map_err(|e| TlsFailure::Fail(broken(e, peer.namaddr, "receiving the STARTTLS response")))?;
    if reply.class() != 2 {
        if required {
            let mut f =
                deferred(&reply.dsn(), format!("TLS is required, but host {} refused to start TLS: {}", peer.namaddr, reply.text()), true);
            // A 5xx from the server is still a temporary failure of ours to deliver: another
            // server, or this one later, may do TLS.
            if f.dsn.starts_with('5') {
                f.dsn = format!("4{}", &f.dsn[1..]);
            }
            return Err(TlsFailure::Fail(f));
        }
        // Opportunistic: go on in plaintext on the same connection.
        return Ok(before);
    }
    let info = match conn.start_tls(&connector, name, &check.signature, tls.starttls_timeout).await {
        Ok(info) => info,
        Err(e) => {
            log_info!("SSL_connect error to {}: {e}", peer.relay);
            if !required {
                return Err(TlsFailure::RetryPlain);
            }
            return Err(TlsFailure::Fail(deferred("4.7.5", "Cannot start TLS: handshake failure".into(), true)));
        }
    };
    let verdict = check.verdict();
    if tls.loglevel >= 1 {
        if level.must_match()
            && !verdict.matched
            && let Some(problem) = &verdict.problem
        {
            // Postfix names the server's certificate for a name mismatch, not for the chain.
            let whose = if verdict.trusted { "server certificate" } else { "certificate" };
            log_info!("{whose} verification failed for {}: {problem}", peer.relay);
        }
        log_info!("{}", info.client_summary(verdict.trust_word(), peer.relay));
    }
    if level.must_match() && !verdict.matched {
        conn.timeout = session.timeouts.quit;
        let _ = conn.command("QUIT").await;
        return Err(TlsFailure::Fail(deferred("4.7.5", "Server certificate not verified".into(), true)));
    }
    conn.timeout = helo_timeout;
    hello(session, conn, peer.namaddr, None).await.map_err(TlsFailure::Fail)
}
