//! The SMTP session state machine, without I/O: a command line goes in, the next step comes out
//! (a reply, the start of DATA, an ETRN to run, a TLS handshake, or the end). Reply texts are
//! Postfix's.

use std::collections::BTreeMap;
use std::net::IpAddr;

use common::dsn::{Notify, Ret, parse_envid, parse_orcpt};
use common::queue::file::{ClientInfo, Envelope, Recipient, now_us};
use common::text::printable;

use crate::address::{Address, parse_path};
use crate::config::SmtpdConfig;
use crate::reply::Reply;
use crate::restrict::Unverified;
use common::tls::TlsInfo;

/// What the connection loop does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Reply(Reply),
    /// Send 354 and read the message, to be queued with this envelope (the transaction has a
    /// sender and recipients: DATA's checks are the session's alone).
    Data(Box<Envelope>),
    /// Run ETRN for `site` (`subdomains` for `ETRN @site`).
    Etrn {
        site: String,
        subdomains: bool,
    },
    /// Run ATRN (an ODMR service, [`crate::odmr`]) for these domains (none: every domain of
    /// the login).
    Atrn {
        domains: Vec<String>,
    },
    /// Ask the verify service about `address` (`reject_unverified_recipient`), keep the answer
    /// in the restriction state, and run the same command again.
    Verify {
        address: String,
    },
    /// Send the reply and close.
    Close(Reply),
    /// Send the reply (220), drop whatever the client sent after STARTTLS, and do the TLS
    /// handshake; then [`Session::tls_started`].
    StartTls(Reply),
    /// Run a SASL exchange (conn.rs sends the challenges and feeds the responses through
    /// [`Session::auth_response`], then ends it with [`Session::auth_finished`]).
    Auth {
        /// Upper case, one the backend offers.
        mechanism: String,
        /// The initial response (base64 characters; `=` for an empty one).
        initial: Option<String>,
    },
}

/// Who logged in, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslLogin {
    pub method: String,
    pub username: String,
}

/// Who is on the other end.
#[derive(Debug, Clone)]
pub struct Peer {
    pub name: String,
    pub addr: IpAddr,
}

impl Peer {
    /// `name[addr]`, as in every log line.
    pub fn show(&self) -> String {
        format!("{}[{}]", self.name, self.addr)
    }
}

pub struct Session<'a> {
    pub cfg: &'a SmtpdConfig,
    pub peer: Peer,
    pub helo: Option<String>,
    pub esmtp: bool,
    pub sender: Option<Address>,
    pub recipients: Vec<Address>,
    pub errors: u32,
    pub junk: u32,
    /// Per-command (successes, total), for the disconnect line.
    counts: BTreeMap<String, (u32, u32)>,
    pub last_command: String,
    /// A line ended in a bare LF (`smtpd_forbid_bare_newline = note`): `notes=bare_lf`.
    pub note_bare_lf: bool,
    /// Clients wait for a session slot: the stress limits apply.
    pub stressed: bool,
    /// The client is exempt from per-client limits (`smtpd_client_event_limit_exceptions`).
    pub unlimited_client: bool,
    /// What the TLS handshake negotiated, once TLS is active.
    tls: Option<TlsInfo>,
    /// After a successful AUTH.
    pub sasl_login: Option<SaslLogin>,
    /// Our end of the connection (Dovecot's `lip=`), when known.
    pub local_addr: Option<IpAddr>,
    /// What the restriction lists remember (crate::restrict).
    pub restrict: crate::restrict::State,
    /// The transaction is a local submission (`local_header_rewrite_clients`, decided at MAIL).
    pub local_submission: bool,
    /// The client declared SMTPUTF8 at MAIL (crate::smtputf8).
    pub smtputf8: bool,
    /// MAIL's `RET=` and `ENVID=` (RFC 3461), for the queue file.
    dsn_ret: Option<Ret>,
    dsn_envid: Option<String>,
    /// RCPT's `NOTIFY=` and ORCPT (the client's, else `rfc822;` and the address as received,
    /// as Postfix records it), one per entry of `recipients`.
    dsn_rcpt: Vec<(Option<Notify>, String)>,
}

/// The commands smtpd counts, in the order of Postfix's `smtpd_cmd_table`: the disconnect line
/// lists them in this order (then `unknown`), and log parsers such as the Prometheus exporter
/// rely on it.
const KNOWN: [&str; 17] = [
    "helo", "ehlo", "xclient", "xforward", "starttls", "auth", "mail", "rcpt", "data", "bdat", "rset", "noop", "vrfy", "etrn", "atrn",
    "quit", "help",
];

/// The commands Postfix allows before STARTTLS when TLS is required (`SMTPD_CMD_FLAG_PRE_TLS`).
const PRE_TLS: [&str; 7] = ["helo", "ehlo", "starttls", "noop", "quit", "help", "xclient"];

impl<'a> Session<'a> {
    pub fn new(cfg: &'a SmtpdConfig, peer: Peer) -> Session<'a> {
        let peer_addr = peer.addr;
        Session {
            cfg,
            peer,
            helo: None,
            esmtp: false,
            sender: None,
            recipients: Vec::new(),
            errors: 0,
            junk: 0,
            counts: BTreeMap::new(),
            last_command: "CONNECT".into(),
            note_bare_lf: false,
            stressed: false,
            unlimited_client: cfg.client_limits.exceptions.contains_or_not(peer_addr),
            tls: None,
            sasl_login: None,
            local_addr: None,
            restrict: crate::restrict::State::default(),
            local_submission: false,
            smtputf8: false,
            dsn_ret: None,
            dsn_envid: None,
            dsn_rcpt: Vec::new(),
        }
    }

    /// TLS is active (after STARTTLS, or from the start in wrapper mode).
    pub fn encrypted(&self) -> bool {
        self.tls.is_some()
    }

    /// What the TLS handshake negotiated, while TLS is active.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// The handshake after [`Step::StartTls`] (or a wrapper-mode connect) succeeded. The
    /// client starts over with EHLO: nothing said in plaintext carries over (RFC 3207 4.2).
    pub fn tls_started(&mut self, info: TlsInfo) {
        self.tls = Some(info);
        self.forget_client();
        // Nothing learnt in plaintext carries over, a login included (RFC 3207 4.2; Postfix's
        // smtpd_start_tls resets SASL too).
        self.sasl_login = None;
    }

    /// Postfix's `helo_reset`, `mail_reset` and `rcpt_reset`.
    fn forget_client(&mut self) {
        self.helo = None;
        self.esmtp = false;
        self.reset();
    }

    /// The protocol for the `Received:` header (RFC 3848): `ESMTPS` under TLS, `ESMTPA` after
    /// AUTH, `ESMTPSA` for both.
    pub fn received_protocol(&self) -> String {
        let mut p = if self.smtputf8 { "UTF8SMTP".to_string() } else { self.proto().to_string() };
        if self.esmtp {
            if self.encrypted() {
                p.push('S');
            }
            if self.sasl_login.is_some() {
                p.push('A');
            }
        }
        p
    }

    pub fn proto(&self) -> &'static str {
        if self.esmtp { "ESMTP" } else { "SMTP" }
    }

    /// Count a command and whether it succeeded (a 2xx or 3xx reply).
    pub fn count(&mut self, verb: &str, reply: &Reply) {
        let name = if KNOWN.contains(&verb) { verb.to_string() } else { "unknown".to_string() };
        let ok = reply.is_success();
        let c = self.counts.entry(name).or_insert((0, 0));
        c.1 += 1;
        if ok {
            c.0 += 1;
        } else if reply.is_error() && !std::mem::take(&mut self.restrict.uncounted) {
            self.errors += 1;
        }
    }

    /// `ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4`.
    pub fn stats(&self) -> String {
        let show = |(ok, total): (u32, u32)| if ok == total { total.to_string() } else { format!("{ok}/{total}") };
        let mut parts: Vec<String> = KNOWN
            .iter()
            .chain(std::iter::once(&"unknown"))
            .filter_map(|n| self.counts.get(*n).map(|c| format!("{n}={}", show(*c))))
            .collect();
        let total = self.counts.values().fold((0, 0), |a, c| (a.0 + c.0, a.1 + c.1));
        parts.push(format!("commands={}", show(total)));
        if self.note_bare_lf {
            parts.push("notes=bare_lf".into());
        }
        parts.join(" ")
    }

    pub fn reset(&mut self) {
        self.sender = None;
        self.smtputf8 = false;
        self.recipients.clear();
        self.dsn_ret = None;
        self.dsn_envid = None;
        self.dsn_rcpt.clear();
        self.restrict.reset_transaction();
    }

    /// Log a refusal the way Postfix's `log_whatsup` does:
    /// `NOQUEUE: reject: DATA from name[addr]: text; from=<s> to=<r> proto=ESMTP helo=<h>`.
    pub fn log_reject(&self, text: &str) {
        let sender = self.sender.as_ref().map(|a| a.addr.as_str());
        crate::restrict::log_whatsup(self, "reject", text, sender, self.recipients.last().map(|r| r.addr.as_str()));
    }

    /// A message was queued: past errors are forgiven, as Postfix does after cleanup succeeds
    /// (a client that sends many messages on one session, with RSET between them, is no junk
    /// sender).
    pub fn message_received(&mut self) {
        self.errors = 0;
        self.junk = 0;
    }

    pub fn in_transaction(&self) -> bool {
        self.sender.is_some()
    }

    /// Handle one command line (without CRLF). The verb is returned for counting.
    pub fn command(&mut self, line: &[u8]) -> (String, Step) {
        let Ok(line) = std::str::from_utf8(line) else {
            return ("unknown".into(), Step::Reply(Reply::new(500, "5.5.2", "Error: bad UTF-8 syntax")));
        };
        if line.contains('\0') || line.trim().is_empty() {
            return ("unknown".into(), Step::Reply(Reply::new(500, "5.5.2", "Error: bad syntax")));
        }
        let (verb, arg) = match line.split_once(' ') {
            Some((v, a)) => (v, a.trim()),
            None => (line.trim_end(), ""),
        };
        let verb = verb.to_ascii_lowercase();
        self.last_command = verb.to_ascii_uppercase();
        self.note_pipelining(&verb);
        if let Some(denied) = &self.restrict.access_denied
            && verb != "quit"
        {
            // Postfix answers 421 replies again, anything else with this (RFC 5321 3.1).
            return (
                verb,
                Step::Reply(if denied.code == 421 {
                    denied.clone()
                } else {
                    Reply::new(503, "5.7.0", format!("Error: access denied for {}", self.peer.show()))
                }),
            );
        }
        if self.cfg.tls.required() && !self.encrypted() && KNOWN.contains(&verb.as_str()) && !PRE_TLS.contains(&verb.as_str()) {
            return (verb, Step::Reply(Reply::new(530, "5.7.0", "Must issue a STARTTLS command first")));
        }
        let step = match verb.as_str() {
            "ehlo" => self.ehlo(arg, true),
            "helo" => self.ehlo(arg, false),
            "mail" => self.mail(arg),
            "rcpt" => self.rcpt(arg),
            "data" => self.data(arg),
            "rset" => {
                self.reset();
                self.junk_reply(Reply::new(250, "2.0.0", "Ok"))
            }
            "noop" => self.junk_reply(Reply::new(250, "2.0.0", "Ok")),
            "vrfy" => {
                let r = if arg.is_empty() { Reply::new(501, "5.5.4", "Syntax: VRFY address") } else { Reply::new(252, "2.0.0", arg) };
                self.junk_reply(r)
            }
            "help" => Step::Reply(Reply::new(214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY ETRN HELP")),
            "quit" => Step::Close(Reply::new(221, "2.0.0", "Bye")),
            "etrn" => self.etrn(arg),
            "starttls" => self.starttls(arg),
            "auth" => self.auth(arg),
            _ => Step::Reply(Reply::new(502, "5.5.2", "Error: command not recognized")),
        };
        (verb, printable_step(step))
    }

    /// The limits in force now (normal, or under stress).
    pub fn limits(&self) -> &crate::config::StressLimits {
        if self.stressed { &self.cfg.stressed } else { &self.cfg.normal }
    }

    /// NOOP, VRFY, RSET and ETRN beyond `smtpd_junk_command_limit` count as errors.
    fn count_junk(&mut self) {
        self.junk += 1;
        if self.junk > self.limits().junk_command_limit {
            self.errors += 1;
        }
    }

    fn junk_reply(&mut self, reply: Reply) -> Step {
        self.count_junk();
        Step::Reply(reply)
    }

    fn ehlo(&mut self, arg: &str, esmtp: bool) -> Step {
        if arg.is_empty() {
            return Step::Reply(Reply::plain(501, format!("Syntax: {} hostname", if esmtp { "EHLO" } else { "HELO" })));
        }
        self.reset();
        let old = (self.helo.take(), self.esmtp);
        self.helo = Some(arg.split_whitespace().next().unwrap_or(arg).to_string());
        self.esmtp = esmtp;
        if let Some(reply) = self.check_helo() {
            (self.helo, self.esmtp) = old;
            return Step::Reply(reply);
        }
        let host = &self.cfg.myhostname;
        if !esmtp {
            return Step::Reply(Reply::plain(250, host.clone()));
        }
        let lines = [
            host.clone(),
            "PIPELINING".into(),
            self.cfg.message_size_limit.map_or("SIZE".into(), |n| format!("SIZE {n}")),
            "VRFY".into(),
            "ETRN".into(),
        ];
        let mut lines = lines.to_vec();
        if self.cfg.tls.offered() && !self.encrypted() {
            lines.push("STARTTLS".into());
        }
        if let Some(mechs) = self.sasl_active().then(|| self.cfg.sasl.mechanisms(self.encrypted())).flatten()
            && !mechs.is_empty()
        {
            let list = mechs.join(" ");
            lines.push(format!("AUTH {list}"));
            if self.cfg.sasl.broken_clients {
                lines.push(format!("AUTH={list}"));
            }
        }
        lines.extend(["ENHANCEDSTATUSCODES".into(), "8BITMIME".into(), "DSN".into()]);
        if self.cfg.smtputf8.enable {
            lines.push("SMTPUTF8".into());
        }
        Step::Reply(Reply::lines(250, lines))
    }

    /// Postfix's `starttls_cmd` checks, in its order.
    fn starttls(&mut self, arg: &str) -> Step {
        if !arg.is_empty() {
            return Step::Reply(Reply::new(501, "5.5.4", "Syntax: STARTTLS"));
        }
        if self.encrypted() {
            return Step::Reply(Reply::new(554, "5.5.1", "Error: TLS already active"));
        }
        if !self.cfg.tls.offered() {
            return Step::Reply(Reply::new(502, "5.5.1", "Error: command not implemented"));
        }
        if self.cfg.tls.context.is_none() {
            // RFC 3207 section 4; the warnings at start-up or reload said why.
            return Step::Reply(Reply::new(454, "4.7.0", "TLS not available due to local problem"));
        }
        // RFC 3207 allows STARTTLS in a transaction; everything before it is forgotten.
        self.forget_client();
        Step::StartTls(Reply::new(220, "2.0.0", "Ready to start TLS"))
    }

    fn mail(&mut self, arg: &str) -> Step {
        if self.cfg.helo_required && self.helo.is_none() {
            return Step::Reply(Reply::new(503, "5.5.1", "Error: send HELO/EHLO first"));
        }
        if self.sender.is_some() {
            return Step::Reply(Reply::new(503, "5.5.1", "Error: nested MAIL command"));
        }
        let Some(rest) = strip_keyword(arg, "FROM:") else { return Step::Reply(Reply::new(501, "5.5.4", "Syntax: MAIL FROM:<address>")) };
        let Some(addr) = parse_path(rest) else { return Step::Reply(Reply::new(501, "5.1.7", "Bad sender address syntax")) };
        self.smtputf8 = false;
        let mut size = None;
        let (mut ret, mut envid) = (None, None);
        for p in &addr.params {
            match (p.name.as_str(), p.value.to_ascii_uppercase().as_str()) {
                // RFC 3461; each at most once.
                ("RET", _) => match Ret::parse(&p.value).filter(|_| ret.is_none()) {
                    Some(r) => ret = Some(r),
                    None => return Step::Reply(Reply::new(501, "5.5.4", "Bad RET parameter syntax")),
                },
                ("ENVID", _) => match parse_envid(&p.value).filter(|_| envid.is_none()) {
                    Some(e) => envid = Some(e),
                    None => return Step::Reply(Reply::new(501, "5.5.4", "Bad ENVID parameter syntax")),
                },
                ("BODY", "7BIT" | "8BITMIME") => {}
                ("SMTPUTF8", "") if self.cfg.smtputf8.enable => self.smtputf8 = true,
                // RFC 4954 section 5: who submitted the message; accepted while AUTH is on.
                ("AUTH", _) if self.sasl_active() => {}
                ("SIZE", _) => match p.value.parse::<u64>() {
                    Ok(n) => size = Some(n),
                    Err(_) if !p.value.is_empty() && p.value.bytes().all(|b| b.is_ascii_digit()) => {
                        return Step::Reply(Reply::new(552, "5.3.4", "Message size exceeds file system imposed limit"));
                    }
                    Err(_) => return Step::Reply(Reply::new(501, "5.5.4", "Bad message size syntax")),
                },
                _ => return Step::Reply(Reply::new(555, "5.5.4", format!("Unsupported option: {}", printable(&p.text, '?')))),
            }
        }
        if let Some(reply) = crate::smtputf8::check_address(self, &addr, crate::smtputf8::Verb::Mail) {
            self.smtputf8 = false;
            return Step::Reply(reply);
        }
        if let (Some(n), Some(limit)) = (size, self.cfg.message_size_limit)
            && n > limit
        {
            return Step::Reply(Reply::new(552, "5.3.4", "Message size exceeds fixed limit"));
        }
        let limits = &self.cfg.client_limits;
        if limits.message_rate > 0 && !self.unlimited_client {
            let rate = self.cfg.anvil.mail(self.peer.addr, limits.rate_time_unit);
            if rate > limits.message_rate {
                common::log_warning!(
                    "Message delivery request rate limit exceeded: {rate} from {} for service {}",
                    self.peer.show(),
                    self.cfg.service
                );
                return Step::Reply(Reply::new(450, "4.7.1", format!("Error: too much mail from {}", self.peer.addr)));
            }
        }
        if let Some(reply) = self.check_queue_space(size.unwrap_or(0)) {
            return Step::Reply(reply);
        }
        if let Some(reply) = self.check_mail(&addr) {
            self.reset();
            return Step::Reply(reply);
        }
        match self.cfg.headers.rewrite_clients.is_local(self) {
            Ok(local) => self.local_submission = local,
            Err(reply) => {
                self.reset();
                return Step::Reply(reply);
            }
        }
        self.sender = Some(addr);
        (self.dsn_ret, self.dsn_envid) = (ret, envid);
        Step::Reply(Reply::new(250, "2.1.0", "Ok"))
    }

    fn rcpt(&mut self, arg: &str) -> Step {
        if self.sender.is_none() {
            return Step::Reply(Reply::new(503, "5.5.1", "Error: need MAIL command"));
        }
        let Some(rest) = strip_keyword(arg, "TO:") else { return Step::Reply(Reply::new(501, "5.5.4", "Syntax: RCPT TO:<address>")) };
        let Some(addr) = parse_path(rest).filter(|a| !a.addr.is_empty()) else {
            return Step::Reply(Reply::new(501, "5.1.3", "Bad recipient address syntax"));
        };
        let (mut notify, mut orcpt) = (None, None);
        for p in &addr.params {
            match p.name.as_str() {
                // RFC 3461; each at most once.
                "NOTIFY" => match Notify::parse(&p.value).filter(|_| notify.is_none()) {
                    Some(n) => notify = Some(n),
                    None => return Step::Reply(Reply::new(501, "5.5.4", "Error: Bad NOTIFY parameter syntax")),
                },
                "ORCPT" => match parse_orcpt(&p.value).filter(|_| orcpt.is_none()) {
                    Some(o) => orcpt = Some(o),
                    None => return Step::Reply(Reply::new(501, "5.5.4", "Error: Bad ORCPT parameter syntax")),
                },
                _ => return Step::Reply(Reply::new(555, "5.5.4", format!("Unsupported option: {}", printable(&p.text, '?')))),
            }
        }
        if let Some(reply) = crate::smtputf8::check_address(self, &addr, crate::smtputf8::Verb::Rcpt) {
            return Step::Reply(reply);
        }
        let limit = self.cfg.restrict.recipient_limit;
        if limit > 0 && self.recipients.len() >= limit {
            // Within the overshoot limit the refusal is no error (a client may try a few).
            if self.restrict.overshoot < self.cfg.restrict.overshoot_limit {
                self.restrict.overshoot += 1;
                self.restrict.uncounted = true;
            }
            return Step::Reply(Reply::new(452, "4.5.3", "Error: too many recipients"));
        }
        match self.check_rcpt(&addr) {
            Ok(None) => {}
            Ok(Some(reject)) => return Step::Reply(reject),
            Err(Unverified(address)) => return Step::Verify { address },
        }
        self.dsn_rcpt.push((notify, orcpt.unwrap_or_else(|| format!("rfc822;{}", addr.addr))));
        self.recipients.push(addr);
        Step::Reply(Reply::new(250, "2.1.5", "Ok"))
    }

    /// Postfix's `smtpd_check_queue`: the queue file system must keep `queue_minfree` bytes
    /// and 1.5 times `message_size_limit` free. Postern also refuses a declared `SIZE` that
    /// does not fit, instead of taking the message only to fail at its end.
    fn check_queue_space(&self, size: u64) -> Option<Reply> {
        let free = match self.cfg.spool.free_space() {
            Ok(free) => free,
            Err(e) => {
                common::log_warning!("queue file system: {e}");
                return Some(Reply::new(451, "4.3.0", "Error: queue file write error"));
            }
        };
        let limit = self.cfg.message_size_limit.unwrap_or(0);
        let reserve = limit.saturating_add(limit / 2).max(self.cfg.queue_minfree);
        if free <= reserve || size > free - self.cfg.queue_minfree.min(free) {
            common::log_warning!("not enough free space in mail queue: {free} bytes < 1.5*message size limit");
            return Some(Reply::new(452, "4.3.1", "Insufficient system storage"));
        }
        None
    }

    fn data(&mut self, arg: &str) -> Step {
        if !arg.is_empty() {
            return Step::Reply(Reply::new(501, "5.5.4", "Syntax: DATA"));
        }
        if self.sender.is_some() && self.recipients.is_empty() {
            return Step::Reply(Reply::new(554, "5.5.1", "Error: no valid recipients"));
        }
        if self.sender.is_none() {
            return Step::Reply(Reply::new(503, "5.5.1", "Error: need RCPT command"));
        }
        if let Some(reply) = self.check_data() {
            return Step::Reply(reply);
        }
        let Some(sender) = self.sender.as_ref() else { return Step::Reply(Reply::new(503, "5.5.1", "Error: need RCPT command")) };
        Step::Data(Box::new(Envelope {
            sender: sender.addr.clone(),
            recipients: self
                .recipients
                .iter()
                .zip(&self.dsn_rcpt)
                .map(|(a, (notify, orcpt))| Recipient { address: a.addr.clone(), orig: None, notify: *notify, orcpt: Some(orcpt.clone()) })
                .collect(),
            arrival_us: now_us(),
            client: ClientInfo {
                name: self.peer.name.clone(),
                addr: self.peer.addr.to_string(),
                helo: printable(self.helo.as_deref().unwrap_or_default(), '?').into_owned(),
                protocol: self.received_protocol(),
            },
            smtputf8: crate::smtputf8::requested(self),
            verify_probe: false,
            ret: self.dsn_ret,
            envid: self.dsn_envid.clone(),
            fullname: None,
        }))
    }

    /// ETRN checks in Postfix's order (the reply texts carry no enhanced status codes).
    fn etrn(&mut self, arg: &str) -> Step {
        self.count_junk();
        if self.cfg.helo_required && self.helo.is_none() {
            return Step::Reply(Reply::plain(503, "Error: send HELO/EHLO first"));
        }
        if self.in_transaction() {
            return Step::Reply(Reply::plain(503, "Error: MAIL transaction in progress"));
        }
        let words: Vec<&str> = arg.split_whitespace().collect();
        if words.len() != 1 {
            return Step::Reply(Reply::plain(500, "Syntax: ETRN domain"));
        }
        let word = words[0];
        if word.starts_with('#') {
            return Step::Reply(Reply::plain(501, "Error: ETRN #queue is not supported; use ETRN domain or ETRN @domain"));
        }
        let (site, subdomains) = match word.strip_prefix('@') {
            Some(s) => (s, true),
            None => (word, false),
        };
        if !(common::domain::valid_hostname(site) || common::domain::valid_address_literal(site)) {
            return Step::Reply(Reply::plain(501, "Error: invalid parameter syntax"));
        }
        Step::Etrn { site: site.to_string(), subdomains }
    }
}

/// Replies that echo the client (VRFY's argument above all) never carry its control
/// characters back: a bare CR in a reply line could end it early for the client (found by
/// fuzzing). The CRLFs between the lines of a multi-line reply are ours.
fn printable_step(step: Step) -> Step {
    let clean = |mut r: Reply| {
        for l in &mut r.lines {
            if common::text::has_control(l) {
                *l = printable(l, '?').into_owned();
            }
        }
        r
    };
    match step {
        Step::Reply(r) => Step::Reply(clean(r)),
        Step::Close(r) => Step::Close(clean(r)),
        other => other,
    }
}

/// `FROM:<...>` / `TO:<...>`, keyword case-insensitive, spaces after the colon allowed.
fn strip_keyword<'t>(arg: &'t str, keyword: &str) -> Option<&'t str> {
    let head = arg.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword).then(|| &arg[keyword.len()..])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sasl::Outcome;
    use common::config::{MainCf, Params};

    /// A configuration on a temporary spool: relay for customer.example, loopback trusted.
    pub(crate) fn config(extra: &str) -> (tempfile::TempDir, SmtpdConfig) {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        std::fs::create_dir(&spool).unwrap();
        let text = format!("queue_directory = {}\nmyhostname = mx.test\nrelay_domains = customer.example\n{extra}", spool.display());
        let main = MainCf::parse(&text, &dir.path().join("main.cf")).unwrap();
        let p = Params::from_parts(dir.path(), main, &[("service_name".into(), "smtpd".into())]);
        (dir, SmtpdConfig::from_params(&p, Some(10)).unwrap())
    }

    /// The reply to one line, as the connection would send it (or what it would do instead).
    pub(crate) fn cmd(s: &mut Session<'_>, line: &[u8]) -> String {
        match s.command(line).1 {
            Step::Reply(r) | Step::Close(r) => r.to_string(),
            Step::Data(_) => "354".into(),
            Step::Etrn { site, subdomains } => format!("ETRN {site} subdomains={subdomains}"),
            Step::StartTls(r) => format!("{r} (handshake)"),
            Step::Auth { mechanism, initial } => format!("AUTH {mechanism} {initial:?}"),
            Step::Atrn { domains } => format!("ATRN {domains:?}"),
            Step::Verify { address } => format!("VERIFY {address}"),
        }
    }

    /// A self-signed certificate and key in `dir`.
    fn make_cert(dir: &std::path::Path) -> (String, String) {
        common::tls::test_pki::self_signed(dir, "mx", "mx.test");
        (dir.join("mx.pem").display().to_string(), dir.join("mx.key").display().to_string())
    }

    /// One dialogue against a configuration; each reply must start with its expectation.
    fn dialogue(cfg: &SmtpdConfig, name: &str, lines: &[(&str, &str)], tls_after_handshake: bool) {
        let mut s = Session::new(cfg, Peer { name: "client".into(), addr: "192.0.2.1".parse().unwrap() });
        for (line, want) in lines {
            let got = cmd(&mut s, line.as_bytes());
            assert!(got.starts_with(want), "{name}: {line:?} answered {got:?}, want {want:?}");
            if got.ends_with("(handshake)") && tls_after_handshake {
                assert!(!s.encrypted(), "{name}: not encrypted before the handshake");
                s.tls_started(TlsInfo {
                    protocol: "TLSv1.3".into(),
                    cipher: "TLS_AES_256_GCM_SHA384".into(),
                    bits: 256,
                    kex: None,
                    server_signature: None,
                });
                assert!(s.encrypted());
            }
        }
    }

    #[test]
    fn starttls_at_each_level() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = make_cert(dir.path());
        let with_cert = |level: &str| {
            config(&format!("smtpd_tls_security_level = {level}\nsmtpd_tls_cert_file = {cert}\nsmtpd_tls_key_file = {key}\n"))
        };
        let ehlo_tls =
            "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES";
        let ehlo_plain = "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n250-ENHANCEDSTATUSCODES";

        let (_d1, none) = config("");
        dialogue(
            &none,
            "level none",
            &[
                ("EHLO c.test", ehlo_plain),
                ("STARTTLS", "502 5.5.1 Error: command not implemented"),
                ("MAIL FROM:<s@sender.test>", "250 2.1.0 Ok"),
            ],
            true,
        );

        let (_d2, may) = with_cert("may");
        dialogue(
            &may,
            "level may",
            &[
                ("EHLO c.test", ehlo_tls),
                ("MAIL FROM:<s@sender.test>", "250 2.1.0 Ok"),
                ("STARTTLS now", "501 5.5.4 Syntax: STARTTLS"),
                // Allowed inside a transaction (RFC 3207), which it ends.
                ("STARTTLS", "220 2.0.0 Ready to start TLS (handshake)"),
                ("RCPT TO:<u@customer.example>", "503 5.5.1 Error: need MAIL command"),
                ("EHLO c.test", ehlo_plain),
                ("STARTTLS", "554 5.5.1 Error: TLS already active"),
                ("MAIL FROM:<s@sender.test>", "250 2.1.0 Ok"),
            ],
            true,
        );

        let (_d3, encrypt) = with_cert("encrypt");
        dialogue(
            &encrypt,
            "level encrypt",
            &[
                ("EHLO c.test", ehlo_tls),
                ("MAIL FROM:<s@sender.test>", "530 5.7.0 Must issue a STARTTLS command first"),
                ("RCPT TO:<u@customer.example>", "530 5.7.0 Must issue a STARTTLS command first"),
                ("VRFY u", "530 5.7.0 Must issue a STARTTLS command first"),
                ("ETRN customer.example", "530 5.7.0 Must issue a STARTTLS command first"),
                ("NOOP", "250 2.0.0 Ok"),
                ("HELP", "214"),
                ("FROBNICATE", "502 5.5.2 Error: command not recognized"),
                ("STARTTLS", "220 2.0.0 Ready to start TLS (handshake)"),
                ("MAIL FROM:<s@sender.test>", "250 2.1.0 Ok"),
            ],
            true,
        );

        // TLS wanted, but no certificate: announced, refused as Postfix does.
        let (_d4, broken) = config("smtpd_tls_security_level = may\nsmtpd_tls_cert_file = /nonexistent/cert.pem\n");
        assert!(broken.tls.context.is_none());
        dialogue(
            &broken,
            "no certificate",
            &[("EHLO c.test", ehlo_tls), ("STARTTLS", "454 4.7.0 TLS not available due to local problem")],
            true,
        );
    }

    #[test]
    fn tls_level_syntax() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        std::fs::create_dir(&spool).unwrap();
        let text = format!("queue_directory = {}\nsmtpd_tls_security_level = maybe\n", spool.display());
        let main = MainCf::parse(&text, &dir.path().join("main.cf")).unwrap();
        let p = Params::from_parts(dir.path(), main, &[("service_name".into(), "smtpd".into())]);
        let err = SmtpdConfig::from_params(&p, Some(10)).expect_err("a bad level is fatal");
        assert_eq!(err.to_string(), "smtpd_tls_security_level: Invalid TLS level \"maybe\"");
    }

    /// A configuration with AUTH by the built-in type over a passwd-file of `users`.
    /// The directories (the file's, the spool's) live as long as the first value.
    fn sasl_config(users: &str, extra: &str) -> ((tempfile::TempDir, tempfile::TempDir), SmtpdConfig) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sasl-users");
        std::fs::write(&file, users).unwrap();
        let (spool, cfg) =
            config(&format!("smtpd_sasl_auth_enable = yes\nsmtpd_sasl_type = passwd-file\nsmtpd_sasl_path = {}\n{extra}", file.display()));
        ((dir, spool), cfg)
    }

    #[test]
    fn auth_replies_as_postfix() {
        let (_d, off) = config("");
        let mut s = Session::new(&off, Peer { name: "client".into(), addr: "192.0.2.1".parse().unwrap() });
        assert_eq!(cmd(&mut s, b"AUTH PLAIN AGEAYg=="), "503 5.5.1 Error: authentication not enabled");
        assert!(!cmd(&mut s, b"EHLO c.test").contains("AUTH"));

        let (_d, cfg) = sasl_config("alice:{PLAIN}wonderland\n", "");
        let mut s = Session::new(&cfg, Peer { name: "client".into(), addr: "192.0.2.1".parse().unwrap() });
        let dialogue: &[(&str, &str)] = &[
            ("EHLO c.test", "250-ETRN\r\n250-AUTH PLAIN LOGIN CRAM-MD5\r\n250-ENHANCEDSTATUSCODES\r\n"),
            ("AUTH", "501 5.5.4 Syntax: AUTH mechanism"),
            ("AUTH PLAIN a b", "501 5.5.4 Syntax: AUTH mechanism"),
            ("AUTH FOO", "535 5.7.8 Error: authentication failed: Invalid authentication mechanism: 'FOO'"),
            ("AUTH PLAIN AGE*AYg==", "535 5.7.8 Error: authentication failed: Invalid base64 data in initial response"),
            ("AUTH PLAIN AG:E=", "535 5.7.8 Error: authentication failed: Invalid base64 data in initial response"),
            ("AUTH plain AGFsaWNlAHdvbmRlcmxhbmQ=", "AUTH PLAIN Some(\"AGFsaWNlAHdvbmRlcmxhbmQ=\")"),
            ("AUTH CRAM-MD5", "AUTH CRAM-MD5 None"),
            ("MAIL FROM:<s@sender.test> AUTH=<>", "250 2.1.0 Ok"),
            ("AUTH LOGIN", "503 5.5.1 Error: MAIL transaction in progress"),
            ("RCPT TO:<u@stranger.example>", "454 4.7.1 <u@stranger.example>: Relay access denied"),
            ("RSET", "250 2.0.0 Ok"),
        ];
        for (line, want) in dialogue {
            let got = cmd(&mut s, line.as_bytes());
            assert!(got.contains(want), "{line:?} answered {got:?}, want {want:?}");
        }
        assert_eq!(s.auth_response("LOGIN", b"*").unwrap_err().to_string(), "501 5.7.0 Authentication aborted");
        assert_eq!(
            s.auth_response("LOGIN", b"not base64").unwrap_err().to_string(),
            "535 5.7.8 Error: authentication failed: Invalid base64 data in continued response"
        );
        assert_eq!(s.auth_response("LOGIN", b"dXNlcg==").unwrap(), "dXNlcg==");
        let fail = Outcome::Failure { reason: "authentication failure".into(), username: Some("alice".into()) };
        assert_eq!(s.auth_finished("PLAIN", fail).to_string(), "535 5.7.8 Error: authentication failed: authentication failure");
        let temp = Outcome::TempFailure { reason: "Connection lost to authentication server".into() };
        assert_eq!(
            s.auth_finished("PLAIN", temp).to_string(),
            "454 4.7.0 Temporary authentication failure: Connection lost to authentication server"
        );
        assert!(s.sasl_login.is_none() && s.received_protocol() == "ESMTP");
        let ok = Outcome::Success { username: "alice".into() };
        assert_eq!(s.auth_finished("PLAIN", ok).to_string(), "235 2.7.0 Authentication successful");
        assert_eq!(cmd(&mut s, b"AUTH PLAIN"), "503 5.5.1 Error: already authenticated");
        // permit_sasl_authenticated: a logged-in client relays anywhere.
        assert_eq!(cmd(&mut s, b"MAIL FROM:<alice@sender.test>"), "250 2.1.0 Ok");
        assert_eq!(cmd(&mut s, b"RCPT TO:<u@stranger.example>"), "250 2.1.5 Ok");
        assert_eq!(s.received_protocol(), "ESMTPA");
        assert_eq!(s.sasl_log_suffix(), ", sasl_method=PLAIN, sasl_username=alice");
        assert_eq!(s.received_auth_comment(), None, "smtpd_sasl_authenticated_header = no");
    }

    /// A login made in plaintext does not survive STARTTLS (RFC 3207 4.2).
    #[test]
    fn starttls_forgets_a_plaintext_login() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = make_cert(dir.path());
        let (_d, cfg) = sasl_config(
            "alice:{PLAIN}wonderland\n",
            &format!("smtpd_tls_security_level = may\nsmtpd_tls_cert_file = {cert}\nsmtpd_tls_key_file = {key}\n"),
        );
        let mut s = Session::new(&cfg, Peer { name: "client".into(), addr: "192.0.2.1".parse().unwrap() });
        cmd(&mut s, b"EHLO c.test");
        let ok = Outcome::Success { username: "alice".into() };
        assert_eq!(s.auth_finished("PLAIN", ok).to_string(), "235 2.7.0 Authentication successful");
        assert!(s.sasl_authenticated());
        assert_eq!(cmd(&mut s, b"STARTTLS"), "220 2.0.0 Ready to start TLS (handshake)");
        s.tls_started(TlsInfo {
            protocol: "TLSv1.3".into(),
            cipher: "TLS_AES_256_GCM_SHA384".into(),
            bits: 256,
            kex: None,
            server_signature: None,
        });
        assert!(!s.sasl_authenticated() && s.sasl_login.is_none());
    }

    #[test]
    fn auth_options_and_mechanism_lists() {
        let ehlo = |cfg: &SmtpdConfig, encrypted: bool| {
            let mut s = Session::new(cfg, Peer { name: "client".into(), addr: "192.0.2.1".parse().unwrap() });
            if encrypted {
                let info = TlsInfo {
                    protocol: "TLSv1.3".into(),
                    cipher: "TLS_AES_256_GCM_SHA384".into(),
                    bits: 256,
                    kex: None,
                    server_signature: None,
                };
                s.tls_started(info);
            }
            let reply = cmd(&mut s, b"EHLO c.test");
            let auth: Vec<String> = reply.split("\r\n").filter(|l| l[4..].starts_with("AUTH")).map(|l| l[4..].to_string()).collect();
            (auth, cmd(&mut s, b"AUTH PLAIN"))
        };
        let (_d, cfg) = sasl_config("alice:{PLAIN}x\n", "smtpd_tls_auth_only = yes\n");
        assert_eq!(ehlo(&cfg, false), (vec![], "503 5.5.1 Error: authentication not enabled".to_string()));
        assert_eq!(ehlo(&cfg, true), (vec!["AUTH PLAIN LOGIN CRAM-MD5".to_string()], "AUTH PLAIN None".to_string()));
        let (_d, cfg) = sasl_config(
            "alice:{PLAIN}x\n",
            "smtpd_sasl_security_options = noanonymous, noplaintext\nsmtpd_sasl_tls_security_options = noanonymous\nbroken_sasl_auth_clients = yes\n",
        );
        let (auth, reply) = ehlo(&cfg, false);
        assert_eq!(auth, ["AUTH CRAM-MD5", "AUTH=CRAM-MD5"]);
        assert_eq!(reply, "535 5.7.8 Error: authentication failed: Invalid authentication mechanism: 'PLAIN'");
        assert_eq!(ehlo(&cfg, true).0, ["AUTH PLAIN LOGIN CRAM-MD5", "AUTH=PLAIN LOGIN CRAM-MD5"]);
        // Hashed secrets only: CRAM-MD5 cannot work, so it is not offered.
        let hashed = "bob:{SHA512-CRYPT}$6$xCDgQnB4Fv2AjQ35$U2.liAOnP.MSZy4LaBLQofcgcalEs6d.BxFSI8ihqbP/Dbw512cPvnXSl.eo5viXYG3HjZQlrfoE9uyKatD310\n";
        let (_d, cfg) = sasl_config(hashed, "smtpd_sasl_authenticated_header = yes\n");
        assert_eq!(ehlo(&cfg, false).0, ["AUTH PLAIN LOGIN"]);
        let mut s = Session::new(&cfg, Peer { name: "client".into(), addr: "192.0.2.1".parse().unwrap() });
        s.auth_finished("LOGIN", Outcome::Success { username: "b(o)b".into() });
        assert_eq!(s.received_auth_comment().as_deref(), Some("(Authenticated sender: b?o?b)"));
        // Bad settings are configuration errors, not silently ignored.
        let dir = tempfile::tempdir().unwrap();
        let bad = |extra: &str| {
            let text = format!("queue_directory = {}\nsmtpd_sasl_auth_enable = yes\n{extra}", dir.path().display());
            let main = MainCf::parse(&text, &dir.path().join("main.cf")).unwrap();
            let p = Params::from_parts(dir.path(), main, &[("service_name".into(), "smtpd".into())]);
            SmtpdConfig::from_params(&p, Some(10)).err().map(|e| e.to_string()).unwrap_or_default()
        };
        assert!(bad("smtpd_sasl_type = cyrus\n").contains("unsupported SASL server implementation: cyrus"));
        assert!(bad("smtpd_sasl_type = passwd-file\nsmtpd_sasl_path = /nonexistent/users\n").contains("/nonexistent/users"));
        assert!(bad("smtpd_sasl_security_options = noplain\n").contains("unknown security option"));
        assert!(bad("smtpd_etrn_restrictions = reject_etrn_login_mismatch\n").contains("requires smtpd_etrn_login_maps"));
        let relative = dir.path().join("sasl-users").display().to_string();
        assert!(
            bad("smtpd_sasl_type = passwd-file\nsmtpd_sasl_path = sasl-users\n").contains(&relative),
            "relative to the configuration directory"
        );
    }

    #[test]
    fn disconnect_counters_in_postfix_order() {
        let (_d, cfg) = config("");
        let mut s = Session::new(&cfg, Peer { name: "client".into(), addr: "192.0.2.1".parse().unwrap() });
        let ok = Reply::new(250, "2.0.0", "Ok");
        let bad = Reply::new(502, "5.5.2", "Error: command not recognized");
        // Sent out of the table's order; Postfix logs them in smtpd_cmd_table's order.
        for (verb, reply) in [("noop", &ok), ("bogus", &bad), ("quit", &ok), ("rset", &ok), ("ehlo", &ok), ("mail", &ok), ("rcpt", &bad)] {
            s.count(verb, reply);
        }
        assert_eq!(s.stats(), "ehlo=1 mail=1 rcpt=0/1 rset=1 noop=1 quit=1 unknown=0/1 commands=5/7");
    }

    struct Case {
        name: &'static str,
        /// Who connects: a trusted (loopback) client or a stranger.
        trusted: bool,
        /// Lines and the start of each reply.
        dialogue: &'static [(&'static str, &'static str)],
    }

    #[test]
    fn every_verb_in_order_and_out_of_order() {
        let cases = [
            Case {
                name: "a whole transaction",
                trusted: false,
                dialogue: &[
                    ("EHLO client.test", "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n"),
                    ("MAIL FROM:<s@sender.test> SIZE=100 BODY=8BITMIME", "250 2.1.0 Ok"),
                    ("RCPT TO:<u@customer.example>", "250 2.1.5 Ok"),
                    ("RCPT TO:<u@stranger.example>", "454 4.7.1 <u@stranger.example>: Relay access denied"),
                    ("RCPT TO:<u%stranger.example@customer.example>", "454 4.7.1"),
                    ("DATA", "354"),
                ],
            },
            Case {
                name: "out of sequence",
                trusted: true,
                dialogue: &[
                    ("RCPT TO:<u@customer.example>", "503 5.5.1 Error: need MAIL command"),
                    ("DATA", "503 5.5.1 Error: need RCPT command"),
                    ("MAIL FROM:<s@sender.test>", "250 2.1.0 Ok"),
                    ("MAIL FROM:<s@sender.test>", "503 5.5.1 Error: nested MAIL command"),
                    ("DATA", "554 5.5.1 Error: no valid recipients"),
                    ("ETRN customer.example", "503 Error: MAIL transaction in progress"),
                    ("RSET", "250 2.0.0 Ok"),
                    ("DATA extra", "501 5.5.4 Syntax: DATA"),
                ],
            },
            Case {
                name: "syntax",
                trusted: true,
                dialogue: &[
                    ("HELO", "501 Syntax: HELO hostname"),
                    ("MAIL TO:<s@sender.test>", "501 5.5.4 Syntax: MAIL FROM:<address>"),
                    ("MAIL FROM:<s@bad..domain>", "501 5.1.7 Bad sender address syntax"),
                    ("MAIL FROM:<s@sender.test> FOO=bar", "555 5.5.4 Unsupported option: FOO=bar"),
                    ("MAIL FROM:<s@sender.test> SIZE=x", "501 5.5.4 Bad message size syntax"),
                    ("MAIL FROM:<s@sender.test> SIZE=99999999999", "552 5.3.4 Message size exceeds fixed limit"),
                    ("MAIL FROM:<s@sender.test>", "250 2.1.0 Ok"),
                    ("RCPT TO:<>", "501 5.1.3 Bad recipient address syntax"),
                    ("RCPT TO:<u@customer.example> XDSN=NEVER", "555 5.5.4 Unsupported option: XDSN=NEVER"),
                    ("VRFY", "501 5.5.4 Syntax: VRFY address"),
                    ("VRFY someone", "252 2.0.0 someone"),
                    ("VRFY a\rb\x02c", "252 2.0.0 a?b?c"),
                    ("NOOP", "250 2.0.0 Ok"),
                    ("FROBNICATE", "502 5.5.2 Error: command not recognized"),
                    ("", "500 5.5.2 Error: bad syntax"),
                    ("QUIT", "221 2.0.0 Bye"),
                ],
            },
            Case {
                name: "ETRN",
                trusted: true,
                dialogue: &[
                    ("ETRN", "500 Syntax: ETRN domain"),
                    ("ETRN a b", "500 Syntax: ETRN domain"),
                    ("ETRN #queue", "501 Error: ETRN #queue is not supported"),
                    ("ETRN bad..name", "501 Error: invalid parameter syntax"),
                    ("ETRN customer.example", "ETRN customer.example subdomains=false"),
                    ("ETRN @customer.example", "ETRN customer.example subdomains=true"),
                    ("ETRN [127.0.0.1]", "ETRN [127.0.0.1] subdomains=false"),
                ],
            },
        ];
        let (_dir, cfg) = config("");
        for c in &cases {
            let addr = if c.trusted { "127.0.0.1" } else { "192.0.2.1" };
            let mut s = Session::new(&cfg, Peer { name: "client".into(), addr: addr.parse().unwrap() });
            for (line, want) in c.dialogue {
                let got = cmd(&mut s, line.as_bytes());
                assert!(got.starts_with(want), "{}: {line:?} answered {got:?}, want {want:?}", c.name);
            }
        }
    }

    #[test]
    fn bad_bytes_and_limits() {
        let (_dir, cfg) = config("smtpd_helo_required = yes\nmessage_size_limit = 0\n");
        let mut s = Session::new(&cfg, Peer { name: "client".into(), addr: "127.0.0.1".parse().unwrap() });
        assert_eq!(cmd(&mut s, b"MAIL FROM:<s@sender.test>"), "503 5.5.1 Error: send HELO/EHLO first");
        assert_eq!(cmd(&mut s, b"ETRN customer.example"), "503 Error: send HELO/EHLO first");
        assert_eq!(cmd(&mut s, b"EHLO \xff"), "500 5.5.2 Error: bad UTF-8 syntax");
        assert!(cmd(&mut s, b"EHLO c.test").contains("\r\n250-SIZE\r\n"), "no limit: SIZE without a number");
        assert_eq!(cmd(&mut s, b"MAIL FROM:<s\x01@sender.test>"), "501 5.1.7 Bad sender address syntax");
        // No size limit, but a declared size must still fit the queue file system.
        assert_eq!(cmd(&mut s, b"MAIL FROM:<s@sender.test> SIZE=999999999999999"), "452 4.3.1 Insufficient system storage");
        assert_eq!(cmd(&mut s, b"MAIL FROM:<s@sender.test> SIZE=20000000"), "250 2.1.0 Ok");
        // Junk commands beyond the limit count as errors; a queued message forgives them.
        for _ in 0..cfg.normal.junk_command_limit + 5 {
            cmd(&mut s, b"NOOP");
        }
        assert_eq!(s.errors, 6, "the ETRN above was junk too");
        s.message_received();
        assert_eq!((s.errors, s.junk), (0, 0));
    }

    #[test]
    fn dsn_parameters_are_checked_and_kept_for_the_queue_file() {
        let (_dir, cfg) = config("");
        let mut s = Session::new(&cfg, Peer { name: "client".into(), addr: "127.0.0.1".parse().unwrap() });
        assert!(cmd(&mut s, b"EHLO c.test").ends_with("\r\n250-8BITMIME\r\n250-DSN\r\n250 SMTPUTF8"));
        let refused = [
            ("MAIL FROM:<s@sender.test> RET=ALL", "501 5.5.4 Bad RET parameter syntax"),
            ("MAIL FROM:<s@sender.test> RET=FULL RET=HDRS", "501 5.5.4 Bad RET parameter syntax"),
            ("MAIL FROM:<s@sender.test> ENVID=a=b", "501 5.5.4 Bad ENVID parameter syntax"),
            ("MAIL FROM:<s@sender.test> ENVID=a+0Db", "501 5.5.4 Bad ENVID parameter syntax"),
            ("MAIL FROM:<s@sender.test> ENVID=a ENVID=b", "501 5.5.4 Bad ENVID parameter syntax"),
            ("MAIL FROM:<s@sender.test> XYZ=1", "555 5.5.4 Unsupported option: XYZ=1"),
        ];
        for (line, want) in refused {
            assert_eq!(cmd(&mut s, line.as_bytes()), want, "{line}");
        }
        assert_eq!(cmd(&mut s, b"MAIL FROM:<s@sender.test> ret=hdrs ENVID=QQ+2B314"), "250 2.1.0 Ok");
        let refused = [
            ("RCPT TO:<a@customer.example> NOTIFY=NEVER,SUCCESS", "501 5.5.4 Error: Bad NOTIFY parameter syntax"),
            ("RCPT TO:<a@customer.example> NOTIFY=SOMETIMES", "501 5.5.4 Error: Bad NOTIFY parameter syntax"),
            ("RCPT TO:<a@customer.example> NOTIFY=DELAY NOTIFY=DELAY", "501 5.5.4 Error: Bad NOTIFY parameter syntax"),
            ("RCPT TO:<a@customer.example> ORCPT=a@customer.example", "501 5.5.4 Error: Bad ORCPT parameter syntax"),
            ("RCPT TO:<a@customer.example> ORCPT=rfc822;a+ZZ", "501 5.5.4 Error: Bad ORCPT parameter syntax"),
            ("RCPT TO:<a@customer.example> ORCPT=utf-8;a\\x{D}", "501 5.5.4 Error: Bad ORCPT parameter syntax"),
            ("RCPT TO:<a@customer.example> BODY=8BITMIME", "555 5.5.4 Unsupported option: BODY=8BITMIME"),
        ];
        for (line, want) in refused {
            assert_eq!(cmd(&mut s, line.as_bytes()), want, "{line}");
        }
        assert_eq!(cmd(&mut s, b"RCPT TO:<a@customer.example> NOTIFY=never"), "250 2.1.5 Ok");
        assert_eq!(cmd(&mut s, b"RCPT TO:<b@customer.example> ORCPT=rfc822;B+2Bx@customer.example NOTIFY=success,delay"), "250 2.1.5 Ok");
        assert_eq!(cmd(&mut s, b"RCPT TO:<c@customer.example>"), "250 2.1.5 Ok");
        assert_eq!(cmd(&mut s, b"RCPT TO:<d@customer.example> ORCPT=utf-8;d\\x{E9}@customer.example"), "250 2.1.5 Ok");
        let Step::Data(env) = s.command(b"DATA").1 else { panic!("no DATA") };
        assert_eq!((env.ret, env.envid.as_deref()), (Some(Ret::Hdrs), Some("QQ+314")));
        let got: Vec<(Option<String>, Option<&str>)> =
            env.recipients.iter().map(|r| (r.notify.map(|n| n.to_string()), r.orcpt.as_deref())).collect();
        assert_eq!(
            got,
            [
                (Some("NEVER".into()), Some("rfc822;a@customer.example")),
                (Some("SUCCESS,DELAY".into()), Some("rfc822;B+x@customer.example")),
                (None, Some("rfc822;c@customer.example")),
                (None, Some("utf-8;d\u{e9}@customer.example")),
            ]
        );
        // A new transaction starts without them.
        s.reset();
        assert_eq!(cmd(&mut s, b"MAIL FROM:<s@sender.test>"), "250 2.1.0 Ok");
        assert_eq!(cmd(&mut s, b"RCPT TO:<c@customer.example>"), "250 2.1.5 Ok");
        assert_eq!(cmd(&mut s, b"RCPT TO:<d@customer.example> ORCPT=utf-8;d\\x{E9}@customer.example"), "250 2.1.5 Ok");
        let Step::Data(env) = s.command(b"DATA").1 else { panic!("no DATA") };
        assert_eq!((env.ret, env.envid, env.recipients[0].notify), (None, None, None));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Any command line gets one well-formed reply (or a step), never a panic, and no reply
        /// carries a line break the client did not get from a multi-line EHLO.
        #[test]
        fn any_line_gets_a_well_formed_reply(lines in proptest::collection::vec(
            proptest::collection::vec(proptest::strategy::Strategy::prop_filter(proptest::prelude::any::<u8>(), "no LF", |b| *b != b'\n'), 0..80), 1..8)) {
            use proptest::prelude::*;
            let (_dir, cfg) = config("");
            let mut s = Session::new(&cfg, Peer { name: "client".into(), addr: "192.0.2.1".parse().unwrap() });
            for line in &lines {
                let reply = cmd(&mut s, line);
                if reply == "354" || reply.starts_with("ETRN ") {
                    continue;
                }
                for l in reply.split("\r\n") {
                    prop_assert!(l.len() >= 3 && l.as_bytes()[..3].iter().all(u8::is_ascii_digit), "{:?}", reply);
                    prop_assert!(!l.contains(['\r', '\n']), "{:?}", reply);
                }
            }
        }
    }
}
