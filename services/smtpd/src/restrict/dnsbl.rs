//! DNS for the restrictions. `reject_unknown_sender_domain` and
//! `reject_unknown_recipient_domain`: a domain with neither MX nor address records is unknown
//! (a null MX does not accept mail). DNS lists: `reject_rbl_client domain[=d.d.d.d]` (the client's IPv4 address, octets reversed,
//! under the list's domain) and `reject_rhsbl_sender domain[=d.d.d.d]` (the sender's domain
//! under it). A listed name has an A record (matching the filter, if given); its TXT record is
//! the reason in Postfix's `default_rbl_reply`: `554 5.7.1 Service unavailable; Client host
//! [addr] blocked using domain; reason`. A list that does not answer counts as not listed, as
//! in Postfix.
//!
//! The restriction lists are evaluated without I/O, so the lookups are made before the command
//! that may need them ([`prefetch`], from conn.rs) and the answers kept for the session.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use common::dns::TokioResolver;
use hickory_resolver::proto::rr::RData;

use crate::session::Session;

/// One DNS list and its optional reply filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dnsbl {
    pub domain: String,
    pub filter: Option<Ipv4Addr>,
}

impl Dnsbl {
    /// `domain` or `domain=127.0.0.2`.
    pub fn parse(text: &str) -> Option<Dnsbl> {
        let (domain, filter) = match text.split_once('=') {
            Some((d, f)) => (d, Some(f.parse().ok()?)),
            None => (text, None),
        };
        common::domain::valid_hostname(domain).then(|| Dnsbl { domain: domain.to_ascii_lowercase(), filter })
    }
}

/// What a list said about a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    Listed { addrs: Vec<Ipv4Addr>, txt: Option<String> },
    NotListed,
}

impl Listing {
    /// Listed, and matching `filter` when there is one.
    pub fn hit(&self, filter: Option<Ipv4Addr>) -> Option<&Option<String>> {
        match self {
            Listing::Listed { addrs, txt } if filter.is_none_or(|f| addrs.contains(&f)) => Some(txt),
            _ => None,
        }
    }
}

/// What DNS says about a mail domain (Postfix's `reject_unknown_mailhost`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mailhost {
    Found,
    NotFound,
    NullMx,
    TempFail,
}

async fn mailhost(resolver: &TokioResolver, domain: &str) -> Mailhost {
    let fqdn = format!("{}.", domain.trim_end_matches('.'));
    match tokio::time::timeout(LOOKUP_TIMEOUT, resolver.mx_lookup(fqdn.as_str())).await {
        Ok(Ok(l)) => {
            let mxs: Vec<_> = l.answers().iter().filter_map(|r| if let RData::MX(mx) = &r.data { Some(mx) } else { None }).collect();
            if mxs.iter().any(|mx| mx.exchange.is_root()) {
                return Mailhost::NullMx;
            }
            if !mxs.is_empty() {
                return Mailhost::Found;
            }
        }
        Ok(Err(e)) if e.is_nx_domain() => return Mailhost::NotFound,
        Ok(Err(e)) if e.is_no_records_found() => {}
        Ok(Err(_)) | Err(_) => return Mailhost::TempFail,
    }
    match tokio::time::timeout(LOOKUP_TIMEOUT, resolver.lookup_ip(fqdn.as_str())).await {
        Ok(Ok(ips)) if ips.iter().next().is_some() => Mailhost::Found,
        Ok(Ok(_)) => Mailhost::NotFound,
        Ok(Err(e)) if e.is_no_records_found() => Mailhost::NotFound,
        Ok(Err(_)) | Err(_) => Mailhost::TempFail,
    }
}

/// The domain of an address that `reject_unknown_*_domain` looks up: not an address literal.
pub fn mail_domain(addr: &str) -> Option<String> {
    let domain = addr.rsplit_once('@')?.1.to_ascii_lowercase();
    common::domain::valid_hostname(domain.trim_end_matches('.')).then_some(domain)
}

/// The resolver smtpd asks (`smtpd_dns_nameservers`).
pub struct Resolver(pub TokioResolver);

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

/// Postfix's `smtpd_policy_service_timeout`-like bound for one list lookup.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The name a client address is listed under.
pub fn client_name(addr: IpAddr, list: &Dnsbl) -> Option<String> {
    let v4 = match addr {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => v6.to_ipv4_mapped()?,
    };
    let [a, b, c, d] = v4.octets();
    Some(format!("{d}.{c}.{b}.{a}.{}", list.domain))
}

/// The name a sender domain is listed under.
pub fn domain_name(domain: &str, list: &Dnsbl) -> String {
    format!("{}.{}", domain.trim_end_matches('.').to_ascii_lowercase(), list.domain)
}

async fn lookup(resolver: &TokioResolver, name: &str) -> Listing {
    let fqdn = format!("{name}.");
    let addrs: Vec<Ipv4Addr> = match tokio::time::timeout(LOOKUP_TIMEOUT, resolver.ipv4_lookup(fqdn.as_str())).await {
        Ok(Ok(l)) => l.answers().iter().filter_map(|r| if let RData::A(a) = &r.data { Some(a.0) } else { None }).collect(),
        Ok(Err(e)) if e.is_no_records_found() => Vec::new(),
        Ok(Err(e)) => {
            common::log_warning!("{name}: DNS list lookup error: {e}");
            Vec::new()
        }
        Err(_) => {
            common::log_warning!("{name}: DNS list lookup timed out");
            Vec::new()
        }
    };
    if addrs.is_empty() {
        return Listing::NotListed;
    }
    let txt = match tokio::time::timeout(LOOKUP_TIMEOUT, resolver.txt_lookup(fqdn.as_str())).await {
        Ok(Ok(l)) => l.answers().iter().find_map(|r| match &r.data {
            RData::TXT(t) => Some(t.txt_data.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect::<String>()),
            _ => None,
        }),
        _ => None,
    };
    // The reason goes into a reply line: nothing the list says may break it.
    let txt = txt.map(|t| common::text::printable(&t, ' ').chars().take(200).collect());
    Listing::Listed { addrs, txt }
}

/// Look up what the next command may need: the client in every `reject_rbl_client` list, the
/// sender's domain (from MAIL's argument, or the transaction's) in every `reject_rhsbl_sender`
/// list. Answers are kept for the session.
pub async fn prefetch(s: &mut Session<'_>, line: &[u8]) {
    let cfg = &s.cfg.restrict;
    let Some(resolver) = cfg.resolver.clone() else { return };
    let text = String::from_utf8_lossy(line);
    let (verb, arg) = text.split_once(' ').unwrap_or((&text, ""));
    let verb = verb.to_ascii_lowercase();
    if !matches!(verb.as_str(), "mail" | "rcpt" | "data" | "etrn" | "helo" | "ehlo") {
        return;
    }
    let mut names: Vec<String> = cfg.rbl_lists.iter().filter_map(|l| client_name(s.peer.addr, l)).collect();
    let sender = if verb == "mail" {
        arg.get(5..).and_then(crate::address::parse_path).map(|a| a.domain())
    } else {
        s.sender.as_ref().map(|a| a.domain())
    };
    let mut domains = Vec::new();
    if let Some(domain) = sender.filter(|d| common::domain::valid_hostname(d)) {
        names.extend(cfg.rhsbl_lists.iter().map(|l| domain_name(&domain, l)));
        if cfg.unknown_sender_domain {
            domains.push(domain);
        }
    }
    if verb == "rcpt" && cfg.unknown_recipient_domain {
        let rcpt = arg.get(3..).and_then(crate::address::parse_path);
        domains.extend(rcpt.and_then(|a| mail_domain(&a.addr)));
    }
    for domain in domains {
        if let std::collections::hash_map::Entry::Vacant(slot) = s.restrict.mailhosts.entry(domain) {
            let answer = mailhost(&resolver.0, slot.key()).await;
            slot.insert(answer);
        }
    }
    for name in names {
        if let std::collections::hash_map::Entry::Vacant(slot) = s.restrict.dns.entry(name) {
            let answer = lookup(&resolver.0, slot.key()).await;
            slot.insert(answer);
        }
    }
}

/// The shared resolver, made when some list names a DNS list.
pub fn resolver(servers: &[String]) -> Result<Arc<Resolver>, String> {
    Ok(Arc::new(Resolver(common::dns::resolver(servers, "smtpd_dns_nameservers")?)))
}
