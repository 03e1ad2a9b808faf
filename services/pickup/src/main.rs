//! The `pickup` program.

use std::time::Duration;

use common::daemon::{self, Daemon, Event, fatal};
use common::ipc::control::MasterCommand;
use common::ipc::endpoint::{Class, service_path};
use common::ipc::qmgr::{QmgrProtocol, QmgrTrigger, TriggerReply};
use common::ipc::server::{PublicGate, serve};
use common::log_warning;
use common::queue::Spool;

fn main() {
    let (args, params) = daemon::start("pickup");
    let mut spool = Spool::from_params(&params).unwrap_or_else(|e| fatal(&e.to_string()));
    let mut cfg = pickup::PickupConfig::from_params(&params).unwrap_or_else(|e| fatal(&e.to_string()));
    let qmgr = service_path(&spool.root, Class::Public, &params.get("queue_service_name").unwrap_or_else(|e| fatal(&e.to_string())));
    let gate = PublicGate::from_params("pickup", &params).unwrap_or_else(|e| fatal(&e.to_string()));
    let listeners = daemon::inherited_listeners().unwrap_or_else(|e| fatal(&e.to_string()));
    let rt = daemon::runtime(0);
    rt.block_on(async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut d = Daemon::new(&args.service, listeners).unwrap_or_else(|e| fatal(&e.to_string()));
        d.ready();
        // Mail submitted while the system was down is waiting already.
        let _ = tx.send(());
        loop {
            tokio::select! {
                ev = d.next() => match ev {
                    Event::Unix(stream) => {
                        let Some(permit) = gate.admit(&stream) else { continue };
                        let tx = tx.clone();
                        let timeout = permit.timeout(Duration::from_secs(10));
                        tokio::spawn(async move {
                            // Any user may ask for a scan: it only takes what is there anyway.
                            serve::<QmgrProtocol, _, _>(stream, "pickup", timeout, None, move |_: Vec<QmgrTrigger>, _| {
                                let _ = tx.send(());
                                async { TriggerReply::Accepted }
                            })
                            .await;
                            drop(permit);
                        });
                    }
                    Event::Command(MasterCommand::Wakeup) => {
                        let _ = tx.send(());
                    }
                    Event::Tcp(..) => log_warning!("pickup: ignoring a TCP connection; this is a unix service"),
                    Event::Command(MasterCommand::Reload) => match args.load_params("pickup").map_err(|e| e.to_string()).and_then(|p| {
                        let taken = (Spool::from_params(&p).map_err(|e| e.to_string())?, pickup::PickupConfig::from_params(&p).map_err(|e| e.to_string())?);
                        gate.reconfigure(&p).map_err(|e| e.to_string())?;
                        Ok(taken)
                    }) {
                        Ok((s, c)) => (spool, cfg) = (s, c),
                        Err(e) => log_warning!("reload: {e}; keeping the running configuration"),
                    },
                    stop @ (Event::Command(MasterCommand::Drain) | Event::Terminate | Event::MasterGone) => return stop.log_stop(),
                },
                Some(()) = rx.recv() => {
                    while rx.try_recv().is_ok() {}
                    let (s, c) = (spool.clone(), cfg.clone());
                    let moved = tokio::task::spawn_blocking(move || pickup::pickup_all(&s, &c)).await.unwrap_or(0);
                    if moved > 0 {
                        pickup::trigger_qmgr(&qmgr).await;
                    }
                }
            }
        }
    });
}
