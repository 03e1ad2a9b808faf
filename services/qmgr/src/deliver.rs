//! Dispatch to the delivery agents (Postfix's `qmgr_deliver`): recipients grouped by route
//! wait for a place in the route's window ([`crate::feedback`]), go to the transport's agent
//! (`private/<transport>`) over a kept connection, and come back as a [`Done`] with a result
//! for each of them: the agent's, or the queue manager's own when the agent died, stalled
//! past `daemon_timeout` or answered for fewer recipients than it was asked about.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ipc::client::Persistent;
use common::ipc::delivery::{DeliveryProtocol, DeliveryRecipient, DeliveryRequest, DeliveryResult};
use common::ipc::frame::FrameError;
use common::log_warning;
use common::queue::file::Outcome;
use common::queue::{QueueId, QueueName};

use crate::config::Route;
use crate::scheduler::{Effect, Scheduler};

/// Recipients of one message for one route: one delivery request.
#[derive(Debug)]
pub struct Job {
    pub(crate) id: QueueId,
    pub(crate) recipients: Vec<DeliveryRecipient>,
}

/// A delivery request ready to go to its agent.
#[derive(Debug)]
pub struct Delivery {
    pub id: QueueId,
    pub route: Route,
    pub agent: Arc<Persistent<DeliveryProtocol>>,
    pub request: DeliveryRequest,
    /// `daemon_timeout`.
    pub timeout: Duration,
}

/// A delivery request ended: the agent's results (it logged them itself), and the queue
/// manager's own for the recipients the agent gave none for (to be logged here).
#[derive(Debug)]
pub struct Done {
    pub id: QueueId,
    pub route: Route,
    pub results: Vec<DeliveryResult>,
    pub own: Vec<DeliveryResult>,
}

/// The connection task of one request: ask the agent and make sure every recipient has a
/// result. Postfix's watchdog on the delivery agent: a request that is not answered in time,
/// like an agent that dies in the middle of one, must not keep the message in `active` until
/// the queue manager restarts.
pub async fn deliver(d: Delivery) -> Done {
    let Delivery { id, route, agent, request, timeout } = d;
    let (results, failure) = match agent.call(&request, timeout).await {
        Ok(reply) => checked_results(&route.transport, &request.recipients, reply.results),
        Err(e) => (Vec::new(), Some(agent_failure(&id, &route.transport, &e))),
    };
    // Like Postfix, a failed agent suspends the route for a while (a site failure), and the
    // recipients it gave no result for are deferred.
    let own = match failure {
        Some((reason, warning)) => {
            log_warning!("{warning}");
            request
                .recipients
                .iter()
                .filter(|r| !results.iter().any(|got| got.index == r.index))
                .map(|r| DeliveryResult { site_failure: true, ..result(r.index, Outcome::Deferred, "4.3.0", reason) })
                .collect()
        }
        None => Vec::new(),
    };
    Done { id, route, results, own }
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

/// A result the queue manager makes up.
pub(crate) fn result(index: usize, outcome: Outcome, dsn: &str, text: &str) -> DeliveryResult {
    DeliveryResult { index, outcome, dsn: dsn.to_string(), text: text.to_string(), site_failure: false }
}

impl Scheduler {
    /// The kept connections to a transport's agent (created on first use, kept across reloads).
    fn agent(&mut self, transport: &str) -> Arc<Persistent<DeliveryProtocol>> {
        if let Some(a) = self.agents.get(transport) {
            return a.clone();
        }
        let agent = Arc::new(Persistent::new(self.cfg.agent_socket(transport)));
        self.agents.insert(transport.to_string(), agent.clone());
        agent
    }

    /// Send what each route's window allows; a suspended route's recipients are deferred.
    pub(crate) fn dispatch(&mut self) {
        let routes: Vec<Route> = self.jobs.iter().filter(|(_, q)| !q.is_empty()).map(|(r, _)| r.clone()).collect();
        let limits = self.limits();
        for route in routes {
            if let Some(why) = self.feedback.dead(&route, Instant::now()) {
                let jobs: Vec<Job> = self.jobs.remove(&route).map(Vec::from).unwrap_or_default();
                for job in jobs {
                    let text = format!("delivery temporarily suspended: {why}");
                    let results = job.recipients.iter().map(|r| result(r.index, Outcome::Deferred, "4.4.1", &text)).collect();
                    self.record(&job.id, results, true);
                    self.job_finished(&job.id);
                }
                continue;
            }
            let window = self.feedback.window(&route, limits);
            while self.inflight.get(&route).copied().unwrap_or(0) < window {
                let Some(job) = self.jobs.get_mut(&route).and_then(VecDeque::pop_front) else { break };
                let Some(msg) = self.active.get(&job.id) else { continue };
                let request = DeliveryRequest {
                    queue_id: job.id.to_string(),
                    queue: QueueName::Active.as_str().to_string(),
                    nexthop: route.nexthop.clone(),
                    sender: msg.qf.envelope.sender.clone(),
                    recipients: job.recipients,
                    arrival_us: msg.qf.envelope.arrival_us,
                    active_us: msg.active_us,
                };
                *self.inflight.entry(route.clone()).or_insert(0) += 1;
                let agent = self.agent(&route.transport);
                let timeout = self.cfg.delivery_timeout;
                self.emit(Effect::Deliver(Delivery { id: job.id, route: route.clone(), agent, request, timeout }));
            }
        }
        self.jobs.retain(|_, q| !q.is_empty());
    }

    /// A request ended: its route's window and suspension follow its outcome, and its results
    /// are recorded.
    pub(crate) fn on_done(&mut self, done: Done) {
        let Done { id, route, results, own } = done;
        if let Some(n) = self.inflight.get_mut(&route) {
            *n = n.saturating_sub(1);
        }
        match results.iter().chain(&own).find(|r| r.site_failure) {
            Some(r) => {
                let until = Instant::now() + self.cfg.minimal_backoff;
                self.feedback.failure(route, r.text.clone(), until);
            }
            None => {
                let limits = self.limits();
                self.feedback.success(route, limits);
            }
        }
        // The agent has logged its own results; the queue manager logs the ones it made up.
        self.record(&id, results, false);
        self.record(&id, own, true);
        self.job_finished(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::active::activate_file;
    use crate::testutil::{config, queue_message};
    use crate::worker::DiskJob;
    use common::ipc::qmgr::QmgrTrigger;

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

    /// What a fake agent does with each request it gets.
    #[derive(Clone, Copy)]
    enum Agent {
        Delivers,
        SiteFails,
    }

    /// Answer every request the scheduler sends (as a fake agent would) after one dispatch
    /// round; returns how many were in flight at once.
    fn answer_round(sched: &mut Scheduler, agent: Agent) -> usize {
        sched.run();
        let deliveries: Vec<Delivery> = sched
            .take_effects()
            .into_iter()
            .filter_map(|e| match e {
                Effect::Deliver(d) => Some(d),
                _ => None,
            })
            .collect();
        let n = deliveries.len();
        for d in deliveries {
            let results = d
                .request
                .recipients
                .iter()
                .map(|r| match agent {
                    Agent::Delivers => result(r.index, Outcome::Sent, "2.0.0", "250 ok"),
                    Agent::SiteFails => {
                        DeliveryResult { site_failure: true, ..result(r.index, Outcome::Deferred, "4.4.1", "connect refused") }
                    }
                })
                .collect();
            sched.on_done(Done { id: d.id, route: d.route, results, own: Vec::new() });
        }
        n
    }

    fn scheduler_with_messages(extra: &str, n: usize) -> (tempfile::TempDir, Scheduler) {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path(), extra);
        let spool = cfg.spool.clone();
        let mut sched = Scheduler::new(cfg);
        sched.incoming.again = false;
        sched.deferred.again = false;
        for i in 0..n {
            let id = queue_message(&spool, QueueName::Incoming, "s@example.org", &[&format!("u{i}@dest.example")]);
            sched.admit(activate_file(&spool, QueueName::Incoming, id).unwrap());
        }
        (tmp, sched)
    }

    #[test]
    fn slow_start_against_a_fake_agent() {
        let extra = "initial_destination_concurrency = 2\ndefault_destination_concurrency_limit = 4\n";
        let (_tmp, mut sched) = scheduler_with_messages(extra, 20);
        let mut rounds = Vec::new();
        for _ in 0..6 {
            rounds.push(answer_round(&mut sched, Agent::Delivers));
        }
        // 2 at once, then one more per delivered request, up to the limit; 20 in all.
        assert_eq!(rounds, [2, 4, 4, 4, 4, 2]);
        assert!(sched.active.is_empty(), "every message is finished");
    }

    #[test]
    fn a_failing_site_suspends_its_route_and_defers_what_waits() {
        let extra = "initial_destination_concurrency = 2\nminimal_backoff_time = 300s\n";
        let (_tmp, mut sched) = scheduler_with_messages(extra, 5);
        assert_eq!(answer_round(&mut sched, Agent::SiteFails), 2);
        // The route is dead now: the three waiting messages are deferred without a request,
        // with the failure as the reason.
        sched.run();
        let effects = sched.take_effects();
        assert!(!effects.iter().any(|e| matches!(e, Effect::Deliver(_))));
        let suspended = effects
            .iter()
            .filter(|e| {
                matches!(e, Effect::Disk(DiskJob::Append { results, .. })
                if results[0].text == "delivery temporarily suspended: connect refused" && results[0].dsn == "4.4.1")
            })
            .count();
        assert_eq!(suspended, 3);
        // All five are finished with their recipient pending (deferred).
        let finished =
            effects.iter().filter(|e| matches!(e, Effect::Disk(DiskJob::Finish(f)) if f.pending.len() == 1 && !f.expired)).count();
        assert_eq!(finished, 5);
        assert!(sched.active.is_empty() && sched.jobs.is_empty());
        // `postqueue -f` lifts the suspension: new mail for the route goes out again.
        sched.triggers(&[QmgrTrigger::ForgetDeadSites]);
        let spool = sched.cfg.spool.clone();
        let id = queue_message(&spool, QueueName::Incoming, "s@example.org", &["v@dest.example"]);
        sched.admit(activate_file(&spool, QueueName::Incoming, id).unwrap());
        assert_eq!(answer_round(&mut sched, Agent::Delivers), 1);
    }
}
