//! The scheduler's state, without I/O: what is active, what waits for which route, what the
//! scans have still to look at. The actor ([`crate::actor`]) owns one and does what it asks
//! for ([`Effect`]): disk work on the worker thread, delivery requests to the agents, flush
//! `Add`s. Each concern works on this state from its own module: [`crate::scan`] (feeding the
//! active queue), [`crate::active`] (admitting and recording), [`crate::deliver`] (dispatch
//! and results), [`crate::feedback`] (windows and dead routes), [`crate::finish`] (expiry,
//! bounce, backoff, flush).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use common::ipc::client::Persistent;
use common::ipc::delivery::DeliveryProtocol;
use common::ipc::qmgr::QmgrTrigger;
use common::queue::{QueueId, QueueName};

use crate::active::ActiveMsg;
use crate::config::{QmgrConfig, Route};
use crate::deliver::{Delivery, Job};
use crate::feedback::{Feedback, Limits};
use crate::scan::ScanCtx;
use crate::worker::DiskJob;

/// What the scheduler asks its owner to do.
#[derive(Debug)]
pub enum Effect {
    /// Work on the queue files, in order, off the scheduler's thread.
    Disk(DiskJob),
    /// Send a delivery request to an agent and report its [`crate::deliver::Done`].
    Deliver(Delivery),
    /// List a deferred message with the flush service.
    FlushAdd { id: QueueId, site: String },
}

pub struct Scheduler {
    pub(crate) cfg: Arc<QmgrConfig>,
    pub(crate) active: HashMap<QueueId, ActiveMsg>,
    /// Requests waiting for a free place in their route's window.
    pub(crate) jobs: BTreeMap<Route, VecDeque<Job>>,
    pub(crate) inflight: HashMap<Route, usize>,
    pub(crate) feedback: Feedback,
    /// Kept connections to the delivery agents, by transport (`private/<transport>`).
    pub(crate) agents: HashMap<String, Arc<Persistent<DeliveryProtocol>>>,
    pub(crate) incoming: ScanCtx,
    pub(crate) deferred: ScanCtx,
    /// A feed job is on the worker (at most one: it holds the scans' listings meanwhile).
    pub(crate) feeding: bool,
    pub(crate) ignore_timestamps: bool,
    pub(crate) override_defer_transports: bool,
    effects: Vec<Effect>,
}

impl Scheduler {
    pub fn new(cfg: QmgrConfig) -> Scheduler {
        Scheduler {
            cfg: Arc::new(cfg),
            active: HashMap::new(),
            jobs: BTreeMap::new(),
            inflight: HashMap::new(),
            feedback: Feedback::default(),
            agents: HashMap::new(),
            incoming: ScanCtx::new(),
            deferred: ScanCtx::new(),
            feeding: false,
            ignore_timestamps: false,
            override_defer_transports: false,
            effects: Vec::new(),
        }
    }

    /// A reload: new parameters; kept agent connections, windows and suspensions stay.
    pub fn set_config(&mut self, cfg: QmgrConfig) {
        self.cfg = Arc::new(cfg);
    }

    pub fn config(&self) -> &QmgrConfig {
        &self.cfg
    }

    pub(crate) fn limits(&self) -> Limits {
        Limits { initial: self.cfg.initial_concurrency, limit: self.cfg.destination_concurrency }
    }

    pub fn request_deferred_scan(&mut self) {
        self.deferred.again = true;
    }

    pub(crate) fn ctx(&mut self, queue: QueueName) -> &mut ScanCtx {
        if queue == QueueName::Incoming { &mut self.incoming } else { &mut self.deferred }
    }

    pub(crate) fn emit(&mut self, e: Effect) {
        self.effects.push(e);
    }

    /// What has been asked for since the last call, in order.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// Triggers from `public/qmgr` and the master's wakeup.
    pub fn triggers(&mut self, ts: &[QmgrTrigger]) {
        for t in ts {
            match t {
                QmgrTrigger::ScanIncoming | QmgrTrigger::Wakeup => self.incoming.again = true,
                QmgrTrigger::ScanDeferred => self.deferred.again = true,
                QmgrTrigger::IgnoreTimestamps => self.ignore_timestamps = true,
                QmgrTrigger::ForgetDeadSites => {
                    self.feedback.forget_dead();
                    self.override_defer_transports = true;
                }
            }
        }
    }

    /// Feed the active queue from the scans in progress (incoming first, as Postfix prefers new
    /// mail when room is short), then dispatch. The owner calls this after each burst of
    /// messages, so that a burst is fed and dispatched once.
    pub fn run(&mut self) {
        self.start_feed();
        if !self.feeding && self.incoming.idle() && self.deferred.idle() {
            // The modifiers applied to the scans that have now completed.
            self.ignore_timestamps = false;
            self.override_defer_transports = false;
        }
        self.dispatch();
    }
}
