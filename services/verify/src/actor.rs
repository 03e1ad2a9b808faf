//! The verify actor: owns the [`Cache`] and sends the probes. It runs on an arbiter thread of
//! its own, since every change to the cache and every probe is written with an fsync before
//! the request is answered: while one request waits for the disk, the connections are still
//! accepted and read on the main thread, and requests are taken one at a time, in order.

use std::time::Duration;

use actix::prelude::*;

use common::ipc::trigger::Trigger;
use common::ipc::trigger_client::TriggerClient;
use common::ipc::verify::{VerifyReply, VerifyRequest};
use common::log_warning;

use crate::cache::Cache;
use crate::config::VerifyConfig;
use crate::probe::{ProbeConfig, queue_probe};
use crate::store::Store;

struct VerifyActor {
    cache: Cache,
    probes: ProbeConfig,
    qmgr: TriggerClient,
    /// `address_verify_map`, to tell whether a reload changed it.
    map: String,
    cleanup: Duration,
    cleanup_timer: Option<SpawnHandle>,
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl VerifyActor {
    fn handle_request(&mut self, req: VerifyRequest) -> VerifyReply {
        let now = now();
        match req {
            VerifyRequest::Query { address } => match self.cache.query(&address, now) {
                Ok(answer) => {
                    // The answer goes out whether or not a probe could be queued; one that
                    // could not is tried again at the next query.
                    if answer.probe {
                        match queue_probe(&self.probes, &address) {
                            Ok(_) => {
                                self.cache.probe_sent(&address, &answer, now);
                                self.qmgr.post(&[Trigger::ScanIncoming]);
                            }
                            Err(e) => log_warning!("queue address verification probe for {address}: {e}"),
                        }
                    }
                    VerifyReply::Status { status: answer.status, text: answer.text }
                }
                Err(e) => VerifyReply::Bad { reason: e.to_string() },
            },
            VerifyRequest::Update { address, status, text } => match self.cache.update(&address, status, &text, now) {
                Ok(()) => VerifyReply::Updated,
                Err(e) => {
                    log_warning!("{e}");
                    VerifyReply::Bad { reason: e.to_string() }
                }
            },
        }
    }

    fn schedule_cleanup(&mut self, ctx: &mut Context<Self>) {
        if let Some(t) = self.cleanup_timer.take() {
            ctx.cancel_future(t);
        }
        // Postfix: 0 turns the clean-up off.
        if !self.cleanup.is_zero() {
            self.cleanup_timer = Some(ctx.run_interval(self.cleanup, |act, _| {
                act.cache.clean(now());
            }));
        }
    }
}

impl Actor for VerifyActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.schedule_cleanup(ctx);
    }
}

#[derive(Message)]
#[rtype(result = "VerifyReply")]
struct Request(VerifyRequest);

impl Handler<Request> for VerifyActor {
    type Result = MessageResult<Request>;
    fn handle(&mut self, msg: Request, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.handle_request(msg.0))
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Reload(VerifyConfig);

impl Handler<Reload> for VerifyActor {
    type Result = ();
    fn handle(&mut self, msg: Reload, ctx: &mut Context<Self>) {
        let cfg = msg.0;
        // A new cache file is opened only when the map changed; if it cannot be, the old one
        // stays in use (with a warning) rather than no cache at all.
        if cfg.map != self.map {
            match Store::open(&cfg.map) {
                Ok(store) => {
                    self.cache.store = store;
                    self.map = cfg.map.clone();
                }
                Err(e) => log_warning!("{e}; keeping the address verification cache {}", self.map),
            }
        }
        self.cache.rules = cfg.rules;
        self.probes = cfg.probes;
        if !self.qmgr.same_as(&cfg.qmgr) {
            self.qmgr = cfg.qmgr;
        }
        if cfg.cleanup != self.cleanup {
            self.cleanup = cfg.cleanup;
            self.schedule_cleanup(ctx);
        }
    }
}

/// The only way other code talks to the actor.
#[derive(Clone)]
pub struct VerifyHandle {
    addr: Addr<VerifyActor>,
    _arbiter: ArbiterHandle,
}

impl VerifyHandle {
    /// Start the actor on an arbiter thread of its own with the cache `store` (already open).
    /// Must be called inside an actix `System`.
    pub fn start(cfg: VerifyConfig, store: Store) -> VerifyHandle {
        let arbiter = Arbiter::new();
        let addr = VerifyActor::start_in_arbiter(&arbiter.handle(), move |_| VerifyActor {
            cache: Cache { rules: cfg.rules, store },
            probes: cfg.probes,
            qmgr: cfg.qmgr,
            map: cfg.map,
            cleanup: cfg.cleanup,
            cleanup_timer: None,
        });
        VerifyHandle { addr, _arbiter: arbiter.handle() }
    }

    pub async fn request(&self, req: VerifyRequest) -> VerifyReply {
        self.addr.send(Request(req)).await.unwrap_or_else(|e| VerifyReply::Bad { reason: e.to_string() })
    }

    pub fn reload(&self, cfg: VerifyConfig) {
        self.addr.do_send(Reload(cfg));
    }
}
