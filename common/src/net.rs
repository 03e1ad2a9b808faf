//! Network address lists such as `mynetworks`, with Postfix's `addr_match_list` syntax:
//! `a.b.c.d/n`, `[ipv6]/n`, bare addresses, `!pattern` (first match decides), `/file` (one or
//! more patterns per line) and `type:table` (the client address is looked up, as a `cidr:`
//! table is meant to be used).

use std::net::IpAddr;
use std::path::Path;

use crate::config::table::{Table, TableError, is_table_type_spec, split_braced_list};

/// One network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// A `mynetworks` entry that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad network address: \"{0}\"")]
pub struct CidrError(pub String);

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, CidrError> {
        let err = || CidrError(text.to_string());
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| err())?)),
            None => (text, None),
        };
        let addr = addr.strip_prefix('[').and_then(|a| a.strip_suffix(']')).unwrap_or(addr);
        let addr: IpAddr = addr.parse().map_err(|_| err())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(err());
        }
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix) };
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - self.prefix) };
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// A network list that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkListError {
    #[error(transparent)]
    Net(#[from] CidrError),
    #[error(transparent)]
    Table(#[from] TableError),
    /// A `/file` entry that cannot be read.
    #[error("open {path}: {what}")]
    File { path: String, what: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Net(Cidr),
    Table(Table),
}

/// A list of networks (`mynetworks`): patterns with their negation, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkList(Vec<(bool, Pattern)>);

/// `/file` includes may nest this deep (a file that includes itself must not loop).
const MAX_INCLUDE_DEPTH: usize = 10;

impl NetworkList {
    /// Plain networks only.
    pub fn parse(items: &[String]) -> Result<NetworkList, CidrError> {
        items.iter().map(|i| Cidr::parse(i).map(|c| (false, Pattern::Net(c)))).collect::<Result<Vec<_>, _>>().map(NetworkList)
    }

    /// A parameter value in Postfix's syntax; tables and files are relative to `config_dir`.
    pub fn from_value(value: &str, config_dir: &Path) -> Result<NetworkList, NetworkListError> {
        let mut list = NetworkList::default();
        list.add(value, false, config_dir, 0)?;
        Ok(list)
    }

    fn add(&mut self, value: &str, negate_all: bool, config_dir: &Path, depth: usize) -> Result<(), NetworkListError> {
        for item in split_braced_list(value) {
            let bangs = item.len() - item.trim_start_matches('!').len();
            let negated = negate_all ^ (bangs % 2 == 1);
            let item = &item[bangs..];
            if item.starts_with('/') {
                let text = std::fs::read_to_string(item)
                    .map_err(|e| NetworkListError::File { path: item.to_string(), what: crate::config::table::io_text(&e) })?;
                if depth >= MAX_INCLUDE_DEPTH {
                    return Err(NetworkListError::File { path: item.to_string(), what: "too many nested includes".into() });
                }
                for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
                    self.add(line, negated, config_dir, depth + 1)?;
                }
            } else if is_table_type_spec(item) {
                self.0.push((negated, Pattern::Table(Table::open(item, config_dir)?)));
            } else if !item.is_empty() {
                self.0.push((negated, Pattern::Net(Cidr::parse(item)?)));
            }
        }
        Ok(())
    }

    /// Is `ip` in the list? The first pattern that matches decides. A table that cannot be
    /// read is an error, never "not listed": the caller answers with a temporary failure
    /// (Postfix's `451 4.3.0 ... Temporary lookup failure`) or takes the cautious side.
    pub fn contains(&self, ip: IpAddr) -> Result<bool, TableError> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        for (negated, p) in &self.0 {
            let hit = match p {
                Pattern::Net(c) => c.contains(ip),
                Pattern::Table(t) => t.lookup(&ip.to_string())?.is_some(),
            };
            if hit {
                return Ok(!negated);
            }
        }
        Ok(false)
    }

    /// [`NetworkList::contains`] where an unreadable table counts as "not listed", for lists
    /// whose membership only loosens a check (exceptions); the error is logged.
    pub fn contains_or_not(&self, ip: IpAddr) -> bool {
        self.contains(ip).unwrap_or_else(|e| {
            crate::log_warning!("{e}");
            false
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        let l = NetworkList::parse(&["127.0.0.0/8".into(), "[::1]/128".into(), "192.0.2.7".into()]).unwrap();
        for (ip, want) in [
            ("127.1.2.3", true),
            ("128.0.0.1", false),
            ("::1", true),
            ("::ffff:127.0.0.1", true),
            ("192.0.2.7", true),
            ("192.0.2.8", false),
        ] {
            assert_eq!(l.contains(ip.parse().unwrap()), Ok(want), "{ip}");
        }
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("host.example").is_err());
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn negation_files_and_tables() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nets"), "# ours\n!10.9.0.0/16 10.0.0.0/8\n").unwrap();
        std::fs::write(dir.path().join("more.cidr"), "192.0.2.0/24 trusted\n").unwrap();
        let value = format!("!127.0.0.2, 127.0.0.0/8 {}/nets cidr:more.cidr [2001:db8::]/32, ::1", dir.path().display());
        let l = NetworkList::from_value(&value, dir.path()).unwrap();
        for (ip, want) in [
            ("127.0.0.1", true),
            ("127.0.0.2", false),
            ("10.1.2.3", true),
            ("10.9.1.1", false),
            ("192.0.2.9", true),
            ("::ffff:192.0.2.9", true),
            ("2001:db8::5", true),
            ("::1", true),
            ("8.8.8.8", false),
        ] {
            assert_eq!(l.contains(ip.parse().unwrap()), Ok(want), "{ip}");
        }
        assert!(matches!(NetworkList::from_value("cidr:missing", dir.path()), Err(NetworkListError::Table(_))));
        assert!(matches!(NetworkList::from_value("/nonexistent", dir.path()), Err(NetworkListError::File { .. })));
        assert!(matches!(NetworkList::from_value("host.example", dir.path()), Err(NetworkListError::Net(_))));
    }

    /// `mynetworks = !cidr:blocked, 10.0.0.0/8`: when the exclusion table cannot be read, a
    /// blocked client must not fall through to the network after it (and be trusted).
    #[test]
    fn an_unreadable_table_is_an_error_not_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let blocked = dir.path().join("blocked.cidr");
        std::fs::write(&blocked, "10.9.0.0/16 blocked\n").unwrap();
        let l = NetworkList::from_value(&format!("!cidr:{}, 10.0.0.0/8", blocked.display()), dir.path()).unwrap();
        assert_eq!(l.contains("10.9.1.1".parse().unwrap()), Ok(false));
        std::fs::remove_file(&blocked).unwrap();
        assert!(l.contains("10.9.1.1".parse().unwrap()).is_err());
        assert!(!l.contains_or_not("10.9.1.1".parse().unwrap()));
    }
}
