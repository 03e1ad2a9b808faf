//! ETRN after its syntax checks: `smtpd_etrn_restrictions`, then the fast flush service for an
//! eligible site, else the configured fallback (ARCHITECTURE.md §4): `slow` asks the queue
//! manager for a whole-queue run (at most one per `queue_run_delay`; later requests join it),
//! `reject` answers 459 as Postfix does.

use std::time::Instant;

use common::config::table::Table;
use common::config::table::search::{ParentStyle, domain_keys, find};
use common::domain::Site;
use common::ipc::flush::{FlushReply, FlushRequest};
use common::ipc::trigger::Trigger;
use common::log_warning;

use crate::access::{Verdict, check_client};
use crate::config::{EtrnFallback, Restriction, SmtpdConfig};
use crate::reply::Reply;
use crate::session::Session;

/// Postfix's reply when the fast flush service or the queue manager cannot be reached.
fn unable() -> Reply {
    Reply::plain(458, "Unable to queue messages")
}

/// What an access table entry says.
fn access_action(value: &str, site: &str) -> Option<Result<(), Reply>> {
    let (word, text) = value.split_once(char::is_whitespace).map_or((value, ""), |(w, t)| (w, t.trim()));
    match word.to_ascii_uppercase().as_str() {
        "OK" | "PERMIT" => Some(Ok(())),
        "REJECT" => {
            let why = if text.is_empty() { "Access denied" } else { text };
            Some(Err(Reply::new(554, "5.7.1", format!("<{site}>: Etrn command rejected: {why}"))))
        }
        "DEFER" => Some(Err(Reply::new(450, "4.3.2", format!("<{site}>: Etrn command rejected: Try again later")))),
        "DUNNO" => None,
        _ if Reply::parse_rejection(value).is_some() => Reply::parse_rejection(value).map(Err),
        other => {
            log_warning!("access table: action {other} is unavailable in smtpd_etrn_restrictions");
            None
        }
    }
}

/// The site and its parent domains; a table that cannot be read is a temporary failure.
fn lookup_domain(t: &Table, site: &str) -> Result<Option<String>, Reply> {
    let keys = domain_keys(&site.to_ascii_lowercase(), ParentStyle::Parent);
    find(std::slice::from_ref(t), &keys).map(|hit| hit.map(|(_, v)| v)).map_err(|e| {
        log_warning!("{e}");
        Reply::new(451, "4.3.5", "Server configuration error")
    })
}

/// `Some(reply)` when a restriction rejects.
fn check_restrictions(s: &Session<'_>, site: &str) -> Option<Reply> {
    for r in &s.cfg.etrn_restrictions {
        let verdict = match r {
            Restriction::Permit => Some(Ok(())),
            Restriction::Reject => Some(Err(Reply::new(554, "5.7.1", format!("<{site}>: Etrn command rejected: Access denied")))),
            Restriction::Defer => Some(Err(Reply::new(450, "4.3.2", format!("<{site}>: Etrn command rejected: Try again later")))),
            Restriction::PermitMynetworks => s.cfg.mynetworks.contains(s.peer.addr).then_some(Ok(())),
            Restriction::PermitSaslAuthenticated => s.sasl_authenticated().then_some(Ok(())),
            Restriction::CheckClientAccess(t) => match check_client(t, &s.peer, s.cfg.access_parent_style) {
                Some(Verdict::Permit) => Some(Ok(())),
                Some(Verdict::Refuse(reply)) => Some(Err(reply)),
                None => None,
            },
            Restriction::CheckEtrnAccess(t) => match lookup_domain(t, site) {
                Ok(v) => v.and_then(|v| access_action(&v, site)),
                Err(reply) => Some(Err(reply)),
            },
            Restriction::RejectEtrnLoginMismatch => crate::etrn_login::mismatch(s, site).map(Err),
            Restriction::RejectUnauthDestination | Restriction::DeferUnauthDestination => None,
        };
        match verdict {
            Some(Ok(())) => return None,
            Some(Err(reply)) => return Some(reply),
            None => {}
        }
    }
    None
}

/// Run an ETRN that passed the syntax checks; returns the reply.
pub async fn run(s: &Session<'_>, site: &str, subdomains: bool) -> Reply {
    let cfg = s.cfg;
    if let Some(reply) = check_restrictions(s, site) {
        s.log_reject(&reply.first_line());
        return reply;
    }
    let shown: String = site.chars().take(100).collect();
    let eligible = Site::parse(site).is_ok()
        && !cfg.fast_flush_domains.is_empty()
        && cfg.fast_flush_domains.matches(site).unwrap_or_else(|e| {
            log_warning!("{e}");
            false
        });
    if eligible {
        let req = FlushRequest::SendSite { site: site.to_string(), subdomains };
        match cfg.flush.call(&req, cfg.ipc_timeout).await {
            Ok(FlushReply::Ok { moved }) => {
                return match (cfg.etrn_rfc1985, moved) {
                    (false, _) => Reply::plain(250, "Queuing started"),
                    (true, 0) => Reply::plain(251, format!("OK, no messages waiting for node {site}")),
                    (true, n) => Reply::plain(253, format!("OK, {n} pending messages for node {site} started")),
                };
            }
            Ok(FlushReply::Deny) => {}
            Ok(FlushReply::Bad { .. }) => {
                log_warning!("bad ETRN {shown}... from {}", s.peer.show());
                return unable();
            }
            Ok(FlushReply::Fail { .. } | FlushReply::Listed { .. }) | Err(_) => {
                log_warning!("unable to talk to fast flush service");
                return unable();
            }
        }
    }
    match cfg.etrn_fallback {
        EtrnFallback::Reject => {
            log_warning!("reject: ETRN {shown}... from {}", s.peer.show());
            Reply::plain(459, format!("<{site}>: service unavailable"))
        }
        EtrnFallback::Slow => {
            if !slow_run(cfg).await {
                return unable();
            }
            if cfg.etrn_rfc1985 {
                Reply::plain(250, format!("OK, queuing for node {site} started"))
            } else {
                Reply::plain(250, "Queuing started")
            }
        }
    }
}

/// Ask for a whole-queue run, unless one was asked for less than `queue_run_delay` ago (then
/// this request joins it). False when the queue manager cannot be reached.
async fn slow_run(cfg: &SmtpdConfig) -> bool {
    {
        let mut last = match cfg.last_slow_etrn.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        if last.is_some_and(|t| t.elapsed() < cfg.queue_run_delay) {
            return true;
        }
        *last = Some(Instant::now());
    }
    let triggers = [Trigger::ForgetDeadSites, Trigger::IgnoreTimestamps, Trigger::ScanDeferred, Trigger::ScanIncoming];
    match cfg.qmgr_trigger.send(&triggers).await {
        Ok(_) => true,
        Err(e) => {
            log_warning!("unable to trigger the queue manager for ETRN: {e}");
            if let Ok(mut last) = cfg.last_slow_etrn.lock() {
                *last = None;
            }
            false
        }
    }
}
