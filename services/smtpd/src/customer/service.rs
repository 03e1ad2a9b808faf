//! The customer as a [`Service`] of the daemon skeleton: one poller task polls the provider
//! every `odmr_poll_interval` (first at start: mail may have waited while this system was
//! down), on the master's wakeup timer, and whenever a client of its public socket asks
//! (`postfix odmr`, the trigger protocol). Requests that come in during a poll make one more
//! poll after it, never one each; polls never overlap.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use common::config::Params;
use common::daemon::{self, Client, Service, Session, SessionLimit, fatal};
use common::ipc::server::{PublicGate, serve};
use common::ipc::trigger::{REQUEST_TIMEOUT, Trigger, TriggerProtocol, TriggerReply};

use super::config::CustomerConfig;
use super::poll::poll;

struct Customer {
    polls: mpsc::UnboundedSender<()>,
    config: watch::Sender<Arc<CustomerConfig>>,
    gate: PublicGate,
}

impl Service for Customer {
    fn connection(&mut self, client: Client, session: Session) {
        let Some(stream) = client.into_unix("odmr") else { return };
        let Some(permit) = self.gate.admit(&stream) else { return };
        let polls = self.polls.clone();
        let timeout = permit.timeout(REQUEST_TIMEOUT);
        tokio::spawn(async move {
            // Any user may ask for a poll: it only fetches what waits anyway, and requests
            // during a poll make one more poll, so asking often costs the provider nothing.
            serve::<TriggerProtocol, _, _>(stream, "odmr", timeout, None, Some(&session), move |_: Vec<Trigger>, _| {
                let _ = polls.send(());
                async { TriggerReply::Accepted }
            })
            .await;
            drop(permit);
        });
    }

    fn reload(&mut self, params: &Params) -> Result<(), String> {
        let mut cfg = CustomerConfig::from_params(params).map_err(|e| e.to_string())?;
        if let Some(smtpd) = Arc::get_mut(&mut cfg.smtpd) {
            smtpd.keep_state_of(&self.config.borrow().smtpd);
        }
        self.gate.reconfigure(params).map_err(|e| e.to_string())?;
        self.config.send_replace(Arc::new(cfg));
        Ok(())
    }

    fn wakeup(&mut self) {
        let _ = self.polls.send(());
    }
}

/// Poll when asked or when the interval is up, one poll at a time.
async fn poller(mut requests: mpsc::UnboundedReceiver<()>, config: watch::Receiver<Arc<CustomerConfig>>, sessions: SessionLimit) {
    let mut next = Instant::now();
    loop {
        let interval = config.borrow().poll_interval;
        let scheduled = async { if interval.is_zero() { std::future::pending().await } else { tokio::time::sleep_until(next).await } };
        tokio::select! {
            _ = scheduled => {}
            asked = requests.recv() => if asked.is_none() { return },
        }
        while requests.try_recv().is_ok() {}
        let cfg = config.borrow().clone();
        poll(&cfg, &sessions).await;
        next = Instant::now() + cfg.poll_interval;
    }
}

/// The odmr program: start-up, then the skeleton's loop until drain or stop.
pub fn run() {
    let (args, params) = daemon::start("odmr");
    let cfg = CustomerConfig::from_params(&params).unwrap_or_else(|e| fatal(&e.to_string()));
    let gate = PublicGate::from_params("odmr", &params).unwrap_or_else(|e| fatal(&e.to_string()));
    let listeners = daemon::inherited_listeners().unwrap_or_else(|e| fatal(&e.to_string()));
    daemon::runtime(0).block_on(async move {
        // One reversed session at a time: the limit is the session's idle eviction's business.
        let sessions = SessionLimit::new(1, cfg.smtpd.idle_eviction);
        let (polls, requests) = mpsc::unbounded_channel();
        let (config, config_rx) = watch::channel(Arc::new(cfg));
        tokio::spawn(poller(requests, config_rx, sessions));
        daemon::serve("odmr", &args, &params, listeners, None, Customer { polls, config, gate }).await;
    });
}
