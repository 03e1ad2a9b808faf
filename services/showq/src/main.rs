//! The `showq` program.

use std::time::Duration;

use common::daemon::{self, Daemon, Event, fatal};
use common::ipc::control::MasterCommand;
use common::ipc::server::PublicGate;
use common::log_warning;
use showq::ShowqConfig;

/// How long the mail system's own clients may take to ask.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

fn main() {
    let (args, params) = daemon::start("showq");
    let mut cfg = ShowqConfig::from_params(&params).unwrap_or_else(|e| fatal(&e.to_string()));
    let gate = PublicGate::from_params("showq", &params).unwrap_or_else(|e| fatal(&e.to_string()));
    let listeners = daemon::inherited_listeners().unwrap_or_else(|e| fatal(&e.to_string()));
    let rt = daemon::runtime(0);
    rt.block_on(async move {
        let mut d = Daemon::new(&args.service, listeners).unwrap_or_else(|e| fatal(&e.to_string()));
        d.ready();
        loop {
            match d.next().await {
                Event::Unix(stream) => {
                    let Some(permit) = gate.admit(&stream) else { continue };
                    let serving = showq::serve_client(stream, cfg.clone(), permit.uid, permit.timeout(REQUEST_TIMEOUT));
                    tokio::spawn(async move {
                        serving.await;
                        drop(permit);
                    });
                }
                Event::Tcp(..) => log_warning!("showq: ignoring a TCP connection; this is a unix service"),
                Event::Command(MasterCommand::Reload) => match args.load_params("showq").map_err(|e| e.to_string()).and_then(|p| {
                    let c = ShowqConfig::from_params(&p).map_err(|e| e.to_string())?;
                    gate.reconfigure(&p).map_err(|e| e.to_string())?;
                    Ok(c)
                }) {
                    Ok(c) => cfg = c,
                    Err(e) => log_warning!("reload: {e}; keeping the running configuration"),
                },
                Event::Command(MasterCommand::Wakeup) => {}
                stop @ (Event::Command(MasterCommand::Drain) | Event::Terminate | Event::MasterGone) => return stop.log_stop(),
            }
        }
    });
}
