//! pickup as a [`Service`] of the daemon skeleton: triggers (from sendmail, the wakeup timer)
//! ask one scanner task for a scan of `maildrop/`; requests that pile up meanwhile make one scan.

use tokio::sync::{mpsc, watch};

use common::config::Params;
use common::daemon::{self, Client, Service, Session, fatal};
use common::ipc::endpoint::{Class, display_path, service_path};
use common::ipc::server::{PublicGate, serve};
use common::ipc::trigger::{REQUEST_TIMEOUT, Trigger, TriggerProtocol, TriggerReply};
use common::ipc::trigger_client::TriggerClient;
use common::queue::Spool;

use crate::{PickupConfig, pickup_all};

/// What a scan needs; replaced on reload.
#[derive(Clone)]
struct ScanConfig {
    spool: Spool,
    cfg: PickupConfig,
    /// Tells the queue manager about new mail in incoming.
    qmgr: TriggerClient,
}

impl ScanConfig {
    fn from_params(p: &Params) -> Result<ScanConfig, String> {
        let spool = Spool::from_params(p).map_err(|e| e.to_string())?;
        let name = p.get("queue_service_name").map_err(|e| e.to_string())?;
        let timeout = p.time("trigger_timeout").map_err(|e| e.to_string())?;
        let qmgr = TriggerClient::new(service_path(&spool.root, Class::Public, &name), timeout, display_path(Class::Public, &name));
        Ok(ScanConfig { cfg: PickupConfig::from_params(p).map_err(|e| e.to_string())?, spool, qmgr })
    }
}

struct Pickup {
    scan: mpsc::UnboundedSender<()>,
    config: watch::Sender<ScanConfig>,
    gate: PublicGate,
}

impl Service for Pickup {
    fn connection(&mut self, client: Client, session: Session) {
        let Some(stream) = client.into_unix("pickup") else { return };
        let Some(permit) = self.gate.admit(&stream) else { return };
        let scan = self.scan.clone();
        let timeout = permit.timeout(REQUEST_TIMEOUT);
        tokio::spawn(async move {
            // Any user may ask for a scan: it only takes what is there anyway.
            serve::<TriggerProtocol, _, _>(stream, "pickup", timeout, None, Some(&session), move |_: Vec<Trigger>, _| {
                let _ = scan.send(());
                async { TriggerReply::Accepted }
            })
            .await;
            drop(permit);
        });
    }

    fn reload(&mut self, params: &Params) -> Result<(), String> {
        let mut cfg = ScanConfig::from_params(params)?;
        // The kept connection to the queue manager outlives the reload.
        if cfg.qmgr.same_as(&self.config.borrow().qmgr) {
            cfg.qmgr = self.config.borrow().qmgr.clone();
        }
        self.gate.reconfigure(params).map_err(|e| e.to_string())?;
        self.config.send_replace(cfg);
        Ok(())
    }

    fn wakeup(&mut self) {
        let _ = self.scan.send(());
    }
}

/// Scan whenever asked, one scan for any number of requests that came in meanwhile.
async fn scanner(mut requests: mpsc::UnboundedReceiver<()>, config: watch::Receiver<ScanConfig>) {
    while requests.recv().await.is_some() {
        while requests.try_recv().is_ok() {}
        let c = config.borrow().clone();
        let (spool, cfg) = (c.spool.clone(), c.cfg.clone());
        let moved = tokio::task::spawn_blocking(move || pickup_all(&spool, &cfg)).await.unwrap_or(0);
        if moved > 0 {
            c.qmgr.post(&[Trigger::ScanIncoming]);
        }
    }
}

/// The pickup program: start-up, then the skeleton's loop until drain or stop.
pub fn run() {
    let (args, params) = daemon::start("pickup");
    let config = ScanConfig::from_params(&params).unwrap_or_else(|e| fatal(&e));
    let gate = PublicGate::from_params("pickup", &params).unwrap_or_else(|e| fatal(&e.to_string()));
    let listeners = daemon::inherited_listeners().unwrap_or_else(|e| fatal(&e.to_string()));
    daemon::runtime(0).block_on(async move {
        let (scan, requests) = mpsc::unbounded_channel();
        let (config, config_rx) = watch::channel(config);
        tokio::spawn(scanner(requests, config_rx));
        // Mail submitted while the system was down is waiting already.
        let _ = scan.send(());
        daemon::serve("pickup", &args, &params, listeners, None, Pickup { scan, config, gate }).await;
    });
}
