//! showq - Postern queue listing server
//!
//! # Synopsis
//! `showq unix n - n - - showq` in master.cf.
//!
//! # Description
//! Lists the queued mail for `postqueue -p`, `postqueue -j` and `mailq`: every message in
//! `maildrop`, `incoming`, `active`, `deferred` and `hold`, with its sender, arrival time, size
//! and the recipients still to be delivered (with the reason of their last deferral). Entries
//! are streamed one frame each, so the listing of a large queue needs no large buffer.
//!
//! # Security
//! Clients are identified with `SO_PEERCRED`; only users in `authorized_mailq_users` (and root
//! and the mail system's own user) get a listing. A local user may hold at most
//! `local_client_connection_limit` connections and must ask within `local_client_timeout`.
//! Maildrop files are read as pickup reads them (never a FIFO or a link, never more than
//! pickup's size cap), so no local user can make the listing block; a bad one is left out.
//!
//! # Configuration parameters
//! `authorized_mailq_users`, `local_client_connection_limit`, `local_client_timeout`,
//! `message_size_limit`, `queue_directory`.

mod service;

pub use service::run;

use std::time::Duration;

use tokio::net::UnixStream;

use common::config::users::UserList;
use common::config::{ParamError, Params};
use common::ipc::Protocol;
use common::ipc::frame::{MAX_FRAME, read_frame, write_frame};
use common::ipc::showq::{ShowqItem, ShowqProtocol, ShowqRequest};
use common::log_warning;
use common::queue::{Spool, listing, maildrop};

/// What showq needs from main.cf.
#[derive(Debug, Clone)]
pub struct ShowqConfig {
    pub spool: Spool,
    /// `authorized_mailq_users`.
    pub users: UserList,
    /// The largest maildrop file read (pickup's cap).
    pub maildrop_cap: Option<u64>,
}

impl ShowqConfig {
    pub fn from_params(p: &Params) -> Result<ShowqConfig, ParamError> {
        let limit = u64::try_from(p.int("message_size_limit")?).unwrap_or(0);
        Ok(ShowqConfig {
            spool: Spool::from_params(p)?,
            users: UserList::new(&p.list("authorized_mailq_users")?, &p.config_dir),
            maildrop_cap: maildrop::size_cap(limit),
        })
    }
}

/// Serve one listing request; the client must ask within `timeout` (the gate's).
pub async fn serve_client(mut stream: UnixStream, cfg: ShowqConfig, uid: u32, timeout: Duration) {
    let ShowqConfig { spool, users, maildrop_cap } = cfg;
    if write_frame(&mut stream, &ShowqProtocol::hello()).await.is_err() {
        return;
    }
    match tokio::time::timeout(timeout, read_frame::<ShowqRequest, _>(&mut stream, MAX_FRAME)).await {
        Ok(Ok(Some(ShowqRequest::List))) => {}
        Ok(Err(e)) => {
            log_warning!("showq socket client uid {uid}: {e}");
            return;
        }
        _ => return,
    }
    if !users.allows(uid, nix::unistd::geteuid().as_raw()) {
        let reason = format!("User {}({uid}) is not allowed to view the mail queue", UserList::user_name(uid));
        log_warning!("{reason}");
        let _ = write_frame(&mut stream, &ShowqItem::Denied { reason }).await;
        return;
    }
    for e in listing::entries(&spool, maildrop_cap) {
        if write_frame(&mut stream, &ShowqItem::Entry(e)).await.is_err() {
            return;
        }
    }
    let _ = write_frame(&mut stream, &ShowqItem::End).await;
}
