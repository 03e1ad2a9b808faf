//! The SMTP conversation on one connection: the greeting and EHLO (with loop detection), and
//! one mail transaction (MAIL, one RCPT per recipient, DATA) with a result per recipient and
//! Postfix's texts. It knows nothing of next hops, DNS or the connection cache.

use std::time::Duration;

use crate::config::{ConfigError, Params};
use crate::dsn::{orcpt_of, orcpt_param, xtext_encode};
use crate::ipc::delivery::{DeliveryRequest, DeliveryResult};
use crate::log_info;
use crate::log_warning;
use crate::queue::file::{Envelope, Outcome};
use crate::smtputf8;

use super::connection::{ClientError, Connection, Reply};

/// What one conversation needs to know (part of the smtp agent's configuration, and of an
/// ODMR provider's).
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// `myhostname`: the EHLO name, and the name that gives a loop away.
    pub myhostname: String,
    /// The time limits of the commands after the handshake.
    pub timeouts: Timeouts,
    /// `smtp_line_length_limit`: longer message lines are broken (0: no limit).
    pub line_length_limit: usize,
}

impl SessionConfig {
    /// From the `smtp_*` parameters, wherever the conversation runs.
    pub fn from_params(p: &Params) -> Result<SessionConfig, ConfigError> {
        let limit = p.int("smtp_line_length_limit")?;
        let line_length_limit = usize::try_from(limit).map_err(|_| ConfigError::value("smtp_line_length_limit", "must be zero or more"))?;
        // A limit of one would leave no room after the folding space.
        if line_length_limit == 1 {
            return Err(ConfigError::value("smtp_line_length_limit", "must be 0 (no limit) or at least 2"));
        }
        let timeouts = Timeouts {
            mail: p.time("smtp_mail_timeout")?,
            rcpt: p.time("smtp_rcpt_timeout")?,
            data_init: p.time("smtp_data_init_timeout")?,
            data_xfer: p.time("smtp_data_xfer_timeout")?,
            data_done: p.time("smtp_data_done_timeout")?,
            rset: p.time("smtp_rset_timeout")?,
            quit: p.time("smtp_quit_timeout")?,
        };
        Ok(SessionConfig { myhostname: p.get("myhostname")?, timeouts, line_length_limit })
    }
}

/// Postfix's time limits for each step of a mail transaction, each a parameter of its own.
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// `smtp_mail_timeout`: the reply to MAIL FROM.
    pub mail: Duration,
    /// `smtp_rcpt_timeout`: the reply to each RCPT TO.
    pub rcpt: Duration,
    /// `smtp_data_init_timeout`: the reply to DATA.
    pub data_init: Duration,
    /// `smtp_data_xfer_timeout`: writing the message content.
    pub data_xfer: Duration,
    /// `smtp_data_done_timeout`: the reply to the end of the message.
    pub data_done: Duration,
    /// `smtp_rset_timeout`: the reply to RSET on a cached connection.
    pub rset: Duration,
    /// `smtp_quit_timeout`: the reply to QUIT.
    pub quit: Duration,
}

/// How one attempt ended, before it becomes per-recipient results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub outcome: Outcome,
    pub dsn: String,
    pub text: String,
    /// The next hop failed as a whole (the queue manager holds back its other mail for a
    /// while).
    pub site: bool,
}

impl Failure {
    /// The result this failure gives recipient `index`.
    pub fn result(&self, index: usize) -> DeliveryResult {
        DeliveryResult {
            index,
            outcome: self.outcome,
            dsn: self.dsn.clone(),
            text: self.text.clone(),
            site_failure: self.site,
            dsn_passed_on: false,
            relay: String::new(),
        }
    }
}

pub fn deferred(dsn: &str, text: String, site: bool) -> Failure {
    Failure { outcome: Outcome::Deferred, dsn: dsn.into(), text, site }
}

pub fn bounced(dsn: &str, text: String) -> Failure {
    Failure { outcome: Outcome::Bounced, dsn: dsn.into(), text, site: false }
}

/// A reply that ends the transaction for every recipient still open.
pub fn rejected(reply: &Reply, peer: &str, after: &str) -> Failure {
    let outcome = if reply.class() == 5 { Outcome::Bounced } else { Outcome::Deferred };
    Failure { outcome, dsn: reply.dsn(), text: format!("host {peer} said: {} (in reply to {after})", reply.text()), site: false }
}

pub fn broken(e: ClientError, peer: &str, during: &str) -> Failure {
    match e {
        ClientError::Timeout => deferred("4.4.2", format!("conversation with {peer} timed out while {during}"), true),
        ClientError::Io(_) => deferred("4.4.2", format!("lost connection with {peer} while {during}"), true),
        ClientError::Malformed(m) => deferred("4.5.0", format!("malformed reply from {peer} while {during}: {m}"), true),
        // Nothing was written: the session is still clean, the fault is ours.
        e @ ClientError::UnsafeCommand(_) => deferred("4.3.0", format!("{e} while {during}"), false),
    }
}

/// Loop detection for one session (port 25 only).
pub struct Loop<'a> {
    /// The next hop as the request names it, for the bounce text.
    pub nexthop: &'a str,
    /// `host[addr]:port`, for the warning.
    pub relay: &'a str,
    /// The server is a most preferred MX host: a loop is final there.
    pub best: bool,
}

/// The first word of a greeting or EHLO reply: the server's name for itself.
fn reply_name(reply: &Reply) -> &str {
    reply.lines.first().and_then(|l| l.split_whitespace().next()).unwrap_or("")
}

/// What the server said it can do in its reply to EHLO (nothing after HELO).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hello {
    /// The keyword lines after the first, upper-cased: `STARTTLS`, `AUTH PLAIN LOGIN`, ...
    pub keywords: Vec<String>,
}

impl Hello {
    fn of(reply: &Reply, esmtp: bool) -> Hello {
        let keywords = if esmtp { reply.lines.iter().skip(1).map(|l| l.trim().to_ascii_uppercase()).collect() } else { Vec::new() };
        Hello { keywords }
    }

    /// The server offers `keyword` (the first word of a line).
    pub fn offers(&self, keyword: &str) -> bool {
        self.keywords.iter().any(|k| k.split_whitespace().next() == Some(keyword))
    }

    /// The words after `keyword` on its line (`AUTH PLAIN LOGIN` gives PLAIN, LOGIN); also
    /// `AUTH=` as old servers write it.
    pub fn params(&self, keyword: &str) -> Vec<String> {
        let mut out = Vec::new();
        for k in &self.keywords {
            let mut words = k.split_whitespace();
            let Some(first) = words.next() else { continue };
            let rest: Vec<String> = match first.split_once('=') {
                Some((kw, v)) if kw == keyword => std::iter::once(v).chain(words).map(str::to_string).collect(),
                None if first == keyword => words.map(str::to_string).collect(),
                _ => continue,
            };
            for w in rest {
                if !out.contains(&w) {
                    out.push(w);
                }
            }
        }
        out
    }
}

/// Greeting and EHLO (HELO when EHLO is refused); then see [`hello`].
pub async fn handshake(cfg: &SessionConfig, conn: &mut Connection, peer: &str, looking: Option<Loop<'_>>) -> Result<Hello, Failure> {
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
    hello(cfg, conn, peer, looking).await
}

/// EHLO (HELO when EHLO is refused), also again after STARTTLS. With `looking`, a server that
/// answers EHLO with our own `myhostname` is ourselves: Postfix's `mail for <nexthop> loops
/// back to myself`, 5.4.6 at a most preferred MX host, 4.4.6 at another (a greeting with our
/// name only gets a warning, as in Postfix, since banners are often set by hand).
pub async fn hello(cfg: &SessionConfig, conn: &mut Connection, peer: &str, looking: Option<Loop<'_>>) -> Result<Hello, Failure> {
    let mut hello =
        conn.command(&format!("EHLO {}", cfg.myhostname)).await.map_err(|e| broken(e, peer, "performing the EHLO handshake"))?;
    let mut esmtp = true;
    if hello.class() == 5 {
        esmtp = false;
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
    let hello = Hello::of(&hello, esmtp);
    conn.smtputf8 = hello.offers("SMTPUTF8");
    conn.pipelining = hello.offers("PIPELINING");
    Ok(hello)
}

/// Make a connection kept from an earlier delivery ready for another transaction: RSET, under
/// the command time limit. `false` when the server closed it meanwhile or refuses; then the
/// caller connects afresh.
pub async fn reset(cfg: &SessionConfig, conn: &mut Connection) -> bool {
    conn.timeout = cfg.timeouts.rset;
    matches!(conn.command("RSET").await, Ok(r) if r.class() == 2)
}

/// The MAIL command: `utf8` (" SMTPUTF8" or nothing) after the address, and with `dsn` (the
/// server offers DSN), the message's ENVID and RET as Postfix writes them.
fn mail_command(sender: &str, utf8: &str, dsn: Option<&Envelope>) -> String {
    let mut cmd = format!("MAIL FROM:<{sender}>{utf8}");
    if let Some(env) = dsn {
        if let Some(envid) = &env.envid {
            cmd.push_str(&format!(" ENVID={}", xtext_encode(envid)));
        }
        if let Some(ret) = env.ret {
            cmd.push_str(&format!(" RET={}", ret.as_str()));
        }
    }
    cmd
}

/// The RCPT command for recipient `index` at `address`: with `dsn`, its ORCPT (the one it came
/// with, else the address before any rewriting, as Postfix adds one; a `utf-8` one in 7-bit
/// form whatever the next hop offers, as Postfix sends it) and its NOTIFY.
fn rcpt_command(address: &str, index: usize, dsn: Option<&Envelope>) -> String {
    let mut cmd = format!("RCPT TO:<{address}>");
    if let Some(env) = dsn {
        let r = env.recipients.get(index);
        let orcpt = match r.and_then(|r| r.orcpt.clone()) {
            Some(o) => o,
            None => orcpt_of(r.and_then(|r| r.orig.as_deref()).unwrap_or(address)),
        };
        cmd.push(' ');
        cmd.push_str(&orcpt_param(&orcpt));
        if let Some(notify) = r.and_then(|r| r.notify) {
            cmd.push_str(&format!(" NOTIFY={notify}"));
        }
    }
    cmd
}

/// Postfix's DELIVERY_REQUIRES_SMTPUTF8: the sender asked for SMTPUTF8 and this delivery has
/// something that is not ASCII (the body does not count).
pub fn requires_smtputf8(req: &DeliveryRequest, message: &[u8]) -> bool {
    req.smtputf8 && smtputf8::derived(&req.sender, req.recipients.iter().map(|r| r.address.as_str()), message)
}

/// Why server `peer`, which does not offer SMTPUTF8, cannot take a delivery that requires it
/// (Postfix's text; hard, but the smtp agent tries its next address first).
pub fn lacks_smtputf8(peer: &str) -> Failure {
    bounced(
        "5.6.7",
        format!("message requires SMTPUTF8, but no server was found that supports SMTPUTF8. The last attempted server was {peer}"),
    )
}

/// Read and drop `n` replies (those to a pipelined group after its MAIL was refused).
async fn drain_replies(conn: &mut Connection, n: usize, timeout: std::time::Duration) -> Result<(), ClientError> {
    conn.timeout = timeout;
    for _ in 0..n {
        conn.read_reply().await?;
    }
    Ok(())
}

/// MAIL, RCPT per recipient, DATA (no DATA for an address verification probe: the session is
/// left for the next transaction's RSET, or QUIT). `dsn` is the message's envelope when the server offers DSN
/// (RFC 3461): its requests go along with MAIL and RCPT, and a recipient it accepts is marked
/// [`DeliveryResult::dsn_passed_on`]. Returns the results and whether the connection is in a
/// clean state for another transaction.
pub async fn mail_transaction(
    cfg: &SessionConfig,
    req: &DeliveryRequest,
    conn: &mut Connection,
    peer: &str,
    message: &[u8],
    dsn: Option<&Envelope>,
) -> (Vec<DeliveryResult>, bool) {
    let mut results = Vec::new();
    let t = &cfg.timeouts;
    let body = async {
        if !conn.smtputf8 && requires_smtputf8(req, message) {
            return Err(lacks_smtputf8(peer));
        }
        let utf8 = if req.smtputf8 && conn.smtputf8 { " SMTPUTF8" } else { "" };
        let mail_line = mail_command(&req.sender, utf8, dsn);
        let rcpt_lines: Vec<String> = req.recipients.iter().map(|r| rcpt_command(&r.address, r.index, dsn)).collect();
        // With PIPELINING, MAIL, every RCPT and DATA go in one write and the replies are read
        // in order (RFC 2920, as Postfix's smtp client does): one round trip instead of one
        // per command. A probe stops before DATA, so it keeps the step-by-step dialogue.
        let pipelined = conn.pipelining && !req.verify_probe;
        let mut group: Vec<&str> = Vec::new();
        if pipelined {
            group.push(&mail_line);
            group.extend(rcpt_lines.iter().map(String::as_str));
            group.push("DATA");
            conn.timeout = t.mail;
            conn.send_commands(&group).await.map_err(|e| broken(e, peer, "sending MAIL FROM"))?;
        }
        conn.timeout = t.mail;
        let mail = if pipelined { conn.read_reply().await } else { conn.command(&mail_line).await };
        let mail = mail.map_err(|e| broken(e, peer, "sending MAIL FROM"))?;
        if mail.class() != 2 {
            if pipelined {
                // The server answers the RCPTs and DATA of a refused MAIL too (with errors):
                // read them, so that the session stays in step for the next transaction.
                drain_replies(conn, rcpt_lines.len() + 1, t.rcpt).await.map_err(|e| broken(e, peer, "sending RCPT TO"))?;
            }
            return Err(rejected(&mail, peer, "MAIL FROM command"));
        }
        let mut accepted = Vec::new();
        conn.timeout = t.rcpt;
        for (r, line) in req.recipients.iter().zip(&rcpt_lines) {
            let reply = if pipelined { conn.read_reply().await } else { conn.command(line).await };
            let reply = reply.map_err(|e| broken(e, peer, "sending RCPT TO"))?;
            if reply.class() == 2 && req.verify_probe {
                // A probe ends here (Postfix's smtp_address_verify_target = rcpt): the
                // recipient is deliverable, and the message is never sent.
                results.push(DeliveryResult {
                    index: r.index,
                    outcome: Outcome::Sent,
                    dsn: reply.dsn(),
                    text: reply.text(),
                    site_failure: false,
                    // A probe's result only goes to the verify service: no notice is due.
                    dsn_passed_on: false,
                    relay: String::new(),
                });
            } else if reply.class() == 2 {
                accepted.push(r.index);
            } else {
                results.push(rejected(&reply, peer, "RCPT TO command").result(r.index));
            }
        }
        conn.timeout = t.data_init;
        if accepted.is_empty() {
            if pipelined {
                // DATA went out anyway; a server that answers it with 354 regardless gets an
                // empty message, which it must refuse without recipients.
                let data = conn.read_reply().await.map_err(|e| broken(e, peer, "sending DATA command"))?;
                if data.class() == 3 {
                    conn.timeout = t.data_done;
                    conn.send_commands(&["."]).await.map_err(|e| broken(e, peer, "sending end of data"))?;
                    conn.read_reply().await.map_err(|e| broken(e, peer, "sending end of data"))?;
                }
            }
            return Ok(());
        }
        let data = if pipelined { conn.read_reply().await } else { conn.command("DATA").await };
        let data = data.map_err(|e| broken(e, peer, "sending DATA command"))?;
        if data.class() != 3 {
            return Err(rejected(&data, peer, "DATA command"));
        }
        conn.timeout = t.data_xfer;
        let broke = conn.send_message(message, cfg.line_length_limit).await.map_err(|e| broken(e, peer, "sending message body"))?;
        if broke {
            log_info!("{}: breaking line > {} bytes with <CR><LF>SPACE", req.queue_id, cfg.line_length_limit);
        }
        conn.timeout = t.data_done;
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
            results.push(DeliveryResult {
                index: *index,
                outcome,
                dsn: done.dsn(),
                text: text.clone(),
                site_failure: false,
                dsn_passed_on: dsn.is_some(),
                relay: String::new(),
            });
        }
        Ok(())
    }
    .await;
    let healthy = match body {
        Ok(()) => true,
        Err(f) => {
            // Recipients without a result yet share the failure.
            let have: Vec<usize> = results.iter().map(|r| r.index).collect();
            results.extend(req.recipients.iter().filter(|r| !have.contains(&r.index)).map(|r| f.result(r.index)));
            // A rejected MAIL or DATA leaves the session usable; a broken conversation does not.
            !f.site && f.dsn != "4.4.2"
        }
    };
    (results, healthy)
}

#[cfg(test)]
mod tests {
    use super::super::test_peer::{connected, next_line, session};
    use super::*;
    use crate::ipc::delivery::DeliveryRecipient;
    use tokio::io::AsyncWriteExt;

    /// One step of a scripted next hop: what it answers to the next command (the first step
    /// is the greeting). `None` closes the connection instead.
    type Step = Option<&'static str>;

    /// A real SMTP peer on 127.0.0.1 that answers from `script` and returns what it was sent
    /// (the message text as one entry). Every read is bounded by the script's length and a
    /// time limit.
    async fn peer(script: Vec<Step>) -> (Connection, tokio::task::JoinHandle<Vec<String>>) {
        connected(move |mut r, mut w| async move {
            let mut got = Vec::new();
            let mut in_data = false;
            for (i, step) in script.into_iter().enumerate() {
                if i > 0 {
                    // Read one command, or the whole message after a 354.
                    let mut text = String::new();
                    loop {
                        let Some(line) = next_line(&mut r).await else { return got };
                        text.push_str(&line);
                        if !in_data || line == ".\r\n" {
                            break;
                        }
                    }
                    got.push(text.trim_end().to_string());
                }
                let Some(reply) = step else { return got };
                in_data = reply.starts_with("354");
                w.write_all(format!("{reply}\r\n").as_bytes()).await.unwrap();
            }
            got
        })
        .await
    }

    fn request(rcpts: &[&str]) -> DeliveryRequest {
        DeliveryRequest {
            queue_id: crate::queue::QueueId::parse("ABC123").unwrap(),
            queue: crate::queue::QueueName::Active,
            nexthop: "[127.0.0.1]:2525".into(),
            sender: "s@x.test".into(),
            recipients: rcpts.iter().enumerate().map(|(index, a)| DeliveryRecipient { index, address: a.to_string() }).collect(),
            arrival_us: 0,
            active_us: 0,
            smtputf8: false,
            verify_probe: false,
        }
    }

    fn summary(results: &[DeliveryResult]) -> Vec<(usize, Outcome, String, bool)> {
        let mut s: Vec<_> = results.iter().map(|r| (r.index, r.outcome, r.dsn.clone(), r.site_failure)).collect();
        s.sort_by_key(|r| r.0);
        s
    }

    #[tokio::test]
    async fn handshakes() {
        struct Case {
            name: &'static str,
            script: Vec<Step>,
            best: Option<bool>,
            want: Result<(), (Outcome, &'static str, bool)>,
            sent: &'static [&'static str],
        }
        let cases = [
            Case {
                name: "EHLO",
                script: vec![Some("220 peer.test ESMTP"), Some("250 peer.test")],
                best: Some(true),
                want: Ok(()),
                sent: &["EHLO me.test"],
            },
            Case {
                name: "HELO after a refused EHLO",
                script: vec![Some("220 peer.test"), Some("502 5.5.2 no"), Some("250 peer.test")],
                best: None,
                want: Ok(()),
                sent: &["EHLO me.test", "HELO me.test"],
            },
            Case {
                name: "refused greeting is a site failure",
                script: vec![Some("421 4.3.2 busy")],
                best: None,
                want: Err((Outcome::Deferred, "4.3.2", true)),
                sent: &[],
            },
            Case {
                name: "a greeting with my name is only a warning",
                script: vec![Some("220 me.test ESMTP"), Some("250 peer.test")],
                best: Some(true),
                want: Ok(()),
                sent: &["EHLO me.test"],
            },
            Case {
                name: "loop at a best MX host",
                script: vec![Some("220 peer.test"), Some("250 ME.test"), Some("221 bye")],
                best: Some(true),
                want: Err((Outcome::Bounced, "5.4.6", false)),
                sent: &["EHLO me.test", "QUIT"],
            },
            Case {
                name: "loop at another MX host",
                script: vec![Some("220 peer.test"), Some("250 me.test"), Some("221 bye")],
                best: Some(false),
                want: Err((Outcome::Deferred, "4.4.6", true)),
                sent: &["EHLO me.test", "QUIT"],
            },
            Case {
                name: "no loop detection off port 25",
                script: vec![Some("220 peer.test"), Some("250 me.test")],
                best: None,
                want: Ok(()),
                sent: &["EHLO me.test"],
            },
            Case {
                name: "lost connection",
                script: vec![Some("220 peer.test"), None],
                best: None,
                want: Err((Outcome::Deferred, "4.4.2", true)),
                sent: &["EHLO me.test"],
            },
        ];
        for c in cases {
            let (mut conn, server) = peer(c.script).await;
            let looking = c.best.map(|best| Loop { nexthop: "d.test", relay: "peer.test[127.0.0.1]:25", best });
            let got = handshake(&session(), &mut conn, "peer.test[127.0.0.1]", looking).await.map(|_| ());
            drop(conn);
            let want = c.want.map_err(|(outcome, dsn, site)| (outcome, dsn.to_string(), site));
            assert_eq!(got.map_err(|f| (f.outcome, f.dsn, f.site)), want, "{}", c.name);
            let sent = server.await.unwrap();
            let want: Vec<String> = c.sent.iter().map(|s| s.to_string()).collect();
            assert_eq!(sent.into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>(), want, "{}", c.name);
        }
    }

    #[tokio::test]
    async fn a_result_per_recipient() {
        let (mut conn, server) = peer(vec![
            Some("220 peer.test"),
            Some("250 2.1.0 Ok"),
            Some("250 2.1.5 Ok"),
            Some("550 5.1.1 <v@x.test>: no such user"),
            Some("451 4.3.0 try later"),
            Some("354 go ahead"),
            Some("250 2.0.0 Ok: queued"),
        ])
        .await;
        conn.read_reply().await.unwrap();
        let (results, healthy) =
            mail_transaction(&session(), &request(&["u@x.test", "v@x.test", "w@x.test"]), &mut conn, "peer", b"Subject: t\n\n.dot\n", None)
                .await;
        assert!(healthy);
        assert_eq!(
            summary(&results),
            vec![
                (0, Outcome::Sent, "2.0.0".into(), false),
                (1, Outcome::Bounced, "5.1.1".into(), false),
                (2, Outcome::Deferred, "4.3.0".into(), false)
            ]
        );
        assert_eq!(
            results.iter().find(|r| r.index == 1).unwrap().text,
            "host peer said: 550 5.1.1 <v@x.test>: no such user (in reply to RCPT TO command)"
        );
        drop(conn);
        let sent = server.await.unwrap();
        assert_eq!(sent[..4], ["MAIL FROM:<s@x.test>", "RCPT TO:<u@x.test>", "RCPT TO:<v@x.test>", "RCPT TO:<w@x.test>"]);
        assert_eq!(sent[5], "Subject: t\r\n\r\n..dot\r\n.");
    }

    /// A peer that offers PIPELINING and answers nothing until MAIL, both RCPTs and DATA have
    /// arrived: a client that waited for each reply would never get one.
    async fn pipelining_peer(
        mail: &'static str,
        rcpts: [&'static str; 2],
        data: &'static str,
    ) -> (Connection, tokio::task::JoinHandle<Vec<String>>) {
        connected(move |mut r, mut w| async move {
            w.write_all(b"220 peer.test\r\n").await.unwrap();
            let mut got = vec![next_line(&mut r).await.unwrap_or_default()];
            w.write_all(b"250-peer.test\r\n250 PIPELINING\r\n").await.unwrap();
            for _ in 0..4 {
                got.push(next_line(&mut r).await.unwrap_or_default());
            }
            w.write_all(format!("{mail}\r\n{}\r\n{}\r\n{data}\r\n", rcpts[0], rcpts[1]).as_bytes()).await.unwrap();
            if data.starts_with("354") {
                while let Some(line) = next_line(&mut r).await {
                    got.push(line.clone());
                    if line == ".\r\n" {
                        w.write_all(b"250 2.0.0 Ok: queued\r\n").await.unwrap();
                        break;
                    }
                }
            }
            // The session is in step: the next command gets the next reply.
            if let Some(line) = next_line(&mut r).await {
                got.push(line);
                w.write_all(b"250 2.0.0 Ok\r\n").await.unwrap();
            }
            got.iter().map(|l| l.trim_end().to_string()).collect()
        })
        .await
    }

    #[tokio::test]
    async fn pipelining_sends_mail_rcpt_and_data_in_one_go_and_stays_in_step() {
        struct Case {
            name: &'static str,
            mail: &'static str,
            rcpts: [&'static str; 2],
            data: &'static str,
            want: [Outcome; 2],
        }
        let cases = [
            Case {
                name: "accepted",
                mail: "250 Ok",
                rcpts: ["250 Ok", "550 5.1.1 no"],
                data: "354 go",
                want: [Outcome::Sent, Outcome::Bounced],
            },
            Case {
                name: "MAIL refused",
                mail: "452 4.3.1 full",
                rcpts: ["503 5.5.1 no MAIL", "503 5.5.1 no MAIL"],
                data: "503 5.5.1 no rcpt",
                want: [Outcome::Deferred, Outcome::Deferred],
            },
            Case {
                name: "no recipient",
                mail: "250 Ok",
                rcpts: ["550 5.1.1 no", "550 5.1.1 no"],
                data: "554 5.5.1 no valid recipients",
                want: [Outcome::Bounced, Outcome::Bounced],
            },
            Case {
                name: "354 without recipients",
                mail: "250 Ok",
                rcpts: ["550 5.1.1 no", "550 5.1.1 no"],
                data: "354 go",
                want: [Outcome::Bounced, Outcome::Bounced],
            },
        ];
        for c in cases {
            let (mut conn, server) = pipelining_peer(c.mail, c.rcpts, c.data).await;
            conn.read_reply().await.unwrap();
            hello(&session(), &mut conn, "peer", None).await.unwrap();
            assert!(conn.pipelining, "{}", c.name);
            let (results, healthy) =
                mail_transaction(&session(), &request(&["u@x.test", "v@x.test"]), &mut conn, "peer", b"Subject: t\n\nbody\n", None).await;
            assert!(healthy, "{}", c.name);
            assert_eq!(summary(&results).iter().map(|r| r.1).collect::<Vec<_>>(), c.want, "{}", c.name);
            assert!(reset(&session(), &mut conn).await, "{}: the RSET gets its own reply", c.name);
            drop(conn);
            let sent = server.await.unwrap();
            assert_eq!(sent[1..5], ["MAIL FROM:<s@x.test>", "RCPT TO:<u@x.test>", "RCPT TO:<v@x.test>", "DATA"], "{}", c.name);
            assert_eq!(sent.last().map(String::as_str), Some("RSET"), "{}", c.name);
        }
    }

    #[tokio::test]
    async fn a_probe_stops_after_rcpt() {
        let (mut conn, server) = peer(vec![
            Some("220 peer.test"),
            Some("250 2.1.0 Ok"),
            Some("250 2.1.5 Ok"),
            Some("550 5.1.1 <v@x.test>: Recipient address rejected: User unknown"),
            Some("250 2.0.0 Ok"),
        ])
        .await;
        conn.read_reply().await.unwrap();
        let probe = DeliveryRequest { verify_probe: true, ..request(&["u@x.test", "v@x.test"]) };
        let (results, healthy) = mail_transaction(&session(), &probe, &mut conn, "peer", b"", None).await;
        assert!(healthy, "kept for the next transaction's RSET");
        assert_eq!(summary(&results), vec![(0, Outcome::Sent, "2.1.5".into(), false), (1, Outcome::Bounced, "5.1.1".into(), false)]);
        assert_eq!(results[0].text, "250 2.1.5 Ok");
        // What the next transaction on this connection starts with: no DATA came before it.
        assert!(reset(&session(), &mut conn).await);
        drop(conn);
        let sent = server.await.unwrap();
        assert_eq!(sent, ["MAIL FROM:<s@x.test>", "RCPT TO:<u@x.test>", "RCPT TO:<v@x.test>", "RSET"]);
    }

    #[tokio::test]
    async fn dsn_requests_go_to_a_server_that_offers_dsn() {
        use crate::dsn::{Notify, Ret};
        use crate::queue::file::Recipient;
        let env = Envelope {
            sender: "s@x.test".into(),
            recipients: vec![
                Recipient {
                    address: "u@x.test".into(),
                    notify: Notify::parse("SUCCESS,DELAY"),
                    orcpt: Some("rfc822;U+1@x.test".into()),
                    ..Default::default()
                },
                Recipient { address: "v@x.test".into(), orig: Some("alias@x.test".into()), ..Default::default() },
            ],
            ret: Some(Ret::Hdrs),
            envid: Some("id=1 2".into()),
            ..Default::default()
        };
        for (dsn, want) in [
            (
                Some(&env),
                [
                    "MAIL FROM:<s@x.test> ENVID=id+3D1+202 RET=HDRS",
                    "RCPT TO:<u@x.test> ORCPT=rfc822;U+2B1@x.test NOTIFY=SUCCESS,DELAY",
                    "RCPT TO:<v@x.test> ORCPT=rfc822;alias@x.test",
                ],
            ),
            (None, ["MAIL FROM:<s@x.test>", "RCPT TO:<u@x.test>", "RCPT TO:<v@x.test>"]),
        ] {
            let script = vec![Some("220 peer"), Some("250 Ok"), Some("250 Ok"), Some("250 Ok"), Some("354 go"), Some("250 2.0.0 Ok")];
            let (mut conn, server) = peer(script).await;
            conn.read_reply().await.unwrap();
            let (results, _) = mail_transaction(&session(), &request(&["u@x.test", "v@x.test"]), &mut conn, "peer", b"x\n", dsn).await;
            assert!(results.iter().all(|r| r.outcome == Outcome::Sent && r.dsn_passed_on == dsn.is_some()), "{results:?}");
            drop(conn);
            assert_eq!(server.await.unwrap()[..3], want);
        }
    }

    #[tokio::test]
    async fn how_a_transaction_ends_decides_reuse() {
        struct Case {
            name: &'static str,
            script: Vec<Step>,
            want: Vec<(usize, Outcome, String, bool)>,
            healthy: bool,
        }
        let both = |outcome, dsn: &str, site| vec![(0, outcome, dsn.to_string(), site), (1, outcome, dsn.to_string(), site)];
        let cases = [
            Case {
                name: "MAIL rejected: the session is still usable",
                script: vec![Some("220 peer"), Some("553 5.7.1 sender refused")],
                want: both(Outcome::Bounced, "5.7.1", false),
                healthy: true,
            },
            Case {
                name: "no recipient accepted: no DATA",
                script: vec![Some("220 peer"), Some("250 Ok"), Some("550 5.1.1 no"), Some("550 5.1.1 no")],
                want: both(Outcome::Bounced, "5.1.1", false),
                healthy: true,
            },
            Case {
                name: "DATA refused",
                script: vec![Some("220 peer"), Some("250 Ok"), Some("250 Ok"), Some("250 Ok"), Some("451 4.3.0 not now")],
                want: both(Outcome::Deferred, "4.3.0", false),
                healthy: true,
            },
            Case {
                name: "lost after MAIL: never reused",
                script: vec![Some("220 peer"), Some("250 Ok"), None],
                want: both(Outcome::Deferred, "4.4.2", true),
                healthy: false,
            },
            Case {
                name: "end of data refused for good",
                script: vec![Some("220 peer"), Some("250 Ok"), Some("250 Ok"), Some("250 Ok"), Some("354 go"), Some("554 5.6.0 no")],
                want: both(Outcome::Bounced, "5.6.0", false),
                healthy: true,
            },
        ];
        for c in cases {
            let (mut conn, server) = peer(c.script).await;
            conn.read_reply().await.unwrap();
            let (results, healthy) =
                mail_transaction(&session(), &request(&["u@x.test", "v@x.test"]), &mut conn, "peer", b"x\n", None).await;
            assert_eq!(summary(&results), c.want, "{}", c.name);
            assert_eq!(healthy, c.healthy, "{}", c.name);
            drop(conn);
            server.await.unwrap();
        }
    }
}
