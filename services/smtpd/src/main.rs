//! The `smtpd` program: accept SMTP clients up to the master.cf session limit.

use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use common::daemon::{self, Daemon, Event, fatal};
use common::ipc::control::MasterCommand;
use common::log_warning;
use smtpd::config::SmtpdConfig;

fn main() {
    let (args, params) = daemon::start("smtpd");
    let cfg = SmtpdConfig::from_params(&params, args.process_limit).unwrap_or_else(|e| fatal(&e.to_string()));
    let listeners = daemon::inherited_listeners().unwrap_or_else(|e| fatal(&e.to_string()));
    let rt = daemon::runtime(2);
    rt.block_on(async move {
        let mut d = Daemon::new(&args.service, listeners).unwrap_or_else(|e| fatal(&e.to_string()));
        let mut cfg = Arc::new(cfg);
        let mut sessions = Arc::new(Semaphore::new(cfg.session_limit));
        d.ready();
        loop {
            match d.next().await {
                Event::Tcp(mut stream, addr) => match sessions.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let cfg = cfg.clone();
                        tokio::spawn(async move {
                            smtpd::conn::serve(stream, addr, cfg).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        log_warning!(
                            "service \"{}\" has reached its session limit {}: new clients may experience noticeable delays",
                            args.service,
                            cfg.session_limit
                        );
                        let _ = stream.write_all(b"421 4.3.2 Service currently unavailable\r\n").await;
                    }
                },
                Event::Unix(_) => log_warning!("smtpd: ignoring a Unix connection; this is an inet service"),
                Event::Command(MasterCommand::Reload) => {
                    match args
                        .load_params("smtpd")
                        .map_err(|e| e.to_string())
                        .and_then(|p| SmtpdConfig::from_params(&p, args.process_limit).map_err(|e| e.to_string()))
                    {
                        Ok(c) => {
                            cfg = Arc::new(c);
                            sessions = Arc::new(Semaphore::new(cfg.session_limit));
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
