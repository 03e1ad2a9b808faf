//! The scheduler actor: owns the [`Scheduler`] and is reached only through [`QmgrHandle`].
//! Its handlers never block and never await: they change the scheduler's state and queue one
//! [`Run`] for the burst of messages in the mailbox, which feeds and dispatches once and then
//! does what the scheduler asked for: disk work goes to the [`Worker`] thread (whose reports
//! come back as messages), delivery requests and flush `Add`s become tasks on this thread that
//! report back as messages too.

use std::time::Duration;

use actix::prelude::*;

use common::ipc::trigger::Trigger;

use crate::active::recover;
use crate::config::QmgrConfig;
use crate::defer::add_to_flush;
use crate::deliver::{Done, deliver};
use crate::scheduler::{Effect, Scheduler};
use crate::worker::{DiskJob, Report, Worker};

struct QmgrActor {
    sched: Scheduler,
    worker: Worker,
    /// A [`Run`] is queued behind the messages in the mailbox.
    run_queued: bool,
}

impl QmgrActor {
    /// Have the scheduler run once the mailbox's current burst has been handled.
    fn kick(&mut self, ctx: &mut Context<Self>) {
        if !self.run_queued {
            self.run_queued = true;
            ctx.notify(Run);
        }
    }

    fn perform(&mut self, ctx: &mut Context<Self>) {
        for effect in self.sched.take_effects() {
            match effect {
                Effect::Disk(job) => self.worker.submit(job),
                Effect::Deliver(d) => {
                    let addr = ctx.address();
                    actix_rt::spawn(async move { addr.do_send(Delivered(deliver(d).await)) });
                }
                Effect::FlushAdd { id, site } => {
                    let cfg = self.sched.config();
                    actix_rt::spawn(add_to_flush(cfg.flush.clone(), cfg.ipc_timeout, id, site));
                }
                Effect::ProbeResult { id, address, result } => {
                    let probes = self.sched.config().probes.clone();
                    actix_rt::spawn(async move { probes.report(id.as_str(), &address, result.outcome, &result.text).await });
                }
            }
        }
    }
}

impl Actor for QmgrActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The deferred queue is scanned every queue_run_delay (the first scan of both queues
        // is already asked for).
        let every = self.sched.config().queue_run_delay.max(Duration::from_secs(1));
        ctx.run_interval(every, |act, ctx| {
            act.sched.request_deferred_scan();
            act.kick(ctx);
        });
        self.kick(ctx);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Run;

impl Handler<Run> for QmgrActor {
    type Result = ();
    fn handle(&mut self, _: Run, ctx: &mut Context<Self>) {
        self.run_queued = false;
        self.sched.run();
        self.perform(ctx);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Triggers(Vec<Trigger>);

impl Handler<Triggers> for QmgrActor {
    type Result = ();
    fn handle(&mut self, msg: Triggers, ctx: &mut Context<Self>) {
        self.sched.triggers(&msg.0);
        self.kick(ctx);
    }
}

/// A relay request (flush's handover), checked and kept by the scheduler.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
struct Relay {
    site: String,
    nexthop: String,
    queue_ids: Vec<String>,
}

impl Handler<Relay> for QmgrActor {
    type Result = Result<(), String>;
    fn handle(&mut self, msg: Relay, _: &mut Context<Self>) -> Self::Result {
        self.sched.relay(&msg.site, &msg.nexthop, &msg.queue_ids)
    }
}

/// Files a flush send moved into `incoming`, to be fed without a listing.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
struct Incoming(Vec<String>);

impl Handler<Incoming> for QmgrActor {
    type Result = Result<(), String>;
    fn handle(&mut self, msg: Incoming, ctx: &mut Context<Self>) -> Self::Result {
        self.sched.incoming(&msg.0)?;
        self.kick(ctx);
        Ok(())
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Delivered(Done);

impl Handler<Delivered> for QmgrActor {
    type Result = ();
    fn handle(&mut self, msg: Delivered, ctx: &mut Context<Self>) {
        self.sched.on_done(msg.0);
        self.kick(ctx);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct FromWorker(Vec<Report>);

impl Handler<FromWorker> for QmgrActor {
    type Result = ();
    fn handle(&mut self, msg: FromWorker, ctx: &mut Context<Self>) {
        for report in msg.0 {
            match report {
                Report::Fed(fed) => self.sched.on_fed(fed),
                Report::Finished(f) => self.sched.on_finished(f),
            }
        }
        self.kick(ctx);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Reload(QmgrConfig);

impl Handler<Reload> for QmgrActor {
    type Result = ();
    fn handle(&mut self, msg: Reload, ctx: &mut Context<Self>) {
        self.sched.set_config(msg.0);
        self.kick(ctx);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Settle;

impl Handler<Settle> for QmgrActor {
    type Result = ResponseFuture<()>;
    /// Give the worker what is already decided (results to append, messages to finish) and
    /// wait until it has done it. Nothing new is started: only a [`Run`] starts work.
    fn handle(&mut self, _: Settle, ctx: &mut Context<Self>) -> Self::Result {
        self.perform(ctx);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.worker.submit(DiskJob::Barrier(tx));
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

/// The only way other code talks to the scheduler.
#[derive(Clone)]
pub struct QmgrHandle {
    addr: Addr<QmgrActor>,
    /// The actor's own thread (see [`QmgrHandle::start`]).
    _arbiter: ArbiterHandle,
}

impl QmgrHandle {
    /// Put back what a crashed queue manager left in `active` (before anything else touches
    /// the queue), then start the worker thread and the actor on the current arbiter. Must be
    /// called inside an actix `System`; the actor runs on an arbiter thread of its own.
    pub fn start(cfg: QmgrConfig) -> QmgrHandle {
        recover(&cfg.spool);
        // The actor has a thread of its own (an arbiter), apart from the trigger connections:
        // a trigger is acknowledged at once even while the actor works through a burst (a
        // large scan's slices, many results), and every ETRN waits for that acknowledgement.
        let arbiter = Arbiter::new();
        let addr = QmgrActor::start_in_arbiter(&arbiter.handle(), move |ctx| {
            let me = ctx.address();
            let worker = Worker::start(move |reports| me.do_send(FromWorker(reports)));
            QmgrActor { sched: Scheduler::new(cfg), worker, run_queued: false }
        });
        QmgrHandle { addr, _arbiter: arbiter.handle() }
    }

    /// Hand over triggers, in order: the mailbox is FIFO, so whatever is handed over later (on
    /// any connection: the scan the flush service asks for after its `ForgetDeadSites`) is
    /// handled after them. A trigger client's acknowledgement needs no more than this, as in
    /// Postfix (a trigger is a byte in a FIFO); waiting for the actor's turn as well put it on
    /// the path of every ETRN (measured: 10000 ETRNs took 25% longer).
    pub fn triggers(&self, ts: Vec<Trigger>) {
        self.addr.do_send(Triggers(ts));
    }

    /// Hand over triggers and wait until the scheduler has handled them (false if it is gone).
    pub async fn triggers_handled(&self, ts: Vec<Trigger>) -> bool {
        self.addr.send(Triggers(ts)).await.is_ok()
    }

    /// Keep a relay request (see [`Scheduler::relay`]) and say whether it was kept. The
    /// answer comes after the scheduler has it, so that the files the caller then moves are
    /// routed by it whichever scan takes them.
    pub async fn relay(&self, site: String, nexthop: String, queue_ids: Vec<String>) -> Result<(), String> {
        self.addr.send(Relay { site, nexthop, queue_ids }).await.unwrap_or_else(|e| Err(e.to_string()))
    }

    /// Feed these files of `incoming` first (see [`Scheduler::incoming`]).
    pub async fn incoming(&self, queue_ids: Vec<String>) -> Result<(), String> {
        self.addr.send(Incoming(queue_ids)).await.unwrap_or_else(|e| Err(e.to_string()))
    }

    /// The master's wakeup: an incoming scan.
    pub fn wakeup(&self) {
        self.addr.do_send(Triggers(vec![Trigger::Wakeup]));
    }

    /// Stopping: returns when the disk work already decided on is done, so that no result
    /// that an agent reported is lost to the exit (the mail would be delivered again).
    pub async fn settle(&self) {
        let _ = self.addr.send(Settle).await;
    }

    /// New parameters (a reload).
    pub fn reload(&self, cfg: QmgrConfig) {
        self.addr.do_send(Reload(cfg));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{config, queue_message};
    use common::ipc::delivery::{DeliveryProtocol, DeliveryReply, DeliveryRequest, DeliveryResult};
    use common::ipc::server::serve;
    use common::queue::file::Outcome;
    use common::queue::{QueueId, QueueName};
    use std::cell::RefCell;
    use std::rc::Rc;
    use tokio::sync::oneshot;

    /// Wait (bounded) until `cond` holds.
    async fn wait_for(what: &str, cond: impl Fn() -> bool) {
        for _ in 0..1000 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    /// Requests a fake agent holds until the test answers them.
    type Held = Rc<RefCell<Vec<(DeliveryRequest, oneshot::Sender<DeliveryReply>)>>>;

    /// A fake delivery agent on its real socket: each request waits in `held`.
    fn fake_agent(socket: &std::path::Path) -> Held {
        std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
        let listener = std::os::unix::net::UnixListener::bind(socket).unwrap();
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::UnixListener::from_std(listener).unwrap();
        let held = Held::default();
        let h = held.clone();
        actix_rt::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let h = h.clone();
                actix_rt::spawn(serve::<DeliveryProtocol, _, _>(stream, "smtp", Duration::from_secs(60), None, None, move |req, _| {
                    let (tx, rx) = oneshot::channel();
                    h.borrow_mut().push((req, tx));
                    async move { rx.await.unwrap_or(DeliveryReply { results: Vec::new() }) }
                }));
            }
        });
        held
    }

    #[test]
    fn slow_start_against_a_fake_agent_on_its_socket() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path(), "initial_destination_concurrency = 2\ndefault_destination_concurrency_limit = 4\n");
        let spool = cfg.spool.clone();
        for i in 0..12 {
            queue_message(&spool, QueueName::Incoming, "s@example.org", &[&format!("u{i}@dest.example")]);
        }
        let socket = cfg.agent_socket("smtp");
        actix_rt::System::new().block_on(async move {
            let held = fake_agent(&socket);
            let _sched = QmgrHandle::start(cfg);
            // Each time the expected number of requests is in flight, one is answered: the
            // window starts at 2 and grows by one per delivered request up to 4, and drains
            // at the end.
            for (step, want) in [2, 3, 4, 4, 4, 4, 4, 4, 4, 3, 2, 1].into_iter().enumerate() {
                wait_for("requests in flight", || held.borrow().len() >= want).await;
                assert_eq!(held.borrow().len(), want, "in flight at step {step}");
                let (req, reply) = held.borrow_mut().remove(0);
                let results = req.recipients.iter().map(|r| DeliveryResult {
                    index: r.index,
                    outcome: Outcome::Sent,
                    dsn: "2.0.0".into(),
                    text: "250 ok".into(),
                    site_failure: false,
                    dsn_passed_on: false,
                    relay: String::new(),
                });
                reply.send(DeliveryReply { results: results.collect() }).unwrap();
            }
            let empty = |q| spool.list(q).is_ok_and(|ids| ids.is_empty());
            wait_for("every message delivered and removed", || empty(QueueName::Active) && empty(QueueName::Incoming)).await;
            assert!(held.borrow().is_empty());
        });
    }

    #[test]
    fn triggers_are_acknowledged_while_the_disk_worker_is_stuck() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path(), "");
        let spool = cfg.spool.clone();
        // A queue file whose open never returns until someone writes to it: a FIFO.
        let id = QueueId::generate(std::time::SystemTime::now(), 1);
        let incoming = spool.path(QueueName::Incoming, &id);
        std::fs::create_dir_all(incoming.parent().unwrap()).unwrap();
        nix::unistd::mkfifo(&incoming, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let active = spool.path(QueueName::Active, &id);
        actix_rt::System::new().block_on(async {
            let sched = QmgrHandle::start(cfg);
            // The worker has taken the file into `active` and is stuck reading it.
            wait_for("the activation", || active.exists()).await;
            for _ in 0..3 {
                let acked = tokio::time::timeout(Duration::from_secs(10), sched.triggers_handled(vec![Trigger::ScanIncoming])).await;
                assert_eq!(acked, Ok(true), "the scheduler handles triggers while its disk work is stuck");
            }
            // Released (a writer that closes at once), the file is dealt with and leaves `active`.
            drop(std::fs::OpenOptions::new().write(true).open(&active).unwrap());
            wait_for("the file to leave active", || !active.exists()).await;
        });
    }
}
