//! One delivery request: resolve the next hop, run the SMTP transaction, turn every reply into
//! a per-recipient result with Postfix's texts, and log Postfix's delivery lines.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::config::{ConfigError, Params};
use common::ipc::delivery::{DeliveryRecipient, DeliveryRequest, DeliveryResult};
use common::maillog::{DeliveryLine, delivery_line};
use common::queue::file::{self, Outcome, now_us};
use common::queue::{QueueId, QueueName, Spool};
use common::text::{has_control, printable};
use common::{log_info, log_warning};

use crate::client::{ClientError, Connection, Reply};
use crate::myself::Myself;
use crate::resolve::{Dns, ResolveError, Target};

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
    /// `smtp_line_length_limit`: longer message lines are broken (0: no limit).
    pub line_length_limit: usize,
    /// `smtp_mx_address_limit`: addresses tried per delivery (0: no limit).
    pub mx_address_limit: usize,
    /// `smtp_mx_session_limit`: sessions (past the handshake) per delivery (0: no limit).
    pub mx_session_limit: usize,
    /// This system's addresses (`inet_interfaces`, `proxy_interfaces`), for loop detection.
    pub myself: Myself,
}

/// A count parameter: zero or more.
fn count(p: &Params, name: &str) -> Result<usize, ConfigError> {
    usize::try_from(p.int(name)?).map_err(|_| ConfigError::value(name, "must be zero or more"))
}

impl AgentConfig {
    pub fn from_params(p: &Params) -> Result<AgentConfig, ConfigError> {
        let dns = Dns::new(&p.list("smtp_dns_nameservers")?).map_err(|what| ConfigError::value("smtp_dns_nameservers", what))?;
        let line_length_limit = count(p, "smtp_line_length_limit")?;
        // A limit of one would leave no room after the folding space.
        if line_length_limit == 1 {
            return Err(ConfigError::value("smtp_line_length_limit", "must be 0 (no limit) or at least 2"));
        }
        Ok(AgentConfig {
            dns,
            spool: Spool::from_params(p)?,
            myhostname: p.get("myhostname")?,
            connect_timeout: p.time("smtp_connect_timeout")?,
            helo_timeout: p.time("smtp_helo_timeout")?,
            command_timeout: Duration::from_secs(300),
            data_done_timeout: p.time("smtp_data_done_timeout")?,
            cache_time: p.time("smtp_connection_cache_time_limit")?,
            line_length_limit,
            mx_address_limit: count(p, "smtp_mx_address_limit")?,
            mx_session_limit: count(p, "smtp_mx_session_limit")?,
            myself: Myself::from_params(p)?,
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

fn bounced(dsn: &str, text: String) -> Failure {
    Failure { outcome: Outcome::Bounced, dsn: dsn.into(), text, site: false }
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
        // Nothing was written: the session is still clean, the fault is ours.
        e @ ClientError::UnsafeCommand(_) => deferred("4.3.0", format!("{e} while {during}"), false),
    }
}

/// Deliver one request; never fails as a whole: every recipient gets a result.
pub async fn deliver(cfg: &AgentConfig, cache: &ConnCache, req: &DeliveryRequest) -> Vec<DeliveryResult> {
    let received_us = now_us();
    let parts = attempt(cfg, cache, req).await;
    let mut results = Vec::new();
    for a in parts {
        for r in &a.results {
            let Some(rcpt) = req.recipients.iter().find(|x| x.index == r.index) else { continue };
            let secs = |x: u64, y: u64| y.saturating_sub(x) as f64 / 1e6;
            log_info!(
                "{}",
                delivery_line(&DeliveryLine {
                    queue_id: &req.queue_id,
                    recipient: &printable(&rcpt.address, '?'),
                    relay: &a.relay,
                    conn_use: (a.conn_use > 1).then_some(a.conn_use),
                    delays: [secs(req.arrival_us, req.active_us), secs(req.active_us, received_us), a.setup, a.xmit],
                    dsn: &r.dsn,
                    status: r.outcome.status(),
                    text: &r.text,
                })
            );
        }
        results.extend(a.results);
    }
    results
}

fn all(recipients: &[DeliveryRecipient], f: &Failure) -> Vec<DeliveryResult> {
    recipients
        .iter()
        .map(|r| DeliveryResult { index: r.index, outcome: f.outcome, dsn: f.dsn.clone(), text: f.text.clone(), site_failure: f.site })
        .collect()
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
    let message = match read_message(cfg, &req) {
        Ok(m) => m,
        Err(text) => {
            parts.push(Attempt::failed(&req.recipients, &deferred("4.3.0", text, false), 0.0));
            return parts;
        }
    };
    if let Some(mut c) = cache.take(&req.nexthop, cfg.cache_time) {
        c.conn.timeout = cfg.command_timeout;
        // A connection the server closed meanwhile fails here; then we connect afresh.
        if matches!(c.conn.command("RSET").await, Ok(r) if r.class() == 2) {
            let (results, healthy) = mail_transaction(cfg, &req, &mut c.conn, &c.peer, &message).await;
            let (relay, uses) = (c.relay.clone(), c.uses + 1);
            if healthy {
                cache.put(&req.nexthop, Cached { uses, since: Instant::now(), ..c });
            }
            parts.push(Attempt { results, relay, setup: 0.0, xmit: start.elapsed().as_secs_f64(), conn_use: uses });
            return parts;
        }
    }
    let Some(hop) = parse_nexthop(&req.nexthop) else {
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
        let stream = match tokio::time::timeout(cfg.connect_timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let text = format!("connect to {peer}:{}: {}", addr.port(), io_text(&e));
                log_info!("{text}");
                last = Some(Attempt::failed(&pending.recipients, &deferred("4.4.1", text, true), start.elapsed().as_secs_f64()));
                continue;
            }
            Err(_) => {
                let text = format!("connect to {peer}:{}: Connection timed out", addr.port());
                log_info!("{text}");
                last = Some(Attempt::failed(&pending.recipients, &deferred("4.4.1", text, true), start.elapsed().as_secs_f64()));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let relay = format!("{peer}:{}", addr.port());
        let mut conn = Connection::new(stream, cfg.helo_timeout);
        let looking = myself.map(|_| Loop { nexthop: &pending.nexthop, relay: &relay, best });
        let handshake = handshake(cfg, &mut conn, &peer, looking).await;
        let setup = start.elapsed().as_secs_f64();
        if let Err(f) = handshake {
            let hard = f.outcome == Outcome::Bounced;
            last = Some(Attempt { relay, ..Attempt::failed(&pending.recipients, &f, setup) });
            // A server that failed the handshake does not count as a session; the next
            // address may do better, unless the failure is final.
            if hard {
                break;
            }
            continue;
        }
        sessions += 1;
        conn.timeout = cfg.command_timeout;
        let (results, healthy) = mail_transaction(cfg, &pending, &mut conn, &peer, &message).await;
        if healthy {
            cache.put(&pending.nexthop, Cached { conn, peer, relay: relay.clone(), uses: 1, since: Instant::now() });
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

/// Loop detection for one session (port 25 only).
struct Loop<'a> {
    /// The next hop as the request names it, for the bounce text.
    nexthop: &'a str,
    /// `host[addr]:port`, for the warning.
    relay: &'a str,
    /// The server is a most preferred MX host: a loop is final there.
    best: bool,
}

/// The first word of a greeting or EHLO reply: the server's name for itself.
fn reply_name(reply: &Reply) -> &str {
    reply.lines.first().and_then(|l| l.split_whitespace().next()).unwrap_or("")
}

/// Greeting and EHLO (HELO when EHLO is refused). With `looking`, a server that answers EHLO
/// with our own `myhostname` is ourselves: Postfix's `mail for <nexthop> loops back to
/// myself`, 5.4.6 at a most preferred MX host, 4.4.6 at another (a greeting with our name
/// only gets a warning, as in Postfix, since banners are often set by hand).
async fn handshake(cfg: &AgentConfig, conn: &mut Connection, peer: &str, looking: Option<Loop<'_>>) -> Result<(), Failure> {
    let greeting = conn.read_reply().await.map_err(|e| broken(e, peer, "receiving the initial server greeting"))?;
    if greeting.class() != 2 {
        let mut f = rejected(&greeting, peer, "the initial server greeting");
        f.text = format!("host {peer} refused to talk to me: {}", greeting.text());
        f.site = f.outcome == Outcome::Deferred;
        return Err(f);
    }
    if let Some(l) = &looking
        && reply_name(&greeting).eq_ignore_ascii_case(&cfg.myhostname)
    {
        log_warning!("host {} greeted me with my own hostname {}", l.relay, cfg.myhostname);
    }
    let mut hello =
        conn.command(&format!("EHLO {}", cfg.myhostname)).await.map_err(|e| broken(e, peer, "performing the EHLO handshake"))?;
    if hello.class() == 5 {
        hello = conn.command(&format!("HELO {}", cfg.myhostname)).await.map_err(|e| broken(e, peer, "performing the HELO handshake"))?;
    }
    if hello.class() != 2 {
        return Err(rejected(&hello, peer, "EHLO/HELO command"));
    }
    if let Some(l) = looking
        && reply_name(&hello).eq_ignore_ascii_case(&cfg.myhostname)
    {
        log_warning!("host {} replied to HELO/EHLO with my own hostname {}", l.relay, cfg.myhostname);
        let text = format!("mail for {} loops back to myself", l.nexthop);
        let _ = conn.command("QUIT").await;
        return Err(if l.best { bounced("5.4.6", text) } else { deferred("4.4.6", text, true) });
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
        let broke = conn.send_message(message, cfg.line_length_limit).await.map_err(|e| broken(e, peer, "sending message body"))?;
        if broke {
            log_info!("{}: breaking line > {} bytes with <CR><LF>SPACE", req.queue_id, cfg.line_length_limit);
        }
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

    fn request(sender: &str, rcpts: &[&str]) -> DeliveryRequest {
        DeliveryRequest {
            queue_id: "ABC123".into(),
            queue: "active".into(),
            nexthop: "[127.0.0.1]:2525".into(),
            sender: sender.into(),
            recipients: rcpts.iter().enumerate().map(|(index, a)| DeliveryRecipient { index, address: a.to_string() }).collect(),
            arrival_us: 0,
            active_us: 0,
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
