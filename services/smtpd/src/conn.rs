//! One client connection: read command lines with a time limit and a length limit, run them
//! through the session, write replies (batched while the client pipelines) with the same time
//! limit, stream DATA into a queue file that is durable before the 250 reply, and log
//! Postfix's connect/disconnect lines. The same loop serves plain and TLS connections: the
//! stream is an [`SmtpStream`], which STARTTLS turns from the one into the other.
//!
//! Memory per session does not grow with what the client sends: a command line is cut at
//! `line_length_limit`, and message content goes to the queue file in pieces of at most
//! [`WRITE_CHUNK`] bytes (see the manual page in lib.rs for the whole bound).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use common::daemon::SessionLimit;
use tokio::sync::watch;
use tokio::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;

use common::cleanup::{self, HeaderEnd, Originator};
use common::ipc::trigger::Trigger;
use common::queue::file::{Envelope, NewQueueFile, QueueError, WRITE_CHUNK};
use common::queue::{QueueId, QueueName, Spool};
use common::smtputf8::Source;
use common::{log_info, log_warning};

use crate::config::{BareNewline, SmtpdConfig};
use crate::data::{DataReader, Feed};
use crate::reply::Reply;
use crate::session::{Peer, Session, Step};
use crate::tls::ServerContext;
use common::tls::{SmtpStream, TlsInfo};

/// The connection with a read buffer (over a write buffer): commands are read from the one,
/// replies collected in the other.
pub(crate) type Buffered = BufReader<BufWriter<SmtpStream>>;

fn buffered(s: SmtpStream) -> Buffered {
    BufReader::new(BufWriter::new(s))
}

/// How a read ended other than with a line.
enum ReadEnd {
    Eof,
    Timeout,
    TooLong,
    Io,
}

/// A command line, without its line end.
struct Line {
    text: Vec<u8>,
    /// It ended in LF without CR.
    bare_lf: bool,
}

/// The deadline of one read: `smtpd_timeout` from `start`, or its stress value as soon as
/// the service comes under stress (a session idle for long gives up its slot at once then).
async fn read_deadline(start: Instant, cfg: &SmtpdConfig, stress: &mut watch::Receiver<bool>) {
    loop {
        let limit = if *stress.borrow_and_update() { cfg.stressed.timeout } else { cfg.normal.timeout };
        tokio::select! {
            _ = tokio::time::sleep_until(start + limit) => return,
            changed = stress.changed() => if changed.is_err() {
                // No more news about stress: the limit in force is final.
                return tokio::time::sleep_until(start + limit).await;
            },
        }
    }
}

/// Read one line of at most `max` bytes (the rest of a longer line is discarded).
async fn read_line(r: &mut Buffered, max: usize, deadline: impl Future<Output = ()>) -> Result<Line, ReadEnd> {
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
                    line = Vec::new();
                }
            }
            r.consume(take);
            if done {
                return if too_long { Err(ReadEnd::TooLong) } else { Ok(trim_eol(line)) };
            }
        }
    };
    tokio::select! {
        r = work => r,
        _ = deadline => Err(ReadEnd::Timeout),
    }
}

fn trim_eol(mut text: Vec<u8>) -> Line {
    text.pop(); // the LF
    let bare_lf = text.last() != Some(&b'\r');
    if !bare_lf {
        text.pop();
    }
    Line { text, bare_lf }
}

pub(crate) struct Io {
    /// Read with `fill_buf`/`consume`, written with `write_all` (which goes to the write buffer).
    r: Buffered,
    /// `smtpd_timeout`, for writes as for reads: a client that never reads its replies must
    /// not hold a session slot for ever.
    timeout: Duration,
}

impl Io {
    /// The connection with what is buffered either way, for an ODMR session that becomes the
    /// client on it; this `Io` is left detached (closing it does nothing).
    pub(crate) fn take_stream(&mut self) -> Buffered {
        std::mem::replace(&mut self.r, buffered(SmtpStream::Detached))
    }

    pub(crate) async fn reply(&mut self, text: &str) -> io::Result<()> {
        // While the client has pipelined more commands, keep collecting replies.
        let flush = self.r.buffer().is_empty();
        let write = async {
            self.r.write_all(text.as_bytes()).await?;
            self.r.write_all(b"\r\n").await?;
            if flush {
                self.r.flush().await?;
            }
            Ok(())
        };
        tokio::time::timeout(self.timeout, write).await.unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
    }

    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        tokio::time::timeout(self.timeout, self.r.flush()).await.unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
    }

    /// The TLS handshake, within `timeout`; the reason for Postfix's `SSL_accept error` line
    /// when it fails (the connection is unusable then). The read buffer goes unread: plaintext
    /// that a client pipelined after STARTTLS must not become a command under TLS
    /// (CVE-2011-0411). The reply to STARTTLS was flushed already, so the write buffer is empty.
    async fn start_tls(&mut self, context: &ServerContext, timeout: Duration) -> Result<TlsInfo, String> {
        let old = std::mem::replace(&mut self.r, buffered(SmtpStream::Detached));
        let SmtpStream::Plain(tcp) = old.into_inner().into_inner() else {
            return Err("TLS already active".into());
        };
        let (acceptor, signed) = context.acceptor();
        match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => {
                let info = TlsInfo::of(tls.get_ref().1, &signed);
                self.r = buffered(SmtpStream::Tls(Box::new(tls.into())));
                Ok(info)
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Err("lost connection".into()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("Connection timed out".into()),
        }
    }

    /// The end of a TLS session: close_notify, best effort within the time limit.
    async fn close(&mut self) {
        if self.r.get_ref().get_ref().is_tls() {
            let _ = tokio::time::timeout(self.timeout, self.r.shutdown()).await;
        }
    }

    /// A reply that ends the session: best effort, bounded by the time limit.
    async fn last_reply(&mut self, text: &str) {
        if self.reply(text).await.is_ok() {
            let _ = self.flush().await;
        }
    }
}

/// Log why a write failed: a time-out, or the client went away.
pub(crate) fn log_write_failure(e: &io::Error, s: &Session<'_>) {
    if e.kind() == io::ErrorKind::TimedOut {
        log_info!("timeout after {} from {}", s.last_command, s.peer.show());
    } else {
        log_info!("lost connection after {} from {}", s.last_command, s.peer.show());
    }
}

/// What `smtpd_forbid_bare_newline` means for this client.
fn bare_newline_policy(cfg: &SmtpdConfig, peer: &Peer) -> BareNewline {
    // An exclusion that cannot be looked up excludes nobody: the stricter policy applies.
    if cfg.bare_newline_exclusions.contains_or_not(peer.addr) { BareNewline::Normalize } else { cfg.bare_newline }
}

fn bare_lf_reply(cfg: &SmtpdConfig) -> Reply {
    Reply::new(cfg.bare_newline_reject_code, "5.5.2", format!("{} Error: bare <LF> received", cfg.myhostname))
}

/// Postfix's anvil checks at connect time: the reply that refuses the client, if any.
fn check_client_limits(s: &Session<'_>, conn: &crate::anvil::Connection) -> Option<String> {
    let (limits, cfg) = (&s.cfg.client_limits, s.cfg);
    if s.unlimited_client {
        return None;
    }
    let refuse = || format!("421 4.7.0 {} Error: too many connections from {}", cfg.myhostname, s.peer.addr);
    if limits.connection_count > 0 && conn.count > limits.connection_count {
        log_warning!("Connection concurrency limit exceeded: {} from {} for service {}", conn.count, s.peer.show(), cfg.service);
        return Some(refuse());
    }
    if limits.connection_rate > 0 && conn.rate > limits.connection_rate {
        log_warning!("Connection rate limit exceeded: {} from {} for service {}", conn.rate, s.peer.show(), cfg.service);
        return Some(refuse());
    }
    None
}

/// Serve one SMTP client until it quits, times out, errs too often or goes away. `sessions`
/// says whether other clients wait for a session slot, and may ask an idle session for its.
pub async fn serve(stream: TcpStream, addr: SocketAddr, cfg: Arc<SmtpdConfig>, sessions: SessionLimit) {
    // Replies are already batched per pipelined group; do not let Nagle delay them further.
    let _ = stream.set_nodelay(true);
    let local_addr = stream.local_addr().ok().map(|a| a.ip());
    serve_stream(SmtpStream::Plain(stream), addr.ip(), local_addr, None, &cfg, &sessions).await;
}

/// Serve an ODMR provider on the connection this process (the customer, RFC 2645) opened to
/// it, after its `250` to ATRN: the same session as for any client, on a stream that may be
/// in TLS already (`tls`, negotiated as the client; the session then refuses STARTTLS).
pub async fn serve_reversed(stream: SmtpStream, addr: SocketAddr, tls: Option<TlsInfo>, cfg: &SmtpdConfig, sessions: &SessionLimit) {
    let local_addr = match &stream {
        SmtpStream::Plain(s) => s.local_addr().ok(),
        SmtpStream::Tls(s) => s.get_ref().0.local_addr().ok(),
        SmtpStream::Detached => None,
    };
    serve_stream(stream, addr.ip(), local_addr.map(|a| a.ip()), tls, cfg, sessions).await;
}

/// The session from `connect from` to `disconnect from`.
async fn serve_stream(
    stream: SmtpStream,
    ip: IpAddr,
    local_addr: Option<IpAddr>,
    tls: Option<TlsInfo>,
    cfg: &SmtpdConfig,
    sessions: &SessionLimit,
) {
    let name = if ip.is_loopback() { "localhost" } else { "unknown" };
    let peer = Peer { name: name.to_string(), addr: ip };
    log_info!("connect from {}", peer.show());
    let mut io = Io { r: buffered(stream), timeout: cfg.normal.timeout };
    let mut s = Session::new(cfg, peer);
    s.local_addr = local_addr;
    match tls {
        Some(info) => s.tls_started(info),
        None if cfg.tls.wrappermode && !wrapper_handshake(&mut io, &mut s).await => {
            log_info!("disconnect from {} {}", s.peer.show(), s.stats());
            return;
        }
        None => {}
    }
    session_loop(&mut io, &mut s, sessions).await;
    io.close().await;
    log_info!("disconnect from {} {}", s.peer.show(), s.stats());
}

/// TLS before the greeting (`smtpd_tls_wrappermode`); false when the client must go.
async fn wrapper_handshake(io: &mut Io, s: &mut Session<'_>) -> bool {
    let cfg = s.cfg;
    let Some(context) = &cfg.tls.context else {
        log_warning!(
            "Wrapper-mode request dropped from {} for service {}. TLS context initialization failed. For details see earlier warnings in your logs.",
            s.peer.show(),
            cfg.service
        );
        return false;
    };
    tls_handshake(io, s, context).await
}

/// The handshake and its log lines; false when it failed (the connection is lost then).
async fn tls_handshake(io: &mut Io, s: &mut Session<'_>, context: &ServerContext) -> bool {
    match io.start_tls(context, s.limits().starttls_timeout).await {
        Ok(info) => {
            if s.cfg.tls.loglevel >= 1 {
                log_info!("{}", info.summary(&s.peer.show()));
            }
            s.tls_started(info);
            true
        }
        Err(why) => {
            log_info!("SSL_accept error from {}: {why}", s.peer.show());
            log_info!("lost connection after {} from {}", s.last_command, s.peer.show());
            false
        }
    }
}

/// Greet the client and serve its commands until the session ends.
async fn session_loop(io: &mut Io, s: &mut Session<'_>, sessions: &SessionLimit) {
    let cfg = s.cfg;
    let mut stress = sessions.stress();
    let ip = s.peer.addr;
    let bare_newline = bare_newline_policy(cfg, &s.peer);
    let counted = cfg.anvil.connect(ip, cfg.client_limits.rate_time_unit);
    // Instead of the greeting, as Postfix does.
    let greeting = check_client_limits(s, &counted).unwrap_or_else(|| format!("220 {}", cfg.banner));
    if let Err(e) = io.reply(&greeting).await.and(io.flush().await) {
        log_write_failure(&e, s);
        return;
    }
    if !greeting.starts_with("220") {
        return;
    }
    // smtpd_delay_reject = no: the client restrictions right after the greeting, as Postfix.
    if let Some(refused) = s.check_connect() {
        s.errors += 1;
        if let Err(e) = io.reply(&refused.to_string()).await.and(io.flush().await) {
            log_write_failure(&e, s);
            return;
        }
    }
    // A Dovecot backend must have told its mechanisms before EHLO can list them.
    cfg.sasl.prepare().await;
    loop {
        s.stressed = *stress.borrow();
        io.timeout = s.limits().timeout;
        // Waiting for a command (none pipelined yet): a session the service may ask to give up
        // its slot.
        let idle = (!io.r.buffer().contains(&b'\n')).then(|| sessions.idle());
        let deadline = async {
            let evicted = async {
                match &idle {
                    Some(i) => i.evicted().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = read_deadline(Instant::now(), cfg, &mut stress) => {}
                _ = evicted => {}
            }
        };
        let read = read_line(&mut io.r, cfg.line_length_limit, deadline).await;
        drop(idle);
        let line = match read {
            Ok(l) => l,
            Err(ReadEnd::TooLong) => {
                let reply = Reply::new(500, "5.5.0", "Error: line too long");
                s.count("unknown", &reply);
                if let Err(e) = io.reply(&reply.to_string()).await {
                    log_write_failure(&e, s);
                    break;
                }
                continue;
            }
            Err(ReadEnd::Timeout) => {
                log_info!("timeout after {} from {}", s.last_command, s.peer.show());
                io.last_reply(&format!("421 4.4.2 {} Error: timeout exceeded", cfg.myhostname)).await;
                break;
            }
            Err(ReadEnd::Eof | ReadEnd::Io) => {
                log_info!("lost connection after {} from {}", s.last_command, s.peer.show());
                break;
            }
        };
        if line.bare_lf {
            match bare_newline {
                BareNewline::Reject => {
                    s.log_reject("bare <LF> received");
                    io.last_reply(&bare_lf_reply(cfg).to_string()).await;
                    break;
                }
                BareNewline::Note => s.note_bare_lf = true,
                BareNewline::Normalize => {}
            }
        }
        // For reject_unauth_pipelining: what the client sent beyond this command.
        let pending = io.r.buffer();
        s.restrict.pending_input = pending[..pending.len().min(100)].to_vec();
        crate::restrict::dnsbl::prefetch(s, &line.text).await;
        let (verb, step) = loop {
            let (verb, step) = match &cfg.odmr {
                Some(_) => crate::odmr::command(s, &line.text),
                None => s.command(&line.text),
            };
            // reject_unverified_recipient: ask the verify service, then evaluate the command
            // again with its answer (once per address: a second stop falls through below).
            let Step::Verify { address } = &step else { break (verb, step) };
            let Some(check) = cfg.restrict.verify.as_ref().filter(|_| !s.restrict.verified.contains_key(address)) else {
                break (verb, step);
            };
            let answer = crate::restrict::verify::ask(check, address).await;
            s.restrict.verified.insert(address.clone(), answer);
            // The evaluation that stopped asked for its `sleep` time already; the next asks again.
            s.restrict.take_sleep();
        };
        s.restrict.verified.clear();
        // `sleep N` in a restriction list: the reply waits.
        let pause = s.restrict.take_sleep();
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        let (reply, then) = match step {
            Step::Reply(r) => (r, Then::Next),
            Step::Close(r) => (r, Then::Close),
            // The evaluation stopped again for an address it has an answer for: an internal
            // error, answered as a temporary failure rather than a loop.
            Step::Verify { address } => {
                common::log_warning!("address verification of {address} did not settle the restrictions");
                (Reply::new(451, "4.3.0", "Error: internal error"), Then::Next)
            }
            Step::StartTls(r) => (r, Then::StartTls),
            Step::Etrn { site, subdomains } => (crate::etrn::run(s, &site, subdomains).await, Then::Next),
            Step::Atrn { domains } => {
                let Some(odmr) = cfg.odmr.clone() else { break };
                match crate::odmr::run(io, s, &odmr, domains).await {
                    Some(r) => (r, Then::Next),
                    // Reversed: the session ended on the customer's side of the connection.
                    None => break,
                }
            }
            Step::Auth { mechanism, initial } => match authenticate(io, s, &mechanism, initial).await {
                Some(r) => (r, Then::Next),
                None => break,
            },
            Step::Data(env) => {
                if let Err(e) = io.reply("354 End data with <CR><LF>.<CR><LF>").await.and(io.flush().await) {
                    log_write_failure(&e, s);
                    break;
                }
                let reply = receive_message(io, s, *env, bare_newline).await;
                s.reset();
                match reply {
                    Some(r) => (r, Then::Next),
                    None => break,
                }
            }
        };
        // ETRN's restrictions ran in the step.
        let pause = s.restrict.take_sleep();
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        s.count(&verb, &reply);
        // A failed login waits even below the soft error limit, as Dovecot's
        // auth_failure_delay does: password guessing gets one try per smtpd_error_sleep_time.
        let failed_login = verb == "auth" && reply.code == 535;
        if (s.errors >= cfg.soft_error_limit || failed_login) && !reply.is_success() {
            tokio::time::sleep(cfg.error_sleep).await;
        }
        if let Err(e) = io.reply(&reply.to_string()).await {
            log_write_failure(&e, s);
            break;
        }
        match then {
            Then::Next => {}
            Then::Close => {
                let _ = io.flush().await;
                break;
            }
            Then::StartTls => {
                // The 220 must reach the client now, whatever else it pipelined.
                if let Err(e) = io.flush().await {
                    log_write_failure(&e, s);
                    break;
                }
                let Some(context) = &cfg.tls.context else { break };
                if !tls_handshake(io, s, context).await {
                    break;
                }
                continue;
            }
        }
        if s.errors >= s.limits().hard_error_limit {
            log_info!("too many errors after {} from {}", s.last_command, s.peer.show());
            io.last_reply(&format!("421 4.7.0 {} Error: too many errors", cfg.myhostname)).await;
            break;
        }
    }
}

/// What the loop does after a reply.
enum Then {
    Next,
    Close,
    StartTls,
}

/// Challenges per AUTH at most (PLAIN needs one, LOGIN two; Dovecot's SCRAM three).
const MAX_CHALLENGES: usize = 8;

/// Run one SASL exchange: 334 challenges out, responses (at most `smtpd_sasl_response_limit`
/// long) in, until the backend decides. `None` when the client went away or timed out.
async fn authenticate(io: &mut Io, s: &mut Session<'_>, mechanism: &str, initial: Option<String>) -> Option<Reply> {
    let cfg = s.cfg;
    let Some(backend) = &cfg.sasl.backend else {
        return Some(Reply::new(503, "5.5.1", "Error: authentication not enabled"));
    };
    let (mut exchange, mut outcome) = backend.start(mechanism, initial.as_deref(), &s.auth_context()).await;
    for _ in 0..MAX_CHALLENGES {
        let crate::sasl::Outcome::Challenge(challenge) = &outcome else { break };
        let sent = io.reply(&Session::auth_challenge(challenge).to_string()).await;
        if let Err(e) = sent.and(io.flush().await) {
            log_write_failure(&e, s);
            return None;
        }
        let deadline = tokio::time::sleep(s.limits().timeout);
        let line = match read_line(&mut io.r, cfg.sasl.response_limit, deadline).await {
            Ok(l) => l,
            Err(ReadEnd::TooLong) => return Some(Reply::new(500, "5.5.6", "SASL response limit exceeded")),
            Err(ReadEnd::Timeout) => {
                log_info!("timeout after {} from {}", s.last_command, s.peer.show());
                io.last_reply(&format!("421 4.4.2 {} Error: timeout exceeded", cfg.myhostname)).await;
                return None;
            }
            Err(ReadEnd::Eof | ReadEnd::Io) => {
                log_info!("lost connection after {} from {}", s.last_command, s.peer.show());
                return None;
            }
        };
        match s.auth_response(mechanism, &line.text) {
            Ok(response) => outcome = exchange.next(&response).await,
            Err(reply) => return Some(reply),
        }
    }
    Some(s.auth_finished(mechanism, outcome))
}

/// The reply for a queue file that could not be written.
fn write_error_reply(e: &QueueError) -> Reply {
    log_warning!("queue file write error: {e}");
    match e {
        QueueError::Io { source, .. } if matches!(source.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded) => {
            Reply::new(452, "4.3.1", "Insufficient system storage")
        }
        _ => Reply::new(451, "4.3.0", "Error: queue file write error"),
    }
}

/// Run queue file work off the session's thread (writes may wait for the disk).
async fn off_thread<T: Send + 'static>(
    spool: &Spool,
    work: impl FnOnce() -> Result<T, QueueError> + Send + 'static,
) -> Result<T, QueueError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(QueueError::Io { path: spool.queue_dir(QueueName::Incoming), source: io::Error::other(e.to_string()) }))
}

/// Start the queue file (its ID goes into our Received: header); with `autodetect`, with room
/// for the SMTPUTF8 request that a header may still make.
async fn create(spool: &Spool, env: &Arc<Envelope>, queue: QueueName, autodetect: bool) -> Result<NewQueueFile, QueueError> {
    let (spool2, env) = (spool.clone(), env.clone());
    off_thread(spool, move || {
        if autodetect { NewQueueFile::create_smtputf8_undecided(&spool2, queue, &env) } else { NewQueueFile::create(&spool2, queue, &env) }
    })
    .await
}

/// Hand one piece of the message to the queue file; the emptied buffer comes back for the next
/// piece.
async fn store_piece(spool: &Spool, mut file: NewQueueFile, mut piece: Vec<u8>) -> Result<(NewQueueFile, Vec<u8>), QueueError> {
    off_thread(spool, move || {
        file.write(&piece)?;
        piece.clear();
        Ok((file, piece))
    })
    .await
}

/// Write the last piece, make the envelope ask for SMTPUTF8 when `smtputf8` (autodetected in
/// the headers), make the file durable and give it its name.
async fn commit(spool: &Spool, file: NewQueueFile, piece: Vec<u8>, smtputf8: bool) -> Result<QueueId, QueueError> {
    let (mut file, _) = store_piece(spool, file, piece).await?;
    let spool2 = spool.clone();
    off_thread(spool, move || {
        if smtputf8 {
            file.request_smtputf8()?;
        }
        file.commit(&spool2)
    })
    .await
}

/// Postfix's `Received:` header: who (HELO name, reverse name, address), how (TLS, login),
/// by whom with which protocol, the queue ID, the recipient when there is only one, and when.
fn received_header(s: &Session<'_>, env: &Envelope, id: &QueueId) -> String {
    let cfg = s.cfg;
    let tls_clause = match s.tls() {
        Some(info) if cfg.tls.received_header => info.received_clause(),
        _ => String::new(),
    };
    let auth_comment = s.received_auth_comment().map_or_else(String::new, |c| format!("\t{c}\r\n"));
    let client = &env.client;
    let helo = if client.helo.is_empty() { &client.name } else { &client.helo };
    let by = format!("\tby {} ({}) with {} id {id}", cfg.myhostname, cfg.mail_name, client.protocol);
    let date = common::datetime::rfc5322(common::datetime::from_us(env.arrival_us));
    let when = match env.recipients.as_slice() {
        [only] => format!("{by}\r\n\tfor <{}>; {date}\r\n", only.address),
        _ => format!("{by};\r\n\t{date}\r\n"),
    };
    format!("Received: from {helo} ({} [{}])\r\n{tls_clause}{auth_comment}{when}", client.name, client.addr)
}

/// What cleanup adds at the end of the header section (for a local submission, or with
/// `always_add_missing_headers`), and the message-id log texts.
fn header_end(s: &Session<'_>, env: &Envelope, file: &NewQueueFile, reader: &DataReader) -> HeaderEnd {
    let cfg = s.cfg;
    let origin = Originator {
        queue_id: file.id(),
        created: file.created(),
        arrival: common::datetime::from_us(env.arrival_us),
        myhostname: &cfg.myhostname,
        sender: &env.sender,
        fullname: None,
        undisclosed_recipients: &cfg.headers.undisclosed_recipients,
    };
    cleanup::header_end(&reader.headers, s.local_submission || cfg.headers.always_add, &origin)
}

/// Receive the message after 354 and queue it. `None` when the client went away mid-DATA or
/// timed out (no queue file is left behind: a file gets its name only after the final dot).
/// The transaction stays in `s` for the log lines; the caller resets it.
async fn receive_message(io: &mut Io, s: &mut Session<'_>, env: Envelope, bare_newline: BareNewline) -> Option<Reply> {
    let cfg = s.cfg;
    let env = Arc::new(env);
    // HOLD: the queue manager leaves the message alone until `postsuper -H`. DISCARD: the
    // message is written where the queue manager never looks, and removed once it has its ID.
    let queue = if s.restrict.hold || s.restrict.discard { QueueName::Hold } else { QueueName::Incoming };
    let mut reader = DataReader::new();
    let mut piece = Vec::with_capacity(WRITE_CHUNK + 8192);
    // Once set, the rest of the message is read and thrown away, and this is the reply.
    let mut refused: Option<Reply> = None;
    // smtpd's mail autodetected (smtputf8_autodetect_classes) and no envelope address asked for
    // SMTPUTF8 yet: a header that is not ASCII still may, as in Postfix's cleanup.
    let autodetect = !env.smtputf8 && cfg.smtputf8.autodetect.covers(Source::Smtpd);
    let mut file = match create(&cfg.spool, &env, queue, autodetect).await {
        Ok(f) => {
            piece.extend_from_slice(received_header(s, &env, f.id()).as_bytes());
            Some(f)
        }
        Err(e) => {
            refused = Some(write_error_reply(&e));
            None
        }
    };
    let mut header_log = Vec::new();
    loop {
        let buf = match tokio::time::timeout(io.timeout, io.r.fill_buf()).await {
            Ok(Ok(buf)) if !buf.is_empty() => buf,
            Ok(_) => {
                log_info!("lost connection after DATA ({} bytes) from {}", reader.size, s.peer.show());
                return None;
            }
            Err(_) => {
                log_info!("timeout after DATA ({} bytes) from {}", reader.size, s.peer.show());
                io.last_reply(&format!("421 4.4.2 {} Error: timeout exceeded", cfg.myhostname)).await;
                return None;
            }
        };
        let fed = reader.feed(buf, &mut piece);
        let used = match fed {
            Feed::More => buf.len(),
            Feed::End(n) | Feed::HeaderEnd(n) => n,
        };
        io.r.consume(used);
        // The header section ended (or the message ends inside it): cleanup's additions go
        // at its end.
        let header_done = matches!(fed, Feed::HeaderEnd(_)) || (matches!(fed, Feed::End(_)) && reader.in_headers());
        if header_done && let Some(f) = &file {
            let done = header_end(s, &env, f, &reader);
            piece.extend_from_slice(done.headers.as_bytes());
            header_log = done.log;
        }
        if refused.is_none()
            && let Some(limit) = cfg.message_size_limit
            && reader.size > limit
        {
            log_warning!("NOQUEUE: queue file size limit exceeded");
            refused = Some(Reply::new(552, "5.3.4", "Message size exceeds fixed limit"));
            file = None;
        }
        if refused.is_some() {
            piece.clear();
        } else if piece.len() >= WRITE_CHUNK
            && let Some(f) = file.take()
        {
            match store_piece(&cfg.spool, f, std::mem::take(&mut piece)).await {
                Ok((f, p)) => (file, piece) = (Some(f), p),
                Err(e) => refused = Some(write_error_reply(&e)),
            }
        }
        if matches!(fed, Feed::End(_)) {
            break;
        }
    }
    if reader.bare_lf {
        match bare_newline {
            BareNewline::Reject => {
                s.log_reject("bare <LF> received");
                return Some(bare_lf_reply(cfg));
            }
            BareNewline::Note => s.note_bare_lf = true,
            BareNewline::Normalize => {}
        }
    }
    if let Some(reply) = refused {
        return Some(reply);
    }
    // Our own Received: header counts, as in Postfix's cleanup.
    if reader.headers.received + 1 > cfg.hopcount_limit {
        let reply = Reply::new(554, "5.4.0", "Error: too many hops");
        s.log_reject(&reply.first_line());
        return Some(reply);
    }
    let Some(file) = file else { return Some(Reply::new(451, "4.3.0", "Error: queue file write error")) };
    let id = match commit(&cfg.spool, file, piece, autodetect && reader.header_not_ascii).await {
        Ok(id) => id,
        Err(e) => return Some(write_error_reply(&e)),
    };
    if s.restrict.discard {
        if let Err(e) = std::fs::remove_file(cfg.spool.path(QueueName::Hold, &id)) {
            log_warning!("{id}: remove discarded message: {e}");
        }
        log_info!("{id}: client={}{}", s.peer.show(), s.sasl_log_suffix());
        s.message_received();
        return Some(Reply::new(250, "2.0.0", format!("Ok: queued as {id}")));
    }
    log_info!("{id}: client={}{}", s.peer.show(), s.sasl_log_suffix());
    for text in &header_log {
        log_info!("{id}: {text}");
    }
    // Queued behind earlier triggers on one connection; the 250 does not wait for it.
    if queue == QueueName::Incoming {
        cfg.qmgr_trigger.post(&[Trigger::ScanIncoming]);
    }
    s.message_received();
    Some(Reply::new(250, "2.0.0", format!("Ok: queued as {id}")))
}
