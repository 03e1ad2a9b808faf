//! The scheduler: owns the active queue. Scans move files from `incoming` and `deferred` into
//! `active`, recipients are grouped by route and handed to delivery agents with at most
//! `default_destination_concurrency_limit` requests per route in flight, results are appended to
//! the queue file as they come (and fsynced once before the file moves to `deferred`), and a
//! finished message is removed, bounced or deferred with backoff (its mtime is its next retry
//! time) and listed with the flush service.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fs;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc::UnboundedSender;

use common::datetime::from_us;
use common::domain::address_domain;
use common::ipc::client::Persistent;
use common::ipc::delivery::{DeliveryProtocol, DeliveryRecipient, DeliveryRequest, DeliveryResult};
use common::ipc::flush::{FlushReply, FlushRequest};
use common::ipc::frame::FrameError;
use common::ipc::qmgr::QmgrTrigger;
use common::maillog::{DeliveryLine, delivery_line};
use common::queue::file::{self, Outcome, QueueEnvelope, QueueError, RecipientResult, now_us};
use common::queue::{QueueId, QueueName};
use common::{log_info, log_warning};

use crate::bounce::{Discard, Failed, Notice, Original, notice_for, queue_notification, read_original};
use crate::config::{QmgrConfig, Route};

/// Files a scan looks at per [`Scheduler::run`] before events are handled again.
const FEED_SLICE: usize = 500;

/// Messages the scheduler reacts to, besides scans it decides on itself.
#[derive(Debug)]
pub enum SchedMsg {
    Triggers(Vec<QmgrTrigger>),
    /// A delivery request ended: the agent's results (it logged them itself), and the queue
    /// manager's own for the recipients the agent gave none for (to be logged here).
    Done {
        id: QueueId,
        route: Route,
        results: Vec<DeliveryResult>,
        own: Vec<DeliveryResult>,
    },
}

/// A scan of one queue (Postfix's scan context): the listing being worked through, and whether
/// another scan was asked for meanwhile.
struct ScanCtx {
    pending: VecDeque<QueueId>,
    again: bool,
}

impl ScanCtx {
    fn idle(&self) -> bool {
        self.pending.is_empty() && !self.again
    }
}

/// A message in the active queue: its envelope and results, never its body (the delivery
/// agent reads that from the queue file), so memory per message does not grow with its size.
struct ActiveMsg {
    qf: QueueEnvelope,
    active_us: u64,
    /// Delivery jobs not finished yet.
    outstanding: usize,
    /// Recipients that bounced during this pass (for one notification).
    failed: Vec<Failed>,
    /// Domains with deferred recipients (for the flush service).
    deferred_domains: BTreeSet<String>,
}

struct Job {
    id: QueueId,
    recipients: Vec<DeliveryRecipient>,
}

pub struct Scheduler {
    cfg: QmgrConfig,
    tx: UnboundedSender<SchedMsg>,
    active: HashMap<QueueId, ActiveMsg>,
    jobs: BTreeMap<Route, VecDeque<Job>>,
    inflight: HashMap<Route, usize>,
    /// Per-route concurrency window (Postfix's slow start): starts at
    /// `initial_destination_concurrency`, grows by one per delivered request up to the limit, and
    /// starts over when the route fails.
    window: HashMap<Route, usize>,
    /// Routes that failed recently: (until, reason). `F` clears it.
    dead: HashMap<Route, (Instant, String)>,
    /// Kept connections to the delivery agents, by transport (`private/<transport>`).
    agents: HashMap<String, Arc<Persistent<DeliveryProtocol>>>,
    incoming: ScanCtx,
    deferred: ScanCtx,
    ignore_timestamps: bool,
    override_defer_transports: bool,
}

impl Scheduler {
    pub fn new(cfg: QmgrConfig, tx: UnboundedSender<SchedMsg>) -> Scheduler {
        Scheduler {
            cfg,
            tx,
            active: HashMap::new(),
            jobs: BTreeMap::new(),
            inflight: HashMap::new(),
            window: HashMap::new(),
            dead: HashMap::new(),
            agents: HashMap::new(),
            incoming: ScanCtx { pending: VecDeque::new(), again: true },
            deferred: ScanCtx { pending: VecDeque::new(), again: true },
            ignore_timestamps: false,
            override_defer_transports: false,
        }
    }

    pub fn set_config(&mut self, cfg: QmgrConfig) {
        self.cfg = cfg;
    }

    /// Start-up: whatever a crashed queue manager left in `active` goes back to `incoming`.
    pub fn recover(&mut self) {
        match self.cfg.spool.list(QueueName::Active) {
            Ok(ids) => {
                for id in ids {
                    if let Err(e) = self.cfg.spool.move_file(&id, QueueName::Active, QueueName::Incoming) {
                        log_warning!("{id}: move from active to incoming: {e}");
                    }
                }
            }
            Err(e) => log_warning!("scan {}: {e}", self.cfg.spool.queue_dir(QueueName::Active).display()),
        }
    }

    pub fn request_deferred_scan(&mut self) {
        self.deferred.again = true;
    }

    fn ctx(&mut self, queue: QueueName) -> &mut ScanCtx {
        if queue == QueueName::Incoming { &mut self.incoming } else { &mut self.deferred }
    }

    pub fn handle(&mut self, msg: SchedMsg) {
        match msg {
            SchedMsg::Triggers(ts) => {
                for t in ts {
                    match t {
                        QmgrTrigger::ScanIncoming | QmgrTrigger::Wakeup => self.incoming.again = true,
                        QmgrTrigger::ScanDeferred => self.deferred.again = true,
                        QmgrTrigger::IgnoreTimestamps => self.ignore_timestamps = true,
                        QmgrTrigger::ForgetDeadSites => {
                            self.dead.clear();
                            self.override_defer_transports = true;
                        }
                    }
                }
            }
            SchedMsg::Done { id, route, results, own } => self.on_done(id, route, results, own),
        }
    }

    /// Feed the active queue from the scans in progress (incoming first, as Postfix prefers new
    /// mail when room is short), then dispatch. True when a scan has more files to look at
    /// right away: the caller handles the events that arrived meanwhile and calls again.
    pub fn run(&mut self) -> bool {
        let more = self.feed(QueueName::Incoming) | self.feed(QueueName::Deferred);
        if self.incoming.idle() && self.deferred.idle() {
            // The modifiers applied to the scans that have now completed.
            self.ignore_timestamps = false;
            self.override_defer_transports = false;
        }
        self.dispatch();
        more
    }

    /// Admit files from `queue`'s scan while the active queue has room, at most [`FEED_SLICE`]
    /// of them per call (true when the slice ran out first): a scan of a large deferred queue,
    /// which looks at every file's retry time, must not hold up the triggers and delivery
    /// results that arrive meanwhile (Postfix's queue manager interleaves them likewise). The
    /// directory is listed once per scan; a scan asked for meanwhile starts when this one is
    /// through, so a full active queue never makes us list a large deferred queue again and
    /// again.
    fn feed(&mut self, queue: QueueName) -> bool {
        let now = SystemTime::now();
        let mut slice = FEED_SLICE;
        loop {
            if self.ctx(queue).pending.is_empty() {
                if !self.ctx(queue).again {
                    return false;
                }
                self.ctx(queue).again = false;
                match self.cfg.spool.list(queue) {
                    Ok(ids) => self.ctx(queue).pending = ids.into(),
                    Err(e) => log_warning!("scan {}: {e}", self.cfg.spool.queue_dir(queue).display()),
                }
                continue;
            }
            if self.active.len() >= self.cfg.active_limit {
                return false;
            }
            if slice == 0 {
                return true;
            }
            slice -= 1;
            let Some(id) = self.ctx(queue).pending.pop_front() else { continue };
            if self.active.contains_key(&id) {
                continue;
            }
            if !self.ignore_timestamps {
                let future = fs::metadata(self.cfg.spool.path(queue, &id))
                    .and_then(|m| m.modified())
                    .is_ok_and(|m| m > now + Duration::from_secs(1));
                if future {
                    continue;
                }
            }
            self.activate(queue, id);
        }
    }

    fn activate(&mut self, queue: QueueName, id: QueueId) {
        let spool = &self.cfg.spool;
        match spool.move_file(&id, queue, QueueName::Active) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                log_warning!("{id}: move from {} to active: {e}", queue.as_str());
                return;
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
                return;
            }
            Err(e @ QueueError::Corrupt { .. }) => {
                log_warning!("saving corrupt file \"{id}\" from queue \"active\" to queue \"corrupt\": {e}");
                let _ = spool.move_file(&id, QueueName::Active, QueueName::Corrupt);
                return;
            }
        };
        if qf.torn_records > 0 {
            log_warning!("{id}: skipped {} torn delivery status record(s) in the queue file", qf.torn_records);
        }
        log_info!("{id}: from=<{}>, size={}, nrcpt={} (queue active)", qf.envelope.sender, qf.message_len, qf.envelope.recipients.len());
        let mut by_route: BTreeMap<Route, Vec<DeliveryRecipient>> = BTreeMap::new();
        for (index, r) in qf.pending() {
            by_route.entry(self.cfg.route(&r.address)).or_default().push(DeliveryRecipient { index, address: r.address.clone() });
        }
        let msg = ActiveMsg { qf, active_us: now_us(), outstanding: 0, failed: Vec::new(), deferred_domains: BTreeSet::new() };
        self.active.insert(id.clone(), msg);
        for (route, recipients) in by_route {
            if route.transport == "error" {
                let results = recipients.iter().map(|r| result(r.index, Outcome::Bounced, "5.0.0", &route.nexthop)).collect();
                self.record(&id, results, true);
            } else if !self.override_defer_transports && self.cfg.defer_transports.contains(&route.transport) {
                let results = recipients.iter().map(|r| result(r.index, Outcome::Deferred, "4.3.2", "deferred transport")).collect();
                self.record(&id, results, true);
            } else {
                if let Some(m) = self.active.get_mut(&id) {
                    m.outstanding += 1;
                }
                self.jobs.entry(route).or_default().push_back(Job { id: id.clone(), recipients });
            }
        }
        self.finish_if_done(&id);
    }

    fn is_dead(&mut self, route: &Route) -> Option<String> {
        match self.dead.get(route) {
            Some((until, why)) if *until > Instant::now() => Some(why.clone()),
            Some(_) => {
                self.dead.remove(route);
                None
            }
            None => None,
        }
    }

    fn dispatch(&mut self) {
        let routes: Vec<Route> = self.jobs.iter().filter(|(_, q)| !q.is_empty()).map(|(r, _)| r.clone()).collect();
        for route in routes {
            if let Some(why) = self.is_dead(&route) {
                let jobs: Vec<Job> = self.jobs.remove(&route).map(Vec::from).unwrap_or_default();
                for job in jobs {
                    let text = format!("delivery temporarily suspended: {why}");
                    let results = job.recipients.iter().map(|r| result(r.index, Outcome::Deferred, "4.4.1", &text)).collect();
                    self.record(&job.id, results, true);
                    self.job_finished(&job.id);
                }
                continue;
            }
            let window = self.window.get(&route).copied().unwrap_or(self.cfg.initial_concurrency).min(self.cfg.destination_concurrency);
            while self.inflight.get(&route).copied().unwrap_or(0) < window {
                let Some(job) = self.jobs.get_mut(&route).and_then(VecDeque::pop_front) else { break };
                let Some(msg) = self.active.get(&job.id) else { continue };
                *self.inflight.entry(route.clone()).or_insert(0) += 1;
                let req = DeliveryRequest {
                    queue_id: job.id.to_string(),
                    queue: QueueName::Active.as_str().to_string(),
                    nexthop: route.nexthop.clone(),
                    sender: msg.qf.envelope.sender.clone(),
                    recipients: job.recipients,
                    arrival_us: msg.qf.envelope.arrival_us,
                    active_us: msg.active_us,
                };
                let agent = match self.agents.get(&route.transport) {
                    Some(agent) => agent.clone(),
                    None => {
                        let agent = Arc::new(Persistent::new(self.cfg.agent_socket(&route.transport)));
                        self.agents.insert(route.transport.clone(), agent.clone());
                        agent
                    }
                };
                // Postfix's watchdog on the delivery agent: a request that is not answered in
                // time, like an agent that dies in the middle of one, must not keep the
                // message in `active` until the queue manager restarts.
                let timeout = self.cfg.delivery_timeout;
                let tx = self.tx.clone();
                let (id, route) = (job.id, route.clone());
                tokio::spawn(async move {
                    let (results, failure) = match agent.call(&req, timeout).await {
                        Ok(reply) => checked_results(&route.transport, &req.recipients, reply.results),
                        Err(e) => (Vec::new(), Some(agent_failure(&id, &route.transport, &e))),
                    };
                    // Like Postfix, a failed agent suspends the route for a while (a site
                    // failure), and the recipients it gave no result for are deferred.
                    let own = match failure {
                        Some((reason, warning)) => {
                            log_warning!("{warning}");
                            req.recipients
                                .iter()
                                .filter(|r| !results.iter().any(|got| got.index == r.index))
                                .map(|r| DeliveryResult { site_failure: true, ..result(r.index, Outcome::Deferred, "4.3.0", reason) })
                                .collect()
                        }
                        None => Vec::new(),
                    };
                    let _ = tx.send(SchedMsg::Done { id, route, results, own });
                });
            }
        }
        self.jobs.retain(|_, q| !q.is_empty());
    }

    fn on_done(&mut self, id: QueueId, route: Route, results: Vec<DeliveryResult>, own: Vec<DeliveryResult>) {
        if let Some(n) = self.inflight.get_mut(&route) {
            *n = n.saturating_sub(1);
        }
        match results.iter().chain(&own).find(|r| r.site_failure) {
            Some(r) => {
                self.window.remove(&route);
                self.dead.insert(route, (Instant::now() + self.cfg.minimal_backoff, r.text.clone()));
            }
            None => {
                let w = self.window.entry(route).or_insert(self.cfg.initial_concurrency);
                *w = (*w + 1).min(self.cfg.destination_concurrency);
            }
        }
        // The agent has logged its own results; the queue manager logs the ones it made up.
        self.record(&id, results, false);
        self.record(&id, own, true);
        self.job_finished(&id);
    }

    fn job_finished(&mut self, id: &QueueId) {
        if let Some(m) = self.active.get_mut(id) {
            m.outstanding = m.outstanding.saturating_sub(1);
        }
        self.finish_if_done(id);
    }

    /// Append results to the queue file and note them (made durable before the file moves on).
    fn record(&mut self, id: &QueueId, results: Vec<DeliveryResult>, log: bool) {
        let path = self.cfg.spool.path(QueueName::Active, id);
        let Some(msg) = self.active.get_mut(id) else { return };
        let now = now_us();
        for r in results {
            let Some(rcpt) = msg.qf.envelope.recipients.get(r.index).cloned() else { continue };
            let rr = RecipientResult { index: r.index, outcome: r.outcome, dsn: r.dsn.clone(), text: r.text.clone() };
            if let Err(e) = file::append_result(&path, &rr) {
                log_warning!("{id}: record delivery status: {e}");
            }
            msg.qf.results.push(rr);
            if log {
                let secs = |a: u64, b: u64| b.saturating_sub(a) as f64 / 1e6;
                log_info!(
                    "{}",
                    delivery_line(&DeliveryLine {
                        queue_id: id.as_str(),
                        recipient: &rcpt.address,
                        relay: "none",
                        conn_use: None,
                        delays: [secs(msg.qf.envelope.arrival_us, msg.active_us), secs(msg.active_us, now), 0.0, 0.0],
                        dsn: &r.dsn,
                        status: r.outcome.status(),
                        text: &r.text,
                    })
                );
            }
            match r.outcome {
                Outcome::Bounced => msg.failed.push(Failed { address: rcpt.address, dsn: r.dsn, text: r.text }),
                Outcome::Deferred => {
                    msg.deferred_domains.insert(address_domain(&rcpt.address).to_string());
                }
                Outcome::Sent => {}
            }
        }
    }

    fn finish_if_done(&mut self, id: &QueueId) {
        if self.active.get(id).is_none_or(|m| m.outstanding > 0) {
            return;
        }
        let Some(mut msg) = self.active.remove(id) else { return };
        let spool = self.cfg.spool.clone();
        let path = spool.path(QueueName::Active, id);
        let sender = msg.qf.envelope.sender.clone();
        let pending: Vec<(usize, String)> = msg.qf.pending().map(|(i, r)| (i, r.address.clone())).collect();
        let age = SystemTime::now().duration_since(from_us(msg.qf.envelope.arrival_us)).unwrap_or_default();
        let lifetime = if sender.is_empty() { self.cfg.bounce_queue_lifetime } else { self.cfg.maximal_queue_lifetime };
        let expired = !pending.is_empty() && age >= lifetime;
        if expired {
            log_info!("{id}: from=<{sender}>, status=expired, returned to sender");
            for (index, address) in &pending {
                let rr = RecipientResult { index: *index, outcome: Outcome::Bounced, dsn: "4.4.7".into(), text: "message expired".into() };
                if let Err(e) = file::append_result(&path, &rr) {
                    log_warning!("{id}: record delivery status: {e}");
                }
                msg.failed.push(Failed {
                    address: address.clone(),
                    dsn: rr.dsn,
                    text: "delivery temporarily suspended; message expired".into(),
                });
            }
        }
        if !msg.failed.is_empty() {
            self.notify_failed(id, &path, &msg.qf, &msg.failed);
        }
        if pending.is_empty() || expired {
            match fs::remove_file(&path) {
                Ok(()) => log_info!("{id}: removed"),
                Err(e) => log_warning!("{id}: remove {}: {e}", path.display()),
            }
            return;
        }
        // Deferred: the next attempt waits as long as the message has already waited, within
        // [minimal_backoff_time, maximal_backoff_time]; the file's mtime says when.
        let delay = age.clamp(self.cfg.minimal_backoff, self.cfg.maximal_backoff.max(self.cfg.minimal_backoff));
        let when = SystemTime::now() + delay;
        // The recipients' results are made durable once, before the file moves on.
        if let Err(e) = file::sync(&path) {
            log_warning!("{id}: {e}");
        }
        if let Err(e) = fs::File::open(&path).and_then(|f| f.set_times(fs::FileTimes::new().set_accessed(when).set_modified(when))) {
            log_warning!("{id}: set retry time: {e}");
        }
        if let Err(e) = spool.move_file(id, QueueName::Active, QueueName::Deferred) {
            log_warning!("{id}: move from active to deferred: {e}");
            // Never leave a message in `active`, where only a restart would find it again:
            // `incoming` is scanned again, and the retry time set above still applies there.
            if let Err(e) = spool.move_file(id, QueueName::Active, QueueName::Incoming) {
                log_warning!("{id}: move from active to incoming: {e}");
            }
            return;
        }
        // Only now, with the file in `deferred`, tell the flush service: a send that arrived
        // earlier would not have found the file.
        for domain in msg.deferred_domains {
            if !self.cfg.fast_flush.is_empty() && self.cfg.fast_flush.matches(&domain) {
                let flush = self.cfg.flush.clone();
                let req = FlushRequest::Add { site: domain, queue_id: id.to_string() };
                let timeout = self.cfg.ipc_timeout.min(Duration::from_secs(30));
                let id = id.clone();
                tokio::spawn(async move {
                    match flush.call(&req, timeout).await {
                        Ok(FlushReply::Ok { .. } | FlushReply::Deny) => {}
                        _ => log_warning!("{id}: flush service failure"),
                    }
                });
            }
        }
    }

    /// Return failed recipients: to the sender, or to the postmaster when the failed message
    /// was itself a notification (a double bounce), never silently dropped.
    fn notify_failed(&mut self, id: &QueueId, path: &std::path::Path, qf: &QueueEnvelope, failed: &[Failed]) {
        let cfg = &self.cfg.bounce;
        let sender = qf.envelope.sender.as_str();
        let notice = match notice_for(cfg, sender) {
            Ok(n) => n,
            Err(Discard::PostmasterNotice) => return log_warning!("{id}: undeliverable postmaster notification discarded"),
            Err(Discard::NotEnabled) => {
                return log_info!("{id}: undeliverable non-delivery notification discarded (notify_classes has no 2bounce)");
            }
        };
        // Read only now, and at most bounce_size_limit bytes (plus one to tell whether the
        // message fits): the body is not kept while the message is active.
        let (prefix, size) = read_original(path, cfg.size_limit).unwrap_or_else(|e| {
            log_warning!("{id}: read the original message for the notification: {e}");
            (Vec::new(), 0)
        });
        let original = Original { queue_id: id, sender, arrival_us: qf.envelope.arrival_us, prefix: &prefix, size };
        match queue_notification(&self.cfg.spool, cfg, notice, &original, failed) {
            Ok(bounce_id) => {
                let whom = if notice == Notice::Sender { "sender" } else { "postmaster" };
                log_info!("{id}: {whom} non-delivery notification: {bounce_id}");
                self.incoming.again = true;
            }
            Err(e) => log_warning!("{id}: cannot queue the non-delivery notification: {e}"),
        }
    }
}

/// The agent's results for the recipients it was asked about (one each; others are ignored,
/// so that a confused agent cannot settle recipients of another request), and the failure to
/// report when some have none.
fn checked_results(
    transport: &str,
    asked: &[DeliveryRecipient],
    got: Vec<DeliveryResult>,
) -> (Vec<DeliveryResult>, Option<(&'static str, String)>) {
    let mut open: BTreeSet<usize> = asked.iter().map(|a| a.index).collect();
    let results: Vec<DeliveryResult> = got.into_iter().filter(|r| open.remove(&r.index)).collect();
    let failure = (!open.is_empty()).then(|| {
        ("unknown mail transport error", format!("private/{transport}: malformed response: no result for {} recipient(s)", open.len()))
    });
    (results, failure)
}

/// The reason recorded for the recipients of a request the agent did not answer, and the
/// warning that says what happened (Postfix's texts).
fn agent_failure(id: &QueueId, transport: &str, e: &FrameError) -> (&'static str, String) {
    use std::io::ErrorKind::{ConnectionRefused, NotFound, PermissionDenied};
    match e {
        FrameError::Timeout => {
            ("unknown mail transport error", format!("{id}: timeout receiving delivery status from transport: {transport}"))
        }
        FrameError::Io(io) if matches!(io.kind(), NotFound | ConnectionRefused | PermissionDenied) => {
            ("mail transport unavailable", format!("connect to private/{transport}: {io}"))
        }
        FrameError::Protocol { .. } => ("mail transport unavailable", format!("private/{transport}: {e}")),
        FrameError::Truncated | FrameError::Io(_) => ("unknown mail transport error", format!("private/{transport}: premature disconnect")),
        FrameError::Decode(_) | FrameError::TooLarge(..) => {
            ("unknown mail transport error", format!("private/{transport}: malformed response"))
        }
    }
}

fn result(index: usize, outcome: Outcome, dsn: &str, text: &str) -> DeliveryResult {
    DeliveryResult { index, outcome, dsn: dsn.to_string(), text: text.to_string(), site_failure: false }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::config::{MainCf, Params};
    use std::path::Path;

    #[test]
    fn agent_results_only_settle_the_recipients_asked_about() {
        let asked: Vec<DeliveryRecipient> =
            [1, 3].iter().map(|&index| DeliveryRecipient { index, address: format!("u{index}@x") }).collect();
        let sent = |index| result(index, Outcome::Sent, "2.0.0", "ok");
        let (got, failure) = checked_results("smtp", &asked, vec![sent(1), sent(3)]);
        assert_eq!((got.len(), failure), (2, None));
        // Another request's recipient and a duplicate are ignored; the missing one is reported.
        let (got, failure) = checked_results("smtp", &asked, vec![sent(0), sent(1), sent(1)]);
        assert_eq!(got.iter().map(|r| r.index).collect::<Vec<_>>(), vec![1]);
        assert_eq!(
            failure,
            Some(("unknown mail transport error", "private/smtp: malformed response: no result for 1 recipient(s)".to_string()))
        );
    }

    #[test]
    fn agent_failures_get_postfix_reasons_and_warnings() {
        let id = QueueId::parse("ABC123").unwrap();
        let io = |kind: std::io::ErrorKind| FrameError::Io(std::io::Error::from(kind));
        let cases = [
            (FrameError::Timeout, "unknown mail transport error", "ABC123: timeout receiving delivery status from transport: smtp"),
            (FrameError::Truncated, "unknown mail transport error", "private/smtp: premature disconnect"),
            (io(std::io::ErrorKind::ConnectionReset), "unknown mail transport error", "private/smtp: premature disconnect"),
            (FrameError::TooLarge(2, 1), "unknown mail transport error", "private/smtp: malformed response"),
            (io(std::io::ErrorKind::NotFound), "mail transport unavailable", "connect to private/smtp: entity not found"),
            (io(std::io::ErrorKind::ConnectionRefused), "mail transport unavailable", "connect to private/smtp: connection refused"),
        ];
        for (e, reason, warning) in cases {
            assert_eq!(agent_failure(&id, "smtp", &e), (reason, warning.to_string()), "{e:?}");
        }
    }

    #[test]
    fn a_large_scan_is_worked_through_in_slices() {
        let tmp = tempfile::tempdir().unwrap();
        let text = format!("queue_directory = {}\n", tmp.path().display());
        let main = MainCf::parse(&text, Path::new("main.cf")).unwrap();
        let cfg = QmgrConfig::from_params(&Params::from_parts(Path::new("/tmp"), main, &[])).unwrap();
        cfg.spool.create_dirs().unwrap();
        // Deferred files whose retry time has not come: each is looked at, none is activated.
        let later = SystemTime::now() + Duration::from_secs(3600);
        let files = FEED_SLICE * 2 + FEED_SLICE / 2;
        for inode in 0..files as u64 {
            let id = QueueId::generate(SystemTime::now(), inode + 1);
            let path = cfg.spool.path(QueueName::Deferred, &id);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            let f = fs::File::create(&path).unwrap();
            f.set_times(fs::FileTimes::new().set_accessed(later).set_modified(later)).unwrap();
        }
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let mut sched = Scheduler::new(cfg, tx);
        sched.incoming.again = false;
        sched.request_deferred_scan();
        let mut slices = 1;
        while sched.run() {
            slices += 1;
            assert!(slices <= 3, "the scan does not end");
        }
        assert_eq!(slices, 3, "{files} files in slices of {FEED_SLICE}");
        assert!(sched.deferred.idle() && sched.active.is_empty());
    }
}
