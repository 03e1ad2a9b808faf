//! The flush daemon's event loop and client connections: hello, then any number of
//! request/reply frames until the client closes. Garbage gets a `Bad` reply or a close, plus a
//! warning; it never stops the service.

use std::time::Duration;

use tokio::net::UnixStream;
use tokio::sync::watch;

use common::config::Params;
use common::config::users::UserList;
use common::daemon::Daemon;
use common::daemon::{DaemonArgs, Event};
use common::ipc::control::MasterCommand;
use common::ipc::flush::{FlushProtocol, FlushReply, FlushRequest};
use common::ipc::server::{PublicGate, serve};
use common::log_warning;

use crate::actor::FlushHandle;
use crate::service::FlushConfig;

/// Who may ask for deliveries (`authorized_flush_users`) and who may add entries.
#[derive(Debug, Clone)]
pub struct FlushAuth {
    users: UserList,
    own_uid: u32,
}

impl FlushAuth {
    pub fn from_params(p: &Params) -> FlushAuth {
        FlushAuth { users: UserList::new(&p.list("authorized_flush_users").unwrap_or_default()), own_uid: nix::unistd::geteuid().as_raw() }
    }

    /// `None` when allowed, else the refusal text.
    fn check(&self, req: &FlushRequest, uid: u32) -> Option<String> {
        let system = uid == 0 || uid == self.own_uid;
        match req {
            // Entries come from the queue manager only.
            FlushRequest::Add { .. } if !system => {
                Some(format!("User {}({uid}) is not allowed to add fast flush entries", UserList::user_name(uid)))
            }
            _ if self.users.allows(uid, self.own_uid) => None,
            _ => Some(format!("User {}({uid}) is not allowed to flush the mail queue", UserList::user_name(uid))),
        }
    }
}

/// Serve one client connection: authorize each request by the peer's uid (with the
/// authorization current at that moment: smtpd and qmgr keep their connections across reloads),
/// then ask the actor.
async fn serve_client(stream: UnixStream, handle: FlushHandle, auth: watch::Receiver<FlushAuth>, timeout: Duration) {
    let malformed: fn(String) -> FlushReply = |reason| FlushReply::Bad { reason };
    serve::<FlushProtocol, _, _>(stream, "flush", timeout, Some(malformed), |req, client| {
        let refusal = auth.borrow().check(&req, client.uid);
        let handle = handle.clone();
        async move {
            match refusal {
                Some(text) => {
                    log_warning!("{text}");
                    FlushReply::Fail { reason: text }
                }
                None => handle.request(req).await,
            }
        }
    })
    .await;
}

/// The daemon's main loop, until the master says drain or goes away.
pub async fn run(mut daemon: Daemon, handle: FlushHandle, args: DaemonArgs, params: Params) {
    let (auth_tx, auth) = watch::channel(FlushAuth::from_params(&params));
    let mut timeout = params.time("ipc_timeout").unwrap_or(Duration::from_secs(3600));
    let gate = match PublicGate::from_params("flush", &params) {
        Ok(g) => g,
        Err(e) => common::daemon::fatal(&e.to_string()),
    };
    daemon.ready();
    loop {
        match daemon.next().await {
            Event::Unix(stream) => {
                let Some(permit) = gate.admit(&stream) else { continue };
                let serving = serve_client(stream, handle.clone(), auth.clone(), permit.timeout(timeout));
                actix_rt::spawn(async move {
                    serving.await;
                    drop(permit);
                });
            }
            Event::Tcp(..) => {
                log_warning!("flush: ignoring a TCP connection; this is a unix service")
            }
            Event::Command(MasterCommand::Wakeup) => {
                let h = handle.clone();
                actix_rt::spawn(async move {
                    if let FlushReply::Fail { reason } = h.request(FlushRequest::Refresh).await {
                        log_warning!("fast flush refresh: {reason}");
                    }
                });
            }
            Event::Command(MasterCommand::Reload) => match args.load_params("flush") {
                Ok(p) => match FlushConfig::from_params(&p) {
                    Ok(cfg) => {
                        handle.reload(cfg);
                        auth_tx.send_replace(FlushAuth::from_params(&p));
                        timeout = p.time("ipc_timeout").unwrap_or(timeout);
                        if let Err(e) = gate.reconfigure(&p) {
                            log_warning!("reload: {e}; keeping the connection limits");
                        }
                    }
                    Err(e) => log_warning!("reload: {e}; keeping the running configuration"),
                },
                Err(e) => log_warning!("reload: {e}; keeping the running configuration"),
            },
            stop @ (Event::Command(MasterCommand::Drain) | Event::Terminate | Event::MasterGone) => return stop.log_stop(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization() {
        let auth = FlushAuth { users: UserList::new(&["alice".into()]), own_uid: 1000 };
        let send = FlushRequest::SendSite { site: "x.example".into(), subdomains: false };
        let add = FlushRequest::Add { site: "x.example".into(), queue_id: "A".into() };
        assert_eq!(auth.check(&send, 0), None);
        assert_eq!(auth.check(&add, 1000), None);
        assert!(auth.check(&add, 4242).is_some());
        assert!(auth.check(&send, 4242).unwrap().contains("is not allowed to flush the mail queue"));
        let open = FlushAuth { users: UserList::new(&["static:anyone".into()]), ..auth };
        assert_eq!(open.check(&send, 4242), None);
    }
}
