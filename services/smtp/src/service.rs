//! smtp as a [`Service`] of the daemon skeleton: each connection from the queue manager is a
//! task that serves delivery requests, each with the configuration current at that moment; the
//! connection cache actor outlives reloads.

use std::sync::Arc;

use tokio::sync::watch;

use common::config::Params;
use common::daemon::{self, Client, Service, Session, fatal};
use common::ipc::delivery::{DeliveryProtocol, DeliveryReply, DeliveryRequest};
use common::ipc::server::serve;

use crate::cache::ConnCache;
use crate::config::AgentConfig;
use crate::deliver::deliver;

struct Smtp {
    cfg: watch::Sender<Arc<AgentConfig>>,
    cache: ConnCache,
}

impl Service for Smtp {
    fn connection(&mut self, client: Client, session: Session) {
        let Some(stream) = client.into_unix("smtp") else { return };
        let (cfg, cache) = (self.cfg.subscribe(), self.cache.clone());
        // A kept connection from the queue manager may sit between requests this long.
        let idle = self.cfg.borrow().ipc_timeout;
        actix_rt::spawn(async move {
            serve::<DeliveryProtocol, _, _>(stream, "smtp", idle, None, Some(&session), move |req: DeliveryRequest, _| {
                let (cfg, cache) = (cfg.borrow().clone(), cache.clone());
                async move { DeliveryReply { results: deliver(&cfg, &cache, &req).await } }
            })
            .await;
        });
    }

    fn reload(&mut self, params: &Params) -> Result<(), String> {
        let cfg = AgentConfig::from_params(params).map_err(|e| e.to_string())?;
        self.cache.set_time_limits(cfg.cache_time, cfg.client.session.timeouts.quit);
        self.cfg.send_replace(Arc::new(cfg));
        Ok(())
    }
}

/// The smtp program: start-up, then the skeleton's loop until drain or stop.
pub fn run() {
    let (args, params) = daemon::start("smtp");
    let cfg = AgentConfig::from_params(&params).unwrap_or_else(|e| fatal(&e.to_string()));
    let listeners = daemon::inherited_listeners().unwrap_or_else(|e| fatal(&e.to_string()));
    // One thread, as flush: the connection cache's actor and the delivery tasks share it, so a
    // checkout or checkin wakes no other thread.
    actix_rt::System::new().block_on(async move {
        let cache = ConnCache::start(cfg.cache_time, cfg.client.session.timeouts.quit);
        let smtp = Smtp { cfg: watch::Sender::new(Arc::new(cfg)), cache };
        daemon::serve("smtp", &args, &params, listeners, None, smtp).await;
    });
}
