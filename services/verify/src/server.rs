//! The verify daemon as a service of the skeleton: each client a task that hands its requests
//! to the actor; a reload new parameters for it.

use std::time::Duration;

use tokio::net::UnixStream;

use common::config::Params;
use common::daemon::{self, Client, Service, Session, fatal};
use common::ipc::server::serve;
use common::ipc::verify::{VerifyProtocol, VerifyReply};
use common::log_warning;

use crate::actor::VerifyHandle;
use crate::config::VerifyConfig;
use crate::store::Store;

/// Serve one client: smtpd's queries, the delivery agents' and the queue manager's updates.
/// The socket is private, so only the mail system reaches it; a client of another user is
/// refused all the same.
async fn serve_client(stream: UnixStream, handle: VerifyHandle, timeout: Duration, session: &Session) {
    let own_uid = nix::unistd::geteuid().as_raw();
    let malformed: fn(String) -> VerifyReply = |reason| VerifyReply::Bad { reason };
    serve::<VerifyProtocol, _, _>(stream, "verify", timeout, Some(malformed), Some(session), |req, client| {
        let handle = handle.clone();
        async move {
            if client.uid != 0 && client.uid != own_uid {
                let reason = format!("uid {} is not the mail system", client.uid);
                log_warning!("verify socket: {reason}");
                return VerifyReply::Bad { reason };
            }
            handle.request(req).await
        }
    })
    .await;
}

pub struct VerifyService {
    handle: VerifyHandle,
    /// `ipc_timeout`: how long a client may take to send a request.
    timeout: Duration,
}

impl Service for VerifyService {
    fn connection(&mut self, client: Client, session: Session) {
        let Some(stream) = client.into_unix("verify") else { return };
        let (handle, timeout) = (self.handle.clone(), self.timeout);
        actix_rt::spawn(async move { serve_client(stream, handle, timeout, &session).await });
    }

    fn reload(&mut self, params: &Params) -> Result<(), String> {
        let cfg = VerifyConfig::from_params(params).map_err(|e| e.to_string())?;
        self.timeout = params.time("ipc_timeout").map_err(|e| e.to_string())?;
        self.handle.reload(cfg);
        Ok(())
    }
}

/// The verify program: open the cache (a cache that cannot be opened is fatal: the master
/// throttles the service, and smtpd answers `450 ... address verification problem`), then the
/// skeleton's loop.
pub fn run() {
    let (args, params) = daemon::start("verify");
    let cfg = VerifyConfig::from_params(&params).unwrap_or_else(|e| fatal(&e.to_string()));
    let timeout = params.time("ipc_timeout").unwrap_or_else(|e| fatal(&e.to_string()));
    let store = Store::open(&cfg.map).unwrap_or_else(|e| fatal(&e.to_string()));
    let listeners = daemon::inherited_listeners().unwrap_or_else(|e| fatal(&e.to_string()));
    actix_rt::System::new().block_on(async move {
        let handle = VerifyHandle::start(cfg, store);
        daemon::serve("verify", &args, &params, listeners, None, VerifyService { handle, timeout }).await;
    });
}
