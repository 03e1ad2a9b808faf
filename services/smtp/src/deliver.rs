//! One delivery request: resolve the next hop, run the SMTP transaction, turn every reply into
//! a per-recipient result with Postfix's texts, and log Postfix's delivery lines.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::config::{ConfigError, Params};
use common::ipc::delivery::{DeliveryRequest, DeliveryResult};
use common::log_info;
use common::maillog::{DeliveryLine, delivery_line};
use common::queue::file::{self, Outcome, now_us};
use common::queue::{QueueId, QueueName, Spool};

use crate::client::{ClientError, Connection, Reply, data_bytes};

/// The agent's settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub spool: Spool,
    pub myhostname: String,
    pub connect_timeout: Duration,
    pub helo_timeout: Duration,
    pub command_timeout: Duration,
    pub data_done_timeout: Duration,
}

impl AgentConfig {
    pub fn from_params(p: &Params) -> Result<AgentConfig, ConfigError> {
        Ok(AgentConfig {
            spool: Spool::from_params(p)?,
            myhostname: p.get("myhostname")?,
            connect_timeout: p.time("smtp_connect_timeout")?,
            helo_timeout: p.time("smtp_helo_timeout")?,
            command_timeout: Duration::from_secs(300),
            data_done_timeout: p.time("smtp_data_done_timeout")?,
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
pub async fn deliver(cfg: &AgentConfig, req: &DeliveryRequest) -> Vec<DeliveryResult> {
    let received_us = now_us();
    let (results, relay, setup, xmit) = attempt(cfg, req).await;
    for r in &results {
        let Some(rcpt) = req.recipients.iter().find(|x| x.index == r.index) else { continue };
        let secs = |a: u64, b: u64| b.saturating_sub(a) as f64 / 1e6;
        let status = match r.outcome {
            Outcome::Sent => "sent",
            Outcome::Bounced => "bounced",
            Outcome::Deferred => "deferred",
        };
        log_info!(
            "{}",
            delivery_line(&DeliveryLine {
                queue_id: &req.queue_id,
                recipient: &rcpt.address,
                relay: &relay,
                delays: [secs(req.arrival_us, req.active_us), secs(req.active_us, received_us), setup, xmit],
                dsn: &r.dsn,
                status,
                text: &r.text,
            })
        );
    }
    results
}

fn all(req: &DeliveryRequest, f: &Failure) -> Vec<DeliveryResult> {
    req.recipients
        .iter()
        .map(|r| DeliveryResult { index: r.index, outcome: f.outcome, dsn: f.dsn.clone(), text: f.text.clone(), site_failure: f.site })
        .collect()
}

/// Returns (results, relay for the log, connection set-up seconds, transmission seconds).
async fn attempt(cfg: &AgentConfig, req: &DeliveryRequest) -> (Vec<DeliveryResult>, String, f64, f64) {
    let start = Instant::now();
    let message = match read_message(cfg, req) {
        Ok(m) => m,
        Err(text) => return (all(req, &deferred("4.3.0", text, false)), "none".into(), 0.0, 0.0),
    };
    let Some(hop) = parse_nexthop(&req.nexthop) else {
        let f = Failure { outcome: Outcome::Bounced, dsn: "5.4.4".into(), text: format!("bad next hop: {}", req.nexthop), site: false };
        return (all(req, &f), "none".into(), 0.0, 0.0);
    };
    let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((hop.host.as_str(), hop.port)).await {
        Ok(a) => a.collect(),
        Err(e) => {
            let f = deferred("4.4.3", format!("Host or domain name not found. Name service error for name={}: {e}", hop.host), true);
            return (all(req, &f), "none".into(), 0.0, 0.0);
        }
    };
    let mut last_error = format!("no address for {}", hop.host);
    for addr in addrs {
        let peer = format!("{}[{}]", hop.host, addr.ip());
        let stream = match tokio::time::timeout(cfg.connect_timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                last_error = format!("connect to {peer}:{}: {}", addr.port(), io_text(&e));
                continue;
            }
            Err(_) => {
                last_error = format!("connect to {peer}:{}: Connection timed out", addr.port());
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let relay = format!("{peer}:{}", addr.port());
        let mut conn = Connection::new(stream, cfg.helo_timeout);
        let (results, setup, xmit) = transaction(cfg, req, &mut conn, &peer, &message, start).await;
        return (results, relay, setup, xmit);
    }
    (all(req, &deferred("4.4.1", last_error, true)), "none".into(), start.elapsed().as_secs_f64(), 0.0)
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

async fn transaction(
    cfg: &AgentConfig,
    req: &DeliveryRequest,
    conn: &mut Connection,
    peer: &str,
    message: &[u8],
    start: Instant,
) -> (Vec<DeliveryResult>, f64, f64) {
    let outcome = async {
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
            hello =
                conn.command(&format!("HELO {}", cfg.myhostname)).await.map_err(|e| broken(e, peer, "performing the HELO handshake"))?;
        }
        if hello.class() != 2 {
            return Err(rejected(&hello, peer, "EHLO/HELO command"));
        }
        Ok(())
    }
    .await;
    let setup_done = start.elapsed().as_secs_f64();
    if let Err(f) = outcome {
        return (all(req, &f), setup_done, 0.0);
    }
    conn.timeout = cfg.command_timeout;
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
            let _ = conn.command("QUIT").await;
            return Ok(accepted);
        }
        let data = conn.command("DATA").await.map_err(|e| broken(e, peer, "sending DATA command"))?;
        if data.class() != 3 {
            return Err(rejected(&data, peer, "DATA command"));
        }
        conn.timeout = cfg.data_done_timeout;
        conn.send(&data_bytes(message)).await.map_err(|e| broken(e, peer, "sending message body"))?;
        let done = conn.read_reply().await.map_err(|e| broken(e, peer, "sending end of data -- message may be sent more than once"))?;
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
        conn.timeout = cfg.command_timeout;
        let _ = conn.command("QUIT").await;
        Ok(accepted)
    }
    .await;
    if let Err(f) = body {
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
    }
    (results, setup_done, start.elapsed().as_secs_f64() - setup_done)
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
