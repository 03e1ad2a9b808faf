//! The flush actor: owns the [`FlushState`] on an arbiter thread of its own, so the blocking
//! file work of a request (flock, rename, truncate) never stalls the connection tasks, and
//! requests for one site are serialized: concurrent adds wait for a send and none is lost.

use actix::prelude::*;

use common::domain::Site;
use common::ipc::flush::{FlushReply, FlushRequest};
use common::queue::QueueId;

use crate::service::{FlushConfig, FlushState};

struct FlushActor(FlushState);

impl Actor for FlushActor {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "FlushReply")]
struct Request(FlushRequest);

impl Handler<Request> for FlushActor {
    type Result = MessageResult<Request>;
    fn handle(&mut self, msg: Request, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.0.handle(msg.0))
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Reload(FlushConfig);

impl Handler<Reload> for FlushActor {
    type Result = ();
    fn handle(&mut self, msg: Reload, _: &mut Context<Self>) {
        self.0.set_config(msg.0);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Reconciled(Vec<(Site, QueueId)>);

impl Handler<Reconciled> for FlushActor {
    type Result = ();
    fn handle(&mut self, msg: Reconciled, _: &mut Context<Self>) {
        self.0.reconcile(msg.0);
    }
}

/// The only way other code talks to the actor.
#[derive(Clone)]
pub struct FlushHandle {
    addr: Addr<FlushActor>,
}

impl FlushHandle {
    /// Start the actor on a new arbiter thread. Must be called inside an actix `System`.
    pub fn start(state: FlushState) -> FlushHandle {
        let arbiter = Arbiter::new();
        let addr = FlushActor::start_in_arbiter(&arbiter.handle(), move |_| FlushActor(state));
        FlushHandle { addr }
    }

    pub async fn request(&self, req: FlushRequest) -> FlushReply {
        self.addr.send(Request(req)).await.unwrap_or_else(|e| FlushReply::Fail { reason: e.to_string() })
    }

    pub fn reload(&self, cfg: FlushConfig) {
        self.addr.do_send(Reload(cfg));
    }

    /// Hand over the result of the start-up queue scan (callable from any thread).
    pub fn reconciled(&self, found: Vec<(Site, QueueId)>) {
        self.addr.do_send(Reconciled(found));
    }
}
