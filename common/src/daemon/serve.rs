//! The loop every daemon runs (Postfix's `single_server_main`, mini-redis's `run(listener,
//! shutdown)`): accept clients and hand them to the [`Service`], apply reloads and wakeups,
//! and on the master's word drain gracefully or stop.
//!
//! Drain (a reload replaced or removed this service): stop accepting at once (the master keeps
//! the sockets, so new clients reach the process that takes over), let every open session
//! finish, bounded by `drain_timeout`, then exit. SIGTERM (`postfix stop`) ends the process at
//! once, draining or not.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

pub use super::events::Client;
use super::events::{Daemon, Event};
use super::limit::SessionLimit;
use super::{DaemonArgs, Listener, fatal};
use crate::config::Params;
use crate::ipc::control::MasterCommand;
use crate::{log_warning, maillog};

/// What a daemon does; [`serve`] owns the loop around it.
pub trait Service {
    /// A client connected. Serve it (on a task of the service's choosing) and keep `session`
    /// until the client is done: a draining daemon waits for every session it handed out.
    fn connection(&mut self, client: Client, session: Session);

    /// main.cf (with this service's `-o` overrides) was read again and passed the checks every
    /// program makes. Take the new parameters, or say why not: the running ones then stay.
    /// Live resources (kept connections, counters, caches) stay either way.
    fn reload(&mut self, params: &Params) -> Result<(), String>;

    /// The master's wakeup timer (master.cf column 6).
    fn wakeup(&mut self) {}
}

/// One client being served. The skeleton knows the client is done when this is dropped, and
/// tells it through [`Session::drained`] that the process is draining.
#[derive(Debug)]
pub struct Session {
    _open: mpsc::Sender<()>,
    draining: watch::Receiver<bool>,
    count: Arc<AtomicUsize>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Session {
    /// Resolves once the process drains: a session that waits for its client's next request
    /// (a kept connection between requests) should end then; one in the middle of work
    /// finishes it first.
    pub async fn drained(&self) {
        let mut d = self.draining.clone();
        let _ = d.wait_for(|&draining| draining).await;
    }
}

/// The longest a draining process waits for its sessions when the configuration says nothing
/// usable.
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

fn drain_timeout(params: &Params) -> Duration {
    params.time("drain_timeout").unwrap_or(DEFAULT_DRAIN_TIMEOUT)
}

/// Run `service` for `program` on `listeners` until the master says drain or stop. `params`
/// are the parameters the daemon started with; `limit` bounds concurrent TCP clients.
pub async fn serve(
    program: &str,
    args: &DaemonArgs,
    params: &Params,
    listeners: Vec<Listener>,
    limit: Option<SessionLimit>,
    mut service: impl Service,
) {
    if let Some(limit) = limit.as_ref().filter(|_| args.slots_reserved) {
        // A predecessor still drains: no slot is ours until the master says how many it holds.
        limit.reserve(limit.limit());
    }
    let mut daemon = Daemon::with_session_limit(&args.service, listeners, limit.clone()).unwrap_or_else(|e| fatal(&e.to_string()));
    let (open_tx, open_rx) = mpsc::channel::<()>(1);
    let (draining_tx, draining) = watch::channel(false);
    let count = Arc::new(AtomicUsize::new(0));
    let session = || {
        count.fetch_add(1, Ordering::Relaxed);
        Session { _open: open_tx.clone(), draining: draining.clone(), count: count.clone() }
    };
    let mut timeout = drain_timeout(params);
    daemon.ready();
    loop {
        match daemon.next().await {
            Event::Client(client) => service.connection(client, session()),
            Event::Command(MasterCommand::Reload) => match args.load_params(program) {
                Ok(p) => {
                    // Postfix applies syslog_name on reload too.
                    maillog::retag_from_params(&p, program);
                    timeout = drain_timeout(&p);
                    if let Err(e) = service.reload(&p) {
                        log_warning!("reload: {e}; keeping the running configuration");
                    }
                }
                Err(e) => log_warning!("reload: {e}; keeping the running configuration"),
            },
            Event::Command(MasterCommand::Wakeup) => service.wakeup(),
            Event::Command(MasterCommand::Reserve { sessions }) => {
                if let Some(limit) = &limit {
                    limit.reserve(sessions as usize);
                }
            }
            Event::Command(MasterCommand::Drain) => {
                daemon.stop_accepting();
                draining_tx.send_replace(true);
                // The acceptors ran beside this loop: clients they accepted before they stopped
                // are queued behind the command, connected to this process only. They are
                // served like any other (dropping them would cut them before the banner).
                while let Some(ev) = daemon.try_next() {
                    match ev {
                        Event::Client(client) => service.connection(client, session()),
                        stop @ (Event::Terminate | Event::MasterGone) => return stop.log_stop(),
                        Event::Command(_) => {}
                    }
                }
                drop(open_tx);
                return drain(daemon, open_rx, count, timeout).await;
            }
            stop @ (Event::Terminate | Event::MasterGone) => return stop.log_stop(),
        }
    }
}

/// How often a draining process tells the master how many sessions it still serves.
const LOAD_REPORT: Duration = Duration::from_millis(100);

/// Wait for the open sessions (each holds a sender of `open`), at most `timeout`, telling the
/// master as their number falls (the process that takes over keeps their slots free); SIGTERM
/// or the master's end stops the wait.
async fn drain(mut daemon: Daemon, mut open: mpsc::Receiver<()>, count: Arc<AtomicUsize>, timeout: Duration) {
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut reported = count.load(Ordering::Relaxed);
    daemon.report_load(reported);
    let mut ticks = tokio::time::interval(LOAD_REPORT);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                let now = count.load(Ordering::Relaxed);
                if now != reported {
                    reported = now;
                    daemon.report_load(now);
                }
            }
            // No message is ever sent: this ends when the last session's sender is dropped.
            _ = open.recv() => return,
            _ = &mut deadline => {
                log_warning!("sessions still open after drain_timeout ({}s): exiting", timeout.as_secs());
                return;
            }
            ev = daemon.next() => if let stop @ (Event::Terminate | Event::MasterGone) = ev {
                return stop.log_stop();
            },
        }
    }
}
