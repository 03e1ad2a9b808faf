//! The server side of a service protocol: send the hello, then answer requests until the
//! client closes. Malformed frames get a warning and a close (the protocol's reply to garbage
//! is the handler's business only when it can be decoded); nothing here panics.
//!
//! A public socket (flush, qmgr, pickup, showq) is reachable by every local user, so each of
//! its connections passes a [`PublicGate`] first: the mail system's own clients (root and
//! `mail_owner`, i.e. the daemons and the administrator) always get in and keep their
//! connections; any other user may hold at most `local_client_connection_limit` connections to
//! the service at once (more are closed at once) and must send each request within
//! `local_client_timeout`. A local user holding sockets thus costs the daemon a bounded number
//! of descriptors, for a few seconds. The limit is per user: many local users together are
//! bounded only by their number (and the mail system's own clients are never refused).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::UnixStream;

use super::frame::{FrameError, MAX_FRAME, read_frame, write_frame};
use super::hello::Protocol;
use crate::config::{ParamError, Params};
use crate::log_warning;

/// How often at most the gate of one service warns that it closes connections.
const WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Admission to a public service; cheap to clone (clones share the counts).
#[derive(Debug, Clone)]
pub struct PublicGate {
    service: String,
    own_uid: u32,
    state: Arc<Mutex<GateState>>,
}

#[derive(Debug)]
struct GateState {
    /// `local_client_connection_limit`: connections per user other than root and ourselves.
    limit: usize,
    /// `local_client_timeout`.
    timeout: Duration,
    /// Open connections per local user.
    open: HashMap<u32, usize>,
    /// When the last "too many connections" warning was logged, and how many were closed since.
    warned: Option<Instant>,
    closed_since: u64,
}

/// A connection that passed the gate; dropping it gives its place back.
#[derive(Debug)]
pub struct Permit {
    /// The `SO_PEERCRED` user of the client.
    pub uid: u32,
    /// The client is the mail system itself (root or the service's own user).
    pub system: bool,
    state: Option<Arc<Mutex<GateState>>>,
    local_timeout: Duration,
}

impl Permit {
    /// How long this client may take to send each request: `system` for the mail system's own
    /// clients (they keep connections between requests), the local client timeout for others.
    pub fn timeout(&self, system: Duration) -> Duration {
        if self.system { system } else { self.local_timeout.min(system) }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(state) = &self.state {
            let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(n) = st.open.get_mut(&self.uid) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    st.open.remove(&self.uid);
                }
            }
        }
    }
}

impl PublicGate {
    /// The gate of `service` with the limits of `p`.
    pub fn from_params(service: &str, p: &Params) -> Result<PublicGate, ParamError> {
        let state = GateState { limit: 0, timeout: Duration::ZERO, open: HashMap::new(), warned: None, closed_since: 0 };
        let gate =
            PublicGate { service: service.to_string(), own_uid: nix::unistd::geteuid().as_raw(), state: Arc::new(Mutex::new(state)) };
        gate.reconfigure(p)?;
        Ok(gate)
    }

    /// Take the limits of a reloaded configuration; connections already open keep counting.
    pub fn reconfigure(&self, p: &Params) -> Result<(), ParamError> {
        let limit = usize::try_from(p.int("local_client_connection_limit")?).unwrap_or(0);
        let timeout = p.time("local_client_timeout")?;
        let mut st = self.lock();
        st.limit = limit;
        st.timeout = timeout;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admit `stream` or refuse it (`None`: drop the stream, which closes it). A limit of 0
    /// means no limit.
    pub fn admit(&self, stream: &UnixStream) -> Option<Permit> {
        let uid = match stream.peer_cred() {
            Ok(c) => c.uid(),
            Err(e) => {
                log_warning!("{} socket: peer credentials: {e}", self.service);
                return None;
            }
        };
        if uid == 0 || uid == self.own_uid {
            return Some(Permit { uid, system: true, state: None, local_timeout: Duration::MAX });
        }
        let mut st = self.lock();
        let (limit, local_timeout) = (st.limit, st.timeout);
        let open = st.open.entry(uid).or_insert(0);
        if limit > 0 && *open >= limit {
            st.closed_since += 1;
            if st.warned.is_none_or(|t| t.elapsed() >= WARNING_INTERVAL) {
                log_warning!(
                    "{} socket: too many connections from uid {uid} (local_client_connection_limit = {limit}): closed {} connection(s)",
                    self.service,
                    st.closed_since
                );
                st.warned = Some(Instant::now());
                st.closed_since = 0;
            }
            return None;
        }
        *open += 1;
        drop(st);
        Some(Permit { uid, system: false, state: Some(self.state.clone()), local_timeout })
    }
}

/// What the handler sees of the client.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    /// `SO_PEERCRED` user ID.
    pub uid: u32,
}

/// Serve one connection of protocol `P` with `handle`. `malformed` turns a decode error into
/// a reply, for protocols that answer garbage instead of just closing. When the daemon drains
/// (`session`), a connection kept open between requests is closed; a request under way is
/// answered first.
pub async fn serve<P, H, Fut>(
    mut stream: UnixStream,
    service: &str,
    timeout: Duration,
    malformed: Option<fn(String) -> P::Reply>,
    session: Option<&crate::daemon::Session>,
    mut handle: H,
) where
    P: Protocol,
    H: FnMut(P::Request, Client) -> Fut,
    Fut: Future<Output = P::Reply>,
{
    let client = match stream.peer_cred() {
        Ok(c) => Client { uid: c.uid() },
        Err(e) => {
            log_warning!("{service} socket: peer credentials: {e}");
            return;
        }
    };
    if write_frame(&mut stream, &P::hello()).await.is_err() {
        return;
    }
    let mut served = false;
    loop {
        let deadline = tokio::time::Instant::now() + timeout;
        if let Some(session) = session {
            tokio::select! {
                biased;
                _ = stream.readable() => {}
                _ = session.drained() => return,
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
        let req = match tokio::time::timeout_at(deadline, read_frame::<P::Request, _>(&mut stream, MAX_FRAME)).await {
            // A client that keeps its connection between requests is not stalled, just idle.
            Err(_) if served => return,
            Err(_) => {
                log_warning!("timeout while waiting for data from {service} socket");
                return;
            }
            Ok(Ok(Some(req))) => req,
            Ok(Ok(None)) => return,
            Ok(Err(FrameError::Decode(e))) => {
                log_warning!("malformed request from {service} socket client uid {}: {e}", client.uid);
                if let Some(reply) = malformed {
                    let _ = write_frame(&mut stream, &reply(format!("malformed request: {e}"))).await;
                }
                return;
            }
            Ok(Err(e)) => {
                log_warning!("{service} socket client uid {}: {e}", client.uid);
                return;
            }
        };
        let reply = handle(req, client).await;
        if write_frame(&mut stream, &reply).await.is_err() {
            return;
        }
        served = true;
    }
}
