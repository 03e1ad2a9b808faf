//! The `smtpd` program: accept SMTP clients up to the master.cf session limit.

use std::sync::Arc;

use common::daemon::{self, Daemon, Event, SessionLimit, fatal};
use common::ipc::control::MasterCommand;
use common::log_warning;
use smtpd::config::SmtpdConfig;

fn main() {
    let (args, params) = daemon::start("smtpd");
    let cfg = SmtpdConfig::from_params(&params, args.process_limit).unwrap_or_else(|e| fatal(&e.to_string()));
    let listeners = daemon::inherited_listeners().unwrap_or_else(|e| fatal(&e.to_string()));
    let rt = daemon::runtime(2);
    rt.block_on(async move {
        // Clients beyond the limit wait in the listen backlog; the limit outlives reloads.
        let sessions = SessionLimit::new(cfg.session_limit, cfg.idle_eviction);
        let mut d = Daemon::with_session_limit(&args.service, listeners, Some(sessions.clone())).unwrap_or_else(|e| fatal(&e.to_string()));
        let mut cfg = Arc::new(cfg);
        d.ready();
        loop {
            match d.next().await {
                Event::Tcp(stream, addr, slot) => {
                    let (cfg, sessions) = (cfg.clone(), sessions.clone());
                    tokio::spawn(async move {
                        smtpd::conn::serve(stream, addr, cfg, sessions).await;
                        drop(slot);
                    });
                }
                Event::Unix(_) => log_warning!("smtpd: ignoring a Unix connection; this is an inet service"),
                Event::Command(MasterCommand::Reload) => {
                    match args
                        .load_params("smtpd")
                        .map_err(|e| e.to_string())
                        .and_then(|p| SmtpdConfig::from_params(&p, args.process_limit).map_err(|e| e.to_string()))
                    {
                        Ok(mut c) => {
                            c.keep_state_of(&cfg);
                            sessions.set(c.session_limit, c.idle_eviction);
                            cfg = Arc::new(c);
                        }
                        Err(e) => log_warning!("reload: {e}; keeping the running configuration"),
                    }
                }
                Event::Command(MasterCommand::Wakeup) => {}
                stop @ (Event::Command(MasterCommand::Drain) | Event::Terminate | Event::MasterGone) => return stop.log_stop(),
            }
        }
    });
}
