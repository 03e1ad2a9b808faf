//! Postfix's TLS protocol lists (`smtpd_tls_protocols`, `smtp_tls_mandatory_protocols`, ...),
//! read as Postfix reads them and then narrowed to the versions rustls has (TLSv1.2, TLSv1.3):
//! older versions are never offered, whatever the list says.

use rustls::SupportedProtocolVersion;
use rustls::version::{TLS12, TLS13};

/// The protocol versions a Postfix protocol list allows, among those rustls has; `None` for a
/// list Postfix would call invalid.
pub fn parse_protocols(list: &str) -> Option<Vec<&'static SupportedProtocolVersion>> {
    // Postfix's versions in order; only the last two exist here.
    const NAMES: [&str; 6] = ["SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"];
    /// The rank of a version name (or an OpenSSL hex value) for `>=` and `<=`.
    fn rank(v: &str) -> Option<usize> {
        if v.eq_ignore_ascii_case("none") {
            return Some(usize::MAX); // "no bound"
        }
        if let Some(i) = NAMES.iter().position(|n| *n == v) {
            return Some(i);
        }
        // OpenSSL's numeric versions: 0x0300 SSLv3 .. 0x0304 TLSv1.3.
        let n = u32::from_str_radix(v.trim_start_matches("0x"), 16).ok()?;
        match n {
            0 => Some(usize::MAX),
            0x0300..=0x0304 => Some(n as usize - 0x0300 + 1),
            _ => None,
        }
    }
    let (mut include, mut exclude) = (Vec::new(), Vec::new());
    let (mut floor, mut ceiling) = (0, NAMES.len() - 1);
    for tok in list.split([',', ' ', '\t', ':']).filter(|t| !t.is_empty()) {
        if let Some(v) = tok.strip_prefix(">=") {
            floor = match rank(v)? {
                usize::MAX => 0,
                r => r,
            };
        } else if let Some(v) = tok.strip_prefix("<=") {
            ceiling = match rank(v)? {
                usize::MAX => NAMES.len() - 1,
                r => r,
            };
        } else if let Some(v) = tok.strip_prefix('!') {
            exclude.push(NAMES.iter().position(|n| *n == v)?);
        } else {
            include.push(NAMES.iter().position(|n| *n == tok)?);
        }
    }
    let allowed = |i: usize| (include.is_empty() || include.contains(&i)) && !exclude.contains(&i) && (floor..=ceiling).contains(&i);
    let mut out = Vec::new();
    if allowed(5) {
        out.push(&TLS13);
    }
    if allowed(4) {
        out.push(&TLS12);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::ProtocolVersion;

    fn names(list: &str) -> Option<Vec<&'static str>> {
        parse_protocols(list).map(|v| {
            v.iter()
                .map(|p| match p.version {
                    ProtocolVersion::TLSv1_3 => "1.3",
                    _ => "1.2",
                })
                .collect()
        })
    }

    #[test]
    fn postfix_protocol_lists() {
        let cases: &[(&str, Option<Vec<&str>>)] = &[
            (">=TLSv1", Some(vec!["1.3", "1.2"])),
            ("", Some(vec!["1.3", "1.2"])),
            ("!SSLv2, !SSLv3", Some(vec!["1.3", "1.2"])),
            ("!SSLv2:!SSLv3:!TLSv1:!TLSv1.1", Some(vec!["1.3", "1.2"])),
            (">=TLSv1.2", Some(vec!["1.3", "1.2"])),
            (">=TLSv1.3", Some(vec!["1.3"])),
            ("<=TLSv1.2", Some(vec!["1.2"])),
            ("TLSv1.2", Some(vec!["1.2"])),
            ("TLSv1 TLSv1.1", Some(vec![])),
            ("!TLSv1.2 !TLSv1.3", Some(vec![])),
            (">=0x0304", Some(vec!["1.3"])),
            (">=None", Some(vec!["1.3", "1.2"])),
            ("TLSv9", None),
            (">=bogus", None),
        ];
        for (list, want) in cases {
            assert_eq!(&names(list), want, "{list:?}");
        }
    }
}
