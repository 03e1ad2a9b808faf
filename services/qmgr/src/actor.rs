//! The scheduler actor: owns the [`Scheduler`] and is reached only through [`QmgrHandle`].
//! Its handlers never block and never await: they change the scheduler's state and queue one
//! [`Run`] for the burst of messages in the mailbox, which feeds and dispatches once and then
//! does what the scheduler asked for: disk work goes to the [`Worker`] thread (whose reports
//! come back as messages), delivery requests and flush `Add`s become tasks on this thread that
//! report back as messages too.

use std::time::Duration;

use actix::prelude::*;

use common::ipc::qmgr::QmgrTrigger;

use crate::active::recover;
use crate::config::QmgrConfig;
use crate::defer::add_to_flush;
use crate::deliver::{Done, deliver};
use crate::scheduler::{Effect, Scheduler};
use crate::worker::{Report, Worker};

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
struct Triggers(Vec<QmgrTrigger>);

impl Handler<Triggers> for QmgrActor {
    type Result = ();
    fn handle(&mut self, msg: Triggers, ctx: &mut Context<Self>) {
        self.sched.triggers(&msg.0);
        self.kick(ctx);
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
struct FromWorker(Report);

impl Handler<FromWorker> for QmgrActor {
    type Result = ();
    fn handle(&mut self, msg: FromWorker, ctx: &mut Context<Self>) {
        match msg.0 {
            Report::Fed(fed) => self.sched.on_fed(fed),
            Report::Finished(f) => self.sched.on_finished(f),
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

/// The only way other code talks to the scheduler.
#[derive(Clone)]
pub struct QmgrHandle {
    addr: Addr<QmgrActor>,
}

impl QmgrHandle {
    /// Put back what a crashed queue manager left in `active` (before anything else touches
    /// the queue), then start the worker thread and the actor on the current arbiter. Must be
    /// called inside an actix `System`.
    pub fn start(cfg: QmgrConfig) -> QmgrHandle {
        recover(&cfg.spool);
        let addr = QmgrActor::create(|ctx| {
            let me = ctx.address();
            let worker = Worker::start(move |report| me.do_send(FromWorker(report)));
            QmgrActor { sched: Scheduler::new(cfg), worker, run_queued: false }
        });
        QmgrHandle { addr }
    }

    /// Hand over triggers; returns once the scheduler has recorded them (false if it is gone).
    pub async fn triggers(&self, ts: Vec<QmgrTrigger>) -> bool {
        self.addr.send(Triggers(ts)).await.is_ok()
    }

    /// The master's wakeup: an incoming scan.
    pub fn wakeup(&self) {
        self.addr.do_send(Triggers(vec![QmgrTrigger::Wakeup]));
    }

    /// New parameters (a reload).
    pub fn reload(&self, cfg: QmgrConfig) {
        self.addr.do_send(Reload(cfg));
    }
}
