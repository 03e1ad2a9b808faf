//! Postfix's search orders: which keys a feature looks up, in which order, for an address, a
//! domain or an SMTP client (`mail_addr_find.c`, `smtpd_check.c` check_domain_access,
//! check_addr_access, check_namadr_access). Keys that are only part of what was asked about
//! (`user@`, `@domain`, a parent domain, a network prefix) are *partial*: like Postfix, they are
//! looked up in fixed-key tables only, never in `regexp:`/`pcre:`/`cidr:` tables, so a pattern
//! written for whole addresses cannot match a fragment.

use super::{Table, TableError};

/// One lookup key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub text: String,
    pub partial: bool,
}

impl Key {
    fn full(text: impl Into<String>) -> Key {
        Key { text: text.into(), partial: false }
    }

    fn partial(text: impl Into<String>) -> Key {
        Key { text: text.into(), partial: true }
    }
}

/// How parent domains are searched: `parent` entries (the feature's parameter is listed in
/// `parent_domain_matches_subdomains`) or `.parent` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParentStyle {
    /// `example.com` also matches `sub.example.com`.
    Parent,
    /// Only `.example.com` matches `sub.example.com`.
    DotParent,
}

/// What an address search tries after the full address (Postfix's `MA_FIND_*` strategy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Strategy {
    /// `user@domain` after `user+ext@domain` (MA_FIND_NOEXT).
    pub no_extension: bool,
    /// `user+ext`, then `user`, when the domain is local (MA_FIND_LOCALPART_IF_LOCAL).
    pub localpart_if_local: bool,
    /// `@domain` (MA_FIND_AT_DOMAIN).
    pub at_domain: bool,
    /// `domain`, then parent domains in this style (MA_FIND_DOMAIN with PDMS or PDDMDS).
    pub domain: Option<ParentStyle>,
    /// `user+ext@`, then `user@`, whatever the domain (MA_FIND_LOCALPART_AT).
    pub localpart_at: bool,
}

impl Strategy {
    /// The default of most address tables (`relay_recipient_maps`, `virtual_alias_maps`, ...):
    /// `user+ext@domain`, `user@domain`, `user+ext` and `user` if the domain is local, `@domain`.
    pub const DEFAULT: Strategy =
        Strategy { no_extension: true, localpart_if_local: true, at_domain: true, domain: None, localpart_at: false };

    /// access(5) for `check_{sender,recipient}_access`: `user+ext@domain`, `user@domain`,
    /// `domain` and its parents, `user+ext@`, `user@`.
    pub fn access(style: ParentStyle) -> Strategy {
        Strategy { no_extension: true, localpart_if_local: false, at_domain: false, domain: Some(style), localpart_at: true }
    }
}

/// Split `localpart` at the first `recipient_delimiter` character, as Postfix's
/// `split_addr`: `postmaster`, `mailer-daemon`, `owner-*` and `*-request` (with `-` as a
/// delimiter) are never split, nor is a localpart whose base would be empty.
pub fn split_extension<'a>(localpart: &'a str, delimiters: &str) -> Option<(&'a str, &'a str)> {
    if delimiters.is_empty() || localpart.eq_ignore_ascii_case("postmaster") || localpart.eq_ignore_ascii_case("mailer-daemon") {
        return None;
    }
    if delimiters.contains('-') {
        let lower = localpart.to_ascii_lowercase();
        if lower.starts_with("owner-") || (lower.len() > 8 && lower.ends_with("-request")) {
            return None;
        }
    }
    let at = localpart.find(|c: char| delimiters.contains(c))?;
    (at > 0).then(|| (&localpart[..at], &localpart[at..]))
}

/// The keys for `address` in Postfix's order. `is_local` says whether the domain is local
/// (for [`Strategy::localpart_if_local`]).
pub fn address_keys(address: &str, delimiters: &str, strategy: Strategy, is_local: bool) -> Vec<Key> {
    let (local, domain) = match address.rfind('@') {
        Some(i) => (&address[..i], Some(&address[i + 1..])),
        None => (address, None),
    };
    let bare = split_extension(local, delimiters).map(|(base, _)| base);
    let mut keys = vec![Key::full(address)];
    let at_domain = |l: &str| domain.map_or_else(|| l.to_string(), |d| format!("{l}@{d}"));
    if let Some(b) = bare.filter(|_| strategy.no_extension) {
        keys.push(Key::partial(at_domain(b)));
    }
    if let Some(d) = domain {
        if strategy.localpart_if_local && is_local {
            keys.push(Key::partial(local));
            if let Some(b) = bare {
                keys.push(Key::partial(b));
            }
        }
        if strategy.at_domain {
            keys.push(Key::partial(format!("@{d}")));
        }
        if let Some(style) = strategy.domain {
            keys.extend(domain_keys(d, style).into_iter().map(|k| Key::partial(k.text)));
        }
        if strategy.localpart_at {
            keys.push(Key::partial(format!("{local}@")));
            if let Some(b) = bare {
                keys.push(Key::partial(format!("{b}@")));
            }
        }
    }
    keys
}

/// `domain`, then its parent domains (`parent` or `.parent`), as check_domain_access. An
/// address literal or numeric name gets no parent search; a trailing dot is ignored.
pub fn domain_keys(domain: &str, style: ParentStyle) -> Vec<Key> {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    let mut keys = vec![Key::full(domain)];
    if domain.is_empty() || domain.parse::<std::net::IpAddr>().is_ok() || domain.starts_with('[') {
        return keys;
    }
    let mut rest = domain;
    // The search for the next dot starts after the first character, whatever its width.
    while let Some(i) = rest.chars().next().and_then(|c| rest[c.len_utf8()..].find('.').map(|i| i + c.len_utf8())) {
        let dotted = &rest[i..];
        if dotted.len() <= 1 {
            break;
        }
        keys.push(Key::partial(match style {
            ParentStyle::Parent => &dotted[1..],
            ParentStyle::DotParent => dotted,
        }));
        rest = dotted;
    }
    keys
}

/// The keys for a client address: the address, then its networks by dropping the last
/// component each time (`1.2.3.4`, `1.2.3`, `1.2`, `1`; for IPv6 split at `:` as Postfix does:
/// `2001:db8::1`, `2001:db8:`, `2001:db8`, `2001`).
pub fn network_keys(addr: &str) -> Vec<Key> {
    let delim = if addr.contains(':') { ':' } else { '.' };
    let mut keys = vec![Key::full(addr)];
    let mut rest = addr;
    while let Some(i) = rest.rfind(delim) {
        rest = &rest[..i];
        if rest.is_empty() {
            break;
        }
        keys.push(Key::partial(rest));
    }
    keys
}

/// check_client_access's order: the client host name and its parent domains, then the
/// address and its networks. A name of `unknown` (no verified name) is not looked up.
pub fn client_keys(name: &str, addr: &str, style: ParentStyle) -> Vec<Key> {
    let mut keys = if name.is_empty() || name == "unknown" { Vec::new() } else { domain_keys(name, style) };
    keys.extend(network_keys(addr));
    keys
}

/// The first key that any of `tables` knows, key by key (for each key every table, as
/// Postfix's maps_find), with partial keys skipped in pattern tables. Returns the key and the
/// value; a table that cannot be read is an error (the caller answers "try again later").
pub fn find(tables: &[Table], keys: &[Key]) -> Result<Option<(String, String)>, TableError> {
    for key in keys {
        for t in tables {
            if key.partial && t.is_pattern() {
                continue;
            }
            if let Some(v) = t.lookup(&key.text)? {
                return Ok(Some((key.text.clone(), v)));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(keys: &[Key]) -> Vec<String> {
        keys.iter().map(|k| if k.partial { format!("~{}", k.text) } else { k.text.clone() }).collect()
    }

    /// A domain that starts with a character wider than a byte (sendmail takes any UTF-8
    /// address) gets its parents like any other, instead of a panic in the queue manager.
    #[test]
    fn domains_that_start_with_a_multibyte_character() {
        assert_eq!(texts(&domain_keys("\u{e9}.example", ParentStyle::Parent)), ["\u{e9}.example", "~example"]);
        assert_eq!(texts(&domain_keys("\u{e9}", ParentStyle::DotParent)), ["\u{e9}"]);
        assert_eq!(texts(&domain_keys("a.\u{e9}.b", ParentStyle::DotParent)), ["a.\u{e9}.b", "~.\u{e9}.b", "~.b"]);
    }

    #[test]
    fn address_orders() {
        struct Case {
            name: &'static str,
            addr: &'static str,
            strategy: Strategy,
            local: bool,
            want: &'static [&'static str],
        }
        let cases = [
            Case {
                name: "default, remote domain",
                addr: "user+ext@example.com",
                strategy: Strategy::DEFAULT,
                local: false,
                want: &["user+ext@example.com", "~user@example.com", "~@example.com"],
            },
            Case {
                name: "default, local domain",
                addr: "user+ext@example.com",
                strategy: Strategy::DEFAULT,
                local: true,
                want: &["user+ext@example.com", "~user@example.com", "~user+ext", "~user", "~@example.com"],
            },
            Case {
                name: "access, parent style",
                addr: "user+ext@mail.example.com",
                strategy: Strategy::access(ParentStyle::Parent),
                local: false,
                want: &[
                    "user+ext@mail.example.com",
                    "~user@mail.example.com",
                    "~mail.example.com",
                    "~example.com",
                    "~com",
                    "~user+ext@",
                    "~user@",
                ],
            },
            Case {
                name: "access, dot style, no extension",
                addr: "user@mail.example.com",
                strategy: Strategy::access(ParentStyle::DotParent),
                local: false,
                want: &["user@mail.example.com", "~mail.example.com", "~.example.com", "~.com", "~user@"],
            },
            Case {
                name: "owner- is not split",
                addr: "owner-list@example.com",
                strategy: Strategy::DEFAULT,
                local: false,
                want: &["owner-list@example.com", "~@example.com"],
            },
        ];
        for c in cases {
            let delim = if c.name.starts_with("owner") { "+-" } else { "+" };
            assert_eq!(texts(&address_keys(c.addr, delim, c.strategy, c.local)), c.want, "{}", c.name);
        }
        assert_eq!(split_extension("+x", "+"), None);
        assert_eq!(split_extension("a+b+c", "+"), Some(("a", "+b+c")));
        assert_eq!(split_extension("postmaster", "+"), None);
        assert_eq!(split_extension("postmaster+x", "+"), Some(("postmaster", "+x")));
        assert_eq!(texts(&address_keys("user+x@d", "", Strategy::DEFAULT, false)), ["user+x@d", "~@d"]);
    }

    #[test]
    fn domain_network_and_client_orders() {
        assert_eq!(texts(&domain_keys("a.b.example.", ParentStyle::Parent)), ["a.b.example", "~b.example", "~example"]);
        assert_eq!(texts(&domain_keys("a.b.example", ParentStyle::DotParent)), ["a.b.example", "~.b.example", "~.example"]);
        assert_eq!(texts(&domain_keys("192.168.1.1", ParentStyle::Parent)), ["192.168.1.1"]);
        assert_eq!(texts(&network_keys("192.168.1.2")), ["192.168.1.2", "~192.168.1", "~192.168", "~192"]);
        assert_eq!(texts(&network_keys("2001:db8::1")), ["2001:db8::1", "~2001:db8:", "~2001:db8", "~2001"]);
        assert_eq!(
            texts(&client_keys("mx.example.com", "10.1.2.3", ParentStyle::Parent)),
            ["mx.example.com", "~example.com", "~com", "10.1.2.3", "~10.1.2", "~10.1", "~10"]
        );
        assert_eq!(texts(&client_keys("unknown", "::1", ParentStyle::Parent)), ["::1", "~:"]);
    }
}
