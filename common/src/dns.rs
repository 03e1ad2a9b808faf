//! The DNS resolver of the daemons that ask DNS (smtp for MX records, smtpd for DNS lists):
//! the system's (`/etc/resolv.conf`), or the servers a `*_dns_nameservers` parameter names
//! (`addr` or `addr:port`, for tests against a DNS server on loopback).

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::Resolver;
pub use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

fn parse_server(text: &str) -> Option<(IpAddr, u16)> {
    if let Ok(sa) = text.parse::<SocketAddr>() {
        return Some((sa.ip(), sa.port()));
    }
    let ip = text.trim_matches(['[', ']']).parse().ok()?;
    Some((ip, 53))
}

/// A resolver asking `servers`, or the system's when empty; `param` names the parameter in
/// errors.
pub fn resolver(servers: &[String], param: &str) -> Result<TokioResolver, String> {
    if servers.is_empty() {
        return Resolver::builder_tokio().map_err(|e| e.to_string())?.build().map_err(|e| e.to_string());
    }
    let mut name_servers = Vec::new();
    for s in servers {
        let (ip, port) = parse_server(s).ok_or_else(|| format!("{param}: bad address: \"{s}\""))?;
        let mut udp = ConnectionConfig::udp();
        udp.port = port;
        let mut tcp = ConnectionConfig::tcp();
        tcp.port = port;
        let mut ns = NameServerConfig::udp_and_tcp(ip);
        ns.connections = vec![udp, tcp];
        name_servers.push(ns);
    }
    let config = ResolverConfig::from_parts(None, vec![], name_servers);
    Resolver::builder_with_config(config, TokioRuntimeProvider::default()).build().map_err(|e| e.to_string())
}
