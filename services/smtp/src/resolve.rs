//! From a next hop to addresses to try, in order: `[host]:port` literally (no MX lookup);
//! otherwise the domain's MX hosts by preference, each with its A/AAAA addresses, falling back to
//! the domain's own addresses when it has no MX record (RFC 5321 5.1).

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};

use crate::deliver::NextHop;

/// A host to connect to: its name for the log and one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub addr: SocketAddr,
}

/// Why no address could be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Host or domain name not found. Name service error for name={name} type={kind}: {why}")]
pub struct ResolveError {
    pub name: String,
    pub kind: &'static str,
    pub why: String,
    /// The name does not exist (NXDOMAIN): bounce. Anything else may pass: defer.
    pub permanent: bool,
}

fn resolve_error(name: &str, kind: &'static str, e: &hickory_resolver::net::NetError) -> ResolveError {
    let permanent = e.is_nx_domain();
    let why = if permanent { "Host not found".to_string() } else { format!("Host not found, try again ({e})") };
    ResolveError { name: name.to_string(), kind, why, permanent }
}

/// The agent's DNS resolver.
pub struct Dns {
    resolver: TokioResolver,
}

fn parse_server(text: &str) -> Option<(IpAddr, u16)> {
    if let Ok(sa) = text.parse::<SocketAddr>() {
        return Some((sa.ip(), sa.port()));
    }
    let ip = text.trim_matches(['[', ']']).parse().ok()?;
    Some((ip, 53))
}

impl Dns {
    /// A resolver asking `servers` (`addr` or `addr:port`), or the system's when empty.
    pub fn new(servers: &[String]) -> Result<Dns, String> {
        if servers.is_empty() {
            let resolver = Resolver::builder_tokio().map_err(|e| e.to_string())?.build().map_err(|e| e.to_string())?;
            return Ok(Dns { resolver });
        }
        let mut name_servers = Vec::new();
        for s in servers {
            let (ip, port) = parse_server(s).ok_or_else(|| format!("smtp_dns_nameservers: bad address: \"{s}\""))?;
            let mut udp = ConnectionConfig::udp();
            udp.port = port;
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = port;
            let mut ns = NameServerConfig::udp_and_tcp(ip);
            ns.connections = vec![udp, tcp];
            name_servers.push(ns);
        }
        let config = ResolverConfig::from_parts(None, vec![], name_servers);
        let resolver = Resolver::builder_with_config(config, TokioRuntimeProvider::default()).build().map_err(|e| e.to_string())?;
        Ok(Dns { resolver })
    }

    async fn addresses(&self, host: &str, port: u16) -> Result<Vec<Target>, ResolveError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![Target { host: host.to_string(), addr: SocketAddr::new(ip, port) }]);
        }
        let fqdn = format!("{}.", host.trim_end_matches('.'));
        let ips = self.resolver.lookup_ip(fqdn.as_str()).await.map_err(|e| resolve_error(host, "A", &e))?;
        Ok(ips.iter().map(|ip| Target { host: host.to_string(), addr: SocketAddr::new(ip, port) }).collect())
    }

    /// Every address to try for `hop`, best first.
    pub async fn resolve(&self, hop: &NextHop) -> Result<Vec<Target>, ResolveError> {
        if !hop.mx || hop.host.parse::<IpAddr>().is_ok() {
            return self.addresses(&hop.host, hop.port).await;
        }
        let fqdn = format!("{}.", hop.host.trim_end_matches('.'));
        let lookup = match self.resolver.mx_lookup(fqdn.as_str()).await {
            Ok(l) => l,
            // The name exists but has no MX record: its own addresses (RFC 5321 5.1).
            Err(e) if e.is_no_records_found() && !e.is_nx_domain() => return self.addresses(&hop.host, hop.port).await,
            Err(e) => return Err(resolve_error(&hop.host, "MX", &e)),
        };
        let mut mxs: Vec<(u16, String)> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::MX(mx) => Some((mx.preference, mx.exchange.to_string().trim_end_matches('.').to_string())),
                _ => None,
            })
            .collect();
        if mxs.is_empty() {
            return self.addresses(&hop.host, hop.port).await;
        }
        mxs.sort();
        let mut out = Vec::new();
        let mut last_error = None;
        for (_, host) in mxs {
            match self.addresses(&host, hop.port).await {
                Ok(t) => out.extend(t),
                Err(e) => last_error = Some(e),
            }
        }
        match (out.is_empty(), last_error) {
            (true, Some(e)) => Err(e),
            _ => Ok(out),
        }
    }
}
