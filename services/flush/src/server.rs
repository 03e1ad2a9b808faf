//! The flush daemon as a service of the skeleton, and its client connections: hello, then any number of
//! request/reply frames until the client closes. Garbage gets a `Bad` reply or a close, plus a
//! warning; it never stops the service.

use std::rc::Rc;
use std::time::Duration;

use tokio::net::UnixStream;
use tokio::sync::watch;

use common::config::users::UserList;
use common::config::{ParamError, Params};
use common::daemon::{self, Client, Service, Session, fatal};
use common::ipc::endpoint::{Class, display_path};
use common::ipc::flush::{FlushProtocol, FlushReply, FlushRequest};
use common::ipc::qmgr::QmgrRequest;
use common::ipc::server::{PublicGate, serve};
use common::ipc::trigger::Trigger;
use common::ipc::trigger_client::TriggerClient;
use common::log_warning;

use crate::actor::FlushHandle;
use crate::cluster::config::ClusterConfig;
use crate::cluster::{Ask, Cluster};
use crate::service::{FlushConfig, FlushState};

/// Who may ask for deliveries (`authorized_flush_users`) and who may add entries.
#[derive(Debug, Clone)]
pub struct FlushAuth {
    users: UserList,
    own_uid: u32,
}

impl FlushAuth {
    pub fn from_params(p: &Params) -> Result<FlushAuth, ParamError> {
        Ok(FlushAuth { users: UserList::new(&p.list("authorized_flush_users")?, &p.config_dir), own_uid: nix::unistd::geteuid().as_raw() })
    }

    /// `None` when allowed, else the refusal text.
    fn check(&self, req: &FlushRequest, uid: u32) -> Option<String> {
        let system = uid == 0 || uid == self.own_uid;
        match req {
            // Entries come from the queue manager only.
            FlushRequest::Add { .. } if !system => {
                Some(format!("User {}({uid}) is not allowed to add fast flush entries", UserList::user_name(uid)))
            }
            // Which mail waits for whom is the mail system's business (smtpd's ODMR service),
            // and so is where the other nodes send theirs.
            FlushRequest::List { .. } | FlushRequest::Forget { .. } | FlushRequest::HandOver { .. } if !system => {
                Some(format!("User {}({uid}) is not allowed to list fast flush entries", UserList::user_name(uid)))
            }
            _ if self.users.allows(uid, self.own_uid) => None,
            _ => Some(format!("User {}({uid}) is not allowed to flush the mail queue", UserList::user_name(uid))),
        }
    }
}

/// The cluster membership in force (none when `fast_flush_cluster_servers` is empty).
type Membership = Option<Rc<Cluster>>;

/// Serve one client connection: authorize each request by the peer's uid (with the
/// authorization current at that moment: smtpd and qmgr keep their connections across reloads),
/// then ask the actor. A client's `SendSite` (ETRN, `postqueue -s`, `sendmail -qR`; the
/// service's own housekeeping never comes this way), `CountSite` and `HandOver` also go to the
/// cluster, when there is one.
async fn serve_client(
    stream: UnixStream,
    handle: FlushHandle,
    auth: watch::Receiver<FlushAuth>,
    cluster: watch::Receiver<Membership>,
    timeout: Duration,
    session: &Session,
) {
    let malformed: fn(String) -> FlushReply = |reason| FlushReply::Bad { reason };
    serve::<FlushProtocol, _, _>(stream, "flush", timeout, Some(malformed), Some(session), |req, client| {
        let refusal = auth.borrow().check(&req, client.uid);
        let cluster = cluster.borrow().clone();
        let handle = handle.clone();
        async move {
            match (refusal, cluster, &req) {
                (Some(text), _, _) => {
                    log_warning!("{text}");
                    FlushReply::Fail { reason: text }
                }
                (None, Some(cluster), FlushRequest::SendSite { site, subdomains }) => {
                    let (site, subdomains) = (site.clone(), *subdomains);
                    cluster.ask(Ask::Send { subdomains }, &site, handle.request(req)).await
                }
                (None, Some(cluster), FlushRequest::CountSite { site }) => {
                    let site = site.clone();
                    cluster.ask(Ask::Count, &site, handle.request(req)).await
                }
                (None, Some(cluster), FlushRequest::HandOver { site }) => {
                    let site = site.clone();
                    cluster.ask(Ask::HandOver, &site, handle.request(req)).await
                }
                (None, Some(cluster), FlushRequest::ShapeSite { site, ages }) => {
                    let (site, ages) = (site.clone(), *ages);
                    cluster.ask(Ask::Shape(ages), &site, handle.request(req)).await
                }
                (None, _, _) => handle.request(req).await,
            }
        }
    })
    .await;
}

/// Join the cluster that `cfg` describes (or leave it: `None`) and make that the membership.
async fn join(cfg: Option<ClusterConfig>, handle: FlushHandle, membership: &watch::Sender<Membership>) -> Result<(), String> {
    let joined = match cfg {
        Some(cfg) => Some(Rc::new(Cluster::join(cfg, handle).await?)),
        None => None,
    };
    membership.send_replace(joined);
    Ok(())
}

/// flush as a [`Service`] of the daemon skeleton: each client a task that asks the actor;
/// the wakeup timer a refresh; a reload new parameters for the actor and the authorization.
pub struct FlushService {
    handle: FlushHandle,
    auth: watch::Sender<FlushAuth>,
    gate: PublicGate,
    /// `ipc_timeout`: how long a client may take to send a request.
    timeout: Duration,
    cluster: Rc<watch::Sender<Membership>>,
    /// The `fast_flush_cluster_*` settings in force (a reload re-joins only when they change).
    cluster_cfg: Option<ClusterConfig>,
}

impl FlushService {
    pub fn new(handle: FlushHandle, params: &Params, cluster: Membership) -> Result<FlushService, String> {
        Ok(FlushService {
            cluster_cfg: cluster.as_ref().map(|c| c.config().clone()),
            cluster: Rc::new(watch::Sender::new(cluster)),
            handle,
            auth: watch::Sender::new(FlushAuth::from_params(params).map_err(|e| e.to_string())?),
            gate: PublicGate::from_params("flush", params).map_err(|e| e.to_string())?,
            timeout: params.time("ipc_timeout").map_err(|e| e.to_string())?,
        })
    }
}

impl Service for FlushService {
    fn connection(&mut self, client: Client, session: Session) {
        let Some(stream) = client.into_unix("flush") else { return };
        let Some(permit) = self.gate.admit(&stream) else { return };
        let (handle, auth, timeout) = (self.handle.clone(), self.auth.subscribe(), permit.timeout(self.timeout));
        let cluster = self.cluster.subscribe();
        actix_rt::spawn(async move {
            serve_client(stream, handle, auth, cluster, timeout, &session).await;
            drop(permit);
        });
    }

    fn reload(&mut self, params: &Params) -> Result<(), String> {
        let cfg = FlushConfig::from_params(params).map_err(|e| e.to_string())?;
        self.gate.reconfigure(params).map_err(|e| e.to_string())?;
        self.timeout = params.time("ipc_timeout").map_err(|e| e.to_string())?;
        let auth = FlushAuth::from_params(params).map_err(|e| e.to_string())?;
        let cluster_cfg = ClusterConfig::from_params(params).map_err(|e| e.to_string())?;
        self.handle.reload(cfg);
        self.auth.send_replace(auth);
        if cluster_cfg != self.cluster_cfg {
            self.cluster_cfg = cluster_cfg.clone();
            let (handle, membership) = (self.handle.clone(), self.cluster.clone());
            actix_rt::spawn(async move {
                if let Err(e) = join(cluster_cfg, handle, &membership).await {
                    log_warning!("{e}; this node flushes its own mail only");
                    membership.send_replace(None);
                }
            });
        }
        Ok(())
    }

    fn wakeup(&mut self) {
        let h = self.handle.clone();
        actix_rt::spawn(async move {
            if let FlushReply::Fail { reason } = h.request(FlushRequest::Refresh).await {
                log_warning!("fast flush refresh: {reason}");
            }
        });
    }
}

/// The flush program: start-up (the actor, the background reconciliation), then the
/// skeleton's loop until drain or stop.
pub fn run() {
    let (args, params) = daemon::start("flush");
    if args.process_limit.is_some_and(|n| n != 0) {
        fatal(&format!("service {} requires a process limit of 0", args.service));
    }
    let cfg = FlushConfig::from_params(&params).unwrap_or_else(|e| fatal(&e.to_string()));
    let qmgr_name = params.get("queue_service_name").unwrap_or_else(|e| fatal(&e.to_string()));
    let listeners = daemon::inherited_listeners().unwrap_or_else(|e| fatal(&e.to_string()));
    actix_rt::System::new().block_on(async move {
        let qmgr = TriggerClient::new(cfg.qmgr_socket.clone(), cfg.trigger_timeout, display_path(Class::Public, &qmgr_name));
        // The scans asked for after files moved need no waiting; the actor itself waits for
        // the acknowledgement that must come before they move.
        let posting = qmgr.clone();
        let (socket, timeout) = (cfg.qmgr_socket.clone(), cfg.trigger_timeout);
        let notify: crate::service::Notify = Box::new(move |req| match req {
            QmgrRequest::Triggers(triggers) => posting.post(&triggers),
            QmgrRequest::Command(command) => {
                let (socket, posting) = (socket.clone(), posting.clone());
                actix_rt::spawn(async move {
                    if let Err(e) = crate::actor::qmgr_command(socket, timeout, command).await {
                        // The files are in incoming either way: a scan finds them.
                        log_warning!("{e}; asking for a scan of incoming instead");
                        posting.post(&[Trigger::ScanIncoming]);
                    }
                });
            }
        });
        let state = FlushState::load(cfg.clone(), notify).unwrap_or_else(|e| {
            fatal(&format!("open fast flush logfiles in {}: {e}", common::queue::flush_dir(&cfg.spool.root).display()))
        });
        let handle = FlushHandle::start(state, qmgr);
        let scan_handle = handle.clone();
        let spool = cfg.spool.clone();
        std::thread::spawn(move || scan_handle.reconciled(crate::reconcile::scan_deferred(&spool)));
        let cluster = match ClusterConfig::from_params(&params).unwrap_or_else(|e| fatal(&e.to_string())) {
            Some(c) => Some(Rc::new(Cluster::join(c, handle.clone()).await.unwrap_or_else(|e| fatal(&e)))),
            None => None,
        };
        let service = FlushService::new(handle, &params, cluster).unwrap_or_else(|e| fatal(&e));
        daemon::serve("flush", &args, &params, listeners, None, service).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization() {
        let auth = FlushAuth { users: UserList::new(&["alice".into()], std::path::Path::new("/")), own_uid: 1000 };
        let send = FlushRequest::SendSite { site: "x.example".into(), subdomains: false };
        let add = FlushRequest::Add { site: "x.example".into(), queue_id: "A".into() };
        assert_eq!(auth.check(&send, 0), None);
        assert_eq!(auth.check(&add, 1000), None);
        assert!(auth.check(&add, 4242).is_some());
        let handover = FlushRequest::HandOver { site: "x.example".into() };
        assert_eq!(auth.check(&handover, 1000), None);
        assert!(auth.check(&handover, 4242).unwrap().contains("is not allowed to list fast flush entries"));
        assert!(auth.check(&send, 4242).unwrap().contains("is not allowed to flush the mail queue"));
        let open = FlushAuth { users: UserList::new(&["static:anyone".into()], std::path::Path::new("/")), ..auth };
        assert_eq!(open.check(&send, 4242), None);
    }
}
