//! The flush actor: owns the [`FlushState`]; requests are handled one at a time, so requests for
//! one site are serialized: concurrent adds wait for a send and none is lost. It runs on the
//! same thread as the connection tasks, which only hand it requests and wait for its answer:
//! a request then costs no wake-up of another thread (measured: 0.54 → 0.46 ms for an ETRN
//! that moves nothing, with the client idle between requests). A send answers first (the
//! messages waiting in `deferred`), then waits for the queue manager's acknowledgement of
//! `ForgetDeadSites` without blocking the thread, and moves the files; it takes no other
//! request meanwhile.

use actix::prelude::*;

use common::ipc::flush::{FlushReply, FlushRequest};
use common::ipc::trigger::Trigger;
use common::ipc::trigger_client::TriggerClient;
use common::log_warning;

use crate::reconcile::Scan;
use crate::service::{FlushConfig, FlushState, Step};
use crate::shape::ShapeJob;

struct FlushActor {
    state: FlushState,
    qmgr: TriggerClient,
}

impl FlushActor {
    /// Empty the sent logfiles after the reply has gone out (a timer tick later), unless
    /// another request comes first: every request empties them before it does anything else.
    fn finish_later(&self, ctx: &mut Context<Self>) {
        if self.state.has_sent() {
            ctx.run_later(std::time::Duration::ZERO, |act, _| act.state.finish_sent());
        }
    }
}

impl Actor for FlushActor {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "FlushReply")]
struct Request(FlushRequest);

impl Handler<Request> for FlushActor {
    type Result = AtomicResponse<Self, FlushReply>;
    fn handle(&mut self, msg: Request, ctx: &mut Context<Self>) -> Self::Result {
        match self.state.handle(msg.0) {
            Step::Reply(reply) => {
                self.finish_later(ctx);
                AtomicResponse::new(Box::pin(fut::ready(reply)))
            }
            Step::ForgetDeadSitesFirst(pending) => {
                // The client's answer is what waits in deferred now, and goes out at once;
                // the queue manager's acknowledgement of ForgetDeadSites and the moves follow,
                // still before any other request (the actor waits for them), so the order
                // "F before any file moves" holds and a re-deferral's Add comes after the send.
                // Neither the qmgr round trip nor the renames are on the ETRN reply's path.
                let reply = self.state.pending(&pending);
                let qmgr = self.qmgr.clone();
                let acked = async move { qmgr.send(&[Trigger::ForgetDeadSites]).await };
                let send = acked.into_actor(self).map(move |acked, act, ctx| {
                    // The queue manager is down or slow: the files move anyway, and it scans
                    // them when it is back.
                    if let Err(e) = acked {
                        log_warning!("trigger {}: {e}", act.qmgr.shown());
                    }
                    if let FlushReply::Fail { reason } = act.state.send_sites(pending) {
                        log_warning!("fast flush send: {reason}");
                    }
                    act.finish_later(ctx);
                });
                AtomicResponse::new(Box::pin(fut::ready(reply).map(move |reply, _, ctx: &mut Context<Self>| {
                    ctx.wait(send);
                    reply
                })))
            }
        }
    }
}

/// The messages of a site for `ShapeSite`, which the handle reads off the actor's thread.
#[derive(Message)]
#[rtype(result = "Result<ShapeJob, FlushReply>")]
struct Shape {
    site: String,
    ages: common::queue::ages::Ages,
}

impl Handler<Shape> for FlushActor {
    type Result = Result<ShapeJob, FlushReply>;
    fn handle(&mut self, msg: Shape, _: &mut Context<Self>) -> Self::Result {
        self.state.shape_job(&msg.site, msg.ages)
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Reload(FlushConfig);

impl Handler<Reload> for FlushActor {
    type Result = ();
    fn handle(&mut self, msg: Reload, _: &mut Context<Self>) {
        self.state.set_config(msg.0);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Reconciled(Scan);

impl Handler<Reconciled> for FlushActor {
    type Result = ();
    fn handle(&mut self, msg: Reconciled, _: &mut Context<Self>) {
        self.state.reconcile(msg.0);
    }
}

/// The only way other code talks to the actor.
#[derive(Clone)]
pub struct FlushHandle {
    addr: Addr<FlushActor>,
}

impl FlushHandle {
    /// Start the actor on the current arbiter. Must be called inside an actix `System`.
    /// `qmgr` is the queue manager, which hears of each send before files move.
    pub fn start(state: FlushState, qmgr: TriggerClient) -> FlushHandle {
        let addr = FlushActor { state, qmgr }.start();
        FlushHandle { addr }
    }

    pub async fn request(&self, req: FlushRequest) -> FlushReply {
        let failed = |e: &dyn std::fmt::Display| FlushReply::Fail { reason: e.to_string() };
        // A shape reads a queue file per message: the actor only lists them, and a blocking
        // task reads them, so that ETRNs are not held up meanwhile.
        if let FlushRequest::ShapeSite { site, ages } = req {
            return match self.addr.send(Shape { site, ages }).await {
                Ok(Ok(job)) => {
                    actix_rt::task::spawn_blocking(move || job.run(std::time::SystemTime::now())).await.unwrap_or_else(|e| failed(&e))
                }
                Ok(Err(refusal)) => refusal,
                Err(e) => failed(&e),
            };
        }
        self.addr.send(Request(req)).await.unwrap_or_else(|e| failed(&e))
    }

    pub fn reload(&self, cfg: FlushConfig) {
        self.addr.do_send(Reload(cfg));
    }

    /// Hand over the result of the start-up queue scan (callable from any thread).
    pub fn reconciled(&self, scan: Scan) {
        self.addr.do_send(Reconciled(scan));
    }
}
