//! The flush actor: owns the [`FlushState`]; requests are handled one at a time, so requests for
//! one site are serialized: concurrent adds wait for a send and none is lost. It runs on the
//! same thread as the connection tasks, which only hand it requests and wait for its answer:
//! a request then costs no wake-up of another thread (measured: 0.54 → 0.46 ms for an ETRN
//! that moves nothing, with the client idle between requests). A send answers first (the
//! messages waiting in `deferred`), then waits for the queue manager's acknowledgement of
//! `ForgetDeadSites`, and moves the files on a blocking-pool thread (see [`crate::send`]); it
//! takes no other request meanwhile, but the thread stays free for the replies on their way
//! and the fast flush cluster's answers. Another node's handover (the fast flush cluster) is
//! such a send, whose moved messages the queue manager has agreed to route to that node before
//! anything moves.

use std::path::PathBuf;
use std::time::Duration;

use actix::prelude::*;
use futures_util::future::Either;

use common::ipc::client::call;
use common::ipc::flush::{FlushReply, FlushRequest};
use common::ipc::qmgr::{QmgrCommand, QmgrProtocol, QmgrRequest};
use common::ipc::trigger::{Trigger, TriggerReply};
use common::ipc::trigger_client::TriggerClient;
use common::log_warning;

use crate::reconcile::Scan;
use crate::service::{FlushConfig, FlushState, Step};
use crate::shape::ShapeJob;

struct FlushActor {
    state: FlushState,
    qmgr: TriggerClient,
}

impl Actor for FlushActor {
    type Context = Context<Self>;
}

/// What another node's send waits for before its file work starts: its answer on the way
/// (fired, or dropped, by the fast flush cluster's answering task).
pub type Go = tokio::sync::oneshot::Receiver<()>;

#[derive(Message)]
#[rtype(result = "FlushReply")]
struct Request(FlushRequest, Option<Go>);

/// Another node's handover request: send `site` to `nexthop` (see [`FlushState::hand_over`]).
#[derive(Message)]
#[rtype(result = "FlushReply")]
struct HandOver {
    site: String,
    nexthop: String,
    go: Option<Go>,
}

/// Give the queue manager a request with arguments (where a handover's mail goes, which files
/// a send moved); `Err` when it did not take it.
pub async fn qmgr_command(socket: PathBuf, timeout: Duration, command: QmgrCommand) -> Result<(), String> {
    match call::<QmgrProtocol>(&socket, &QmgrRequest::Command(command), timeout).await {
        Ok(TriggerReply::Accepted) => Ok(()),
        Ok(TriggerReply::Denied { reason }) => Err(reason),
        Err(e) => Err(format!("queue manager {}: {e}", socket.display())),
    }
}

impl FlushActor {
    /// Carry out what a request needs next.
    fn step(&mut self, step: Step, go: Option<Go>) -> AtomicResponse<Self, FlushReply> {
        match step {
            Step::Reply(reply) => AtomicResponse::new(Box::pin(fut::ready(reply))),
            Step::ForgetDeadSitesFirst(pending) => {
                // The client's answer is what waits in deferred now, and goes out at once;
                // the queue manager's acknowledgement of ForgetDeadSites and the moves follow,
                // still before any other request (the actor waits for them), so the order
                // "F before any file moves" holds and a re-deferral's Add comes after the send.
                // Neither the qmgr round trip nor the renames are on the ETRN reply's path.
                // A handover first tells the queue manager where the mail goes; if it does not
                // take that, nothing moves (the mail would take its usual route instead).
                let reply = self.state.pending(&pending);
                let qmgr = self.qmgr.clone();
                let relay = self.state.relay_request(&pending);
                let shown = match &relay {
                    Some(QmgrCommand::Relay { site, nexthop, .. }) => format!("{site} to {nexthop}"),
                    _ => String::new(),
                };
                let (socket, timeout) = (self.state.config().qmgr_socket.clone(), self.state.config().trigger_timeout);
                let acked = async move {
                    if let Some(go) = go {
                        // Fired or dropped: either way the answer needs the CPUs no longer.
                        let _ = go.await;
                    }
                    if let Some(command) = relay {
                        qmgr_command(socket, timeout, command).await?;
                    }
                    Ok(qmgr.send(&[Trigger::ForgetDeadSites]).await)
                };
                let send = acked.into_actor(self).then(move |acked: Result<_, String>, act, _| match acked {
                    Err(why) => {
                        log_warning!("fast flush handover of {shown}: {why}; the mail stays in this node's queue");
                        Either::Left(fut::ready(()))
                    }
                    Ok(forgot) => {
                        // The queue manager is down or slow: the files move anyway, and it
                        // scans them when it is back.
                        if let Err(e) = forgot {
                            log_warning!("trigger {}: {e}", act.qmgr.shown());
                        }
                        let job = act.state.send_job(pending);
                        Either::Right(actix_rt::task::spawn_blocking(move || job.run()).into_actor(act).then(|done, act, _| {
                            let held = match done {
                                Ok((sent, held)) => {
                                    if let FlushReply::Fail { reason } = act.state.sent(sent) {
                                        log_warning!("fast flush send: {reason}");
                                    }
                                    Some(held)
                                }
                                Err(e) => {
                                    log_warning!("fast flush send: {e}");
                                    None
                                }
                            };
                            // Emptied off the thread too, still before the next request.
                            actix_rt::task::spawn_blocking(move || held.map(crate::send::Held::finish)).into_actor(act).map(|_, _, _| ())
                        }))
                    }
                });
                AtomicResponse::new(Box::pin(fut::ready(reply).map(move |reply, _, ctx: &mut Context<Self>| {
                    ctx.wait(send);
                    reply
                })))
            }
        }
    }
}

impl Handler<Request> for FlushActor {
    type Result = AtomicResponse<Self, FlushReply>;
    fn handle(&mut self, msg: Request, _: &mut Context<Self>) -> Self::Result {
        let step = self.state.handle(msg.0);
        self.step(step, msg.1)
    }
}

impl Handler<HandOver> for FlushActor {
    type Result = AtomicResponse<Self, FlushReply>;
    fn handle(&mut self, msg: HandOver, _: &mut Context<Self>) -> Self::Result {
        let step = self.state.hand_over(&msg.site, msg.nexthop);
        self.step(step, msg.go)
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
        self.request_held(req, None).await
    }

    /// A request whose file work, if it is a send, waits for `go` after the reply (another
    /// node's request: see the cluster).
    pub async fn request_held(&self, req: FlushRequest, go: Option<Go>) -> FlushReply {
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
        self.addr.send(Request(req, go)).await.unwrap_or_else(|e| failed(&e))
    }

    /// Another node's handover: send `site` with its mail routed to `nexthop`, once `go`.
    pub async fn hand_over(&self, site: String, nexthop: String, go: Option<Go>) -> FlushReply {
        self.addr.send(HandOver { site, nexthop, go }).await.unwrap_or_else(|e| FlushReply::Fail { reason: e.to_string() })
    }

    pub fn reload(&self, cfg: FlushConfig) {
        self.addr.do_send(Reload(cfg));
    }

    /// Hand over the result of the start-up queue scan (callable from any thread).
    pub fn reconciled(&self, scan: Scan) {
        self.addr.do_send(Reconciled(scan));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::tests::{deferred_message, test_config};
    use common::queue::QueueName;

    #[test]
    fn another_nodes_send_answers_at_once_and_moves_once_let_go() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = test_config(tmp.path(), "example.net");
        let spool = cfg.spool.clone();
        let id = deferred_message(&spool, &["u@example.net"]);
        actix_rt::System::new().block_on(async move {
            // No queue manager listens: its trigger fails, and the files move anyway.
            let qmgr = TriggerClient::new(cfg.qmgr_socket.clone(), Duration::from_secs(1), "qmgr".into());
            let handle = FlushHandle::start(FlushState::load(cfg, Box::new(|_| {})).unwrap(), qmgr);
            let site = || "example.net".to_string();
            assert_eq!(handle.request(FlushRequest::Add { site: site(), queue_id: id.to_string() }).await, FlushReply::ok(0));
            let (answered, go) = tokio::sync::oneshot::channel();
            assert_eq!(handle.request_held(FlushRequest::SendSite { site: site(), subdomains: false }, Some(go)).await, FlushReply::ok(1));
            assert!(spool.path(QueueName::Deferred, &id).exists(), "nothing moves before the answer is out");
            let count = actix_rt::spawn({
                let handle = handle.clone();
                async move { handle.request(FlushRequest::CountSite { site: site() }).await }
            });
            answered.send(()).unwrap();
            // The next request is taken once the send is done: nothing is listed any more.
            assert_eq!(count.await.unwrap(), FlushReply::ok(0));
            assert!(spool.path(QueueName::Incoming, &id).exists());
        });
    }
}
