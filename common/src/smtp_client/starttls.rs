//! STARTTLS in one session, after EHLO, as Postfix's `smtp_start_tls` decides it: under a
//! level that requires TLS the mail never goes out in plaintext (a server without STARTTLS,
//! one that refuses it, a failed handshake, or a certificate the policy does not accept all
//! defer with Postfix's reasons); under `may` a refused STARTTLS goes on in plaintext and a
//! failed handshake is retried on a new plaintext connection (the caller's part).

use crate::log_info;

use super::connection::Connection;
use super::tls::ClientTls;
use super::tls_policy::{Level, Policy};
use super::transaction::{Failure, Hello, SessionConfig, broken, deferred, hello};

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
            crate::log_warning!("{}: {why}", peer.relay);
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
        // As Postfix: an untrusted chain is logged at every level, a name mismatch only where
        // names are checked (the check only runs there).
        if !verdict.matched
            && let Some(problem) = &verdict.problem
        {
            log_info!("{}", problem.line(peer.relay));
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

#[cfg(test)]
mod tests {
    use super::super::test_peer::{connected, next_line, session};
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn tls(lines: &str) -> ClientTls {
        let dir = tempfile::tempdir().unwrap();
        let main = crate::config::MainCf::parse(lines, &dir.path().join("main.cf")).unwrap();
        ClientTls::from_params(&crate::config::Params::from_parts(dir.path(), main, &[]), "smtp").unwrap()
    }

    /// A peer that answers STARTTLS with `reply` (raw bytes, so a test can pipeline more after
    /// it) and then closes; returns what it was sent.
    async fn peer(reply: &'static [u8]) -> (Connection, tokio::task::JoinHandle<Vec<String>>) {
        connected(move |mut r, mut w| async move {
            let mut got = Vec::new();
            if let Some(line) = next_line(&mut r).await {
                got.push(line.trim_end().to_string());
                w.write_all(reply).await.unwrap();
            }
            got
        })
        .await
    }

    fn offering(keywords: &[&str]) -> Hello {
        Hello { keywords: keywords.iter().map(|k| k.to_string()).collect() }
    }

    const PEER: Peer<'static> =
        Peer { host: "mx.test", nexthop: "example.test", namaddr: "mx.test[127.0.0.1]", relay: "mx.test[127.0.0.1]:25" };

    fn failure(r: Result<Hello, TlsFailure>) -> (String, String, bool) {
        match r {
            Err(TlsFailure::Fail(f)) => (f.dsn, f.text, f.site),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn required_tls_never_falls_back() {
        let t = tls("smtp_tls_security_level = encrypt\n");
        let policy = t.policy("[mx.test]").unwrap();
        // Not offered: no command at all.
        let (mut conn, server) = peer(b"").await;
        let got = negotiate(&t, &session(), &policy, &mut conn, offering(&["PIPELINING"]), &PEER).await;
        assert_eq!(failure(got), ("4.7.4".into(), "TLS is required, but was not offered by host mx.test[127.0.0.1]".into(), true));
        drop(conn);
        assert!(server.await.unwrap().is_empty());
        // Refused: the server's reply in the reason, as a temporary failure.
        let (mut conn, server) = peer(b"554 5.7.0 no TLS for you\r\n").await;
        let got = negotiate(&t, &session(), &policy, &mut conn, offering(&["STARTTLS"]), &PEER).await;
        assert_eq!(
            failure(got),
            ("4.7.0".into(), "TLS is required, but host mx.test[127.0.0.1] refused to start TLS: 554 5.7.0 no TLS for you".into(), true)
        );
        assert_eq!(server.await.unwrap(), vec!["STARTTLS"]);
        // Plaintext pipelined after the 220: never read as if it came under TLS.
        let (mut conn, _server) = peer(b"220 2.0.0 go ahead\r\n250 injected\r\n").await;
        let got = negotiate(&t, &session(), &policy, &mut conn, offering(&["STARTTLS"]), &PEER).await;
        assert_eq!(failure(got), ("4.7.5".into(), "Cannot start TLS: handshake failure".into(), true));
    }

    #[tokio::test]
    async fn opportunistic_tls_goes_on_or_retries_in_plaintext() {
        let t = tls("smtp_tls_security_level = may\n");
        let policy = t.policy("[mx.test]").unwrap();
        let before = offering(&["STARTTLS", "SIZE 1000"]);
        let (mut conn, _server) = peer(b"454 4.7.0 TLS not available due to local problem\r\n").await;
        let got = negotiate(&t, &session(), &policy, &mut conn, before.clone(), &PEER).await;
        assert_eq!(got.unwrap(), before, "a refused STARTTLS goes on in plaintext on the same connection");
        // A handshake that fails (the peer closes) asks for a new plaintext connection.
        let (mut conn, _server) = peer(b"220 2.0.0 go ahead\r\n").await;
        let got = negotiate(&t, &session(), &policy, &mut conn, before.clone(), &PEER).await;
        assert!(matches!(got, Err(TlsFailure::RetryPlain)), "{got:?}");
        // Level none: STARTTLS is not even tried.
        let (mut conn, server) = peer(b"").await;
        let none = tls("");
        let got = negotiate(&none, &session(), &none.policy("[mx.test]").unwrap(), &mut conn, before.clone(), &PEER).await;
        assert_eq!(got.unwrap(), before);
        drop(conn);
        assert!(server.await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_invalid_default_level_defers() {
        let t = tls("smtp_tls_security_level = dane-only\n");
        assert!(t.policy("example.test").is_err());
        let t = tls("smtp_tls_security_level = dane\n");
        assert_eq!(t.policy("example.test").unwrap().level, Level::May);
    }
}
