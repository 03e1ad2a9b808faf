//! The `qmgr` program: the trigger server and the scheduler loop.

use std::time::Duration;

use tokio::sync::mpsc;

use common::daemon::{self, Daemon, Event, fatal};
use common::ipc::control::MasterCommand;
use common::ipc::qmgr::{QmgrProtocol, QmgrTrigger, TriggerReply};
use common::ipc::server::serve;
use common::log_warning;
use qmgr::config::QmgrConfig;
use qmgr::scheduler::{SchedMsg, Scheduler};

fn main() {
    let (args, params) = daemon::start("qmgr");
    if args.process_limit.is_some_and(|n| n != 1) {
        fatal(&format!("service {} requires a process limit of 1", args.service));
    }
    let cfg = QmgrConfig::from_params(&params).unwrap_or_else(|e| fatal(&e.to_string()));
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
                        let tx = tx.clone();
                        tokio::spawn(serve::<QmgrProtocol, _, _>(stream, "qmgr", Duration::from_secs(10), None, move |triggers: Vec<QmgrTrigger>, _| {
                            let _ = tx.send(SchedMsg::Triggers(triggers));
                            async { TriggerReply::Accepted }
                        }));
                    }
                    Event::Tcp(..) => log_warning!("qmgr: ignoring a TCP connection; this is a unix service"),
                    Event::Command(MasterCommand::Wakeup) => sched.handle(SchedMsg::Triggers(vec![QmgrTrigger::Wakeup])),
                    Event::Command(MasterCommand::Reload) => match args.load_params("qmgr").map_err(|e| e.to_string()).and_then(|p| QmgrConfig::from_params(&p).map_err(|e| e.to_string())) {
                        Ok(cfg) => sched.set_config(cfg),
                        Err(e) => log_warning!("reload: {e}; keeping the running configuration"),
                    },
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
