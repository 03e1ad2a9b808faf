//! systemd readiness (`sd_notify`): one datagram to `$NOTIFY_SOCKET` for `Type=notify` units.
//! Written here because it is one `sendto`; a crate would add more than it saves.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Send `state` (`READY=1`, `RELOADING=1`, `STOPPING=1`) if systemd asked for notifications.
pub fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let addr = match path.strip_prefix('@') {
        Some(name) => <SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(&path),
    };
    if let (Ok(sock), Ok(addr)) = (UnixDatagram::unbound(), addr) {
        let _ = sock.send_to_addr(state.as_bytes(), &addr);
    }
}
