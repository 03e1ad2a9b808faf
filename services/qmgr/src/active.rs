//! The active queue (Postfix's `qmgr_active` and `qmgr_message`): taking a file into
//! `active`, what is kept of an active message, grouping its recipients by route, recording
//! their results, and start-up recovery.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::domain::lookup_domain;
use common::ipc::delivery::{DeliveryRecipient, DeliveryResult};
use common::ipc::verify::ProbeReporter;
use common::maillog::{DeliveryLine, delivery_line};
use common::queue::file::{self, Outcome, QueueEnvelope, QueueError, RecipientResult, now_us};
use common::queue::{QueueId, QueueName, Spool};
use common::{log_info, log_warning};

use crate::config::{QmgrConfig, Route};
use crate::relay::Relay;
use common::bounce::Due;

/// A message in the active queue: its envelope and results, never its body (the delivery
/// agent reads that from the queue file), so memory per message does not grow with its size.
#[derive(Debug)]
pub struct ActiveMsg {
    pub(crate) qf: QueueEnvelope,
    pub(crate) active_us: u64,
    /// Delivery jobs not finished yet.
    pub(crate) outstanding: usize,
    /// The notices this pass owes: recipients that bounced (for one notification), and ones
    /// sent whose NOTIFY asks for a success notice, to a next hop that did not take the
    /// request itself (for one success notice).
    pub(crate) due: Due,
    /// Domains with deferred recipients (for the flush service).
    pub(crate) deferred_domains: BTreeSet<String>,
}

/// A message the worker has moved into `active` and read.
#[derive(Debug)]
pub struct Activated {
    pub id: QueueId,
    pub qf: QueueEnvelope,
    pub active_us: u64,
    /// The file carried the unthrottle mark (`postqueue -i`): its destinations are tried now.
    pub unthrottle: bool,
}

/// Worker side: move `id` from `queue` into `active` and read its envelope. A file that is
/// gone (another scan, the flush service) is skipped; one that cannot be read now goes back
/// where it came from; one that cannot be parsed goes to `corrupt`.
pub fn activate_file(spool: &Spool, queue: QueueName, id: QueueId) -> Option<Activated> {
    match spool.move_file(&id, queue, QueueName::Active) {
        Ok(true) => {}
        Ok(false) => return None,
        Err(e) => {
            log_warning!("{id}: move from {} to active: {e}", queue.as_str());
            return None;
        }
    }
    let path = spool.path(QueueName::Active, &id);
    let qf = match file::read_envelope(&path) {
        Ok(qf) => qf,
        // A file that cannot be read now (EMFILE, ENOMEM, EIO) is not corrupt: it goes
        // back where it came from, and a later scan tries again.
        Err(e @ QueueError::Io { .. }) => {
            log_warning!("{id}: cannot read the queue file now, left in {} for a later scan: {e}", queue.as_str());
            if let Err(e) = spool.move_file(&id, QueueName::Active, queue) {
                log_warning!("{id}: move from active to {}: {e}", queue.as_str());
            }
            return None;
        }
        Err(e @ QueueError::Corrupt { .. }) => {
            log_warning!("saving corrupt file \"{id}\" from queue \"active\" to queue \"corrupt\": {e}");
            let _ = spool.move_file(&id, QueueName::Active, QueueName::Corrupt);
            return None;
        }
    };
    if qf.torn_records > 0 {
        log_warning!("{id}: skipped {} torn delivery status record(s) in the queue file", qf.torn_records);
    }
    let unthrottle = common::queue::unthrottle::take(&path).unwrap_or_else(|e| {
        log_warning!("{id}: read the unthrottle mark: {e}");
        false
    });
    log_info!("{id}: from=<{}>, size={}, nrcpt={} (queue active)", qf.envelope.sender, qf.message_len, qf.envelope.recipients.len());
    Some(Activated { id, qf, active_us: now_us(), unthrottle })
}

/// Worker side: append results to an active message's queue file (made durable before the
/// file moves on, see [`crate::finish`]).
pub fn append_results(path: &Path, id: &QueueId, results: &[RecipientResult]) {
    for rr in results {
        if let Err(e) = file::append_result(path, rr) {
            log_warning!("{id}: record delivery status: {e}");
        }
    }
}

/// Start-up: whatever a crashed queue manager left in `active` goes back to `incoming`.
pub fn recover(spool: &Spool) {
    match spool.list(QueueName::Active) {
        Ok(ids) => {
            for id in ids {
                if let Err(e) = spool.move_file(&id, QueueName::Active, QueueName::Incoming) {
                    log_warning!("{id}: move from active to incoming: {e}");
                }
            }
        }
        Err(e) => log_warning!("scan {}: {e}", spool.queue_dir(QueueName::Active).display()),
    }
}

/// Where an activated message's pending recipients go: requests waiting for their route's
/// window, and results settled at once (the `error` transport bounces, `defer_transports`
/// defers unless `postqueue -f` overrides it), in route order.
#[derive(Debug, Default)]
pub struct Admission {
    pub waiting: Vec<(Route, Vec<DeliveryRecipient>)>,
    pub settled: Vec<DeliveryResult>,
}

/// Group a message's pending recipients by route and settle what needs no agent. `relay`
/// (the fast flush cluster's handover) routes the recipients it covers instead of the tables.
pub fn admit(cfg: &QmgrConfig, qf: &QueueEnvelope, override_defer_transports: bool, relay: Option<&Relay>) -> Admission {
    let mut by_route: BTreeMap<Route, Vec<DeliveryRecipient>> = BTreeMap::new();
    let mut a = Admission::default();
    for (index, r) in qf.pending() {
        let relayed = relay.and_then(|relay| relay.route(&r.address)).filter(|_| !qf.envelope.verify_probe);
        match relayed.map_or_else(|| cfg.route(&r.address, qf.envelope.verify_probe), Ok) {
            Ok(route) => by_route.entry(route).or_default().push(DeliveryRecipient { index, address: r.address.clone() }),
            Err(e) => {
                log_warning!("{e}");
                a.settled.push(own_result(index, Outcome::Deferred, "4.3.0", "transport_maps lookup failure"));
            }
        }
    }
    for (route, recipients) in by_route {
        if route.transport == "error" {
            a.settled.extend(recipients.iter().map(|r| own_result(r.index, Outcome::Bounced, "5.0.0", &route.nexthop)));
        } else if !override_defer_transports && cfg.defer_transports.contains(&route.transport) {
            a.settled.extend(recipients.iter().map(|r| own_result(r.index, Outcome::Deferred, "4.3.2", "deferred transport")));
        } else {
            a.waiting.push((route, recipients));
        }
    }
    a
}

/// A result the queue manager makes up (it has no agent's word for it).
pub fn own_result(index: usize, outcome: Outcome, dsn: &str, text: &str) -> DeliveryResult {
    DeliveryResult {
        index,
        outcome,
        dsn: dsn.to_string(),
        text: text.to_string(),
        site_failure: false,
        dsn_passed_on: false,
        relay: String::new(),
    }
}

impl ActiveMsg {
    pub fn new(a: Activated, outstanding: usize) -> ActiveMsg {
        ActiveMsg { qf: a.qf, active_us: a.active_us, outstanding, due: Due::default(), deferred_domains: BTreeSet::new() }
    }

    /// Note results (logging them when `log`: the agents log their own); returns what is to
    /// be appended to the queue file. A probe's results are logged with the verify words
    /// (`status=undeliverable`) and never lead to a notification or a flush listing.
    pub fn record(&mut self, id: &QueueId, results: Vec<DeliveryResult>, log: bool, probes: &ProbeReporter) -> Vec<RecipientResult> {
        let probe = self.qf.envelope.verify_probe;
        let now = now_us();
        let mut appended = Vec::with_capacity(results.len());
        for r in results {
            let Some(rcpt) = self.qf.envelope.recipients.get(r.index).cloned() else { continue };
            let rr = RecipientResult { index: r.index, outcome: r.outcome, dsn: r.dsn.clone(), text: r.text.clone() };
            appended.push(rr.clone());
            self.qf.results.push(rr);
            if log {
                let secs = |a: u64, b: u64| b.saturating_sub(a) as f64 / 1e6;
                log_info!(
                    "{}",
                    delivery_line(&DeliveryLine {
                        queue_id: id.as_str(),
                        recipient: &rcpt.address,
                        relay: "none",
                        conn_use: None,
                        delays: [secs(self.qf.envelope.arrival_us, self.active_us), secs(self.active_us, now), 0.0, 0.0],
                        dsn: &r.dsn,
                        status: if probe { probes.status_word(r.outcome) } else { r.outcome.status() },
                        text: &r.text,
                    })
                );
            }
            if probe {
                continue;
            }
            if r.outcome == Outcome::Deferred {
                self.deferred_domains.insert(lookup_domain(&rcpt.address));
            }
            self.due.note(&rcpt, &r, &r.relay);
        }
        appended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{config, queue_message};

    #[test]
    fn activation_moves_good_files_and_sets_corrupt_ones_aside() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = config(tmp.path(), "").spool;
        let id = queue_message(&spool, QueueName::Incoming, "s@example.org", &["a@example.net"]);
        let a = activate_file(&spool, QueueName::Incoming, id.clone()).unwrap();
        assert_eq!(a.qf.envelope.recipients.len(), 1);
        assert!(spool.path(QueueName::Active, &id).exists());
        // Gone meanwhile: skipped.
        assert!(activate_file(&spool, QueueName::Incoming, id.clone()).is_none());
        // Garbage: to `corrupt`.
        let bad = QueueId::generate(std::time::SystemTime::now(), 99);
        let path = spool.path(QueueName::Incoming, &bad);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"not a queue file").unwrap();
        assert!(activate_file(&spool, QueueName::Incoming, bad.clone()).is_none());
        assert!(spool.path(QueueName::Corrupt, &bad).exists());
    }

    #[test]
    fn error_and_deferred_transports_are_settled_on_admission() {
        let tmp = tempfile::tempdir().unwrap();
        let maps = "transport_maps = inline:{{ bad.example = error:no such domain }, slow.example=slow:}\ndefer_transports = slow\n";
        let cfg = config(tmp.path(), maps);
        let spool = cfg.spool.clone();
        let id = queue_message(&spool, QueueName::Incoming, "s@example.org", &["a@bad.example", "b@slow.example", "c@ok.example"]);
        let a = activate_file(&spool, QueueName::Incoming, id.clone()).unwrap();
        let adm = admit(&cfg, &a.qf, false, None);
        assert_eq!(adm.waiting.iter().map(|(r, rc)| (r.nexthop.as_str(), rc.len())).collect::<Vec<_>>(), [("ok.example", 1)]);
        let settled: Vec<_> = adm.settled.iter().map(|r| (r.index, r.outcome, r.dsn.as_str(), r.text.as_str())).collect();
        assert_eq!(settled, [(0, Outcome::Bounced, "5.0.0", "no such domain"), (1, Outcome::Deferred, "4.3.2", "deferred transport")]);
        // `postqueue -f` overrides defer_transports: the slow transport's agent is asked.
        assert_eq!(admit(&cfg, &a.qf, true, None).waiting.len(), 2);
        // Recording them notes the bounce and the deferred domain, and appends both.
        let mut m = ActiveMsg::new(a, 1);
        assert_eq!(m.record(&id, adm.settled, true, &cfg.probes).len(), 2);
        assert_eq!((m.due.failed.len(), m.due.failed[0].text.as_str()), (1, "no such domain"));
        assert!(m.deferred_domains.contains("slow.example"));
        // Deferred is not final: b and c are still pending.
        assert_eq!(m.qf.pending().count(), 2);
    }

    #[test]
    fn a_relay_override_routes_its_site_only() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path(), "transport_maps = inline:{ customer.example=slow: }\n");
        let spool = cfg.spool.clone();
        let id = queue_message(&spool, QueueName::Incoming, "s@example.org", &["a@customer.example", "b@other.example"]);
        let a = activate_file(&spool, QueueName::Incoming, id.clone()).unwrap();
        let mut relays = crate::relay::Relays::default();
        let now = std::time::Instant::now();
        relays.add("customer.example", "[192.0.2.1]:25", &[id.to_string()], now).unwrap();
        let relay = relays.take(&id, now);
        let routes = |adm: Admission| adm.waiting.into_iter().map(|(r, rc)| (r.transport, r.nexthop, rc.len())).collect::<Vec<_>>();
        assert_eq!(
            routes(admit(&cfg, &a.qf, false, relay.as_ref())),
            [("smtp".into(), "[192.0.2.1]:25".into(), 1), ("smtp".into(), "other.example".into(), 1)]
        );
        assert_eq!(routes(admit(&cfg, &a.qf, false, None))[0], ("slow".into(), "customer.example".into(), 1));
    }
}
