//! The queue manager as a service of the daemon skeleton: `public/qmgr` connections (each
//! request authorized, then handed to the scheduler's mailbox in order, which is what the
//! acknowledgement promises), the master's wakeups and reloads, and stopping.

use std::time::Duration;

use common::config::Params;
use common::config::users::UserList;
use common::daemon::{self, Client, Service, Session, fatal};
use common::ipc::qmgr::{QmgrCommand, QmgrProtocol, QmgrRequest};
use common::ipc::server::{PublicGate, serve};
use common::ipc::trigger::{REQUEST_TIMEOUT, TriggerReply};
use common::log_warning;

use crate::actor::QmgrHandle;
use crate::config::QmgrConfig;

/// How long a stop waits for the disk work already decided on.
const STOP_SETTLE: Duration = Duration::from_secs(1);

/// Triggers that force work (`postqueue -f`) and relay requests are honoured only from root,
/// `mail_owner` and `authorized_flush_users`, as Postfix's postqueue enforces; the whole
/// request is refused.
fn authorize(req: &QmgrRequest, uid: u32, users: &UserList) -> Result<(), String> {
    let forces_work = match req {
        QmgrRequest::Triggers(triggers) => triggers.iter().any(|t| t.forces_work()),
        QmgrRequest::Command(QmgrCommand::Relay { .. }) => true,
        QmgrRequest::Command(QmgrCommand::Incoming { .. }) => false,
    };
    if !forces_work || users.allows(uid, nix::unistd::geteuid().as_raw()) {
        return Ok(());
    }
    let reason = format!("User {}({uid}) is not allowed to flush the mail queue", UserList::user_name(uid));
    log_warning!("{reason}");
    Err(reason)
}

/// The queue manager as a [`Service`] of the daemon skeleton: trigger connections hand their
/// requests to the scheduler's mailbox; wakeups and reloads go to the scheduler too.
struct Qmgr {
    sched: QmgrHandle,
    flush_users: UserList,
    gate: PublicGate,
}

impl Service for Qmgr {
    fn connection(&mut self, client: Client, session: Session) {
        let Some(stream) = client.into_unix("qmgr") else { return };
        let Some(permit) = self.gate.admit(&stream) else { return };
        let (sched, users) = (self.sched.clone(), self.flush_users.clone());
        let timeout = permit.timeout(REQUEST_TIMEOUT);
        actix_rt::spawn(async move {
            serve::<QmgrProtocol, _, _>(stream, "qmgr", timeout, None, Some(&session), move |req, client| {
                let sched = sched.clone();
                let refusal = authorize(&req, client.uid, &users).err();
                async move {
                    match (refusal, req) {
                        (Some(reason), _) => TriggerReply::Denied { reason },
                        (None, QmgrRequest::Triggers(triggers)) => {
                            sched.triggers(triggers);
                            TriggerReply::Accepted
                        }
                        (None, QmgrRequest::Command(QmgrCommand::Incoming { queue_ids })) => match sched.incoming(queue_ids).await {
                            Ok(()) => TriggerReply::Accepted,
                            Err(reason) => {
                                log_warning!("{reason}");
                                TriggerReply::Denied { reason }
                            }
                        },
                        (None, QmgrRequest::Command(QmgrCommand::Relay { site, nexthop, queue_ids })) => {
                            match sched.relay(site, nexthop, queue_ids).await {
                                Ok(()) => TriggerReply::Accepted,
                                Err(reason) => {
                                    log_warning!("{reason}");
                                    TriggerReply::Denied { reason }
                                }
                            }
                        }
                    }
                }
            })
            .await;
            drop(permit);
        });
    }

    /// The parameters a reload changes here: the scheduler's, who may flush, the client limits.
    fn reload(&mut self, p: &Params) -> Result<(), String> {
        let cfg = QmgrConfig::from_params(p).map_err(|e| e.to_string())?;
        let users = UserList::new(&p.list("authorized_flush_users").map_err(|e| e.to_string())?, &p.config_dir);
        self.gate.reconfigure(p).map_err(|e| e.to_string())?;
        self.sched.reload(cfg);
        self.flush_users = users;
        Ok(())
    }

    fn wakeup(&mut self) {
        self.sched.wakeup();
    }
}

/// The qmgr program: start-up, the scheduler, then the skeleton's loop until drain or stop.
pub fn run() {
    let (args, params) = daemon::start("qmgr");
    if args.process_limit.is_some_and(|n| n != 1) {
        fatal(&format!("service {} requires a process limit of 1", args.service));
    }
    let cfg = QmgrConfig::from_params(&params).unwrap_or_else(|e| fatal(&e.to_string()));
    let flush_users = UserList::new(&params.list("authorized_flush_users").unwrap_or_else(|e| fatal(&e.to_string())), &params.config_dir);
    let gate = PublicGate::from_params("qmgr", &params).unwrap_or_else(|e| fatal(&e.to_string()));
    let listeners = daemon::inherited_listeners().unwrap_or_else(|e| fatal(&e.to_string()));
    actix_rt::System::new().block_on(async move {
        let sched = QmgrHandle::start(cfg);
        let qmgr = Qmgr { sched: sched.clone(), flush_users, gate };
        daemon::serve("qmgr", &args, &params, listeners, None, qmgr).await;
        // A worker job is one file operation; a stop stays prompt however slow the disk.
        let _ = tokio::time::timeout(STOP_SETTLE, sched.settle()).await;
    });
}
