//! The scheduler's state and the order of its steps, without I/O (Postfix's `qmgr.c` main
//! loop): what is active, what the scans have still to look at, what waits for which route.
//! Each concern decides in its own module: [`crate::scan`] (feeding the active queue),
//! [`crate::active`] (admitting and recording), [`crate::deliver`] (dispatch and results),
//! [`crate::feedback`] (windows and dead routes), [`crate::finish`] (expiry, bounce, backoff,
//! flush). The actor ([`crate::actor`]) owns one scheduler and does what it asks for
//! ([`Effect`]): disk work on the worker thread, delivery requests, flush `Add`s.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use common::ipc::delivery::DeliveryResult;
use common::ipc::trigger::Trigger;
use common::queue::file::Outcome;
use common::queue::{QueueId, QueueName};

use crate::active::{Activated, ActiveMsg, admit, own_result};
use crate::config::QmgrConfig;
use crate::deliver::{Delivery, Done, Job, Queues};
use crate::feedback::Feedback;
use crate::finish::{Finished, plan};
use crate::relay::Relays;
use crate::scan::{Fed, Scans};
use crate::worker::DiskJob;

/// What the scheduler asks its owner to do.
#[derive(Debug)]
pub enum Effect {
    /// Work on the queue files, in order, off the scheduler's thread.
    Disk(DiskJob),
    /// Send a delivery request to an agent and report its [`Done`].
    Deliver(Delivery),
    /// List a deferred message with the flush service.
    FlushAdd { id: QueueId, site: String },
    /// Tell the verify service of a probe result the queue manager made up.
    ProbeResult { id: QueueId, address: String, result: DeliveryResult },
}

pub struct Scheduler {
    cfg: Arc<QmgrConfig>,
    active: HashMap<QueueId, ActiveMsg>,
    scans: Scans,
    queues: Queues,
    feedback: Feedback,
    /// `ForgetDeadSites` also overrides `defer_transports` for the scans it came with.
    override_defer_transports: bool,
    /// Messages whose next routing sends one site's recipients elsewhere (flush's handover).
    relays: Relays,
    effects: Vec<Effect>,
}

impl Scheduler {
    pub fn new(cfg: QmgrConfig) -> Scheduler {
        Scheduler {
            cfg: Arc::new(cfg),
            active: HashMap::new(),
            scans: Scans::new(),
            queues: Queues::default(),
            feedback: Feedback::default(),
            override_defer_transports: false,
            relays: Relays::default(),
            effects: Vec::new(),
        }
    }

    /// A reload: new parameters; kept agent connections, windows and suspensions stay, and
    /// so do the kept connections to the flush service unless its socket changed.
    pub fn set_config(&mut self, mut cfg: QmgrConfig) {
        if cfg.flush.path() == self.cfg.flush.path() {
            cfg.flush = self.cfg.flush.clone();
        }
        self.cfg = Arc::new(cfg);
    }

    pub fn config(&self) -> &QmgrConfig {
        &self.cfg
    }

    pub fn request_deferred_scan(&mut self) {
        self.scans.ask(QueueName::Deferred);
    }

    /// What has been asked for since the last call, in order.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// Triggers from `public/qmgr` and the master's wakeup.
    pub fn triggers(&mut self, ts: &[Trigger]) {
        for t in ts {
            match t {
                Trigger::ScanIncoming | Trigger::Wakeup => self.scans.ask(QueueName::Incoming),
                Trigger::ScanDeferred => self.scans.ask(QueueName::Deferred),
                Trigger::IgnoreTimestamps => self.scans.ignore_timestamps = true,
                Trigger::ForgetDeadSites => {
                    self.feedback.forget_dead();
                    self.override_defer_transports = true;
                }
            }
        }
    }

    /// Files the flush service just moved into `incoming`: fed before anything else, without a
    /// listing of `incoming`. `Err` (nothing kept) for a queue ID that is not valid.
    pub fn incoming(&mut self, queue_ids: &[String]) -> Result<(), String> {
        self.scans.named(queue_ids)
    }

    /// The flush service's handover: the next routing of each of `queue_ids` sends its
    /// recipients in `site` to `smtp:nexthop`. `Err` (nothing kept) for a request that is not
    /// valid or that there is no room for.
    pub fn relay(&mut self, site: &str, nexthop: &str, queue_ids: &[String]) -> Result<(), String> {
        self.relays.add(site, nexthop, queue_ids, Instant::now())
    }

    /// Feed the active queue from the scans in progress (incoming first, as Postfix prefers new
    /// mail when room is short), then dispatch. The owner calls this after each burst of
    /// messages, so that a burst is fed and dispatched once.
    pub fn run(&mut self) {
        let room = self.cfg.active_limit.saturating_sub(self.active.len());
        if let Some(job) = self.scans.next_job(&self.cfg.spool, room) {
            self.effects.push(Effect::Disk(DiskJob::Feed(job)));
        }
        if self.scans.idle() {
            // The modifiers applied to the scans that have now completed.
            self.scans.ignore_timestamps = false;
            self.override_defer_transports = false;
        }
        self.dispatch();
    }

    /// The worker's report on a feed job.
    pub fn on_fed(&mut self, fed: Fed) {
        for a in self.scans.returned(fed) {
            self.admit(a);
        }
    }

    /// A message is in `active`: what needs no agent is settled, the rest waits for its routes.
    fn admit(&mut self, a: Activated) {
        let id = a.id.clone();
        let relay = self.relays.take(&id, Instant::now());
        let adm = admit(&self.cfg, &a.qf, self.override_defer_transports || a.unthrottle, relay.as_ref());
        if a.unthrottle {
            for (route, _) in &adm.waiting {
                self.feedback.forget(route);
            }
        }
        self.active.insert(id.clone(), ActiveMsg::new(a, adm.waiting.len()));
        self.record(&id, adm.settled, true);
        for (route, recipients) in adm.waiting {
            self.queues.push(route, Job { id: id.clone(), recipients });
        }
        self.finish_if_done(&id);
    }

    /// Send what the routes' windows allow; the requests of suspended routes are deferred.
    fn dispatch(&mut self) {
        let d = self.queues.dispatch(&self.cfg, &self.active, &mut self.feedback, Instant::now());
        self.effects.extend(d.deliveries.into_iter().map(Effect::Deliver));
        for (job, why) in d.suspended {
            let text = format!("delivery temporarily suspended: {why}");
            let results = job.recipients.iter().map(|r| own_result(r.index, Outcome::Deferred, "4.4.1", &text)).collect();
            self.record(&job.id, results, true);
            self.job_finished(&job.id);
        }
    }

    /// A delivery request ended.
    pub fn on_done(&mut self, done: Done) {
        self.queues.ended(&done, &self.cfg, &mut self.feedback, Instant::now());
        // The agent has logged its own results; the queue manager logs the ones it made up.
        self.record(&done.id, done.results, false);
        self.record(&done.id, done.own, true);
        self.job_finished(&done.id);
    }

    /// Note results in the active message and have them appended to its queue file.
    fn record(&mut self, id: &QueueId, results: Vec<DeliveryResult>, log: bool) {
        let Some(msg) = self.active.get_mut(id) else { return };
        // The agents report their own probe results; the queue manager's go from here.
        if log && msg.qf.envelope.verify_probe {
            for r in &results {
                if let Some(rcpt) = msg.qf.envelope.recipients.get(r.index) {
                    self.effects.push(Effect::ProbeResult { id: id.clone(), address: rcpt.address.clone(), result: r.clone() });
                }
            }
        }
        let results = msg.record(id, results, log, &self.cfg.probes);
        if !results.is_empty() {
            let path = self.cfg.spool.path(QueueName::Active, id);
            self.effects.push(Effect::Disk(DiskJob::Append { path, id: id.clone(), results }));
        }
    }

    /// One of a message's requests has ended (or was settled without one).
    fn job_finished(&mut self, id: &QueueId) {
        if let Some(m) = self.active.get_mut(id) {
            m.outstanding = m.outstanding.saturating_sub(1);
        }
        self.finish_if_done(id);
    }

    /// When no request for `id` is in flight, take it out of the active queue (its place is
    /// free for the next scan slice, which the worker runs after this finish) and have the
    /// worker finish it.
    fn finish_if_done(&mut self, id: &QueueId) {
        if self.active.get(id).is_none_or(|m| m.outstanding > 0) {
            return;
        }
        let Some(msg) = self.active.remove(id) else { return };
        let job = plan(&self.cfg, id.clone(), msg, SystemTime::now());
        self.effects.push(Effect::Disk(DiskJob::Finish(Box::new(job))));
    }

    /// The worker's report on a finish: scan for the notification it queued, list the
    /// deferred message with the flush service.
    pub fn on_finished(&mut self, f: Finished) {
        if f.notice_queued {
            self.scans.ask(QueueName::Incoming);
        }
        for site in f.flush_sites {
            self.effects.push(Effect::FlushAdd { id: f.id.clone(), site });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{config, queue_message};
    use crate::worker::Report;

    /// Do the scheduler's disk work here, in order, and hand it the reports, until it asks
    /// for nothing but deliveries; returns those.
    fn settle(sched: &mut Scheduler) -> Vec<Delivery> {
        let mut deliveries = Vec::new();
        for _ in 0..100 {
            sched.run();
            let effects = sched.take_effects();
            if effects.iter().all(|e| matches!(e, Effect::Deliver(_))) {
                deliveries.extend(effects.into_iter().filter_map(|e| if let Effect::Deliver(d) = e { Some(d) } else { None }));
                return deliveries;
            }
            for e in effects {
                match e {
                    Effect::Deliver(d) => deliveries.push(d),
                    Effect::Disk(job) => match crate::worker::run(job) {
                        Some(Report::Fed(fed)) => sched.on_fed(fed),
                        Some(Report::Finished(f)) => sched.on_finished(f),
                        None => {}
                    },
                    Effect::FlushAdd { .. } | Effect::ProbeResult { .. } => {}
                }
            }
        }
        panic!("the scheduler does not settle");
    }

    #[test]
    fn a_message_goes_from_incoming_to_the_agent_and_is_removed_when_sent() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path(), "");
        let spool = cfg.spool.clone();
        let id = queue_message(&spool, QueueName::Incoming, "s@example.org", &["a@dest.example", "b@dest.example"]);
        let mut sched = Scheduler::new(cfg);
        let deliveries = settle(&mut sched);
        assert_eq!(deliveries.len(), 1, "one request for the route");
        assert!(spool.path(QueueName::Active, &id).exists());
        let d = deliveries.into_iter().next().unwrap();
        let results = d.request.recipients.iter().map(|r| own_result(r.index, Outcome::Sent, "2.0.0", "250 ok")).collect();
        sched.on_done(Done { id: id.clone(), route: d.route, results, own: Vec::new() });
        assert!(settle(&mut sched).is_empty());
        assert!(!spool.path(QueueName::Active, &id).exists(), "removed");
        assert!(sched.active.is_empty());
    }

    #[test]
    fn probes_take_their_own_routes_and_the_results_the_queue_manager_makes_up_go_to_verify() {
        let tmp = tempfile::tempdir().unwrap();
        let extra = "relayhost = [127.0.0.1]:2599\naddress_verify_transport_maps = inline:{{ bad.example = error:no such domain }}\n";
        let cfg = config(tmp.path(), extra);
        let spool = cfg.spool.clone();
        let good = crate::testutil::queue_probe(&spool, "u@dest.example");
        let bad = crate::testutil::queue_probe(&spool, "u@bad.example");
        let mail = queue_message(&spool, QueueName::Incoming, "s@example.org", &["u@bad.example"]);
        let mut sched = Scheduler::new(cfg);
        let mut reported = Vec::new();
        let mut deliveries = Vec::new();
        for _ in 0..20 {
            let effects = sched.take_effects();
            if effects.is_empty() {
                sched.run();
                if sched.effects.is_empty() {
                    break;
                }
                continue;
            }
            for e in effects {
                match e {
                    Effect::Deliver(d) => deliveries.push(d),
                    Effect::ProbeResult { id, address, result } => reported.push((id, address, result.outcome, result.text)),
                    Effect::Disk(job) => match crate::worker::run(job) {
                        Some(Report::Fed(fed)) => sched.on_fed(fed),
                        Some(Report::Finished(f)) => sched.on_finished(f),
                        None => {}
                    },
                    Effect::FlushAdd { .. } => panic!("a probe is never listed with the flush service"),
                }
            }
        }
        // The probe of bad.example is settled by its own table, reported to verify, removed.
        assert_eq!(reported, [(bad.clone(), "u@bad.example".to_string(), Outcome::Bounced, "no such domain".to_string())]);
        assert!(!spool.path(QueueName::Active, &bad).exists());
        // The other probe and the mail take the mail's route; the request says which is a probe.
        let mut got: Vec<(QueueId, String, bool)> =
            deliveries.iter().map(|d| (d.id.clone(), d.request.nexthop.clone(), d.request.verify_probe)).collect();
        got.sort();
        let mut want = vec![(good, "[127.0.0.1]:2599".to_string(), true), (mail, "[127.0.0.1]:2599".to_string(), false)];
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn a_reload_keeps_the_connections_to_the_flush_service() {
        let tmp = tempfile::tempdir().unwrap();
        let mut sched = Scheduler::new(config(tmp.path(), ""));
        let kept = sched.config().flush.clone();
        sched.set_config(config(tmp.path(), "minimal_backoff_time = 100s\n"));
        assert!(Arc::ptr_eq(&sched.config().flush, &kept));
        assert_eq!(sched.config().minimal_backoff, std::time::Duration::from_secs(100));
        sched.set_config(config(tmp.path(), "flush_service_name = flush2\n"));
        assert!(!Arc::ptr_eq(&sched.config().flush, &kept), "another service: new connections");
    }

    #[test]
    fn a_trigger_during_a_feed_job_waits_for_it_and_modifiers_end_with_the_scans() {
        let tmp = tempfile::tempdir().unwrap();
        let mut sched = Scheduler::new(config(tmp.path(), ""));
        sched.run();
        let Some(Effect::Disk(DiskJob::Feed(job))) = sched.take_effects().pop() else { panic!("no feed job") };
        // `postqueue -f` while the first scans are on the worker: no second job meanwhile.
        sched.triggers(&[Trigger::ForgetDeadSites, Trigger::IgnoreTimestamps, Trigger::ScanDeferred]);
        sched.run();
        assert!(sched.take_effects().is_empty());
        sched.on_fed(crate::scan::feed(job));
        // The deferred scan asked for meanwhile runs with the modifiers, then they end.
        sched.run();
        let Some(Effect::Disk(DiskJob::Feed(job))) = sched.take_effects().pop() else { panic!("no second feed job") };
        assert!(job.ignore_timestamps && sched.override_defer_transports);
        sched.on_fed(crate::scan::feed(job));
        sched.run();
        assert!(!sched.scans.ignore_timestamps && !sched.override_defer_transports);
    }
}
