//! Envelope addresses in MAIL FROM and RCPT TO: `<addr>` with optional ESMTP parameters,
//! source routes stripped, and the routing characters used in relay tricks detected.

/// A parsed envelope address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The address without angle brackets and source route (empty for `<>`).
    pub addr: String,
    /// ESMTP parameters after the address (`SIZE=123`).
    pub params: Vec<EsmtpParam>,
}

/// One ESMTP parameter of MAIL or RCPT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EsmtpParam {
    /// The keyword, uppercased.
    pub name: String,
    pub value: String,
    /// As the client sent it, for replies (`555 5.5.4 Unsupported option: FOO=bar`).
    pub text: String,
}

impl Address {
    /// The domain: after the right-most `@`, lowercased, a UTF-8 one in A-label form (what
    /// `relay_domains` and tables hold).
    pub fn domain(&self) -> String {
        self.addr
            .rsplit_once('@')
            .map(|(_, d)| common::smtputf8::domain_to_ascii(d).unwrap_or_else(|| d.to_ascii_lowercase()))
            .unwrap_or_default()
    }

    /// The local part (before the right-most `@`), quotes kept.
    pub fn local_part(&self) -> &str {
        self.addr.rsplit_once('@').map_or(self.addr.as_str(), |(l, _)| l)
    }

    /// Sender-routing tricks: `user%host@relay`, `host!user@relay`, `"user@host"@relay`.
    pub fn has_routing(&self) -> bool {
        self.local_part().contains(['@', '%', '!'])
    }
}

/// Parse the text after `MAIL FROM:` or `RCPT TO:`.
pub fn parse_path(text: &str) -> Option<Address> {
    let text = text.trim_start();
    let (inner, rest) = if let Some(stripped) = text.strip_prefix('<') {
        // The closing bracket, skipping any inside a quoted local part.
        let mut in_quote = false;
        let mut end = None;
        for (i, c) in stripped.char_indices() {
            match c {
                '"' => in_quote = !in_quote,
                '>' if !in_quote => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let end = end?;
        (&stripped[..end], &stripped[end + 1..])
    } else {
        // Postfix accepts a bare address (strict_rfc821_envelopes = no).
        let end = text.find(' ').unwrap_or(text.len());
        (&text[..end], &text[end..])
    };
    // Source route `@a,@b:user@domain`: only the final address counts (RFC 5321 C).
    let addr = match inner.strip_prefix('@') {
        Some(route) => route.split_once(':')?.1,
        None => inner,
    };
    if addr.contains(['<', '>', ' ', '\t', '\0']) && !addr.starts_with('"') {
        return None;
    }
    // Control characters (a bare CR above all) have no place in an address, quoted or not:
    // refused here, they can reach no queue file, log line or SMTP command.
    if addr.chars().any(char::is_control) {
        return None;
    }
    if !addr.is_empty() {
        let (_, domain) = addr.rsplit_once('@')?;
        // A UTF-8 domain (SMTPUTF8) must have a valid A-label form; whether the client may
        // send one is the session's to say.
        let idn = || !domain.is_ascii() && common::smtputf8::domain_to_ascii(domain).is_some_and(|a| common::domain::valid_hostname(&a));
        if domain.is_empty() || !(common::domain::valid_hostname(domain) || common::domain::valid_address_literal(domain) || idn()) {
            return None;
        }
    }
    let mut params = Vec::new();
    for p in rest.split_whitespace() {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        params.push(EsmtpParam { name: k.to_ascii_uppercase(), value: v.to_string(), text: p.to_string() });
    }
    Some(Address { addr: addr.to_string(), params })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let a = parse_path("<user@Example.NET> SIZE=100 BODY=8BITMIME").unwrap();
        assert_eq!(a.addr, "user@Example.NET");
        assert_eq!(a.domain(), "example.net");
        let params: Vec<(&str, &str, &str)> = a.params.iter().map(|p| (p.name.as_str(), p.value.as_str(), p.text.as_str())).collect();
        assert_eq!(params, vec![("SIZE", "100", "SIZE=100"), ("BODY", "8BITMIME", "BODY=8BITMIME")]);
        assert_eq!(parse_path("<>").unwrap().addr, "");
        assert_eq!(parse_path(" bare@example.net").unwrap().addr, "bare@example.net");
        assert_eq!(parse_path("<@a.example,@b.example:u@c.example>").unwrap().addr, "u@c.example");
        assert!(parse_path("<\"a@b\"@relay.example>").unwrap().has_routing());
        assert!(parse_path("<a%b@relay.example>").unwrap().has_routing());
        assert!(parse_path("<b!a@relay.example>").unwrap().has_routing());
        assert!(!parse_path("<a@relay.example>").unwrap().has_routing());
        for bad in [
            "<a@b",
            "<a b@c.example>",
            "<user@>",
            "<user@bad..domain>",
            "<@a.example>",
            "<u@[1.2.3]>",
            "<a\r@b.example>",
            "<\"a\x01\"@b.example>",
        ] {
            assert_eq!(parse_path(bad), None, "{bad}");
        }
        assert!(parse_path("<u@[127.0.0.1]>").is_some());
        let idn = parse_path("<jörg@Bücher.example> SMTPUTF8").unwrap();
        assert_eq!((idn.addr.as_str(), idn.domain().as_str()), ("jörg@Bücher.example", "xn--bcher-kva.example"));
        assert_eq!(parse_path("<u@b\u{fffd}\u{fffd}.example>"), None, "no A-label form");
    }
}
