//! Which addresses are this mail system: `inet_interfaces` (with `all` meaning every address
//! of this host's network interfaces, and `loopback-only`) and `proxy_interfaces` (addresses
//! that reach us through a proxy or NAT), as Postfix's `own_inet_addr_list()` and
//! `proxy_inet_addr_list()`. The smtp agent's loop detection takes both; smtpd's
//! `permit_inet_interfaces` (local_header_rewrite_clients) takes `inet_interfaces` alone.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};

use crate::config::{ConfigError, Params};

/// This host's own addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Myself {
    addrs: Vec<IpAddr>,
}

/// The addresses of every local network interface.
fn interface_addresses() -> Result<Vec<IpAddr>, String> {
    let list = nix::ifaddrs::getifaddrs().map_err(|e| format!("cannot list the network interfaces: {e}"))?;
    let mut out = Vec::new();
    for ifa in list {
        let Some(a) = ifa.address else { continue };
        if let Some(v4) = a.as_sockaddr_in() {
            out.push(IpAddr::V4(v4.ip()));
        } else if let Some(v6) = a.as_sockaddr_in6() {
            out.push(IpAddr::V6(v6.ip()));
        }
    }
    Ok(out)
}

/// The addresses one list entry stands for: `all`, `loopback-only`, an address (bracketed or
/// not) or a host name.
fn entry_addresses(entry: &str) -> Result<Vec<IpAddr>, String> {
    match entry.to_ascii_lowercase().as_str() {
        "all" => return interface_addresses(),
        "loopback-only" => return Ok(vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)]),
        _ => {}
    }
    let bare = entry.strip_prefix('[').and_then(|e| e.strip_suffix(']')).unwrap_or(entry);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let found: Vec<IpAddr> = (bare, 0u16).to_socket_addrs().map(|it| it.map(|sa| sa.ip()).collect()).unwrap_or_default();
    if found.is_empty() { Err(format!("no local interface found for {entry}")) } else { Ok(found) }
}

impl Myself {
    /// `inet_interfaces` and `proxy_interfaces`: where a next hop would be this system.
    pub fn from_params(p: &Params) -> Result<Myself, ConfigError> {
        Myself::of(p, &["inet_interfaces", "proxy_interfaces"])
    }

    /// `inet_interfaces` alone: Postfix's `own_inet_addr()`.
    pub fn inet_interfaces(p: &Params) -> Result<Myself, ConfigError> {
        Myself::of(p, &["inet_interfaces"])
    }

    fn of(p: &Params, names: &[&str]) -> Result<Myself, ConfigError> {
        let mut addrs = Vec::new();
        for &name in names {
            for entry in p.list(name)? {
                addrs.extend(entry_addresses(&entry).map_err(|what| ConfigError::value(name, what))?);
            }
        }
        Ok(Myself::new(addrs))
    }

    pub fn new(addrs: Vec<IpAddr>) -> Myself {
        Myself { addrs: addrs.into_iter().map(canonical).collect() }
    }

    /// True when `ip` is one of this mail system's addresses.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.addrs.contains(&canonical(ip))
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries() {
        assert_eq!(entry_addresses("127.0.0.9").unwrap(), vec![IpAddr::from([127, 0, 0, 9])]);
        assert_eq!(entry_addresses("[::1]").unwrap(), vec![IpAddr::V6(Ipv6Addr::LOCALHOST)]);
        assert!(entry_addresses("loopback-only").unwrap().contains(&IpAddr::from([127, 0, 0, 1])));
        assert!(entry_addresses("all").unwrap().contains(&IpAddr::from([127, 0, 0, 1])), "lo is an interface");
        assert!(entry_addresses("no-such-host.invalid").is_err());
        let me = Myself::new(vec![IpAddr::from([127, 0, 0, 9])]);
        assert!(me.contains("::ffff:127.0.0.9".parse().unwrap()));
        assert!(!me.contains(IpAddr::from([127, 0, 0, 1])));
    }
}
