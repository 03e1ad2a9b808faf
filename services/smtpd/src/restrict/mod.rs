//! Postfix's restriction lists (`smtpd_client_restrictions`, `smtpd_helo_restrictions`,
//! `smtpd_sender_restrictions`, `smtpd_relay_restrictions`, `smtpd_recipient_restrictions`,
//! `smtpd_data_restrictions`, `smtpd_etrn_restrictions`), evaluated as smtpd_check.c does:
//! each list runs until a word permits or refuses; with `smtpd_delay_reject` the client, HELO
//! and sender lists run again at each RCPT (and the client and HELO lists at ETRN), so a client
//! learns nothing before it names a recipient and the log line names sender and recipient.
//! Every rejection is logged as `NOQUEUE: reject: RCPT from name[addr]: 554 5.7.1 <...>: ...;
//! from=<...> to=<...> proto=ESMTP helo=<...>`, the shape fail2ban and pflogsumm parse.
//!
//! Evaluation is synchronous and does no I/O beyond table lookups, so it is tested in memory
//! through [`Session`].

pub mod dnsbl;
pub mod verify;
pub mod words;

use common::config::table::Table;
use common::config::table::search::{ParentStyle, Strategy, address_keys, client_keys, domain_keys, find};
use common::config::table::split_braced_list;
use common::config::{ConfigError, DomainList, Params};
use common::domain::lookup_domain;
use common::smtputf8::address_to_ascii_domain;
use std::collections::HashMap;
use std::sync::Arc;

use crate::access::{MapCodes, Verdict, table_result};
use crate::address::Address;
use crate::reply::Reply;
use crate::session::Session;
use common::ipc::verify::AddressStatus;
use words::{Subject, Word, parse_list};

/// The reply codes main.cf may change.
#[derive(Debug, Clone)]
pub struct Codes {
    pub reject: u16,
    pub defer: u16,
    pub relay: u16,
    pub map: MapCodes,
    pub bad_name: u16,
    pub non_fqdn: u16,
    pub relay_recipient: u16,
}

/// Everything the restrictions read from main.cf.
#[derive(Debug, Clone)]
pub struct RestrictConfig {
    pub client: Vec<Word>,
    pub helo: Vec<Word>,
    pub sender: Vec<Word>,
    pub relay: Vec<Word>,
    pub recipient: Vec<Word>,
    pub data: Vec<Word>,
    pub etrn: Vec<Word>,
    pub codes: Codes,
    pub delay_reject: bool,
    pub relay_domains: DomainList,
    pub relay_recipient_maps: Vec<Table>,
    pub reject_unlisted_recipient: bool,
    pub reject_unlisted_sender: bool,
    pub show_table_name: bool,
    pub null_key: String,
    pub recipient_delimiter: String,
    /// How access tables match parent domains (`smtpd_access_maps` in
    /// `parent_domain_matches_subdomains`).
    pub parent_style: ParentStyle,
    /// `smtpd_recipient_limit`; 0 is no limit.
    pub recipient_limit: usize,
    pub overshoot_limit: u32,
    /// The `reject_rbl_client` and `reject_rhsbl_sender` lists of all restriction lists, for
    /// [`dnsbl::prefetch`].
    pub rbl_lists: Vec<dnsbl::Dnsbl>,
    pub rhsbl_lists: Vec<dnsbl::Dnsbl>,
    /// Made only when some list names a DNS list.
    pub resolver: Option<Arc<dnsbl::Resolver>>,
    /// `maps_rbl_reject_code`.
    pub rbl_code: u16,
    /// Some list says `reject_unknown_sender_domain` (or `_recipient_`).
    pub unknown_sender_domain: bool,
    pub unknown_recipient_domain: bool,
    /// `unknown_address_reject_code`.
    pub unknown_address_code: u16,
    /// Made only when some list says `reject_unverified_recipient`.
    pub verify: Option<verify::VerifyCheck>,
}

impl RestrictConfig {
    pub fn from_params(p: &Params) -> Result<RestrictConfig, ConfigError> {
        let code = |name: &str| -> Result<u16, ConfigError> {
            let v = p.int(name)?;
            u16::try_from(v)
                .ok()
                .filter(|c| (400..=599).contains(c))
                .ok_or_else(|| ConfigError::value(name, format!("bad reply code: \"{v}\" (400..599)")))
        };
        let count = |name: &str| -> Result<u64, ConfigError> {
            let v = p.int(name)?;
            u64::try_from(v).map_err(|_| ConfigError::value(name, format!("bad value: \"{v}\"")))
        };
        let relay = code("relay_domains_reject_code")?;
        if relay < 500 {
            // defer_unauth_destination answers this minus 100.
            return Err(ConfigError::value("relay_domains_reject_code", "must be a 5XX code"));
        }
        let mut cfg = RestrictConfig {
            client: parse_list(p, "smtpd_client_restrictions", Some(Subject::Client))?,
            helo: parse_list(p, "smtpd_helo_restrictions", Some(Subject::Helo))?,
            sender: parse_list(p, "smtpd_sender_restrictions", Some(Subject::Sender))?,
            relay: parse_list(p, "smtpd_relay_restrictions", Some(Subject::Recipient))?,
            recipient: parse_list(p, "smtpd_recipient_restrictions", Some(Subject::Recipient))?,
            data: parse_list(p, "smtpd_data_restrictions", None)?,
            etrn: parse_list(p, "smtpd_etrn_restrictions", Some(Subject::Etrn))?,
            codes: Codes {
                reject: code("reject_code")?,
                defer: code("defer_code")?,
                relay,
                map: MapCodes { reject: code("access_map_reject_code")?, defer: code("access_map_defer_code")? },
                bad_name: code("invalid_hostname_reject_code")?,
                non_fqdn: code("non_fqdn_reject_code")?,
                relay_recipient: code("unknown_relay_recipient_reject_code")?,
            },
            delay_reject: p.bool("smtpd_delay_reject")?,
            relay_domains: p.domain_list("relay_domains")?,
            relay_recipient_maps: split_braced_list(&p.get("relay_recipient_maps")?)
                .iter()
                .map(|spec| Table::open(spec, &p.config_dir))
                .collect::<Result<_, _>>()?,
            reject_unlisted_recipient: p.bool("smtpd_reject_unlisted_recipient")?,
            reject_unlisted_sender: p.bool("smtpd_reject_unlisted_sender")?,
            show_table_name: p.bool("show_user_unknown_table_name")?,
            null_key: p.get("smtpd_null_access_lookup_key")?,
            recipient_delimiter: p.get("recipient_delimiter")?,
            parent_style: p.parent_style("smtpd_access_maps")?,
            recipient_limit: usize::try_from(count("smtpd_recipient_limit")?).unwrap_or(usize::MAX),
            overshoot_limit: u32::try_from(count("smtpd_recipient_overshoot_limit")?).unwrap_or(u32::MAX),
            rbl_lists: Vec::new(),
            rhsbl_lists: Vec::new(),
            resolver: None,
            rbl_code: code("maps_rbl_reject_code")?,
            unknown_sender_domain: false,
            unknown_recipient_domain: false,
            unknown_address_code: code("unknown_address_reject_code")?,
            verify: None,
        };
        let mut verifies = false;
        for list in [&cfg.client, &cfg.helo, &cfg.sender, &cfg.relay, &cfg.recipient, &cfg.data, &cfg.etrn] {
            for word in list {
                match word {
                    Word::RejectRblClient(l) if !cfg.rbl_lists.contains(l) => cfg.rbl_lists.push(l.clone()),
                    Word::RejectRhsblSender(l) if !cfg.rhsbl_lists.contains(l) => cfg.rhsbl_lists.push(l.clone()),
                    Word::RejectUnknownSenderDomain => cfg.unknown_sender_domain = true,
                    Word::RejectUnknownRecipientDomain => cfg.unknown_recipient_domain = true,
                    Word::RejectUnverifiedRecipient => verifies = true,
                    _ => {}
                }
            }
        }
        if verifies {
            cfg.verify = Some(verify::VerifyCheck::from_params(p, code)?);
        }
        if !cfg.rbl_lists.is_empty() || !cfg.rhsbl_lists.is_empty() || cfg.unknown_sender_domain || cfg.unknown_recipient_domain {
            let servers = split_braced_list(&p.get("smtpd_dns_nameservers")?);
            cfg.resolver = Some(dnsbl::resolver(&servers).map_err(|e| ConfigError::value("smtpd_dns_nameservers", e))?);
        }
        Ok(cfg)
    }
}

/// What the restrictions remember in a session.
#[derive(Debug, Default)]
pub struct State {
    /// The client sent a command before our reply to a command that must come last in a
    /// pipelined group (or any command with plain SMTP).
    pub ill_pipelining: bool,
    /// Up to 100 bytes that followed the current command line in the input buffer (conn.rs
    /// fills it in before each command).
    pub pending_input: Vec<u8>,
    /// `smtpd_delay_reject = no` and the client restrictions refused at connect time.
    pub access_denied: Option<Reply>,
    /// This transaction goes to the hold queue.
    pub hold: bool,
    /// This transaction is accepted and dropped.
    pub discard: bool,
    /// Recipients refused for `smtpd_recipient_limit` so far in this transaction.
    pub overshoot: u32,
    /// The next reply is not counted as an error (a recipient within the overshoot limit).
    pub uncounted: bool,
    /// What the DNS lists said, by the name looked up (crate::restrict::dnsbl).
    pub dns: HashMap<String, dnsbl::Listing>,
    /// What DNS said about mail domains, for `reject_unknown_*_domain`.
    pub mailhosts: HashMap<String, dnsbl::Mailhost>,
    /// What the verify service said about addresses, for the command being evaluated only
    /// (a later RCPT asks again: a probe may have finished meanwhile).
    pub verified: HashMap<String, verify::Answer>,
    /// Milliseconds the `sleep` words of the last evaluation ask for; conn.rs waits them before
    /// the reply (an atomic, so that a shared `&Session` can record it).
    pub sleep_ms: std::sync::atomic::AtomicU64,
}

impl State {
    /// The wait the last evaluation asked for, once.
    pub fn take_sleep(&mut self) -> std::time::Duration {
        std::time::Duration::from_millis(std::mem::take(self.sleep_ms.get_mut()))
    }
}

impl State {
    /// A new transaction (MAIL, RSET, HELO).
    pub fn reset_transaction(&mut self) {
        self.hold = false;
        self.discard = false;
        self.overshoot = 0;
    }
}

/// Where the restrictions run: what generic words (`reject`, `defer`, ...) call the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Subject(Subject),
    Data,
}

/// How one list ended.
#[derive(Debug)]
enum Status {
    Dunno,
    Permit,
    Reject(Reply),
    /// The evaluation needs the verify service's answer first (the run records which).
    Suspend,
}

/// An evaluation stopped at `reject_unverified_recipient` for this address, which the session
/// has no answer for yet: ask the verify service ([`verify::ask`]), keep the answer in
/// [`State::verified`], and evaluate the command again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unverified(pub String);

/// One evaluation: the request's facts, and what it decided on the way.
struct Run<'r, 'a> {
    s: &'r Session<'a>,
    sender: Option<&'r str>,
    rcpt: Option<&'r Address>,
    etrn: Option<&'r str>,
    warn: bool,
    hold: bool,
    discard: bool,
    /// `reject_unlisted_recipient` (or `_sender`) already ran for real (not under warn_if_reject).
    rcpt_checked: bool,
    sender_checked: bool,
    /// Log lines: (what, text).
    events: Vec<(&'static str, String)>,
    /// A temporary refusal that applies only if the lists end up permitting (Postfix's
    /// `defer_if_permit`); the first one raised wins.
    defer_if_permit: Option<Reply>,
    /// The evaluation stopped for the verify service's answer about this address.
    unverified: Option<String>,
}

impl<'r, 'a> Run<'r, 'a> {
    fn new(s: &'r Session<'a>, rcpt: Option<&'r Address>, etrn: Option<&'r str>) -> Run<'r, 'a> {
        let sender = s.sender.as_ref().map(|a| a.addr.as_str());
        Run {
            s,
            sender,
            rcpt,
            etrn,
            warn: false,
            hold: s.restrict.hold,
            discard: s.restrict.discard,
            rcpt_checked: false,
            sender_checked: false,
            events: Vec::new(),
            defer_if_permit: None,
            unverified: None,
        }
    }

    fn cfg(&self) -> &'r RestrictConfig {
        &self.s.cfg.restrict
    }

    /// Postfix's `smtpd_check_reject`: under `warn_if_reject` a policy refusal only logs.
    fn refuse(&mut self, reply: Reply, policy: bool) -> Status {
        if self.warn && policy {
            self.events.push(("reject_warning", reply.first_line()));
            return Status::Dunno;
        }
        self.events.push(("reject", reply.first_line()));
        Status::Reject(reply)
    }

    /// A table could not be read: a temporary failure, never a warning only.
    fn lookup_failure(&mut self, e: impl std::fmt::Display, name: &str) -> Status {
        common::log_warning!("{e}");
        self.refuse(Reply::new(451, "4.3.0", format!("<{name}>: Temporary lookup failure")), false)
    }

    fn name_of(&self, stage: Stage) -> Option<String> {
        match stage {
            Stage::Data => Some("DATA".into()),
            Stage::Subject(Subject::Client) => Some(self.s.peer.show()),
            Stage::Subject(Subject::Helo) => self.s.helo.clone(),
            Stage::Subject(Subject::Sender) => self.sender.map(str::to_string),
            Stage::Subject(Subject::Recipient) => self.rcpt.map(|r| r.addr.clone()),
            Stage::Subject(Subject::Etrn) => self.etrn.map(str::to_string),
        }
    }

    fn class_of(stage: Stage) -> &'static str {
        match stage {
            Stage::Data => "Data command",
            Stage::Subject(s) => s.class(),
        }
    }

    /// Postfix's `generic_checks`.
    fn list(&mut self, words: &'r [Word], stage: Stage) -> Status {
        self.warn = false;
        let name = self.name_of(stage).unwrap_or_default();
        let class = Self::class_of(stage);
        let codes = self.cfg().codes.clone();
        for word in words {
            if self.discard {
                break;
            }
            let status = match word {
                Word::WarnIfReject => {
                    self.warn = true;
                    continue;
                }
                Word::Permit => Status::Permit,
                Word::Reject => self.refuse(Reply::new(codes.reject, "5.7.1", format!("<{name}>: {class} rejected: Access denied")), true),
                Word::Defer => self.refuse(Reply::new(codes.defer, "4.3.2", format!("<{name}>: {class} rejected: Try again later")), true),
                // A mynetworks table that cannot be read is no answer (Postfix's 451 4.3.0).
                Word::PermitMynetworks => match self.s.cfg.mynetworks.contains(self.s.peer.addr) {
                    Ok(true) => Status::Permit,
                    Ok(false) => Status::Dunno,
                    Err(e) => self.lookup_failure(e, &name),
                },
                Word::PermitSaslAuthenticated => {
                    if self.s.sasl_authenticated() {
                        Status::Permit
                    } else {
                        Status::Dunno
                    }
                }
                Word::RejectUnauthDestination => self.unauth_destination(codes.relay, "5.7.1"),
                Word::DeferUnauthDestination => self.unauth_destination(codes.relay - 100, "4.7.1"),
                Word::Access(subject, table) => self.access(*subject, table, stage),
                Word::RejectInvalidHeloHostname => match self.s.helo.clone() {
                    Some(h) if !valid_helo(&h) => {
                        self.refuse(Reply::new(codes.bad_name, "5.5.2", format!("<{h}>: Helo command rejected: Invalid name")), true)
                    }
                    _ => Status::Dunno,
                },
                Word::RejectNonFqdnHeloHostname => match self.s.helo.clone() {
                    Some(h) if !fqdn_helo(&h) => self.refuse(
                        Reply::new(codes.non_fqdn, "5.5.2", format!("<{h}>: Helo command rejected: need fully-qualified hostname")),
                        true,
                    ),
                    _ => Status::Dunno,
                },
                Word::RejectNonFqdnSender => match self.sender {
                    Some(a) if !a.is_empty() && !fqdn_address(a) => self.refuse(
                        Reply::new(codes.non_fqdn, "5.5.2", format!("<{a}>: Sender address rejected: need fully-qualified address")),
                        true,
                    ),
                    _ => Status::Dunno,
                },
                Word::RejectNonFqdnRecipient => match self.rcpt {
                    Some(r) if !fqdn_address(&r.addr) => self.refuse(
                        Reply::new(
                            codes.non_fqdn,
                            "5.5.2",
                            format!("<{}>: Recipient address rejected: need fully-qualified address", r.addr),
                        ),
                        true,
                    ),
                    _ => Status::Dunno,
                },
                Word::RejectUnlistedRecipient => match self.rcpt {
                    Some(r) => {
                        if !self.warn {
                            self.rcpt_checked = true;
                        }
                        self.unlisted(&r.addr, Subject::Recipient)
                    }
                    None => Status::Dunno,
                },
                Word::RejectUnlistedSender => match self.sender {
                    Some(a) if !a.is_empty() => {
                        if !self.warn {
                            self.sender_checked = true;
                        }
                        self.unlisted(a, Subject::Sender)
                    }
                    _ => Status::Dunno,
                },
                Word::RejectUnauthPipelining => {
                    if self.s.restrict.ill_pipelining {
                        self.refuse(
                            Reply::new(503, "5.5.0", format!("<{name}>: {class} rejected: Improper use of SMTP command pipelining")),
                            false,
                        )
                    } else {
                        Status::Dunno
                    }
                }
                Word::Sleep(d) => {
                    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
                    self.s.restrict.sleep_ms.fetch_add(ms, std::sync::atomic::Ordering::Relaxed);
                    Status::Dunno
                }
                Word::RejectUnknownSenderDomain => match self.sender {
                    Some(a) if !a.is_empty() => self.unknown_domain(a.to_string(), Subject::Sender),
                    _ => Status::Dunno,
                },
                Word::RejectUnknownRecipientDomain => match self.rcpt {
                    Some(r) => self.unknown_domain(r.addr.clone(), Subject::Recipient),
                    None => Status::Dunno,
                },
                Word::RejectRblClient(list) => {
                    let addr = self.s.peer.addr;
                    self.listed(dnsbl::client_name(addr, list), list, "Client host", addr.to_string())
                }
                Word::RejectRhsblSender(list) => match self.sender.and_then(|a| a.rsplit_once('@')).map(|(_, d)| d.to_ascii_lowercase()) {
                    Some(domain) if !domain.is_empty() => {
                        self.listed(Some(dnsbl::domain_name(&domain, list)), list, "Sender address", domain)
                    }
                    _ => Status::Dunno,
                },
                Word::RejectEtrnLoginMismatch => match self.etrn.and_then(|site| crate::etrn_login::mismatch(self.s, site)) {
                    Some(reply) => self.refuse(reply, true),
                    None => Status::Dunno,
                },
                Word::RejectUnverifiedRecipient => match self.rcpt {
                    Some(r) => self.unverified(&r.addr),
                    None => Status::Dunno,
                },
            };
            // warn_if_reject changes the next restriction only.
            self.warn = false;
            match status {
                Status::Dunno => {}
                done => return done,
            }
        }
        Status::Dunno
    }

    /// Postfix's `reject_unverified_address` for a recipient, from the verify service's answer.
    fn unverified(&mut self, addr: &str) -> Status {
        let Some(check) = self.cfg().verify.as_ref() else { return Status::Dunno };
        let Some(answer) = self.s.restrict.verified.get(addr) else {
            self.unverified = Some(addr.to_string());
            return Status::Suspend;
        };
        let class = Subject::Recipient.class();
        let Some((status, text)) = answer else {
            let reply = Reply::new(450, "4.1.1", format!("<{addr}>: {class} rejected: address verification problem"));
            return self.defer_if_permit(reply, check.tempfail_action);
        };
        let code = match status {
            AddressStatus::Deliverable => return Status::Dunno,
            AddressStatus::Probing | AddressStatus::Deferred => check.defer_code,
            AddressStatus::Undeliverable => check.reject_code,
        };
        let why = if check.reject_reason.is_empty() { text.as_str() } else { check.reject_reason.as_str() };
        if code < 500 {
            let why: String = why.chars().take(250).collect();
            let reply = Reply::new(code, "4.1.1", format!("<{addr}>: {class} rejected: unverified address: {why}"));
            self.defer_if_permit(reply, check.tempfail_action)
        } else {
            self.refuse(Reply::new(code, "5.1.1", format!("<{addr}>: {class} rejected: undeliverable address: {why}")), true)
        }
    }

    /// Postfix's `DEFER_IF_PERMIT`: remember the refusal for the end of the lists, unless the
    /// action is `defer` or this is under `warn_if_reject` (then it refuses, or warns, now).
    fn defer_if_permit(&mut self, reply: Reply, action: verify::TempfailAction) -> Status {
        if self.warn || action == verify::TempfailAction::Defer {
            return self.refuse(reply, true);
        }
        self.defer_if_permit.get_or_insert(reply);
        Status::Dunno
    }

    /// Postfix's `reject_unknown_mailhost` for the domain of `addr`.
    fn unknown_domain(&mut self, addr: String, subject: Subject) -> Status {
        let Some(domain) = dnsbl::mail_domain(&addr) else { return Status::Dunno };
        let class = subject.class();
        let sender = subject == Subject::Sender;
        let dsn = if sender { "1.8" } else { "1.2" };
        let code = self.cfg().unknown_address_code;
        let reply = match self.s.restrict.mailhosts.get(&domain) {
            Some(dnsbl::Mailhost::Found) | None => return Status::Dunno,
            Some(dnsbl::Mailhost::NullMx) => Reply::new(
                if sender { 550 } else { 556 },
                if sender { "5.7.27" } else { "5.1.10" },
                format!("<{addr}>: {class} rejected: Domain {domain} does not accept mail (nullMX)"),
            ),
            Some(dnsbl::Mailhost::NotFound) => {
                Reply::new(code, &format!("{}.{dsn}", code / 100), format!("<{addr}>: {class} rejected: Domain not found"))
            }
            // Postfix defers only if the request would be permitted (defer_if_permit); Postern
            // defers at once.
            Some(dnsbl::Mailhost::TempFail) => {
                Reply::new(450, &format!("4.{dsn}"), format!("<{addr}>: {class} rejected: Domain not found"))
            }
        };
        self.refuse(reply, true)
    }

    /// Postfix's `rbl_reject_reply` with `default_rbl_reply`, when `name` is listed.
    fn listed(&mut self, name: Option<String>, list: &dnsbl::Dnsbl, class: &str, what: String) -> Status {
        let Some(hit) = name.and_then(|n| self.s.restrict.dns.get(&n)).and_then(|l| l.hit(list.filter)) else { return Status::Dunno };
        let reason = hit.as_deref().map_or(String::new(), |t| format!("; {t}"));
        let code = self.cfg().rbl_code;
        let dsn = if code >= 500 { "5.7.1" } else { "4.7.1" };
        self.refuse(Reply::new(code, dsn, format!("Service unavailable; {class} [{what}] blocked using {}{reason}", list.domain)), true)
    }

    /// The recipient's domain is neither ours to relay to nor routed onwards by its local part.
    fn unauth_destination(&mut self, code: u16, dsn: &str) -> Status {
        let Some(r) = self.rcpt else { return Status::Dunno };
        match self.cfg().relay_domains.matches(&r.domain()) {
            // A routing character in the local part would let the next hop relay onwards.
            Ok(true) if !r.has_routing() => Status::Dunno,
            Ok(_) => self.refuse(Reply::new(code, dsn, format!("<{}>: Relay access denied", r.addr)), true),
            Err(e) => self.lookup_failure(e, &r.addr.clone()),
        }
    }

    /// `check_*_access`: the first key the table knows decides.
    fn access(&mut self, subject: Subject, table: &Table, stage: Stage) -> Status {
        let cfg = self.cfg();
        let style = cfg.parent_style;
        let (name, keys) = match subject {
            Subject::Client => {
                // An IPv4 client on an IPv6 socket is looked up by its IPv4 address, as Postfix does.
                let addr = match self.s.peer.addr {
                    std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(self.s.peer.addr, std::net::IpAddr::V4),
                    v4 => v4,
                };
                (self.s.peer.show(), client_keys(&self.s.peer.name, &addr.to_string(), style))
            }
            Subject::Helo => match &self.s.helo {
                Some(h) => (h.clone(), domain_keys(&h.to_ascii_lowercase(), style)),
                None => return Status::Dunno,
            },
            Subject::Etrn => match self.etrn {
                Some(site) => (site.to_string(), domain_keys(&site.to_ascii_lowercase(), style)),
                None => return Status::Dunno,
            },
            Subject::Sender | Subject::Recipient => {
                let addr = if subject == Subject::Sender { self.sender } else { self.rcpt.map(|r| r.addr.as_str()) };
                match addr {
                    None => return Status::Dunno,
                    Some("") => ("".to_string(), vec![common::config::table::search::Key { text: cfg.null_key.clone(), partial: false }]),
                    Some(a) => {
                        // A UTF-8 domain is looked up in A-label form.
                        let key = address_to_ascii_domain(a).to_ascii_lowercase();
                        (a.to_string(), address_keys(&key, &cfg.recipient_delimiter, Strategy::access(style), false))
                    }
                }
            }
        };
        let value = match find(std::slice::from_ref(table), &keys) {
            Ok(Some((_, v))) => v,
            Ok(None) => return Status::Dunno,
            Err(e) => return self.lookup_failure(e, &name),
        };
        match table_result(&value, &name, subject.class(), table.spec(), cfg.codes.map) {
            None => Status::Dunno,
            Some(Verdict::Permit) => Status::Permit,
            Some(Verdict::Refuse(reply)) => {
                let policy = reply.code != 451 || reply.enhanced.as_deref() != Some("4.3.5");
                self.refuse(reply, policy)
            }
            Some(Verdict::Hold(_) | Verdict::Discard(_)) if stage == Stage::Subject(Subject::Etrn) => {
                let action = value.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
                common::log_warning!("access table {}: action {action} is unavailable in smtpd_etrn_restrictions", table.spec());
                Status::Dunno
            }
            Some(Verdict::Hold(text)) => {
                if !self.hold {
                    self.events.push(("hold", text));
                    self.hold = true;
                }
                Status::Dunno
            }
            Some(Verdict::Discard(text)) => {
                self.events.push(("discard", text));
                self.discard = true;
                Status::Permit
            }
        }
    }

    /// `reject_unlisted_recipient` / `reject_unlisted_sender` for an address of a relay domain.
    fn unlisted(&mut self, addr: &str, subject: Subject) -> Status {
        let cfg = self.cfg();
        if cfg.relay_recipient_maps.is_empty() {
            return Status::Dunno;
        }
        match cfg.relay_domains.matches(&lookup_domain(addr)) {
            Ok(true) => {}
            Ok(false) => return Status::Dunno,
            Err(e) => return self.lookup_failure(e, addr),
        }
        let key = address_to_ascii_domain(addr).to_ascii_lowercase();
        let keys = address_keys(&key, &cfg.recipient_delimiter, Strategy::DEFAULT, false);
        match find(&cfg.relay_recipient_maps, &keys) {
            Ok(Some(_)) => Status::Dunno,
            Ok(None) => {
                let dsn = if subject == Subject::Sender { "5.1.0" } else { "5.1.1" };
                let table = if cfg.show_table_name { " in relay recipient table" } else { "" };
                let text = format!("<{addr}>: {} rejected: User unknown{table}", subject.class());
                self.refuse(Reply::new(cfg.codes.relay_recipient, dsn, text), true)
            }
            Err(e) => self.lookup_failure(e, addr),
        }
    }

    /// `smtpd_check_client`, `_helo` and `_mail` (the latter with the implicit
    /// `reject_unlisted_sender`), as they run before a RCPT or at their own commands.
    fn client(&mut self) -> Option<Reply> {
        self.stop(Stage::Subject(Subject::Client), &self.cfg().client)
    }

    fn helo(&mut self) -> Option<Reply> {
        self.s.helo.as_ref()?;
        self.stop(Stage::Subject(Subject::Helo), &self.cfg().helo)
    }

    fn mail(&mut self) -> Option<Reply> {
        let sender = self.sender?;
        self.sender_checked = false;
        let refused = self.stop(Stage::Subject(Subject::Sender), &self.cfg().sender);
        if refused.is_none() && self.cfg().reject_unlisted_sender && !self.sender_checked && !self.discard && !sender.is_empty() {
            self.warn = false;
            if let Status::Reject(r) = self.unlisted(sender, Subject::Sender) {
                return Some(r);
            }
        }
        refused
    }

    fn stop(&mut self, stage: Stage, words: &'r [Word]) -> Option<Reply> {
        match self.list(words, stage) {
            Status::Reject(r) => Some(r),
            _ => None,
        }
    }

    /// Log what happened, as Postfix's `log_whatsup`, and keep the side effects.
    fn finish(self) -> (bool, bool) {
        for (what, text) in &self.events {
            log_whatsup(self.s, what, text, self.sender, self.rcpt.map(|r| r.addr.as_str()));
        }
        (self.hold, self.discard)
    }
}

/// A HELO name that is a host name or an address literal (Postfix's `reject_invalid_hostname`).
fn valid_helo(helo: &str) -> bool {
    let name = strip_one_dot(helo);
    common::domain::valid_hostname(name) || common::domain::valid_address_literal(name) || name.parse::<std::net::IpAddr>().is_ok()
}

/// A host name with a dot, or an address literal.
fn fqdn_helo(helo: &str) -> bool {
    let name = strip_one_dot(helo);
    (common::domain::valid_hostname(name) && name.contains('.')) || common::domain::valid_address_literal(name)
}

/// `user@host.domain` (or `user@[addr]`).
fn fqdn_address(addr: &str) -> bool {
    match addr.rsplit_once('@') {
        Some((_, domain)) => fqdn_helo(domain),
        None => false,
    }
}

/// Postfix truncates a name ending in one dot (not two) before checking it.
fn strip_one_dot(name: &str) -> &str {
    match name.strip_suffix('.') {
        Some(rest) if !rest.ends_with('.') => rest,
        _ => name,
    }
}

/// Bytes as Postfix's `escape` shows them: C escapes, other non-printables in octal.
fn c_escape(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        match b {
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\{b:03o}")),
        }
    }
    out
}

/// `NOQUEUE: reject: RCPT from name[addr]: <text>; from=<s> to=<r> proto=ESMTP helo=<h>`.
pub fn log_whatsup(s: &Session<'_>, what: &str, text: &str, sender: Option<&str>, rcpt: Option<&str>) {
    let mut line = format!("NOQUEUE: {what}: {} from {}: {text};", s.last_command, s.peer.show());
    if let Some(sender) = sender {
        line.push_str(&format!(" from=<{sender}>"));
    }
    if let Some(rcpt) = rcpt {
        line.push_str(&format!(" to=<{rcpt}>"));
    }
    line.push_str(&format!(" proto={}", s.proto()));
    if let Some(helo) = &s.helo {
        line.push_str(&format!(" helo=<{helo}>"));
    }
    if let Some(login) = &s.sasl_login {
        line.push_str(&format!(" sasl_method={} sasl_username={}", login.method, login.username));
    }
    common::log_info!("{line}");
}

impl Session<'_> {
    /// `smtpd_delay_reject = no`: the client restrictions at connect time. A refusal is sent
    /// instead of nothing, and every later command but QUIT gets `503 5.7.0 Error: access
    /// denied for name[addr]`.
    pub fn check_connect(&mut self) -> Option<Reply> {
        if self.cfg.restrict.delay_reject {
            return None;
        }
        let mut run = Run::new(self, None, None);
        let refused = run.client();
        run.finish();
        self.restrict.access_denied = refused.clone();
        refused
    }

    /// `smtpd_delay_reject = no`: the HELO restrictions at HELO/EHLO.
    pub fn check_helo(&mut self) -> Option<Reply> {
        if self.cfg.restrict.delay_reject {
            return None;
        }
        let mut run = Run::new(self, None, None);
        let refused = run.helo();
        run.finish();
        refused
    }

    /// `smtpd_delay_reject = no`: the sender restrictions at MAIL (before the sender is kept).
    pub fn check_mail(&mut self, sender: &Address) -> Option<Reply> {
        if self.cfg.restrict.delay_reject {
            return None;
        }
        let mut run = Run::new(self, None, None);
        run.sender = Some(&sender.addr);
        let refused = run.mail();
        let (hold, discard) = run.finish();
        if refused.is_none() {
            (self.restrict.hold, self.restrict.discard) = (hold, discard);
        }
        refused
    }

    /// Postfix's `smtpd_check_rcpt`: the delayed lists, then the relay and recipient lists,
    /// then a deferral that waited for them (`defer_if_permit`), then the implicit
    /// `reject_unlisted_recipient`. `Err` when the verify service must be asked first: nothing
    /// was logged or kept of this evaluation.
    pub fn check_rcpt(&mut self, rcpt: &Address) -> Result<Option<Reply>, Unverified> {
        // RFC 5321 4.5.1: postmaster is always accepted.
        if rcpt.addr.eq_ignore_ascii_case("postmaster") {
            return Ok(None);
        }
        let cfg = &self.cfg.restrict;
        let mut run = Run::new(self, Some(rcpt), None);
        let mut refused = None;
        if cfg.delay_reject {
            refused = run.client().or_else(|| run.helo()).or_else(|| run.mail());
        }
        if refused.is_none() {
            refused = run.stop(Stage::Subject(Subject::Recipient), &cfg.relay);
        }
        if refused.is_none() && run.unverified.is_none() {
            refused = run.stop(Stage::Subject(Subject::Recipient), &cfg.recipient);
        }
        if let Some(addr) = run.unverified.take() {
            return Err(Unverified(addr));
        }
        if refused.is_none()
            && let Some(reply) = run.defer_if_permit.take()
        {
            refused = Some(reply.clone());
            run.events.push(("reject", reply.first_line()));
        }
        if refused.is_none() && cfg.reject_unlisted_recipient && !run.rcpt_checked && !run.discard {
            run.warn = false;
            if let Status::Reject(r) = run.unlisted(&rcpt.addr, Subject::Recipient) {
                refused = Some(r);
            }
        }
        let (hold, discard) = run.finish();
        if refused.is_none() {
            (self.restrict.hold, self.restrict.discard) = (hold, discard);
        }
        Ok(refused)
    }

    /// `smtpd_data_restrictions` at DATA.
    pub fn check_data(&mut self) -> Option<Reply> {
        let only = if self.recipients.len() == 1 { self.recipients.first() } else { None };
        let mut run = Run::new(self, only, None);
        let refused = run.stop(Stage::Data, &self.cfg.restrict.data);
        let (hold, discard) = run.finish();
        if refused.is_none() {
            (self.restrict.hold, self.restrict.discard) = (hold, discard);
        }
        refused
    }

    /// Postfix's `smtpd_check_etrn`: the delayed client and HELO lists, then the ETRN list.
    pub fn check_etrn(&self, site: &str) -> Option<Reply> {
        let cfg = &self.cfg.restrict;
        let mut run = Run::new(self, None, Some(site));
        let mut refused = None;
        if cfg.delay_reject {
            refused = run.client().or_else(|| run.helo());
        }
        if refused.is_none() {
            refused = run.stop(Stage::Subject(Subject::Etrn), &cfg.etrn);
        }
        run.finish();
        refused
    }

    /// Before each command: note improper pipelining (a command that must end a pipelined
    /// group, or any with plain SMTP, followed by more input), as Postfix's
    /// `smtpd_flag_ill_pipelining`.
    pub fn note_pipelining(&mut self, verb: &str) {
        const LAST: [&str; 5] = ["helo", "ehlo", "data", "noop", "vrfy"];
        if self.restrict.ill_pipelining || self.restrict.pending_input.is_empty() {
            return;
        }
        if !self.esmtp || LAST.contains(&verb) {
            let shown = c_escape(&self.restrict.pending_input);
            common::log_info!("improper command pipelining after {} from {}: {shown}", verb.to_ascii_uppercase(), self.peer.show());
            self.restrict.ill_pipelining = true;
        }
    }
}

#[cfg(test)]
mod tests;
