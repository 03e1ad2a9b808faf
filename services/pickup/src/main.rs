//! The `pickup` program.

use std::time::Duration;

use common::daemon::{self, Daemon, Event, fatal};
use common::ipc::control::MasterCommand;
use common::ipc::endpoint::{Class, service_path};
use common::ipc::qmgr::{QmgrProtocol, QmgrTrigger, TriggerReply};
use common::ipc::server::serve;
use common::log_warning;
use common::queue::Spool;

fn main() {
    let (args, params) = daemon::start("pickup");
    let spool = Spool::from_params(&params).unwrap_or_else(|e| fatal(&e.to_string()));
    let qmgr = service_path(&spool.root, Class::Public, &params.get("queue_service_name").unwrap_or_else(|e| fatal(&e.to_string())));
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
                        let tx = tx.clone();
                        tokio::spawn(serve::<QmgrProtocol, _, _>(stream, "pickup", Duration::from_secs(10), None, move |_: Vec<QmgrTrigger>, _| {
                            let _ = tx.send(());
                            async { TriggerReply::Accepted }
                        }));
                    }
                    Event::Command(MasterCommand::Wakeup) => {
                        let _ = tx.send(());
                    }
                    Event::Tcp(..) => log_warning!("pickup: ignoring a TCP connection; this is a unix service"),
                    Event::Command(MasterCommand::Reload) => {}
                    stop @ (Event::Command(MasterCommand::Drain) | Event::Terminate | Event::MasterGone) => return stop.log_stop(),
                },
                Some(()) = rx.recv() => {
                    while rx.try_recv().is_ok() {}
                    let s = spool.clone();
                    let moved = tokio::task::spawn_blocking(move || pickup::pickup_all(&s)).await.unwrap_or(0);
                    if moved > 0 {
                        pickup::trigger_qmgr(&qmgr).await;
                    }
                }
            }
        }
    });
}
