//! One delivery request: resolve the next hop, run the SMTP transaction, turn every reply into
//! a per-recipient result with Postfix's texts, and log Postfix's delivery lines.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::config::{ConfigError, Params};
use common::ipc::delivery::{DeliveryRequest, DeliveryResult};
use common::log_info;
use common::maillog::{DeliveryLine, delivery_line};
use common::queue::file::{self, Outcome, now_us};
use common::queue::{QueueId, QueueName, Spool};

use crate::client::{ClientError, Connection, Reply, data_bytes};
use crate::resolve::{Dns, Target};

/// The agent's settings.
pub struct AgentConfig {
    pub dns: Dns,
    pub spool: Spool,
    pub myhostname: String,
    pub connect_timeout: Duration,
    pub helo_timeout: Duration,
    pub command_timeout: Duration,
    pub data_done_timeout: Duration,
    /// How long an idle connection is kept for reuse.
    pub cache_time: Duration,
}

impl AgentConfig {
    pub fn from_params(p: &Params) -> Result<AgentConfig, ConfigError> {
        let dns = Dns::new(&p.list("smtp_dns_nameservers")?).map_err(|what| ConfigError::value("smtp_dns_nameservers", what))?;
        Ok(AgentConfig {
            dns,
            spool: Spool::from_params(p)?,
            myhostname: p.get("myhostname")?,
            connect_timeout: p.time("smtp_connect_timeout")?,
            helo_timeout: p.time("smtp_helo_timeout")?,
            command_timeout: Duration::from_secs(300),
            data_done_timeout: p.time("smtp_data_done_timeout")?,
            cache_time: p.time("smtp_connection_cache_time_limit")?,
        })
    }
}

/// A parsed next hop: `[host]:port` means no MX lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    pub host: String,
    pub port: u16,
    pub mx: bool,
}

pub fn parse_nexthop(text: &str) -> Option<NextHop> {
    let (host, port, mx) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => 25,
            None => return None,
        };
        (host, port, false)
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?, true),
            None => (text, 25, true),
        }
    };
    (!host.is_empty()).then(|| NextHop { host: host.to_string(), port, mx })
}

/// How one attempt ended, before it becomes per-recipient results.
struct Failure {
    outcome: Outcome,
    dsn: String,
    text: String,
    site: bool,
}

fn deferred(dsn: &str, text: String, site: bool) -> Failure {
    Failure { outcome: Outcome::Deferred, dsn: dsn.into(), text, site }
}

/// A reply that ends the transaction for every recipient still open.
fn rejected(reply: &Reply, peer: &str, after: &str) -> Failure {
    let outcome = if reply.class() == 5 { Outcome::Bounced } else { Outcome::Deferred };
    Failure { outcome, dsn: reply.dsn(), text: format!("host {peer} said: {} (in reply to {after})", reply.text()), site: false }
}

fn broken(e: ClientError, peer: &str, during: &str) -> Failure {
    match e {
        ClientError::Timeout => deferred("4.4.2", format!("conversation with {peer} timed out while {during}"), true),
        ClientError::Io(_) => deferred("4.4.2", format!("lost connection with {peer} while {during}"), true),
        ClientError::Malformed(m) => deferred("4.5.0", format!("malformed reply from {peer} while {during}: {m}"), true),
    }
}

/// Deliver one request; never fails as a whole: every recipient gets a result.
pub async fn deliver(cfg: &AgentConfig, cache: &ConnCache, req: &DeliveryRequest) -> Vec<DeliveryResult> {
    let received_us = now_us();
    let a = attempt(cfg, cache, req).await;
    for r in &a.results {
        let Some(rcpt) = req.recipients.iter().find(|x| x.index == r.index) else { continue };
        let secs = |x: u64, y: u64| y.saturating_sub(x) as f64 / 1e6;
        log_info!(
            "{}",
            delivery_line(&DeliveryLine {
                queue_id: &req.queue_id,
                recipient: &rcpt.address,
                relay: &a.relay,
                conn_use: (a.conn_use > 1).then_some(a.conn_use),
                delays: [secs(req.arrival_us, req.active_us), secs(req.active_us, received_us), a.setup, a.xmit],
                dsn: &r.dsn,
                status: r.outcome.status(),
                text: &r.text,
            })
        );
    }
    a.results
}

fn all(req: &DeliveryRequest, f: &Failure) -> Vec<DeliveryResult> {
    req.recipients
        .iter()
        .map(|r| DeliveryResult { index: r.index, outcome: f.outcome, dsn: f.dsn.clone(), text: f.text.clone(), site_failure: f.site })
        .collect()
}

/// How one attempt went, for the results and the log line.
struct Attempt {
    results: Vec<DeliveryResult>,
    relay: String,
    setup: f64,
    xmit: f64,
    conn_use: u32,
}

impl Attempt {
    fn failed(req: &DeliveryRequest, f: &Failure, setup: f64) -> Attempt {
        Attempt { results: all(req, f), relay: "none".into(), setup, xmit: 0.0, conn_use: 0 }
    }
}

/// One try at a request: a cached connection to the next hop if there is a live one, else a new
/// connection to the next hop's addresses in order.
async fn attempt(cfg: &AgentConfig, cache: &ConnCache, req: &DeliveryRequest) -> Attempt {
    let start = Instant::now();
    let message = match read_message(cfg, req) {
        Ok(m) => m,
        Err(text) => return Attempt::failed(req, &deferred("4.3.0", text, false), 0.0),
    };
    if let Some(mut c) = cache.take(&req.nexthop, cfg.cache_time) {
        c.conn.timeout = cfg.command_timeout;
        // A connection the server closed meanwhile fails here; then we connect afresh.
        if matches!(c.conn.command("RSET").await, Ok(r) if r.class() == 2) {
            let (results, healthy) = mail_transaction(cfg, req, &mut c.conn, &c.peer, &message).await;
            let (relay, uses) = (c.relay.clone(), c.uses + 1);
            if healthy {
                cache.put(&req.nexthop, Cached { uses, since: Instant::now(), ..c });
            }
            return Attempt { results, relay, setup: 0.0, xmit: start.elapsed().as_secs_f64(), conn_use: uses };
        }
    }
    let Some(hop) = parse_nexthop(&req.nexthop) else {
        let f = Failure { outcome: Outcome::Bounced, dsn: "5.4.4".into(), text: format!("bad next hop: {}", req.nexthop), site: false };
        return Attempt::failed(req, &f, 0.0);
    };
    let targets = match cfg.dns.resolve(&hop).await {
        Ok(t) => t,
        Err(e) if e.permanent => {
            let f = Failure { outcome: Outcome::Bounced, dsn: "5.4.4".into(), text: e.to_string(), site: false };
            return Attempt::failed(req, &f, 0.0);
        }
        Err(e) => return Attempt::failed(req, &deferred("4.4.3", e.to_string(), true), 0.0),
    };
    let mut last_error = format!("no address for {}", hop.host);
    for Target { host, addr } in targets {
        let peer = format!("{host}[{}]", addr.ip());
        let stream = match tokio::time::timeout(cfg.connect_timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                last_error = format!("connect to {peer}:{}: {}", addr.port(), io_text(&e));
                log_info!("{last_error}");
                continue;
            }
            Err(_) => {
                last_error = format!("connect to {peer}:{}: Connection timed out", addr.port());
                log_info!("{last_error}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let relay = format!("{peer}:{}", addr.port());
        let mut conn = Connection::new(stream, cfg.helo_timeout);
        let handshake = handshake(cfg, &mut conn, &peer).await;
        let setup = start.elapsed().as_secs_f64();
        if let Err(f) = handshake {
            return Attempt { relay, ..Attempt::failed(req, &f, setup) };
        }
        conn.timeout = cfg.command_timeout;
        let (results, healthy) = mail_transaction(cfg, req, &mut conn, &peer, &message).await;
        if healthy {
            cache.put(&req.nexthop, Cached { conn, peer, relay: relay.clone(), uses: 1, since: Instant::now() });
        }
        return Attempt { results, relay, setup, xmit: start.elapsed().as_secs_f64() - setup, conn_use: 1 };
    }
    Attempt::failed(req, &deferred("4.4.1", last_error, true), start.elapsed().as_secs_f64())
}

fn io_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "Connection refused".into(),
        _ => e.to_string(),
    }
}

fn read_message(cfg: &AgentConfig, req: &DeliveryRequest) -> Result<Vec<u8>, String> {
    let id = QueueId::parse(&req.queue_id).map_err(|e| e.to_string())?;
    let queue = QueueName::parse(&req.queue).ok_or_else(|| format!("bad queue name: {}", req.queue))?;
    file::read(&cfg.spool.path(queue, &id)).map(|qf| qf.message).map_err(|e| e.to_string())
}

/// Greeting and EHLO (HELO when EHLO is refused).
async fn handshake(cfg: &AgentConfig, conn: &mut Connection, peer: &str) -> Result<(), Failure> {
    let greeting = conn.read_reply().await.map_err(|e| broken(e, peer, "receiving the initial server greeting"))?;
    if greeting.class() != 2 {
        let mut f = rejected(&greeting, peer, "the initial server greeting");
        f.text = format!("host {peer} refused to talk to me: {}", greeting.text());
        f.site = f.outcome == Outcome::Deferred;
        return Err(f);
    }
    let mut hello =
        conn.command(&format!("EHLO {}", cfg.myhostname)).await.map_err(|e| broken(e, peer, "performing the EHLO handshake"))?;
    if hello.class() == 5 {
        hello = conn.command(&format!("HELO {}", cfg.myhostname)).await.map_err(|e| broken(e, peer, "performing the HELO handshake"))?;
    }
    if hello.class() != 2 {
        return Err(rejected(&hello, peer, "EHLO/HELO command"));
    }
    Ok(())
}

/// MAIL, RCPT per recipient, DATA. Returns the results and whether the connection is in a clean
/// state for another transaction.
async fn mail_transaction(
    cfg: &AgentConfig,
    req: &DeliveryRequest,
    conn: &mut Connection,
    peer: &str,
    message: &[u8],
) -> (Vec<DeliveryResult>, bool) {
    let mut results = Vec::new();
    let body = async {
        let mail = conn.command(&format!("MAIL FROM:<{}>", req.sender)).await.map_err(|e| broken(e, peer, "sending MAIL FROM"))?;
        if mail.class() != 2 {
            return Err(rejected(&mail, peer, "MAIL FROM command"));
        }
        let mut accepted = Vec::new();
        for r in &req.recipients {
            let reply = conn.command(&format!("RCPT TO:<{}>", r.address)).await.map_err(|e| broken(e, peer, "sending RCPT TO"))?;
            if reply.class() == 2 {
                accepted.push(r.index);
            } else {
                let f = rejected(&reply, peer, "RCPT TO command");
                results.push(DeliveryResult { index: r.index, outcome: f.outcome, dsn: f.dsn, text: f.text, site_failure: false });
            }
        }
        if accepted.is_empty() {
            return Ok(());
        }
        let data = conn.command("DATA").await.map_err(|e| broken(e, peer, "sending DATA command"))?;
        if data.class() != 3 {
            return Err(rejected(&data, peer, "DATA command"));
        }
        conn.timeout = cfg.data_done_timeout;
        conn.send(&data_bytes(message)).await.map_err(|e| broken(e, peer, "sending message body"))?;
        let done = conn.read_reply().await.map_err(|e| broken(e, peer, "sending end of data -- message may be sent more than once"))?;
        conn.timeout = cfg.command_timeout;
        let outcome = match done.class() {
            2 => Outcome::Sent,
            5 => Outcome::Bounced,
            _ => Outcome::Deferred,
        };
        let text = if outcome == Outcome::Sent {
            done.text()
        } else {
            format!("host {peer} said: {} (in reply to end of DATA command)", done.text())
        };
        for index in &accepted {
            results.push(DeliveryResult { index: *index, outcome, dsn: done.dsn(), text: text.clone(), site_failure: false });
        }
        Ok(())
    }
    .await;
    let healthy = match body {
        Ok(()) => true,
        Err(f) => {
            // Recipients without a result yet share the failure.
            let have: Vec<usize> = results.iter().map(|r| r.index).collect();
            for r in req.recipients.iter().filter(|r| !have.contains(&r.index)) {
                results.push(DeliveryResult {
                    index: r.index,
                    outcome: f.outcome,
                    dsn: f.dsn.clone(),
                    text: f.text.clone(),
                    site_failure: f.site,
                });
            }
            // A rejected MAIL or DATA leaves the session usable; a broken conversation does not.
            !f.site && f.dsn != "4.4.2"
        }
    };
    (results, healthy)
}

/// An open connection kept for the next request to the same next hop.
pub struct Cached {
    conn: Connection,
    peer: String,
    relay: String,
    uses: u32,
    since: Instant,
}

/// Idle connections by next hop (`smtp_connection_cache_time_limit`).
#[derive(Clone, Default)]
pub struct ConnCache(Arc<Mutex<HashMap<String, Vec<Cached>>>>);

impl ConnCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Cached>>> {
        match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn take(&self, nexthop: &str, max_idle: Duration) -> Option<Cached> {
        let mut map = self.lock();
        let list = map.get_mut(nexthop)?;
        list.retain(|c| c.since.elapsed() < max_idle);
        list.pop()
    }

    fn put(&self, nexthop: &str, c: Cached) {
        self.lock().entry(nexthop.to_string()).or_default().push(c);
    }

    /// Close connections idle for longer than `max_idle` (with a polite QUIT).
    pub async fn sweep(&self, max_idle: Duration) {
        let stale: Vec<Cached> = {
            let mut map = self.lock();
            let mut out = Vec::new();
            for list in map.values_mut() {
                let (old, keep): (Vec<Cached>, Vec<Cached>) = list.drain(..).partition(|c| c.since.elapsed() >= max_idle);
                *list = keep;
                out.extend(old);
            }
            map.retain(|_, l| !l.is_empty());
            out
        };
        for mut c in stale {
            c.conn.timeout = Duration::from_secs(2);
            let _ = c.conn.command("QUIT").await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nexthops() {
        assert_eq!(parse_nexthop("[127.0.0.1]:2599"), Some(NextHop { host: "127.0.0.1".into(), port: 2599, mx: false }));
        assert_eq!(parse_nexthop("[mx.example]"), Some(NextHop { host: "mx.example".into(), port: 25, mx: false }));
        assert_eq!(parse_nexthop("example.net"), Some(NextHop { host: "example.net".into(), port: 25, mx: true }));
        assert_eq!(parse_nexthop("example.net:587"), Some(NextHop { host: "example.net".into(), port: 587, mx: true }));
        for bad in ["", "[]", "[x]y", "[x]:port", "host:99999"] {
            assert_eq!(parse_nexthop(bad), None, "{bad}");
        }
    }
}
