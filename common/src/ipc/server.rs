//! The server side of a service protocol: send the hello, then answer requests until the
//! client closes. Malformed frames get a warning and a close (the protocol's reply to garbage
//! is the handler's business only when it can be decoded); nothing here panics.

use std::future::Future;
use std::time::Duration;

use tokio::net::UnixStream;

use super::frame::{FrameError, MAX_FRAME, read_frame, write_frame};
use super::hello::Protocol;
use crate::log_warning;

/// What the handler sees of the client.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    /// `SO_PEERCRED` user ID.
    pub uid: u32,
}

/// Serve one connection of protocol `P` with `handle`. `malformed` turns a decode error into
/// a reply, for protocols that answer garbage instead of just closing.
pub async fn serve<P, H, Fut>(
    mut stream: UnixStream,
    service: &str,
    timeout: Duration,
    malformed: Option<fn(String) -> P::Reply>,
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
        let req = match tokio::time::timeout(timeout, read_frame::<P::Request, _>(&mut stream, MAX_FRAME)).await {
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
