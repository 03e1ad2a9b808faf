//! Listening sockets the master creates and keeps: TCP for `inet` services, Unix stream sockets
//! under `public/` and `private/` for `unix` services. Because the master holds them, a child
//! that dies is replaced without refusing a connection: clients wait in the backlog.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use common::config::{MasterEntry, ServiceType};
use common::ipc::endpoint::{Class, service_path};

/// Why a service's socket cannot be created.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("bind {what}: {source}")]
    Bind { what: String, source: std::io::Error },
    #[error("{0}")]
    Address(String),
    #[error("service type {0} is not supported by Postern")]
    Unsupported(&'static str),
}

/// Well-known service names Postfix admins write instead of port numbers.
fn port_number(port: &str) -> Result<u16, ListenError> {
    match port {
        "smtp" => Ok(25),
        "submission" => Ok(587),
        "smtps" | "submissions" => Ok(465),
        // RFC 2645's port; Debian's /etc/services does not name it.
        "odmr" => Ok(366),
        p => p.parse().map_err(|_| ListenError::Address(format!("unknown service: {p}/tcp"))),
    }
}

/// Split `[host:]port` (host may be `[addr]`).
fn split_host_port(name: &str) -> (Option<&str>, &str) {
    if let Some(rest) = name.strip_prefix('[')
        && let Some((host, port)) = rest.split_once("]:")
    {
        return (Some(host), port);
    }
    match name.rsplit_once(':') {
        Some((host, port)) => (Some(host), port),
        None => (None, name),
    }
}

/// The addresses an `inet` entry listens on.
pub fn inet_addresses(service: &str, inet_interfaces: &[String]) -> Result<Vec<SocketAddr>, ListenError> {
    let (host, port) = split_host_port(service);
    let port = port_number(port)?;
    let hosts: Vec<String> = match host {
        Some(h) => vec![h.to_string()],
        None => inet_interfaces.to_vec(),
    };
    let mut out = Vec::new();
    for h in hosts {
        let ips: Vec<IpAddr> = match h.as_str() {
            "all" => vec![IpAddr::from([0, 0, 0, 0])],
            "loopback-only" | "localhost" => vec![IpAddr::from([127, 0, 0, 1])],
            other => vec![other.parse().map_err(|_| ListenError::Address(format!("{service}: bad host address: {other}")))?],
        };
        out.extend(ips.into_iter().map(|ip| SocketAddr::new(ip, port)));
    }
    Ok(out)
}

/// The socket path of a `unix` entry.
pub fn unix_path(queue_dir: &Path, entry: &MasterEntry) -> PathBuf {
    let class = if entry.private { Class::Private } else { Class::Public };
    service_path(queue_dir, class, &entry.service)
}

/// Create the listening sockets of one entry.
/// A TCP listener with the longest backlog the kernel allows (`net.core.somaxconn`) instead of
/// std's 128: clients beyond a service's session limit wait there, and a session here costs
/// little, so the backlog, not a refusal, is where a flood queues up.
fn tcp_listener(addr: SocketAddr) -> std::io::Result<OwnedFd> {
    let l = TcpListener::bind(addr)?;
    // listen() again on a listening socket sets its backlog anew (Linux).
    nix::sys::socket::listen(&l, nix::sys::socket::Backlog::MAXALLOWABLE).map_err(std::io::Error::from)?;
    Ok(OwnedFd::from(l))
}

pub fn open_listeners(entry: &MasterEntry, queue_dir: &Path, inet_interfaces: &[String]) -> Result<Vec<OwnedFd>, ListenError> {
    match entry.kind {
        ServiceType::Inet => inet_addresses(&entry.service, inet_interfaces)?
            .into_iter()
            .map(|a| tcp_listener(a).map_err(|source| ListenError::Bind { what: a.to_string(), source }))
            .collect(),
        ServiceType::Unix => {
            let path = unix_path(queue_dir, entry);
            let bind_err = |source| ListenError::Bind { what: path.display().to_string(), source };
            // A socket left by an earlier master is stale (the pid lock says none runs now).
            if let Ok(md) = std::fs::symlink_metadata(&path)
                && md.file_type().is_socket()
            {
                std::fs::remove_file(&path).map_err(bind_err)?;
            }
            // Access is controlled by the public/private directory modes, as in Postfix, so the
            // socket itself is 0666. It is born with that mode (umask around bind) instead of a
            // chmod by path afterwards: those directories belong to mail_owner, who could put
            // another file under the name in between, and root must never change it.
            let old_umask = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o111));
            let bound = UnixListener::bind(&path);
            nix::sys::stat::umask(old_umask);
            let l = bound.map_err(bind_err)?;
            Ok(vec![OwnedFd::from(l)])
        }
        other => Err(ListenError::Unsupported(other.as_str())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let lo = vec!["127.0.0.1".to_string()];
        assert_eq!(inet_addresses("127.0.0.1:2525", &[]).unwrap(), vec!["127.0.0.1:2525".parse().unwrap()]);
        assert_eq!(inet_addresses("[::1]:2525", &[]).unwrap(), vec!["[::1]:2525".parse().unwrap()]);
        assert_eq!(inet_addresses("smtp", &lo).unwrap(), vec!["127.0.0.1:25".parse().unwrap()]);
        assert!(inet_addresses("nosuchservice", &lo).is_err());
        assert!(inet_addresses("bad.host:25", &lo).is_err());
    }
}
