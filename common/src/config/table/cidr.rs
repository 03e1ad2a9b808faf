//! `cidr:` tables: network patterns tried in file order (Postfix `dict_cidr.c`,
//! `cidr_match.c`): `net/len value`, `addr value`, `!pattern value`, and `if pattern` ...
//! `endif` blocks, which nest. `[addr]` and `[addr]/len` are accepted. A rule that does not
//! parse is skipped with a warning naming the file and line, as in Postfix.

use std::net::IpAddr;

/// A compiled network pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Net {
    addr: IpAddr,
    len: u8,
    negated: bool,
}

impl Net {
    /// Whether `a` matches (a pattern of the other address family never does, negated or not).
    fn matches(&self, a: &IpAddr) -> bool {
        let inside = match (self.addr, a) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.len),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.len),
            _ => return false,
        };
        inside != self.negated
    }
}

fn prefix_eq(net: &[u8], addr: &[u8], len: u8) -> bool {
    let full = usize::from(len / 8);
    let rest = len % 8;
    if net[..full] != addr[..full] {
        return false;
    }
    rest == 0 || (net[full] ^ addr[full]) & (0xffu8 << (8 - rest)) == 0
}

/// An entry: a network and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    net: Net,
    value: String,
}

type Rule = super::rules::Rule<Net, Entry>;

/// A compiled `cidr:` table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrTable {
    rules: super::rules::Rules<Net, Entry>,
}

/// Parse `net/len`, `addr`, `[addr]`, `[addr]/len` (Postfix `cidr_match_parse`).
fn parse_net(pattern: &str, negated: bool) -> Result<Net, String> {
    let (addr_text, mask) = if let Some(inner) = pattern.strip_prefix('[') {
        let (addr, after) = inner.split_once(']').ok_or_else(|| format!("missing ']' character after \"[{inner}\""))?;
        match after.strip_prefix('/') {
            Some(m) => (addr, Some(m)),
            None if after.is_empty() => (addr, None),
            None => return Err(format!("garbage after \"[{addr}]\"")),
        }
    } else {
        match pattern.split_once('/') {
            Some((a, m)) => (a, Some(m)),
            None => (pattern, None),
        }
    };
    let parse_addr = |a: &str| -> Option<IpAddr> {
        if a.contains(':') {
            a.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
        } else {
            a.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
        }
    };
    let bits: u8 = if addr_text.contains(':') { 128 } else { 32 };
    let Some(mask) = mask else {
        let addr = parse_addr(addr_text).ok_or_else(|| format!("bad address pattern: \"{addr_text}\""))?;
        return Ok(Net { addr, len: bits, negated });
    };
    // Postfix: all digits, else "bad mask value"; more than the address has, "bad mask length".
    if mask.is_empty() || !mask.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad mask value in \"{addr_text}/{mask}\""));
    }
    let len = match mask.parse::<u32>() {
        Ok(l) if l <= u32::from(bits) => l as u8,
        _ => return Err(format!("bad mask length in \"{addr_text}/{mask}\"")),
    };
    let addr = parse_addr(addr_text).ok_or_else(|| format!("bad network value in \"{addr_text}/{mask}\""))?;
    let masked = mask_addr(addr, len);
    if masked != addr {
        return Err(format!("non-null host address bits in \"{addr_text}/{mask}\", perhaps you should use \"{masked}/{len}\" instead"));
    }
    Ok(Net { addr, len, negated })
}

fn mask_addr(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

/// Leading `!` (each one flips) and whitespace, as every pattern table reads them.
pub(super) fn take_negation(mut s: &str) -> (&str, bool) {
    let mut negated = false;
    loop {
        if let Some(rest) = s.strip_prefix('!') {
            negated = !negated;
            s = rest;
        } else if s.starts_with(char::is_whitespace) {
            s = s.trim_start();
        } else {
            return (s, negated);
        }
    }
}

/// `word` (case-insensitive) at the start of `s`, not followed by a letter or digit.
pub(super) fn keyword<'a>(s: &'a str, word: &str) -> Option<&'a str> {
    let head = s.get(..word.len())?;
    let rest = &s[word.len()..];
    (head.eq_ignore_ascii_case(word) && !rest.starts_with(|c: char| c.is_ascii_alphanumeric())).then_some(rest)
}

/// One logical line's rule.
fn parse_rule(text: &str, nesting: usize) -> Result<Rule, String> {
    if let Some(rest) = keyword(text, "if") {
        let (pattern, negated) = take_negation(rest);
        if pattern.is_empty() {
            return Err("no address pattern".into());
        }
        return Ok(Rule::If { cond: parse_net(pattern.trim_end(), negated)?, end: None, line: 0 });
    }
    if let Some(rest) = keyword(text, "endif") {
        if !rest.trim().is_empty() {
            return Err("garbage after ENDIF".into());
        }
        if nesting == 0 {
            return Err("ENDIF without IF".into());
        }
        return Ok(Rule::Endif);
    }
    let (rest, negated) = take_negation(text);
    let (pattern, value) = rest.split_once(char::is_whitespace).map_or((rest, ""), |(p, v)| (p, v.trim()));
    if pattern.is_empty() {
        return Err("no address pattern".into());
    }
    let net = parse_net(pattern, negated)?;
    if value.is_empty() {
        return Err("no lookup result".into());
    }
    Ok(Rule::Entry(Entry { net, value: value.to_string() }))
}

impl CidrTable {
    /// Compile the rules of `text` (logical lines as in every Postfix table file); warnings
    /// (`cidr map NAME, line N: ...`) are pushed onto `warnings`.
    pub fn parse(text: &str, name: &str, warnings: &mut Vec<String>) -> CidrTable {
        let rules = super::rules::Rules::compile(text, &format!("cidr map {name}"), warnings, |text, depth, at, warnings| {
            parse_rule(text, depth).map_err(|why| warnings.push(format!("{at}: {why}: skipping this rule"))).ok()
        });
        CidrTable { rules }
    }

    /// The value of the first rule that matches `key`, an IPv4 or IPv6 address (anything
    /// else matches nothing).
    pub fn lookup(&self, key: &str) -> Option<&str> {
        let key = key.strip_prefix('[').and_then(|k| k.strip_suffix(']')).unwrap_or(key);
        let addr: IpAddr = if key.contains(':') { IpAddr::V6(key.parse().ok()?) } else { IpAddr::V4(key.parse().ok()?) };
        self.rules.first(|net| net.matches(&addr), |e| e.net.matches(&addr).then_some(e.value.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_negation_and_blocks() {
        let text = "192.168.1.1 OK\n192.168.0.0/16 REJECT\n[2001:db8::1] OK\n2001:db8::/32 REJECT v6\n\
                    if 10.0.0.0/8\n!10.1.0.0/16 inside-not-10.1\nendif\n!0.0.0.0/0 never-for-v4\n";
        let mut w = Vec::new();
        let t = CidrTable::parse(text, "c", &mut w);
        assert!(w.is_empty(), "{w:?}");
        let cases = [
            ("192.168.1.1", Some("OK")),
            ("192.168.7.7", Some("REJECT")),
            ("2001:db8:0:0::1", Some("OK")),
            ("2001:0db8::2", Some("REJECT v6")),
            ("10.2.3.4", Some("inside-not-10.1")),
            ("10.1.3.4", None),
            ("::1", None),
            ("[192.168.1.1]", Some("OK")),
            ("not-an-address", None),
            ("01.2.3.4", None),
        ];
        for (key, want) in cases {
            assert_eq!(t.lookup(key), want, "{key}");
        }
    }

    #[test]
    fn bad_rules_are_skipped_with_postfix_texts() {
        let text = "1.2.3.4/24 x\n1.2.3.0/999 x\n1.2.3.0/a x\nbogus x\n1.2.3.4\nendif\nif 1.0.0.0/8\nendif junk\n[1.2.3.4 x\n";
        let mut w = Vec::new();
        let t = CidrTable::parse(text, "c", &mut w);
        assert_eq!(
            w,
            vec![
                "cidr map c, line 1: non-null host address bits in \"1.2.3.4/24\", perhaps you should use \"1.2.3.0/24\" instead: skipping this rule",
                "cidr map c, line 2: bad mask length in \"1.2.3.0/999\": skipping this rule",
                "cidr map c, line 3: bad mask value in \"1.2.3.0/a\": skipping this rule",
                "cidr map c, line 4: bad address pattern: \"bogus\": skipping this rule",
                "cidr map c, line 5: no lookup result: skipping this rule",
                "cidr map c, line 6: ENDIF without IF: skipping this rule",
                "cidr map c, line 8: garbage after ENDIF: skipping this rule",
                "cidr map c, line 9: missing ']' character after \"[1.2.3.4\": skipping this rule",
                "cidr map c, line 7: IF has no matching ENDIF",
            ]
        );
        assert_eq!(t.lookup("1.2.3.4"), None);
    }
}
