//! One client connection: read command lines with a time limit and a length limit, run them
//! through the session, write replies (batched while the client pipelines), read DATA, queue
//! the message durably before the 250 reply, and log Postfix's connect/disconnect lines.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use common::ipc::qmgr::QmgrTrigger;
use common::queue::QueueName;
use common::queue::file::{ClientInfo, Envelope, Recipient, now_us, write_new};
use common::{log_info, log_warning};

use crate::config::SmtpdConfig;
use crate::session::{Peer, Session, Step};

/// How a read ended other than with a line.
enum ReadEnd {
    Eof,
    Timeout,
    TooLong,
    Io,
}

/// Read one line of at most `max` bytes (the rest of a longer line is discarded).
async fn read_line(r: &mut BufReader<OwnedReadHalf>, max: usize, timeout: Duration) -> Result<Vec<u8>, ReadEnd> {
    let work = async {
        let mut line = Vec::new();
        let mut too_long = false;
        loop {
            let buf = r.fill_buf().await.map_err(|_| ReadEnd::Io)?;
            if buf.is_empty() {
                return Err(ReadEnd::Eof);
            }
            let (take, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            if !too_long {
                line.extend_from_slice(&buf[..take]);
                if line.len() > max {
                    too_long = true;
                    line.clear();
                }
            }
            r.consume(take);
            if done {
                return if too_long { Err(ReadEnd::TooLong) } else { Ok(line) };
            }
        }
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| ReadEnd::Timeout)?
}

fn trim_eol(mut line: Vec<u8>) -> Vec<u8> {
    if line.ends_with(b"\n") {
        line.pop();
    }
    if line.ends_with(b"\r") {
        line.pop();
    }
    line
}

struct Io {
    r: BufReader<OwnedReadHalf>,
    w: BufWriter<OwnedWriteHalf>,
}

impl Io {
    async fn reply(&mut self, text: &str) -> std::io::Result<()> {
        self.w.write_all(text.as_bytes()).await?;
        self.w.write_all(b"\r\n").await?;
        // While the client has pipelined more commands, keep collecting replies.
        if self.r.buffer().is_empty() {
            self.w.flush().await?;
        }
        Ok(())
    }
}

/// Serve one SMTP client until it quits, times out, errs too often or goes away.
pub async fn serve(stream: TcpStream, addr: SocketAddr, cfg: Arc<SmtpdConfig>) {
    let ip = addr.ip();
    let name = if ip.is_loopback() { "localhost" } else { "unknown" };
    let peer = Peer { name: name.to_string(), addr: ip };
    log_info!("connect from {}", peer.show());
    // Replies are already batched per pipelined group; do not let Nagle delay them further.
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    let mut io = Io { r: BufReader::new(r), w: BufWriter::new(w) };
    let mut s = Session::new(&cfg, peer);
    if io.reply(&format!("220 {}", cfg.banner)).await.is_err() || io.w.flush().await.is_err() {
        log_info!("lost connection after CONNECT from {}", s.peer.show());
        return;
    }
    loop {
        let line = match read_line(&mut io.r, cfg.line_length_limit, cfg.timeout).await {
            Ok(l) => trim_eol(l),
            Err(ReadEnd::TooLong) => {
                let reply = "500 5.5.0 Error: line too long";
                s.count("unknown", reply);
                if io.reply(reply).await.is_err() {
                    break;
                }
                continue;
            }
            Err(ReadEnd::Timeout) => {
                log_info!("timeout after {} from {}", s.last_command, s.peer.show());
                let _ = io.reply(&format!("421 4.4.2 {} Error: timeout exceeded", cfg.myhostname)).await;
                let _ = io.w.flush().await;
                break;
            }
            Err(ReadEnd::Eof | ReadEnd::Io) => {
                log_info!("lost connection after {} from {}", s.last_command, s.peer.show());
                break;
            }
        };
        let (verb, step) = s.command(&line);
        let (reply, close) = match step {
            Step::Reply(r) => (r, false),
            Step::Close(r) => (r, true),
            Step::Etrn { site, subdomains } => (crate::etrn::run(&s, &site, subdomains).await, false),
            Step::Data => {
                if io.reply("354 End data with <CR><LF>.<CR><LF>").await.is_err() || io.w.flush().await.is_err() {
                    break;
                }
                match read_data(&mut io, &mut s).await {
                    Some(r) => (r, false),
                    None => break,
                }
            }
        };
        s.count(&verb, &reply);
        if s.errors >= cfg.soft_error_limit && !(reply.starts_with('2') || reply.starts_with('3')) {
            tokio::time::sleep(cfg.error_sleep).await;
        }
        if io.reply(&reply).await.is_err() {
            log_info!("lost connection after {} from {}", s.last_command, s.peer.show());
            break;
        }
        if close {
            let _ = io.w.flush().await;
            break;
        }
        if s.errors >= cfg.hard_error_limit {
            log_info!("too many errors after {} from {}", s.last_command, s.peer.show());
            let _ = io.reply(&format!("421 4.7.0 {} Error: too many errors", cfg.myhostname)).await;
            let _ = io.w.flush().await;
            break;
        }
    }
    log_info!("disconnect from {} {}", s.peer.show(), s.stats());
}

/// Read the message after 354 and queue it. `None` when the client went away mid-DATA (no
/// queue file is left behind: nothing is written before the final dot).
async fn read_data(io: &mut Io, s: &mut Session<'_>) -> Option<String> {
    let cfg = s.cfg;
    let mut message = Vec::new();
    let mut too_big = false;
    loop {
        // Message lines may be long; they are bounded only by the message size limit.
        let line = match read_line(&mut io.r, cfg.message_size_limit.max(cfg.line_length_limit) + 2, cfg.timeout).await {
            Ok(l) => l,
            Err(ReadEnd::TooLong) => {
                too_big = true;
                continue;
            }
            Err(ReadEnd::Timeout) => {
                log_info!("timeout after DATA from {}", s.peer.show());
                let _ = io.reply(&format!("421 4.4.2 {} Error: timeout exceeded", cfg.myhostname)).await;
                let _ = io.w.flush().await;
                return None;
            }
            Err(_) => {
                log_info!("lost connection after DATA ({} bytes) from {}", message.len(), s.peer.show());
                return None;
            }
        };
        let line = trim_eol(line);
        if line == b"." {
            break;
        }
        let body = line.strip_prefix(b".").unwrap_or(&line);
        if message.len() + body.len() + 2 > cfg.message_size_limit {
            too_big = true;
        }
        if !too_big {
            // Bare LF and CRLF both end a line; the queue file always has CRLF.
            message.extend_from_slice(body);
            message.extend_from_slice(b"\r\n");
        }
    }
    let (Some(sender), recipients) = (s.sender.take(), std::mem::take(&mut s.recipients)) else {
        return Some("503 5.5.1 Error: need RCPT command".into());
    };
    if too_big {
        return Some("552 5.3.4 Message size exceeds fixed limit".into());
    }
    let helo = s.helo.clone().unwrap_or_default();
    let received = format!(
        "Received: from {helo} ({} [{}])\r\n\tby {} (Postern) with {};\r\n\t{}\r\n",
        s.peer.name,
        s.peer.addr,
        cfg.myhostname,
        s.proto(),
        common::datetime::rfc5322(std::time::SystemTime::now())
    );
    let mut full = received.into_bytes();
    full.extend_from_slice(&message);
    let env = Envelope {
        sender: sender.addr,
        recipients: recipients.into_iter().map(|a| Recipient { address: a.addr, orig: None }).collect(),
        arrival_us: now_us(),
        client: ClientInfo { name: s.peer.name.clone(), addr: s.peer.addr.to_string(), helo, protocol: s.proto().into() },
    };
    let spool = cfg.spool.clone();
    let written = tokio::task::spawn_blocking(move || write_new(&spool, QueueName::Incoming, &env, &full)).await;
    let id = match written {
        Ok(Ok(id)) => id,
        Ok(Err(e)) => {
            log_warning!("queue file write error: {e}");
            return Some("451 4.3.0 Error: queue file write error".into());
        }
        Err(e) => {
            log_warning!("queue file write error: {e}");
            return Some("451 4.3.0 Error: queue file write error".into());
        }
    };
    log_info!("{id}: client={}", s.peer.show());
    if let Some(mid) = message_id(&message) {
        log_info!("{id}: message-id={mid}");
    }
    // Queued behind earlier triggers on one connection; the 250 does not wait for it.
    cfg.qmgr_trigger.send(&[QmgrTrigger::ScanIncoming]);
    Some(format!("250 2.0.0 Ok: queued as {id}"))
}

/// The Message-ID header's value, if the header section has one.
fn message_id(message: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(message);
    for line in text.split("\r\n") {
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("message-id")
        {
            return Some(value.trim().to_string());
        }
    }
    None
}
