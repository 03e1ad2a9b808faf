//! One cache entry, in Postfix's format so that a cache can be read the same way by both:
//! `status:probed:updated:text`, where status is a `DEL_RCPT_STAT_*` number, `probed` the time
//! the outstanding probe was sent (0: none), `updated` the time the last result came (0: none
//! yet), seconds since the epoch.

use common::ipc::verify::AddressStatus;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub status: AddressStatus,
    pub probed: u64,
    pub updated: u64,
    pub text: String,
}

impl Entry {
    pub fn format(&self) -> String {
        format!("{}:{}:{}:{}", self.status.code(), self.probed, self.updated, self.text)
    }

    /// Postfix's `verify_parse_entry`: `None` for anything malformed, including an entry with
    /// both times zero (never written: something is badly broken).
    pub fn parse(raw: &str) -> Option<Entry> {
        fn digits(s: Option<&str>) -> Option<&str> {
            s.filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        }
        let mut parts = raw.splitn(4, ':');
        let status = digits(parts.next())?.parse::<u8>().ok().and_then(AddressStatus::from_code)?;
        let probed = digits(parts.next())?.parse().ok()?;
        let updated = digits(parts.next())?.parse().ok()?;
        let text = parts.next()?.to_string();
        (probed != 0 || updated != 0).then_some(Entry { status, probed, updated, text })
    }
}

/// The cache key of an address: as given, with `:` made `_` (Postfix's fix for IPv6 address
/// literals, whose colons would otherwise end up in the entry format's separators).
pub fn cache_key(address: &str) -> String {
    address.replace(':', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_as_postfix_writes_them() {
        struct Case {
            raw: &'static str,
            want: Option<(AddressStatus, u64, u64, &'static str)>,
        }
        let cases = [
            Case { raw: "0:0:1700000000:250 2.1.5 Ok", want: Some((AddressStatus::Deliverable, 0, 1700000000, "250 2.1.5 Ok")) },
            Case {
                raw: "2:0:17:host x said: 550 5.1.1 a:b (in reply to RCPT TO command)",
                want: Some((AddressStatus::Undeliverable, 0, 17, "host x said: 550 5.1.1 a:b (in reply to RCPT TO command)")),
            },
            Case {
                raw: "3:42:0:Address verification in progress",
                want: Some((AddressStatus::Probing, 42, 0, "Address verification in progress")),
            },
            Case { raw: "1:5:6:", want: Some((AddressStatus::Deferred, 5, 6, "")) },
            Case { raw: "0:0:0:both times zero", want: None },
            Case { raw: "4:1:1:no such status", want: None },
            Case { raw: "0:x:1:bad time", want: None },
            Case { raw: "0:1:1", want: None },
            Case { raw: "", want: None },
            Case { raw: "-1:1:1:negative", want: None },
        ];
        for c in cases {
            let got = Entry::parse(c.raw);
            assert_eq!(got.as_ref().map(|e| (e.status, e.probed, e.updated, e.text.as_str())), c.want, "{}", c.raw);
            if let Some(e) = got {
                assert_eq!(e.format(), c.raw);
            }
        }
        assert_eq!(cache_key("u@[IPv6:2001:db8::1]"), "u@[IPv6_2001_db8__1]");
    }
}
