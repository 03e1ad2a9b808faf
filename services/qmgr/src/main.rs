//! The `qmgr` program: the trigger server and the scheduler loop.

use std::time::Duration;

use tokio::sync::mpsc;

use common::config::users::UserList;
use common::daemon::{self, Daemon, Event, fatal};
use common::ipc::control::MasterCommand;
use common::ipc::qmgr::{QmgrProtocol, QmgrTrigger, TriggerReply};
use common::ipc::server::{PublicGate, serve};
use common::log_warning;
use qmgr::config::QmgrConfig;
use qmgr::scheduler::{SchedMsg, Scheduler};

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

fn main() {
    let (args, params) = daemon::start("qmgr");
    if args.process_limit.is_some_and(|n| n != 1) {
        fatal(&format!("service {} requires a process limit of 1", args.service));
    }
    let cfg = QmgrConfig::from_params(&params).unwrap_or_else(|e| fatal(&e.to_string()));
    let mut flush_users = UserList::new(&params.list("authorized_flush_users").unwrap_or_else(|e| fatal(&e.to_string())));
    let gate = PublicGate::from_params("qmgr", &params).unwrap_or_else(|e| fatal(&e.to_string()));
    let listeners = daemon::inherited_listeners().unwrap_or_else(|e| fatal(&e.to_string()));
    // Two workers: trigger acknowledgements and delivery results are handled while the
    // scheduler (which alone owns the queue state) is busy with a scan.
    let rt = daemon::runtime(2);
    rt.block_on(async move {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut d = Daemon::new(&args.service, listeners).unwrap_or_else(|e| fatal(&e.to_string()));
        let mut tick = tokio::time::interval(cfg.queue_run_delay.max(Duration::from_secs(1)));
        let mut sched = Scheduler::new(cfg, tx.clone());
        sched.recover();
        d.ready();
        let mut more = false;
        loop {
            tokio::select! {
                // Events first; a scan with more to do goes on when there are none.
                biased;
                ev = d.next() => match ev {
                    Event::Unix(stream) => {
                        let Some(permit) = gate.admit(&stream) else { continue };
                        let (tx, users) = (tx.clone(), flush_users.clone());
                        let timeout = permit.timeout(Duration::from_secs(10));
                        tokio::spawn(async move {
                            serve::<QmgrProtocol, _, _>(stream, "qmgr", timeout, None, None, move |triggers: Vec<QmgrTrigger>, client| {
                                let reply = match authorize(&triggers, client.uid, &users) {
                                    Ok(()) => {
                                        let _ = tx.send(SchedMsg::Triggers(triggers));
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
                    Event::Command(MasterCommand::Wakeup) => sched.handle(SchedMsg::Triggers(vec![QmgrTrigger::Wakeup])),
                    Event::Command(MasterCommand::Reload) => match args.load_params("qmgr").map_err(|e| e.to_string()).and_then(|p| {
                        let cfg = QmgrConfig::from_params(&p).map_err(|e| e.to_string())?;
                        let users = UserList::new(&p.list("authorized_flush_users").map_err(|e| e.to_string())?);
                        gate.reconfigure(&p).map_err(|e| e.to_string())?;
                        Ok((cfg, users))
                    }) {
                        Ok((cfg, users)) => {
                            sched.set_config(cfg);
                            flush_users = users;
                        }
                        Err(e) => log_warning!("reload: {e}; keeping the running configuration"),
                    },
                    // qmgr has no session limit to share with a predecessor.
                    Event::Command(MasterCommand::Reserve { .. }) => {}
                    stop @ (Event::Command(MasterCommand::Drain) | Event::Terminate | Event::MasterGone) => return stop.log_stop(),
                },
                Some(msg) = rx.recv() => {
                    sched.handle(msg);
                    // Take a whole burst (triggers from busy clients, delivery results) before
                    // feeding and dispatching once.
                    while let Ok(more) = rx.try_recv() {
                        sched.handle(more);
                    }
                }
                _ = tick.tick() => sched.request_deferred_scan(),
                () = std::future::ready(()), if more => {}
            }
            more = sched.run();
        }
    });
}
