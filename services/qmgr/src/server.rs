//! The queue manager's trigger server and daemon loop: `public/qmgr` connections (each
//! request authorized, then handed to the scheduler's mailbox in order, which is what the
//! acknowledgement promises), the master's wakeups and reloads, and stopping.

use std::time::Duration;

use common::config::Params;
use common::config::users::UserList;
use common::daemon::{Daemon, DaemonArgs, Event, fatal};
use common::ipc::control::MasterCommand;
use common::ipc::qmgr::{QmgrProtocol, QmgrTrigger, TriggerReply};
use common::ipc::server::{PublicGate, serve};
use common::log_warning;

use crate::actor::QmgrHandle;
use crate::config::QmgrConfig;

/// How long a trigger client may take to send its request: Postfix's trigger server waits
/// 10 seconds too (`read_wait(fd, 10)` in trigger_server.c), with no parameter for it.
const TRIGGER_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a stop waits for the disk work already decided on.
const STOP_SETTLE: Duration = Duration::from_secs(1);

/// Triggers that force work (`postqueue -f`) are honoured only from root, `mail_owner` and
/// `authorized_flush_users`, as Postfix's postqueue enforces; the whole request is refused.
fn authorize(triggers: &[QmgrTrigger], uid: u32, users: &UserList) -> Result<(), String> {
    if !triggers.iter().any(|t| t.forces_work()) || users.allows(uid, nix::unistd::geteuid().as_raw()) {
        return Ok(());
    }
    let reason = format!("User {}({uid}) is not allowed to flush the mail queue", UserList::user_name(uid));
    log_warning!("{reason}");
    Err(reason)
}

/// The parameters a reload changes here: the scheduler's, who may flush, the client limits.
fn reload(args: &DaemonArgs, gate: &PublicGate) -> Result<(QmgrConfig, UserList), String> {
    let p = args.load_params("qmgr").map_err(|e| e.to_string())?;
    let cfg = QmgrConfig::from_params(&p).map_err(|e| e.to_string())?;
    let users = UserList::new(&p.list("authorized_flush_users").map_err(|e| e.to_string())?);
    gate.reconfigure(&p).map_err(|e| e.to_string())?;
    Ok((cfg, users))
}

/// Start the scheduler and serve until the master says drain or goes away. Must run inside an
/// actix `System`.
pub async fn run(args: DaemonArgs, params: Params, listeners: Vec<common::daemon::Listener>) {
    let cfg = QmgrConfig::from_params(&params).unwrap_or_else(|e| fatal(&e.to_string()));
    let mut flush_users = UserList::new(&params.list("authorized_flush_users").unwrap_or_else(|e| fatal(&e.to_string())));
    let gate = PublicGate::from_params("qmgr", &params).unwrap_or_else(|e| fatal(&e.to_string()));
    let mut d = Daemon::new(&args.service, listeners).unwrap_or_else(|e| fatal(&e.to_string()));
    let sched = QmgrHandle::start(cfg);
    d.ready();
    loop {
        match d.next().await {
            Event::Unix(stream) => {
                let Some(permit) = gate.admit(&stream) else { continue };
                let (sched, users) = (sched.clone(), flush_users.clone());
                let timeout = permit.timeout(TRIGGER_REQUEST_TIMEOUT);
                actix_rt::spawn(async move {
                    serve::<QmgrProtocol, _, _>(stream, "qmgr", timeout, None, move |triggers: Vec<QmgrTrigger>, client| {
                        let reply = match authorize(&triggers, client.uid, &users) {
                            Ok(()) => {
                                sched.triggers(triggers);
                                TriggerReply::Accepted
                            }
                            Err(reason) => TriggerReply::Denied { reason },
                        };
                        async { reply }
                    })
                    .await;
                    drop(permit);
                });
            }
            Event::Tcp(..) => log_warning!("qmgr: ignoring a TCP connection; this is a unix service"),
            Event::Command(MasterCommand::Wakeup) => sched.wakeup(),
            Event::Command(MasterCommand::Reload) => match reload(&args, &gate) {
                Ok((cfg, users)) => {
                    sched.reload(cfg);
                    flush_users = users;
                }
                Err(e) => log_warning!("reload: {e}; keeping the running configuration"),
            },
            stop @ (Event::Command(MasterCommand::Drain) | Event::Terminate | Event::MasterGone) => {
                // A worker job is one file operation; a stop stays prompt however slow the disk.
                let _ = tokio::time::timeout(STOP_SETTLE, sched.settle()).await;
                return stop.log_stop();
            }
        }
    }
}
