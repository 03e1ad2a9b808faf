//! SMTPUTF8 in smtpd (RFC 6531), as Postfix's smtpd does it: `SMTPUTF8` in the EHLO reply
//! with `smtputf8_enable`; `MAIL FROM:<...> SMTPUTF8` lets the transaction carry UTF-8
//! addresses. Without it a UTF-8 domain is bad address syntax (`501 5.1.7 Bad sender address
//! syntax`, `501 5.1.3 Bad recipient address syntax`, with Postfix's `Illegal address syntax`
//! warning), while a UTF-8 local part is let through as Postfix always has, unless
//! `strict_smtputf8` (`553 5.6.7 Must declare SMTPUTF8 to send unicode address`).

use common::config::{ConfigError, Params};
use common::smtputf8::{Autodetect, Source};
use common::text::printable;

use crate::address::Address;
use crate::reply::Reply;
use crate::session::Session;

/// `smtputf8_enable`, `strict_smtputf8`, `smtputf8_autodetect_classes`.
#[derive(Debug, Clone, Copy)]
pub struct Utf8Config {
    pub enable: bool,
    pub strict: bool,
    pub autodetect: Autodetect,
}

impl Utf8Config {
    pub fn from_params(p: &Params) -> Result<Utf8Config, ConfigError> {
        Ok(Utf8Config { enable: p.bool("smtputf8_enable")?, strict: p.bool("strict_smtputf8")?, autodetect: Autodetect::from_params(p)? })
    }
}

/// Which command an address came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Mail,
    Rcpt,
}

/// The refusal of a UTF-8 address in a transaction that did not declare SMTPUTF8, if any.
pub fn check_address(s: &Session<'_>, addr: &Address, verb: Verb) -> Option<Reply> {
    if s.smtputf8 || addr.addr.is_ascii() {
        return None;
    }
    let domain_ascii = addr.addr.rsplit_once('@').is_none_or(|(_, d)| d.is_ascii());
    if !domain_ascii {
        let (name, reply) = match verb {
            Verb::Mail => ("MAIL", Reply::new(501, "5.1.7", "Bad sender address syntax")),
            Verb::Rcpt => ("RCPT", Reply::new(501, "5.1.3", "Bad recipient address syntax")),
        };
        common::log_warning!("Illegal address syntax from {} in {name} command: <{}>", s.peer.show(), printable(&addr.addr, '?'));
        return Some(reply);
    }
    s.cfg.smtputf8.strict.then(|| Reply::new(553, "5.6.7", "Must declare SMTPUTF8 to send unicode address"))
}

/// Whether the envelope asks for SMTPUTF8: the client declared it, or smtpd's mail is
/// autodetected and an envelope address is UTF-8. (A UTF-8 header makes the request later,
/// when the message is in: see `conn`.)
pub fn requested(s: &Session<'_>) -> bool {
    if s.smtputf8 {
        return true;
    }
    let addrs = s.sender.iter().chain(&s.recipients);
    s.cfg.smtputf8.autodetect.covers(Source::Smtpd) && addrs.into_iter().any(|a| !a.addr.is_ascii())
}

#[cfg(test)]
mod tests {
    use crate::session::tests::{cmd, config};
    use crate::session::{Peer, Session};

    #[test]
    fn declared_or_refused_with_postfix_s_texts() {
        let (_d, cfg) = config("");
        let mut s = Session::new(&cfg, Peer { name: "client".into(), addr: "127.0.0.1".parse().unwrap() });
        let ehlo = cmd(&mut s, b"EHLO c.test");
        assert!(ehlo.ends_with("250-8BITMIME\r\n250-DSN\r\n250 SMTPUTF8"), "{ehlo}");
        for (line, want) in [
            ("MAIL FROM:<s@bücher.example>", "501 5.1.7 Bad sender address syntax"),
            // A UTF-8 local part: let through, as Postfix has always done.
            ("MAIL FROM:<jörg@sender.test>", "250 2.1.0 Ok"),
            ("RCPT TO:<u@bücher.customer.example>", "501 5.1.3 Bad recipient address syntax"),
            ("RSET", "250"),
            ("MAIL FROM:<s@bücher.example> SMTPUTF8", "250 2.1.0 Ok"),
            ("RCPT TO:<jörg@bücher.customer.example>", "250 2.1.5 Ok"),
        ] {
            let got = cmd(&mut s, line.as_bytes());
            assert!(got.starts_with(want), "{line}: {got}");
        }
        assert_eq!(s.received_protocol(), "UTF8SMTP");
        let (_d, cfg) = config("strict_smtputf8 = yes\nrelay_domains = xn--bcher-kva.example\n");
        let mut s = Session::new(&cfg, Peer { name: "client".into(), addr: "192.0.2.1".parse().unwrap() });
        cmd(&mut s, b"EHLO c.test");
        assert_eq!(cmd(&mut s, "MAIL FROM:<jörg@sender.test>".as_bytes()), "553 5.6.7 Must declare SMTPUTF8 to send unicode address");
        assert_eq!(cmd(&mut s, "MAIL FROM:<jörg@sender.test> SMTPUTF8".as_bytes()), "250 2.1.0 Ok");
        // relay_domains names the domain in A-label form.
        assert_eq!(cmd(&mut s, "RCPT TO:<u@Bücher.example>".as_bytes()), "250 2.1.5 Ok");
        assert!(super::requested(&s));
        let (_d, cfg) = config("smtputf8_enable = no\n");
        let mut s = Session::new(&cfg, Peer { name: "client".into(), addr: "127.0.0.1".parse().unwrap() });
        assert!(!cmd(&mut s, b"EHLO c.test").contains("SMTPUTF8"));
        assert_eq!(cmd(&mut s, b"MAIL FROM:<s@sender.test> SMTPUTF8"), "555 5.5.4 Unsupported option: SMTPUTF8");
    }
}
