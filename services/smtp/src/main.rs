//! The `smtp` program: delivery requests in, per-recipient results out.

use std::sync::Arc;
use std::time::Duration;

use common::daemon::{self, Daemon, Event, fatal};
use common::ipc::control::MasterCommand;
use common::ipc::delivery::{DeliveryProtocol, DeliveryReply, DeliveryRequest};
use common::ipc::server::serve;
use common::log_warning;
use smtp::cache::ConnCache;
use smtp::config::AgentConfig;
use smtp::deliver::deliver;

fn main() {
    let (args, params) = daemon::start("smtp");
    let cfg = AgentConfig::from_params(&params).unwrap_or_else(|e| fatal(&e.to_string()));
    let listeners = daemon::inherited_listeners().unwrap_or_else(|e| fatal(&e.to_string()));
    // One thread, as flush: the connection cache's actor and the delivery tasks share it, so
    // a checkout or checkin wakes no other thread.
    let system = actix_rt::System::new();
    system.block_on(async move {
        let mut d = Daemon::new(&args.service, listeners).unwrap_or_else(|e| fatal(&e.to_string()));
        // Connections from the queue manager are kept between requests: each request reads the
        // configuration current at that moment.
        let cache = ConnCache::start(cfg.cache_time);
        let (cfg_tx, cfg_rx) = tokio::sync::watch::channel(Arc::new(cfg));
        d.ready();
        loop {
            match d.next().await {
                Event::Unix(stream) => {
                    let (cfg_rx, cache) = (cfg_rx.clone(), cache.clone());
                    actix_rt::spawn(serve::<DeliveryProtocol, _, _>(
                        stream,
                        "smtp",
                        Duration::from_secs(3600),
                        None,
                        move |req: DeliveryRequest, _| {
                            let (cfg, cache) = (cfg_rx.borrow().clone(), cache.clone());
                            async move { DeliveryReply { results: deliver(&cfg, &cache, &req).await } }
                        },
                    ));
                }
                Event::Tcp(..) => log_warning!("smtp: ignoring a TCP connection; this is a unix service"),
                Event::Command(MasterCommand::Reload) => match args
                    .load_params("smtp")
                    .map_err(|e| e.to_string())
                    .and_then(|p| AgentConfig::from_params(&p).map_err(|e| e.to_string()))
                {
                    Ok(c) => {
                        cache.set_time_limit(c.cache_time);
                        cfg_tx.send_replace(Arc::new(c));
                    }
                    Err(e) => log_warning!("reload: {e}; keeping the running configuration"),
                },
                Event::Command(MasterCommand::Wakeup) => {}
                stop @ (Event::Command(MasterCommand::Drain) | Event::Terminate | Event::MasterGone) => return stop.log_stop(),
            }
        }
    });
}
