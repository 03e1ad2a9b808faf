//! Dispatch to the delivery agents (Postfix's `qmgr_deliver`): recipients grouped by route
//! wait for a place in the route's window ([`crate::feedback`]), go to the transport's agent
//! (`private/<transport>`) over a kept connection, and come back as a [`Done`] with a result
//! for each of them: the agent's, or the queue manager's own when the agent died, stalled
//! past `daemon_timeout` or answered for fewer recipients than it was asked about.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ipc::client::Persistent;
use common::ipc::delivery::{DeliveryProtocol, DeliveryRecipient, DeliveryRequest, DeliveryResult};
use common::ipc::frame::FrameError;
use common::log_warning;
use common::queue::file::Outcome;
use common::queue::{QueueId, QueueName};

use crate::active::{ActiveMsg, own_result as result};
use crate::config::{QmgrConfig, Route};
use crate::feedback::{Feedback, Limits};

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

/// The requests waiting for their routes, those in flight, and the agents' kept connections.
#[derive(Debug, Default)]
pub struct Queues {
    /// Requests waiting for a free place in their route's window.
    jobs: BTreeMap<Route, VecDeque<Job>>,
    inflight: HashMap<Route, usize>,
    /// Kept connections to the delivery agents, by transport (`private/<transport>`); they
    /// survive reloads.
    agents: HashMap<String, Arc<Persistent<DeliveryProtocol>>>,
}

/// What one dispatch round decided: requests to send, and requests of suspended routes with
/// the suspension's reason (their recipients are deferred without a request).
#[derive(Debug, Default)]
pub struct Dispatched {
    pub deliveries: Vec<Delivery>,
    pub suspended: Vec<(Job, String)>,
}

impl Queues {
    /// A request waits for its route.
    pub fn push(&mut self, route: Route, job: Job) {
        self.jobs.entry(route).or_default().push_back(job);
    }

    /// Nothing waits.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// The kept connections to a transport's agent (created on first use).
    fn agent(&mut self, cfg: &QmgrConfig, transport: &str) -> Arc<Persistent<DeliveryProtocol>> {
        if let Some(a) = self.agents.get(transport) {
            return a.clone();
        }
        let agent = Arc::new(Persistent::new(cfg.agent_socket(transport)));
        self.agents.insert(transport.to_string(), agent.clone());
        agent
    }

    /// Send what each route's window allows; a suspended route's requests are given up.
    pub fn dispatch(
        &mut self,
        cfg: &QmgrConfig,
        active: &HashMap<QueueId, ActiveMsg>,
        feedback: &mut Feedback,
        now: Instant,
    ) -> Dispatched {
        let mut out = Dispatched::default();
        let routes: Vec<Route> = self.jobs.iter().filter(|(_, q)| !q.is_empty()).map(|(r, _)| r.clone()).collect();
        let limits = Limits { initial: cfg.initial_concurrency, limit: cfg.destination_concurrency };
        for route in routes {
            if let Some(why) = feedback.dead(&route, now) {
                let jobs = self.jobs.remove(&route).map(Vec::from).unwrap_or_default();
                out.suspended.extend(jobs.into_iter().map(|job| (job, why.clone())));
                continue;
            }
            let window = feedback.window(&route, limits);
            while self.inflight.get(&route).copied().unwrap_or(0) < window {
                let Some(job) = self.jobs.get_mut(&route).and_then(VecDeque::pop_front) else { break };
                let Some(msg) = active.get(&job.id) else { continue };
                let request = DeliveryRequest {
                    queue_id: job.id.clone(),
                    queue: QueueName::Active,
                    nexthop: route.nexthop.clone(),
                    sender: msg.qf.envelope.sender.clone(),
                    recipients: job.recipients,
                    arrival_us: msg.qf.envelope.arrival_us,
                    active_us: msg.active_us,
                    smtputf8: msg.qf.envelope.smtputf8,
                    verify_probe: msg.qf.envelope.verify_probe,
                };
                *self.inflight.entry(route.clone()).or_insert(0) += 1;
                let agent = self.agent(cfg, &route.transport);
                out.deliveries.push(Delivery { id: job.id, route: route.clone(), agent, request, timeout: cfg.delivery_timeout });
            }
        }
        self.jobs.retain(|_, q| !q.is_empty());
        out
    }

    /// A request ended: its place in the window is free, and the route's window and
    /// suspension follow its outcome (a site failure suspends it for `minimal_backoff_time`).
    pub fn ended(&mut self, done: &Done, cfg: &QmgrConfig, feedback: &mut Feedback, now: Instant) {
        if let Some(n) = self.inflight.get_mut(&done.route) {
            *n = n.saturating_sub(1);
        }
        match done.results.iter().chain(&done.own).find(|r| r.site_failure) {
            Some(r) => feedback.failure(done.route.clone(), r.text.clone(), now + cfg.minimal_backoff),
            None => feedback.success(done.route.clone(), Limits { initial: cfg.initial_concurrency, limit: cfg.destination_concurrency }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::active::activate_file;
    use crate::testutil::{config, queue_message};

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

    /// Active messages waiting for their routes, as the scheduler keeps them.
    struct Setup {
        _tmp: tempfile::TempDir,
        cfg: QmgrConfig,
        active: HashMap<QueueId, ActiveMsg>,
        queues: Queues,
        feedback: Feedback,
    }

    fn setup(extra: &str, n: usize) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path(), extra);
        let mut s = Setup { _tmp: tmp, cfg, active: HashMap::new(), queues: Queues::default(), feedback: Feedback::default() };
        for i in 0..n {
            s.add(&format!("u{i}@dest.example"));
        }
        s
    }

    impl Setup {
        fn add(&mut self, rcpt: &str) {
            let id = queue_message(&self.cfg.spool, QueueName::Incoming, "s@example.org", &[rcpt]);
            let a = activate_file(&self.cfg.spool, QueueName::Incoming, id.clone()).unwrap();
            let adm = crate::active::admit(&self.cfg, &a.qf, false, None);
            for (route, recipients) in adm.waiting {
                self.queues.push(route, Job { id: id.clone(), recipients });
            }
            self.active.insert(id, ActiveMsg::new(a, 1));
        }

        /// One dispatch round, every request answered by the fake agent: how many were in
        /// flight at once, and the requests given up for a suspended route.
        fn round(&mut self, agent: Agent) -> (usize, Vec<(Job, String)>) {
            let d = self.queues.dispatch(&self.cfg, &self.active, &mut self.feedback, Instant::now());
            let sent = d.deliveries.len();
            for delivery in d.deliveries {
                let results = delivery
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
                let done = Done { id: delivery.id, route: delivery.route, results, own: Vec::new() };
                self.queues.ended(&done, &self.cfg, &mut self.feedback, Instant::now());
            }
            (sent, d.suspended)
        }
    }

    #[test]
    fn slow_start_against_a_fake_agent() {
        let mut s = setup("initial_destination_concurrency = 2\ndefault_destination_concurrency_limit = 4\n", 20);
        let rounds: Vec<usize> = (0..7).map(|_| s.round(Agent::Delivers).0).collect();
        // 2 at once, then one more per delivered request, up to the limit; 20 in all.
        assert_eq!(rounds, [2, 4, 4, 4, 4, 2, 0]);
        assert!(s.queues.is_empty());
    }

    #[test]
    fn a_failing_site_suspends_its_route_until_forgotten() {
        let mut s = setup("initial_destination_concurrency = 2\nminimal_backoff_time = 300s\n", 5);
        assert_eq!(s.round(Agent::SiteFails).0, 2);
        // The route is dead now: the three waiting requests are given up with its reason.
        let (sent, suspended) = s.round(Agent::Delivers);
        assert_eq!(sent, 0);
        assert_eq!(suspended.iter().map(|(j, why)| (j.recipients.len(), why.as_str())).collect::<Vec<_>>(), [(1, "connect refused"); 3]);
        assert!(s.queues.is_empty());
        // Still dead for new mail; `postqueue -f` (ForgetDeadSites) lifts it at once.
        s.add("v@dest.example");
        assert_eq!(s.round(Agent::Delivers).1.len(), 1);
        s.add("w@dest.example");
        s.feedback.forget_dead();
        let (sent, suspended) = s.round(Agent::Delivers);
        assert_eq!((sent, suspended.len()), (1, 0));
    }
}
