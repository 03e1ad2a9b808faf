//! `check_client_access type:table`: the client's host name, its parent domains, its address
//! and its networks are looked up in Postfix's order (common's `table::search::client_keys`),
//! and the first entry found decides (access(5)): `OK`/`PERMIT` accept, `REJECT [text]`,
//! `DEFER [text]` and `4NN/5NN text` refuse, `DUNNO` (or no entry) goes on with the next
//! restriction. A table that cannot be read answers `451 4.3.5 Server configuration error`, as
//! Postfix does.

use common::config::table::Table;
use common::config::table::search::{ParentStyle, client_keys, find};
use common::log_warning;

use crate::reply::Reply;
use crate::session::Peer;

/// What a restriction decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Permit,
    Refuse(Reply),
}

/// Turn an access table value into a verdict for `<reply_name>: <reply_class> rejected: ...`;
/// `None` is DUNNO.
pub fn table_result(value: &str, reply_name: &str, reply_class: &str, spec: &str) -> Option<Verdict> {
    let (word, text) = value.split_once(char::is_whitespace).map_or((value, ""), |(w, t)| (w, t.trim()));
    let text_or = |default: &str| if text.is_empty() { default.to_string() } else { text.to_string() };
    match word.to_ascii_uppercase().as_str() {
        "OK" | "PERMIT" => Some(Verdict::Permit),
        "DUNNO" => None,
        "REJECT" => {
            Some(Verdict::Refuse(Reply::new(554, "5.7.1", format!("<{reply_name}>: {reply_class} rejected: {}", text_or("Access denied")))))
        }
        "DEFER" => {
            Some(Verdict::Refuse(Reply::new(450, "4.7.1", format!("<{reply_name}>: {reply_class} rejected: {}", text_or("Access denied")))))
        }
        _ => match Reply::parse_rejection(value) {
            Some(r) => {
                let dsn = r.enhanced.clone().unwrap_or_else(|| if r.code >= 500 { "5.7.1".into() } else { "4.7.1".into() });
                let text = r.lines.first().cloned().unwrap_or_default();
                Some(Verdict::Refuse(Reply::new(r.code, &dsn, format!("<{reply_name}>: {reply_class} rejected: {text}"))))
            }
            None => {
                // An action Postern does not have must not pass as DUNNO unseen.
                log_warning!(
                    "access table {spec}: unknown or unsupported action \"{word}\" for {reply_name}: answering a temporary failure"
                );
                Some(Verdict::Refuse(Reply::new(451, "4.3.5", "Server configuration error")))
            }
        },
    }
}

/// `check_client_access table` for `peer`.
pub fn check_client(table: &Table, peer: &Peer, style: ParentStyle) -> Option<Verdict> {
    // An IPv4 client on an IPv6 socket is looked up by its IPv4 address, as Postfix does.
    let addr = match peer.addr {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer.addr, std::net::IpAddr::V4),
        v4 => v4,
    };
    let keys = client_keys(&peer.name, &addr.to_string(), style);
    match find(std::slice::from_ref(table), &keys) {
        Ok(Some((_, value))) => table_result(&value, &peer.show(), "Client host", table.spec()),
        Ok(None) => None,
        Err(e) => {
            log_warning!("{e}");
            Some(Verdict::Refuse(Reply::new(451, "4.3.5", "Server configuration error")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions() {
        let r = |v: &str| table_result(v, "h[1.2.3.4]", "Client host", "t");
        assert_eq!(r("OK"), Some(Verdict::Permit));
        assert_eq!(r("dunno"), None);
        assert_eq!(r("REJECT"), Some(Verdict::Refuse(Reply::new(554, "5.7.1", "<h[1.2.3.4]>: Client host rejected: Access denied"))));
        assert_eq!(r("REJECT go away"), Some(Verdict::Refuse(Reply::new(554, "5.7.1", "<h[1.2.3.4]>: Client host rejected: go away"))));
        assert_eq!(r("450 4.7.9 later"), Some(Verdict::Refuse(Reply::new(450, "4.7.9", "<h[1.2.3.4]>: Client host rejected: later"))));
        assert_eq!(r("521 no"), Some(Verdict::Refuse(Reply::new(521, "5.7.1", "<h[1.2.3.4]>: Client host rejected: no"))));
        assert_eq!(r("FILTER x:y"), Some(Verdict::Refuse(Reply::new(451, "4.3.5", "Server configuration error"))));
    }
}
