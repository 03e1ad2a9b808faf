//! Domain and site syntax: Postfix's `valid_hostname` and `valid_mailhost_addr` rules, and the
//! `Site` newtype that names a fast-flush logfile. Names are validated here before they can
//! become paths, so no input can reach a file outside `flush/`.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest valid host name, and longest label.
const MAX_HOSTNAME: usize = 255;
const MAX_LABEL: usize = 63;

/// Postfix `valid_hostname`: letters, digits, `-`, `_` and `.`; no empty labels; labels at most
/// 63 characters; `-` neither first nor last in a label; not entirely numeric; at most 255.
pub fn valid_hostname(name: &str) -> bool {
    if name.is_empty() || name.len() > MAX_HOSTNAME {
        return false;
    }
    if name.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return false;
    }
    name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= MAX_LABEL
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// Postfix `valid_mailhost_literal`: `[a.b.c.d]` or `[IPv6:...]`, nothing after `]`.
pub fn valid_address_literal(text: &str) -> bool {
    let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) else {
        return false;
    };
    if inner.contains(']') {
        return false;
    }
    match inner.get(..5) {
        Some(p) if p.eq_ignore_ascii_case("IPv6:") => inner[5..].parse::<Ipv6Addr>().is_ok(),
        _ => inner.parse::<Ipv4Addr>().is_ok(),
    }
}

/// The domain of an address: the text after the right-most `@` (empty when there is none).
pub fn address_domain(address: &str) -> &str {
    address.rsplit_once('@').map_or("", |(_, d)| d)
}

/// The domain of an address as tables, routes and flush logfiles name it: lowercased, and a
/// UTF-8 (SMTPUTF8) domain in A-label form (`bücher.example` → `xn--bcher-kva.example`).
pub fn lookup_domain(address: &str) -> String {
    let d = address_domain(address);
    crate::smtputf8::domain_to_ascii(d).unwrap_or_else(|| d.to_ascii_lowercase())
}

/// A destination site that may have a fast-flush logfile: a valid host name, lowercased, a
/// UTF-8 one in A-label form (`postqueue -s bücher.example` is `xn--bcher-kva.example`).
/// Address literals are refused (ARCHITECTURE.md §4): they cannot be a file name safely and
/// Postfix itself denies them in its EAI builds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Site(String);

/// Why a text is not a site.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SiteError {
    #[error("invalid destination: \"{0}\"")]
    Invalid(String),
}

impl Site {
    pub fn parse(text: &str) -> Result<Site, SiteError> {
        match crate::smtputf8::domain_to_ascii(text).filter(|a| valid_hostname(a)) {
            Some(name) => Ok(Site(name)),
            None => Err(SiteError::Invalid(text.chars().take(100).collect())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The logfile name: the site itself (it has only `[a-z0-9._-]` and no empty label, so it
    /// can never be `.`, `..` or contain `/`).
    pub fn file_name(&self) -> &str {
        &self.0
    }

    /// True when `self` is `parent` or one of its subdomains.
    pub fn is_within(&self, parent: &Site) -> bool {
        self.0 == parent.0 || (self.0.ends_with(&parent.0) && self.0.as_bytes()[self.0.len() - parent.0.len() - 1] == b'.')
    }
}

impl TryFrom<String> for Site {
    type Error = SiteError;
    fn try_from(s: String) -> Result<Site, SiteError> {
        Site::parse(&s)
    }
}

impl From<Site> for String {
    fn from(s: Site) -> String {
        s.0
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        let long_label = "a".repeat(64);
        let long_name = format!("{}.example", ["abcdefghij"; 25].join("."));
        let cases: &[(&str, bool)] = &[
            ("example.net", true),
            ("under_score.example.net", true),
            ("a-b.example", true),
            ("x", true),
            ("1a.example", true),
            ("example.net.", false),
            ("-example.net", false),
            ("a-.example", false),
            ("1.2.3.4", false),
            ("bad_domain..x", false),
            ("", false),
            ("../../etc", false),
            ("a/b", false),
            ("a b", false),
            ("caf\u{e9}.example", false),
            ("a\0b", false),
            (&long_label, false),
            (&long_name, false),
        ];
        for (name, want) in cases {
            assert_eq!(valid_hostname(name), *want, "{name:?}");
        }
    }

    #[test]
    fn literals() {
        assert!(valid_address_literal("[1.2.3.4]"));
        assert!(valid_address_literal("[IPv6:::1]"));
        assert!(!valid_address_literal("[1.2.3.4]x"));
        assert!(!valid_address_literal("1.2.3.4"));
        assert!(!valid_address_literal("[300.1.1.1]"));
        assert!(!valid_address_literal("[IPv6:zz]"));
    }

    #[test]
    fn sites() {
        let s = Site::parse("Sub.Example.NET").unwrap();
        assert_eq!(s.file_name(), "sub.example.net");
        assert!(s.is_within(&Site::parse("example.net").unwrap()));
        assert!(!Site::parse("badexample.net").unwrap().is_within(&Site::parse("example.net").unwrap()));
        assert!(Site::parse("[1.2.3.4]").is_err());
        assert!(Site::parse("..").is_err());
        // A UTF-8 site is its A-label form; what has none, or is no host name then, is refused.
        assert_eq!(Site::parse("Bücher.Example").unwrap().file_name(), "xn--bcher-kva.example");
        for bad in ["b\u{fffd}.example", "a/b.example", "ü/..", ".ü"] {
            assert!(Site::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(lookup_domain("jörg@Bücher.example"), "xn--bcher-kva.example");
        assert_eq!(address_domain("a@b@c.example"), "c.example");
        assert_eq!(address_domain("nobody"), "");
    }
}
