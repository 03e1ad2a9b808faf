//! The next hop of a delivery request, as the queue manager names it: `[host]:port` (or
//! `[host]`) means that host and no MX lookup; `domain` or `domain:port` means the domain's
//! MX hosts. The caller's default port when none is given (25 for the smtp agent, 366 for the
//! ODMR customer's `odmr_provider`).

/// A parsed next hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    pub host: String,
    pub port: u16,
    /// Look up the host's MX records (no brackets).
    pub mx: bool,
}

/// Parse a next hop; `None` for anything that is no next hop (the delivery bounces).
pub fn parse_nexthop(text: &str, default_port: u16) -> Option<NextHop> {
    let (host, port, mx) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        (host, port, false)
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?, true),
            None => (text, default_port, true),
        }
    };
    (!host.is_empty()).then(|| NextHop { host: host.to_string(), port, mx })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nexthops() {
        struct Case {
            input: &'static str,
            want: Option<(&'static str, u16, bool)>,
        }
        let cases = [
            Case { input: "[127.0.0.1]:2599", want: Some(("127.0.0.1", 2599, false)) },
            Case { input: "[mx.example]", want: Some(("mx.example", 25, false)) },
            Case { input: "example.net", want: Some(("example.net", 25, true)) },
            Case { input: "example.net:587", want: Some(("example.net", 587, true)) },
            Case { input: "", want: None },
            Case { input: "[]", want: None },
            Case { input: "[x]y", want: None },
            Case { input: "[x]:port", want: None },
            Case { input: "[x]:", want: None },
            Case { input: "host:99999", want: None },
            Case { input: ":25", want: None },
        ];
        for c in cases {
            let want = c.want.map(|(host, port, mx)| NextHop { host: host.into(), port, mx });
            assert_eq!(parse_nexthop(c.input, 25), want, "{:?}", c.input);
        }
    }
}
