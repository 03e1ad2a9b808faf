//! showq as a [`Service`] of the daemon skeleton: one task per client, each request read
//! within the public socket's limits.

use std::time::Duration;

use common::config::Params;
use common::daemon::{self, Client, Service, Session, fatal};
use common::ipc::server::PublicGate;

use crate::{ShowqConfig, serve_client};

/// How long the mail system's own clients may take to ask.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

struct Showq {
    cfg: ShowqConfig,
    gate: PublicGate,
}

impl Service for Showq {
    fn connection(&mut self, client: Client, session: Session) {
        let Some(stream) = client.into_unix("showq") else { return };
        let Some(permit) = self.gate.admit(&stream) else { return };
        let serving = serve_client(stream, self.cfg.clone(), permit.uid, permit.timeout(REQUEST_TIMEOUT));
        tokio::spawn(async move {
            serving.await;
            drop((permit, session));
        });
    }

    fn reload(&mut self, params: &Params) -> Result<(), String> {
        let cfg = ShowqConfig::from_params(params).map_err(|e| e.to_string())?;
        self.gate.reconfigure(params).map_err(|e| e.to_string())?;
        self.cfg = cfg;
        Ok(())
    }
}

/// The showq program: start-up, then the skeleton's loop until drain or stop.
pub fn run() {
    let (args, params) = daemon::start("showq");
    let cfg = ShowqConfig::from_params(&params).unwrap_or_else(|e| fatal(&e.to_string()));
    let gate = PublicGate::from_params("showq", &params).unwrap_or_else(|e| fatal(&e.to_string()));
    let listeners = daemon::inherited_listeners().unwrap_or_else(|e| fatal(&e.to_string()));
    daemon::runtime(0).block_on(daemon::serve("showq", &args, &params, listeners, None, Showq { cfg, gate }));
}
