//! One delivery request: screen the envelope, read the message, then a kept connection to the
//! next hop or new ones to its addresses in order (within `smtp_mx_address_limit` and
//! `smtp_mx_session_limit`); every recipient gets a result, and Postfix's delivery line. A
//! delivery that requires SMTPUTF8 skips servers that do not offer it, and bounces (5.6.7)
//! only when the last address does not either.

use std::time::Instant;

use common::ipc::delivery::{DeliveryRecipient, DeliveryRequest, DeliveryResult};
use common::maillog::{DeliveryLine, delivery_line};
use common::queue::file::{self, Outcome, now_us};
use common::text::{has_control, printable};
use common::{log_info, log_warning};

use crate::cache::{Cached, ConnCache};
use crate::config::AgentConfig;
use crate::resolve::{ResolveError, Target};
use common::smtp_client::nexthop::parse_nexthop;
use common::smtp_client::open::{Opening, open};
use common::smtp_client::starttls::Peer;
use common::smtp_client::tls_policy::Invalid;
use common::smtp_client::transaction::{Failure, Loop, bounced, deferred, lacks_smtputf8, mail_transaction, requires_smtputf8, reset};

/// Deliver one request; never fails as a whole: every recipient gets a result.
pub async fn deliver(cfg: &AgentConfig, cache: &ConnCache, req: &DeliveryRequest) -> Vec<DeliveryResult> {
    let received_us = now_us();
    let parts = attempt(cfg, cache, req).await;
    let mut results = Vec::new();
    for a in parts {
        for r in &a.results {
            let Some(rcpt) = req.recipients.iter().find(|x| x.index == r.index) else { continue };
            // A probe's result goes to the verify service before it is logged (Postfix's
            // verify_append), so that the log line means the cache knows.
            let status = if req.verify_probe {
                cfg.probes.report(req.queue_id.as_str(), &rcpt.address, r.outcome, &r.text).await;
                cfg.probes.status_word(r.outcome)
            } else {
                r.outcome.status()
            };
            let secs = |x: u64, y: u64| y.saturating_sub(x) as f64 / 1e6;
            log_info!(
                "{}",
                delivery_line(&DeliveryLine {
                    queue_id: req.queue_id.as_str(),
                    recipient: &printable(&rcpt.address, '?'),
                    relay: &a.relay,
                    conn_use: (a.conn_use > 1).then_some(a.conn_use),
                    delays: [secs(req.arrival_us, req.active_us), secs(req.active_us, received_us), a.setup, a.xmit],
                    dsn: &r.dsn,
                    status,
                    text: &r.text,
                })
            );
        }
        let relay = if a.relay == "none" { String::new() } else { a.relay.clone() };
        results.extend(a.results.into_iter().map(|r| DeliveryResult { relay: relay.clone(), ..r }));
    }
    results
}

fn all(recipients: &[DeliveryRecipient], f: &Failure) -> Vec<DeliveryResult> {
    recipients.iter().map(|r| f.result(r.index)).collect()
}

/// How one session (or the lack of one) went, for the results and the log lines.
struct Attempt {
    results: Vec<DeliveryResult>,
    relay: String,
    setup: f64,
    xmit: f64,
    conn_use: u32,
}

impl Attempt {
    fn failed(recipients: &[DeliveryRecipient], f: &Failure, setup: f64) -> Attempt {
        Attempt { results: all(recipients, f), relay: "none".into(), setup, xmit: 0.0, conn_use: 0 }
    }
}

/// Refuse the addresses that no SMTP command may carry: a control character (CR and LF
/// above all) would let the address end its command and start another on this or a reused
/// connection. The sources should have refused them; this is the last line. Returns the
/// request narrowed to the good recipients and the results for the others.
fn screen_envelope(req: &DeliveryRequest) -> (Option<DeliveryRequest>, Vec<Attempt>) {
    if has_control(&req.sender) {
        log_warning!("{}: sender address with a control character: <{}>", req.queue_id, printable(&req.sender, '?'));
        let f = bounced("5.1.7", "bad sender address syntax: control character in address".into());
        return (None, vec![Attempt::failed(&req.recipients, &f, 0.0)]);
    }
    let (bad, good): (Vec<DeliveryRecipient>, Vec<DeliveryRecipient>) =
        req.recipients.iter().cloned().partition(|r| has_control(&r.address));
    if bad.is_empty() {
        return (Some(req.clone()), Vec::new());
    }
    for r in &bad {
        log_warning!("{}: recipient address with a control character: <{}>", req.queue_id, printable(&r.address, '?'));
    }
    let f = bounced("5.1.3", "bad recipient address syntax: control character in address".into());
    let refused = vec![Attempt::failed(&bad, &f, 0.0)];
    if good.is_empty() {
        return (None, refused);
    }
    (Some(DeliveryRequest { recipients: good, ..req.clone() }), refused)
}

/// One try at a request: a cached connection to the next hop if there is a live one, else
/// new connections to the next hop's addresses in order, within `smtp_mx_address_limit`
/// addresses and `smtp_mx_session_limit` sessions.
async fn attempt(cfg: &AgentConfig, cache: &ConnCache, req: &DeliveryRequest) -> Vec<Attempt> {
    let start = Instant::now();
    let (req, mut parts) = match screen_envelope(req) {
        (Some(r), refused) => (r, refused),
        (None, refused) => return refused,
    };
    let queued = match read_queue_file(cfg, &req) {
        Ok(qf) => qf,
        Err(text) => {
            parts.push(Attempt::failed(&req.recipients, &deferred("4.3.0", text, false), 0.0));
            return parts;
        }
    };
    let policy = match cfg.client.tls.policy(&req.nexthop) {
        Ok(p) => p,
        Err(Invalid) => {
            parts.push(Attempt::failed(&req.recipients, &deferred("4.7.5", "client TLS configuration problem".into(), false), 0.0));
            return parts;
        }
    };
    let needs_smtputf8 = requires_smtputf8(&req, &queued.message);
    if let Some(mut c) = cache.check_out(&req.nexthop).await {
        // A server without SMTPUTF8 does not serve a delivery that requires it (in Postfix the
        // requirement is part of the cache key): the connection stays for other mail, and
        // this one tries the next hop's addresses.
        if needs_smtputf8 && !c.conn.smtputf8 {
            cache.check_in(&req.nexthop, c);
        }
        // A connection the server closed meanwhile fails here; then we connect afresh. A
        // plaintext connection never serves a destination whose policy requires TLS (it may
        // be one from before a reload that changed the policy): it is closed.
        else if (c.conn.is_tls() || !policy.level.requires_tls()) && reset(&cfg.client.session, &mut c.conn).await {
            let dsn = c.dsn.then_some(&queued.envelope);
            let (results, healthy) = mail_transaction(&cfg.client.session, &req, &mut c.conn, &c.peer, &queued.message, dsn).await;
            let (relay, uses) = (c.relay.clone(), c.uses + 1);
            if healthy {
                cache.check_in(&req.nexthop, Cached { uses, ..c });
            }
            parts.push(Attempt { results, relay, setup: 0.0, xmit: start.elapsed().as_secs_f64(), conn_use: uses });
            return parts;
        }
    }
    let Some(hop) = parse_nexthop(&req.nexthop, 25) else {
        parts.push(Attempt::failed(&req.recipients, &bounced("5.4.4", format!("bad next hop: {}", req.nexthop)), 0.0));
        return parts;
    };
    // Like Postfix, look for ourselves on port 25 only: on another port a content filter may
    // hand mail back on purpose.
    let myself = (hop.port == 25).then_some(&cfg.myself);
    let mut targets = match cfg.dns.resolve(&hop, myself, cfg.mx_address_limit).await {
        Ok(t) => t,
        Err(e) => {
            let f = if e.dsn().starts_with('5') {
                bounced(e.dsn(), e.to_string())
            } else {
                deferred(e.dsn(), e.to_string(), matches!(e, ResolveError::NotFound { .. }))
            };
            parts.push(Attempt::failed(&req.recipients, &f, 0.0));
            return parts;
        }
    };
    if cfg.mx_address_limit > 0 {
        targets.truncate(cfg.mx_address_limit);
    }
    let mut pending = req;
    let mut sessions = 0;
    let mut last: Option<Attempt> = None;
    let count = targets.len();
    for (i, Target { host, addr, best }) in targets.into_iter().enumerate() {
        let final_server = i + 1 == count;
        let peer = format!("{host}[{}]", addr.ip());
        let relay = format!("{peer}:{}", addr.port());
        let names = Peer { host: &host, nexthop: &hop.host, namaddr: &peer, relay: &relay };
        let looking = myself.map(|_| Loop { nexthop: &pending.nexthop, relay: &relay, best });
        let opened =
            open(&cfg.client, addr, &names, &pending.nexthop, looking, &policy).await.map(|(conn, hello)| (conn, hello.offers("DSN")));
        let setup = start.elapsed().as_secs_f64();
        let (mut conn, dsn) = match opened {
            Ok(c) => c,
            Err(Opening::Connect(f)) => {
                last = Some(Attempt::failed(&pending.recipients, &f, setup));
                continue;
            }
            Err(Opening::Session(f)) => {
                let hard = f.outcome == Outcome::Bounced;
                last = Some(Attempt { relay, ..Attempt::failed(&pending.recipients, &f, setup) });
                // A server that failed the handshake does not count as a session; the next
                // address may do better, unless the failure is final.
                if hard {
                    break;
                }
                continue;
            }
        };
        // Postfix's smtp_helo: a server without SMTPUTF8 fails a delivery that requires it,
        // softly at any address but the last (the mail goes on to the next; a handshake
        // failure, so not counted as a session), for good at the last one. The connection is
        // not kept: it cannot serve such mail.
        if needs_smtputf8 && !conn.smtputf8 {
            conn.timeout = cfg.client.session.timeouts.quit;
            let _ = conn.command("QUIT").await;
            let f = lacks_smtputf8(&peer);
            if final_server {
                parts.push(Attempt { relay, ..Attempt::failed(&pending.recipients, &f, setup) });
                return parts;
            }
            log_info!("{}: {}", pending.queue_id, f.text);
            continue;
        }
        sessions += 1;
        let (results, healthy) =
            mail_transaction(&cfg.client.session, &pending, &mut conn, &peer, &queued.message, dsn.then_some(&queued.envelope)).await;
        if healthy {
            cache.check_in(&pending.nexthop, Cached { conn, peer, relay: relay.clone(), uses: 1, dsn });
        }
        let xmit = start.elapsed().as_secs_f64() - setup;
        let session_limit = cfg.mx_session_limit > 0 && sessions >= cfg.mx_session_limit;
        if final_server || session_limit || results.iter().all(|r| r.outcome != Outcome::Deferred) {
            parts.push(Attempt { results, relay, setup, xmit, conn_use: 1 });
            return parts;
        }
        // As Postfix: recipients this server deferred go to the next address; the others
        // are done.
        let (soft, done): (Vec<DeliveryResult>, Vec<DeliveryResult>) = results.into_iter().partition(|r| r.outcome == Outcome::Deferred);
        if !done.is_empty() {
            parts.push(Attempt { results: done, relay: relay.clone(), setup, xmit, conn_use: 1 });
        }
        pending.recipients.retain(|r| soft.iter().any(|s| s.index == r.index));
        last = Some(Attempt { results: soft, relay, setup, xmit, conn_use: 1 });
    }
    parts.push(last.unwrap_or_else(|| {
        let f = deferred("4.4.1", format!("no address for {}", hop.host), true);
        Attempt::failed(&pending.recipients, &f, start.elapsed().as_secs_f64())
    }));
    parts
}

/// The message and its envelope (for the DSN requests it carries).
fn read_queue_file(cfg: &AgentConfig, req: &DeliveryRequest) -> Result<file::QueueFile, String> {
    file::read(&cfg.spool.path(req.queue, &req.queue_id)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::queue::{QueueId, QueueName};

    fn request(sender: &str, rcpts: &[&str]) -> DeliveryRequest {
        DeliveryRequest {
            queue_id: QueueId::parse("ABC123").unwrap(),
            queue: QueueName::Active,
            nexthop: "[127.0.0.1]:2525".into(),
            sender: sender.into(),
            recipients: rcpts.iter().enumerate().map(|(index, a)| DeliveryRecipient { index, address: a.to_string() }).collect(),
            arrival_us: 0,
            active_us: 0,
            smtputf8: false,
            verify_probe: false,
        }
    }

    #[test]
    fn control_characters_never_reach_a_command() {
        let (rest, refused) = screen_envelope(&request("a@client.test>\r\nRCPT TO:<injected@x", &["u@x", "v@x"]));
        assert!(rest.is_none());
        let r = &refused[0].results;
        assert_eq!(r.len(), 2);
        assert!(r.iter().all(|r| r.outcome == Outcome::Bounced && r.dsn == "5.1.7"), "{r:?}");

        let (rest, refused) = screen_envelope(&request("s@x", &["u@x", "v@x>\r\nDATA", "w\0@x"]));
        let rest = rest.unwrap();
        assert_eq!(rest.recipients, vec![DeliveryRecipient { index: 0, address: "u@x".into() }]);
        let r = &refused[0].results;
        assert_eq!(r.iter().map(|r| r.index).collect::<Vec<_>>(), vec![1, 2]);
        assert!(r.iter().all(|r| r.outcome == Outcome::Bounced && r.dsn == "5.1.3"), "{r:?}");

        let (rest, refused) = screen_envelope(&request("s@x", &["u@x"]));
        assert_eq!(rest.unwrap().recipients.len(), 1);
        assert!(refused.is_empty());
    }
}
