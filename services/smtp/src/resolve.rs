//! From a next hop to addresses to try, in order: `[host]:port` literally (no MX lookup);
//! otherwise the domain's MX hosts by preference, each with its A/AAAA addresses, falling back to
//! the domain's own addresses when it has no MX record (RFC 5321 5.1).

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;

use common::domain::valid_hostname;
use common::log_warning;
use common::text::printable;

use crate::myself::Myself;
use common::smtp_client::nexthop::NextHop;

/// A host to connect to: its name for the log and one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub addr: SocketAddr,
    /// The host is a most preferred MX host (or the next hop has no MX): a loop found there
    /// is final (5.4.6), elsewhere it is not (4.4.6), as in Postfix.
    pub best: bool,
}

/// Why there is nothing to connect to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The lookup failed; `permanent` when the name does not exist (NXDOMAIN: bounce),
    /// otherwise it may pass (defer).
    #[error("Host or domain name not found. Name service error for name={name} type={kind}: {why}")]
    NotFound { name: String, kind: &'static str, why: String, permanent: bool },
    /// An answer that names something that is not a host (a malformed MX exchange).
    #[error("Name service error for name={name} type={kind}: Malformed or unexpected name server reply")]
    Malformed { name: String, kind: &'static str },
    /// The domain publishes a null MX (RFC 7505): it takes no mail at all.
    #[error("Domain {0} does not accept mail (nullMX)")]
    NullMx(String),
    /// The next hop is this mail system (port 25 only).
    #[error("mail for {0} loops back to myself")]
    Loop(String),
    /// This system is an MX host of the domain, and no more preferred one has an address.
    #[error("unable to find primary relay for {0}")]
    NoPrimary(String),
}

impl ResolveError {
    /// The enhanced status code, as Postfix's smtp_addr.c gives it (the null MX code is RFC
    /// 7505's, which Postfix's smtpd uses; its smtp client says 5.1.0).
    pub fn dsn(&self) -> &'static str {
        match self {
            ResolveError::NotFound { permanent: true, .. } => "5.4.4",
            ResolveError::NotFound { .. } => "4.4.3",
            ResolveError::Malformed { .. } => "5.4.4",
            ResolveError::NullMx(_) => "5.1.10",
            ResolveError::Loop(_) => "5.4.6",
            ResolveError::NoPrimary(_) => "4.4.4",
        }
    }
}

fn resolve_error(name: &str, kind: &'static str, e: &hickory_resolver::net::NetError) -> ResolveError {
    let permanent = e.is_nx_domain();
    let why = if permanent { "Host not found".to_string() } else { format!("Host not found, try again ({e})") };
    ResolveError::NotFound { name: name.to_string(), kind, why, permanent }
}

/// Most records taken from one lookup, as Postfix's `var_dns_rr_list_limit`.
const DNS_RR_LIST_LIMIT: usize = 100;

/// The agent's DNS resolver.
pub struct Dns {
    resolver: TokioResolver,
}

impl Dns {
    /// A resolver asking `servers` (`addr` or `addr:port`), or the system's when empty.
    pub fn new(servers: &[String]) -> Result<Dns, String> {
        Ok(Dns { resolver: common::dns::resolver(servers, "smtp_dns_nameservers")? })
    }

    async fn addresses(&self, host: &str, port: u16, best: bool) -> Result<Vec<Target>, ResolveError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![Target { host: host.to_string(), addr: SocketAddr::new(ip, port), best }]);
        }
        let fqdn = format!("{}.", host.trim_end_matches('.'));
        let ips = self.resolver.lookup_ip(fqdn.as_str()).await.map_err(|e| resolve_error(host, "A", &e))?;
        Ok(ips.iter().take(DNS_RR_LIST_LIMIT).map(|ip| Target { host: host.to_string(), addr: SocketAddr::new(ip, port), best }).collect())
    }

    /// A host's own addresses (a literal next hop, or a domain without MX): none of them may
    /// be this system when `myself` is given (port 25).
    async fn host_targets(&self, host: &str, port: u16, myself: Option<&Myself>) -> Result<Vec<Target>, ResolveError> {
        let targets = self.addresses(host, port, true).await?;
        if myself.is_some_and(|me| targets.iter().any(|t| me.contains(t.addr.ip()))) {
            return Err(ResolveError::Loop(host.to_string()));
        }
        Ok(targets)
    }

    /// Every address to try for `hop`, best first. With `myself` (loop detection, port 25),
    /// MX hosts at or after the preference of this system are dropped, as Postfix's
    /// `smtp_find_self()` and `smtp_truncate_self()` do.
    /// `address_limit` (`smtp_mx_address_limit`, 0: none) only spares lookups: the caller
    /// still cuts the list.
    pub async fn resolve(&self, hop: &NextHop, myself: Option<&Myself>, address_limit: usize) -> Result<Vec<Target>, ResolveError> {
        if !hop.mx || hop.host.parse::<IpAddr>().is_ok() {
            return self.host_targets(&hop.host, hop.port, myself).await;
        }
        let fqdn = format!("{}.", hop.host.trim_end_matches('.'));
        let lookup = match self.resolver.mx_lookup(fqdn.as_str()).await {
            Ok(l) => l,
            // The name exists but has no MX record: its own addresses (RFC 5321 5.1).
            Err(e) if e.is_no_records_found() && !e.is_nx_domain() => return self.host_targets(&hop.host, hop.port, myself).await,
            Err(e) => return Err(resolve_error(&hop.host, "MX", &e)),
        };
        let mut mxs = Vec::new();
        for r in lookup.answers() {
            if let RData::MX(mx) = &r.data {
                // One MX with the root as its exchange says "no mail here" (RFC 7505); Postfix
                // takes any such record so, and never connects.
                if mx.exchange.is_root() {
                    return Err(ResolveError::NullMx(hop.host.clone()));
                }
                let name = mx.exchange.to_string().trim_end_matches('.').to_string();
                // As Postfix's valid_rr_name(): a name that is no host name (or address) makes
                // the whole answer unusable; it never reaches a lookup, a log line or a bounce.
                if !valid_hostname(&name) && name.parse::<IpAddr>().is_err() {
                    log_warning!(
                        "malformed domain name in resource data of MX record for {}: {}",
                        hop.host,
                        printable(&name.chars().take(100).collect::<String>(), '?').into_owned()
                    );
                    return Err(ResolveError::Malformed { name: hop.host.clone(), kind: "MX" });
                }
                mxs.push((mx.preference, name));
            }
        }
        if mxs.is_empty() {
            return self.host_targets(&hop.host, hop.port, myself).await;
        }
        mxs.sort();
        mxs.truncate(DNS_RR_LIST_LIMIT);
        let best_pref = mxs[0].0;
        let mut found: Vec<(u16, Target)> = Vec::new();
        let mut last_error = None;
        for (pref, host) in mxs {
            // Enough addresses, and this host and the rest are less preferred than all of
            // them: their addresses would be cut off by the limit, and this system among
            // them would drop nothing we keep. A hostile MX list costs no more lookups.
            if address_limit > 0 && found.len() >= address_limit && found.last().is_some_and(|(p, _)| *p < pref) {
                break;
            }
            match self.addresses(&host, hop.port, pref == best_pref).await {
                Ok(t) => found.extend(t.into_iter().map(|t| (pref, t))),
                Err(e) => last_error = Some(e),
            }
            found.truncate(DNS_RR_LIST_LIMIT);
        }
        if found.is_empty() {
            return Err(last_error.unwrap_or_else(|| ResolveError::NotFound {
                name: hop.host.clone(),
                kind: "MX",
                why: "no MX host has an address".into(),
                permanent: false,
            }));
        }
        match myself {
            Some(me) => drop_self(found, best_pref, me, &hop.host),
            None => Ok(found.into_iter().map(|(_, t)| t).collect()),
        }
    }
}

/// The MX addresses (by preference, best first) that are more preferred than this system,
/// as Postfix's `smtp_find_self()` and `smtp_truncate_self()`: when none is left, a loop if
/// this system is a best MX host, otherwise the better hosts had no address (for now).
fn drop_self(mut found: Vec<(u16, Target)>, best_pref: u16, me: &Myself, domain: &str) -> Result<Vec<Target>, ResolveError> {
    if let Some(self_pref) = found.iter().find(|(_, t)| me.contains(t.addr.ip())).map(|(p, _)| *p) {
        let best_found = found.first().map_or(best_pref, |(p, _)| *p);
        found.retain(|(p, _)| *p < self_pref);
        if found.is_empty() {
            return Err(if best_found == best_pref {
                ResolveError::Loop(domain.to_string())
            } else {
                ResolveError::NoPrimary(domain.to_string())
            });
        }
    }
    Ok(found.into_iter().map(|(_, t)| t).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mx(pref: u16, ip: [u8; 4]) -> (u16, Target) {
        (pref, Target { host: format!("mx{pref}"), addr: SocketAddr::from((ip, 25)), best: pref == 10 })
    }

    #[test]
    fn this_system_in_the_mx_list() {
        let me = Myself::new(vec![IpAddr::from([127, 0, 0, 9])]);
        let hosts = |r: Result<Vec<Target>, ResolveError>| r.map(|t| t.into_iter().map(|t| t.host).collect::<Vec<_>>());
        struct Case {
            name: &'static str,
            found: Vec<(u16, Target)>,
            want: Result<Vec<&'static str>, ResolveError>,
        }
        let cases = [
            Case { name: "not listed", found: vec![mx(10, [192, 0, 2, 1]), mx(20, [192, 0, 2, 2])], want: Ok(vec!["mx10", "mx20"]) },
            Case {
                name: "backup MX: only the better hosts",
                found: vec![mx(10, [192, 0, 2, 1]), mx(20, [127, 0, 0, 9]), mx(30, [192, 0, 2, 3])],
                want: Ok(vec!["mx10"]),
            },
            Case {
                name: "best MX",
                found: vec![mx(10, [127, 0, 0, 9]), mx(20, [192, 0, 2, 2])],
                want: Err(ResolveError::Loop("d.test".into())),
            },
            Case {
                name: "equal preference as myself is dropped too",
                found: vec![mx(10, [192, 0, 2, 1]), mx(10, [127, 0, 0, 9])],
                want: Err(ResolveError::Loop("d.test".into())),
            },
            Case {
                name: "better hosts without an address",
                found: vec![mx(20, [127, 0, 0, 9])],
                want: Err(ResolveError::NoPrimary("d.test".into())),
            },
        ];
        for c in cases {
            let got = hosts(drop_self(c.found, 10, &me, "d.test"));
            let want = c.want.map(|v| v.into_iter().map(String::from).collect::<Vec<_>>());
            assert_eq!(got, want, "{}", c.name);
        }
        assert_eq!(ResolveError::Loop("d.test".into()).to_string(), "mail for d.test loops back to myself");
        assert_eq!(ResolveError::NoPrimary("d.test".into()).to_string(), "unable to find primary relay for d.test");
        assert_eq!(ResolveError::NullMx("d.test".into()).to_string(), "Domain d.test does not accept mail (nullMX)");
    }
}
