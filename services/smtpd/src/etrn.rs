//! ETRN after its syntax checks: `smtpd_etrn_restrictions`, then the fast flush service for an
//! eligible site, else the configured fallback (ARCHITECTURE.md §4): `slow` asks the queue
//! manager for a whole-queue run (at most one per `queue_run_delay`; later requests join it),
//! `reject` answers 459 as Postfix does.

use std::time::Instant;

use common::domain::Site;
use common::ipc::flush::{FlushReply, FlushRequest};
use common::ipc::trigger::Trigger;
use common::log_warning;

use crate::config::{EtrnFallback, SmtpdConfig};
use crate::reply::Reply;
use crate::session::Session;

/// Postfix's reply when the fast flush service or the queue manager cannot be reached.
fn unable() -> Reply {
    Reply::plain(458, "Unable to queue messages")
}

/// Run an ETRN that passed the syntax checks; returns the reply.
pub async fn run(s: &Session<'_>, site: &str, subdomains: bool) -> Reply {
    let cfg = s.cfg;
    if let Some(reply) = s.check_etrn(site) {
        return reply;
    }
    let shown: String = site.chars().take(100).collect();
    let eligible = Site::parse(site).is_ok()
        && !cfg.fast_flush_domains.is_empty()
        && match cfg.fast_flush_domains.matches(site) {
            Ok(listed) => listed,
            // A table that cannot be read is a temporary failure, not "not eligible" (which
            // would answer 459 or start a whole-queue run).
            Err(e) => {
                log_warning!("{e}");
                return unable();
            }
        };
    if eligible {
        let req = FlushRequest::SendSite { site: site.to_string(), subdomains };
        match cfg.flush.call(&req, cfg.ipc_timeout).await {
            // With the fast flush cluster, `moved` is the total of every node that answered.
            Ok(FlushReply::Ok { moved, .. }) => {
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
            Ok(FlushReply::Fail { .. } | FlushReply::Listed { .. } | FlushReply::Shaped { .. }) | Err(_) => {
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
