//! The TLS policy of one destination, as Postfix's `smtp_tls_policy_maps` gives it: a security
//! level and the attributes `match=`, `protocols=` and `servername=`, else the defaults of
//! `smtp_tls_security_level` and its companion parameters.
//!
//! The table is looked up with the next hop as the queue manager names it (`[host]:port`,
//! `domain`, `domain:port`), then, for a domain, with each parent domain as `.parent` (Postfix's
//! `tls_policy_lookup`). An entry that does not parse makes the destination's policy invalid:
//! its mail is deferred with Postfix's `client TLS configuration problem` (4.7.5) after a
//! warning that names the table and the entry, never sent with a guessed policy.

use crate::config::table::Table;
use crate::log_warning;

/// Postfix's TLS security levels for the smtp client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// No STARTTLS.
    None,
    /// Opportunistic: STARTTLS when offered, plaintext after a failed handshake.
    May,
    /// TLS required, the certificate not checked.
    Encrypt,
    /// TLS required, a trusted certificate matching `smtp_tls_verify_cert_match`.
    Verify,
    /// TLS required, a trusted certificate matching `smtp_tls_secure_cert_match`.
    Secure,
}

impl Level {
    /// TLS is required: no mail in plaintext.
    pub fn requires_tls(self) -> bool {
        self >= Level::Encrypt
    }

    /// The certificate must be trusted and match a name.
    pub fn must_match(self) -> bool {
        self >= Level::Verify
    }
}

/// A level by its Postfix name. `dane` and `dane-only` need DNSSEC-validated lookups, which
/// Postern's resolver does not do: like Postfix with `smtp_dns_support_level` other than
/// `dnssec`, `dane` becomes `may` and `dane-only` is invalid, each after a warning.
fn parse_level(word: &str, dest: &str) -> Result<Level, ()> {
    Ok(match word.to_ascii_lowercase().as_str() {
        "" | "none" => Level::None,
        "may" => Level::May,
        "encrypt" => Level::Encrypt,
        "verify" => Level::Verify,
        "secure" => Level::Secure,
        v @ "dane" => {
            log_warning!("{dest}: {v} configured with dnssec lookups disabled");
            Level::May
        }
        v @ "dane-only" => {
            log_warning!("{dest}: {v} configured with dnssec lookups disabled");
            return Err(());
        }
        _ => return Err(()),
    })
}

/// The policy of one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub level: Level,
    /// What names the certificate may carry (`hostname`, `nexthop`, `dot-nexthop`, or a
    /// literal name); empty for the level's default parameter.
    pub matches: Vec<String>,
    /// A Postfix protocol list; `None` for the level's default parameter.
    pub protocols: Option<String>,
    /// `hostname`, `nexthop` or a literal name to send as SNI; `None` for
    /// `smtp_tls_servername`.
    pub servername: Option<String>,
}

impl Policy {
    pub fn level(level: Level) -> Policy {
        Policy { level, matches: Vec::new(), protocols: None, servername: None }
    }
}

/// A policy, or the reason there is none (the mail is deferred).
pub type Resolved = Result<Policy, Invalid>;

/// A destination whose policy could not be read: Postfix's `client TLS configuration problem`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid;

/// The default policy from `smtp_tls_security_level`: `dane-only` is a policy no mail can meet
/// here (deferred, as in Postfix without DNSSEC); `None` for a word that is no level at all
/// (Postfix's fatal `invalid tls security level`).
pub fn default_policy(param: &str, value: &str) -> Option<Resolved> {
    if value.eq_ignore_ascii_case("dane-only") {
        return Some(parse_level(value, param).map(Policy::level).map_err(|()| Invalid));
    }
    parse_level(value, param).ok().map(|l| Ok(Policy::level(l)))
}

/// The policy for `nexthop` from `table`, or `default` when the table has none.
pub fn lookup(table: Option<&Table>, nexthop: &str, default: &Resolved) -> Resolved {
    let Some(table) = table else { return default.clone() };
    for key in keys(nexthop) {
        match table.lookup(&key) {
            Ok(Some(value)) => {
                let place = format!("{}, next-hop destination \"{key}\"", table.spec());
                return parse_policy(&value, &place);
            }
            Ok(None) => {}
            // A table that cannot be read now: no policy can be known, so nothing is sent.
            Err(e) => {
                log_warning!("{e}");
                return Err(Invalid);
            }
        }
    }
    default.clone()
}

/// The keys Postfix tries for a next hop: the next hop itself, then `.parent` for each parent
/// domain of a domain next hop (not for `[host]`, which names one host).
fn keys(nexthop: &str) -> Vec<String> {
    let mut out = vec![nexthop.to_string()];
    if nexthop.starts_with('[') {
        return out;
    }
    let domain = nexthop.rsplit_once(':').map_or(nexthop, |(d, _)| d);
    if domain != nexthop {
        out.push(domain.to_string());
    }
    let mut rest = domain;
    while let Some((_, parent)) = rest.split_once('.') {
        if parent.is_empty() {
            break;
        }
        out.push(format!(".{parent}"));
        rest = parent;
    }
    out
}

/// One table entry: `level [name=value ...]`, with Postfix's warnings for what is wrong.
pub fn parse_policy(value: &str, place: &str) -> Resolved {
    let mut words = value.split([' ', '\t', ',']).filter(|w| !w.is_empty());
    let Some(first) = words.next() else {
        log_warning!("{place}: invalid empty policy");
        return Err(Invalid);
    };
    let Ok(level) = parse_level(first, place) else {
        log_warning!("{place}: invalid security level \"{first}\"");
        return Err(Invalid);
    };
    let mut policy = Policy::level(level);
    for word in words {
        if level == Level::None {
            log_warning!("{place}: ignoring attribute \"{word}\" with TLS disabled");
            continue;
        }
        let Some((name, val)) = word.split_once('=') else {
            log_warning!("{place}: malformed attribute/value pair \"{word}\": missing '='");
            return Err(Invalid);
        };
        if val.is_empty() {
            log_warning!("{place}: attribute \"{name}\" has empty value");
            return Err(Invalid);
        }
        let twice = || log_warning!("{place}: attribute \"{name}\" is specified multiple times");
        match name.to_ascii_lowercase().as_str() {
            "protocols" => {
                if policy.protocols.is_some() {
                    twice();
                    return Err(Invalid);
                }
                policy.protocols = Some(val.to_string());
            }
            "servername" => {
                if policy.servername.is_some() {
                    twice();
                    return Err(Invalid);
                }
                policy.servername = Some(val.to_string());
            }
            "match" => {
                if !level.must_match() {
                    log_warning!("{place}: attribute \"{name}\" invalid at security level \"{first}\"");
                    return Err(Invalid);
                }
                if !policy.matches.is_empty() {
                    twice();
                    return Err(Invalid);
                }
                policy.matches = val.split(':').filter(|m| !m.is_empty()).map(str::to_string).collect();
            }
            // Postfix's other attributes (ciphers, exclude, tafile, ...) are not supported here:
            // refusing them beats ignoring a constraint the administrator asked for.
            _ => {
                log_warning!("{place}: invalid attribute name: \"{name}\"");
                return Err(Invalid);
            }
        }
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_keys() {
        assert_eq!(keys("[mx.example.com]:587"), vec!["[mx.example.com]:587"]);
        assert_eq!(keys("example.com"), vec!["example.com", ".com"]);
        assert_eq!(keys("a.example.com:2525"), vec!["a.example.com:2525", "a.example.com", ".example.com", ".com"]);
    }

    #[test]
    fn policy_entries() {
        let ok = |v: &str| parse_policy(v, "t").unwrap();
        assert_eq!(ok("encrypt"), Policy::level(Level::Encrypt));
        assert_eq!(ok("dane"), Policy::level(Level::May));
        let p = ok("secure match=nexthop:.example.com protocols=!SSLv2:!SSLv3 servername=mx.example.com");
        assert_eq!(p.level, Level::Secure);
        assert_eq!(p.matches, vec!["nexthop", ".example.com"]);
        assert_eq!(p.protocols.as_deref(), Some("!SSLv2:!SSLv3"));
        assert_eq!(p.servername.as_deref(), Some("mx.example.com"));
        assert_eq!(ok("none match=x"), Policy::level(Level::None));
        for bad in [
            "",
            "bogus",
            "dane-only",
            "encrypt match=hostname",
            "verify ciphers=high",
            "verify match=",
            "verify foo",
            "may protocols=a protocols=b",
        ] {
            assert_eq!(parse_policy(bad, "t"), Err(Invalid), "{bad:?}");
        }
    }

    #[test]
    fn table_lookup() {
        let dir = std::path::Path::new("/");
        let table =
            Table::open("inline:{{[127.0.0.1]:25=verify}, {.example.com=encrypt}, {bad.example.com=verify ciphers=high}}", dir).unwrap();
        let default = Ok(Policy::level(Level::May));
        assert_eq!(lookup(Some(&table), "[127.0.0.1]:25", &default).unwrap().level, Level::Verify);
        assert_eq!(lookup(Some(&table), "[127.0.0.1]:26", &default).unwrap().level, Level::May);
        assert_eq!(lookup(Some(&table), "mx.example.com", &default).unwrap().level, Level::Encrypt);
        assert_eq!(lookup(Some(&table), "bad.example.com", &default), Err(Invalid));
        assert_eq!(lookup(None, "bad.example.com", &default).unwrap().level, Level::May);
        assert_eq!(lookup(None, "x", &Err(Invalid)), Err(Invalid));
        assert_eq!(default_policy("smtp_tls_security_level", ""), Some(Ok(Policy::level(Level::None))));
        assert_eq!(default_policy("smtp_tls_security_level", "dane-only"), Some(Err(Invalid)));
        assert_eq!(default_policy("smtp_tls_security_level", "bogus"), None);
    }
}
