//! The `flush` program: skeleton start-up, the actor, the background reconciliation, the loop.

use common::daemon::{self, Daemon, fatal};
use common::ipc::endpoint::{Class, display_path};
use common::ipc::qmgr::QmgrTrigger;
use common::ipc::trigger::{TriggerConn, TriggerSender};
use flush::actor::FlushHandle;
use flush::service::{FlushConfig, FlushState};

fn main() {
    let (args, params) = daemon::start("flush");
    if args.process_limit.is_some_and(|n| n != 0) {
        fatal(&format!("service {} requires a process limit of 0", args.service));
    }
    let cfg = FlushConfig::from_params(&params).unwrap_or_else(|e| fatal(&e.to_string()));
    let qmgr_name = params.get("queue_service_name").unwrap_or_else(|_| "qmgr".into());
    let listeners = daemon::inherited_listeners().unwrap_or_else(|e| fatal(&e.to_string()));
    let system = actix_rt::System::new();
    system.block_on(async move {
        let shown = display_path(Class::Public, &qmgr_name);
        let sender = TriggerSender::start(cfg.qmgr_socket.clone(), cfg.trigger_timeout, shown.clone());
        // ForgetDeadSites must be acknowledged before files move: the actor sends it itself and
        // waits. The scans asked for after the moves need no waiting.
        let mut direct = TriggerConn::new(cfg.qmgr_socket.clone(), cfg.trigger_timeout, shown);
        let notify: flush::service::Notify =
            Box::new(move |t: &[QmgrTrigger]| if t.contains(&QmgrTrigger::ForgetDeadSites) { direct.send(t) } else { sender.send(t) });
        let state = FlushState::load(cfg.clone(), notify)
            .unwrap_or_else(|e| fatal(&format!("open fast flush logfiles in {}: {e}", cfg.spool.root.join("flush").display())));
        let handle = FlushHandle::start(state);
        let d = Daemon::new(&args.service, listeners).unwrap_or_else(|e| fatal(&e.to_string()));
        let scan_handle = handle.clone();
        let spool = cfg.spool.clone();
        std::thread::spawn(move || scan_handle.reconciled(flush::reconcile::scan_deferred(&spool)));
        flush::server::run(d, handle, args, params).await;
    });
}
