//! Typed messages over Unix sockets: the frame codec, the hello, one module per service protocol,
//! blocking and async clients, socket paths and peer credentials.

pub mod client;
pub mod control;
pub mod delivery;
pub mod endpoint;
pub mod flush;
pub mod frame;
pub mod hello;
pub mod qmgr;
pub mod server;
pub mod showq;
pub mod trigger;
pub mod trigger_client;
pub mod verify;

pub use frame::{FrameError, MAX_FRAME};
pub use hello::{Hello, Protocol};

use std::os::fd::AsFd;

/// The credentials of the process at the other end of a Unix socket (`SO_PEERCRED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
}

/// Read `SO_PEERCRED` of a connected Unix socket.
pub fn peer_cred<F: AsFd>(sock: &F) -> std::io::Result<PeerCred> {
    let c = nix::sys::socket::getsockopt(sock, nix::sys::socket::sockopt::PeerCredentials).map_err(std::io::Error::from)?;
    Ok(PeerCred { uid: c.uid(), gid: c.gid(), pid: c.pid() })
}
