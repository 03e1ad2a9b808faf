//! smtpd as a [`Service`] of the daemon skeleton: each TCP client is a session task; a reload
//! swaps the parameters and keeps the live state (session slots, per-client counts, kept
//! connections).

use std::sync::Arc;

use common::config::Params;
use common::daemon::{self, Client, Service, Session, SessionLimit, fatal};
use common::log_warning;

use crate::config::SmtpdConfig;

struct Smtpd {
    cfg: Arc<SmtpdConfig>,
    sessions: SessionLimit,
    process_limit: Option<u32>,
}

impl Service for Smtpd {
    fn connection(&mut self, client: Client, session: Session) {
        match client {
            Client::Tcp { stream, peer, slot } => {
                let (cfg, sessions) = (self.cfg.clone(), self.sessions.clone());
                tokio::spawn(async move {
                    crate::conn::serve(stream, peer, cfg, sessions).await;
                    drop((slot, session));
                });
            }
            Client::Unix(_) => log_warning!("smtpd: ignoring a Unix connection; this is an inet service"),
        }
    }

    fn reload(&mut self, params: &Params) -> Result<(), String> {
        let mut cfg = SmtpdConfig::from_params(params, self.process_limit).map_err(|e| e.to_string())?;
        cfg.keep_state_of(&self.cfg);
        self.sessions.set(cfg.session_limit, cfg.idle_eviction);
        self.cfg = Arc::new(cfg);
        Ok(())
    }
}

/// The smtpd program: start-up, then the skeleton's loop until drain or stop.
pub fn run() {
    let (args, params) = daemon::start("smtpd");
    let cfg = SmtpdConfig::from_params(&params, args.process_limit).unwrap_or_else(|e| fatal(&e.to_string()));
    let listeners = daemon::inherited_listeners().unwrap_or_else(|e| fatal(&e.to_string()));
    daemon::runtime(2).block_on(async move {
        // Clients beyond the limit wait in the listen backlog; the limit outlives reloads.
        let sessions = SessionLimit::new(cfg.session_limit, cfg.idle_eviction);
        let smtpd = Smtpd { cfg: Arc::new(cfg), sessions: sessions.clone(), process_limit: args.process_limit };
        daemon::serve("smtpd", &args, &params, listeners, Some(sessions), smtpd).await;
    });
}
