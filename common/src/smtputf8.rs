//! SMTPUTF8 (RFC 6531) as Postfix decides it: whether a message asks for it (the client's
//! `MAIL FROM:<...> SMTPUTF8`, or autodetection for the mail sources in
//! `smtputf8_autodetect_classes`), whether one delivery needs it (the sender asked, and the
//! sender, a recipient of the delivery or a header is not ASCII: Postfix's
//! `DELIVERY_REQUIRES_SMTPUTF8`), and domains in A-label form for lookups (IDNA 2008 with
//! UTS 46 mapping, through the `idna` crate, which the URL standard's implementation uses).

use crate::config::{ConfigError, Params};

/// Where a message came from, in `smtputf8_autodetect_classes` words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Local submission (`sendmail`, through pickup).
    Sendmail,
    /// The SMTP server.
    Smtpd,
}

/// The classes whose mail is autodetected, from `smtputf8_autodetect_classes` (with
/// `smtputf8_enable = no` none is).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Autodetect {
    sendmail: bool,
    smtpd: bool,
}

impl Autodetect {
    pub fn from_params(p: &Params) -> Result<Autodetect, ConfigError> {
        const NAME: &str = "smtputf8_autodetect_classes";
        let mut a = Autodetect::default();
        for word in p.list(NAME)? {
            match word.to_ascii_lowercase().as_str() {
                "sendmail" => a.sendmail = true,
                "smtpd" => a.smtpd = true,
                "all" => a = Autodetect { sendmail: true, smtpd: true },
                // Postfix's other sources: Postern has no such program, so no mail comes
                // from them.
                "qmqpd" | "forward" | "bounce" | "notify" | "verify" => {}
                other => return Err(ConfigError::value(NAME, format!("unknown mail source class: {other}"))),
            }
        }
        if !p.bool("smtputf8_enable")? {
            a = Autodetect::default();
        }
        Ok(a)
    }

    /// Mail from `source` is looked at.
    pub fn covers(&self, source: Source) -> bool {
        match source {
            Source::Sendmail => self.sendmail,
            Source::Smtpd => self.smtpd,
        }
    }
}

/// The header section of `message` has a byte that is not ASCII.
pub fn header_not_ascii(message: &[u8]) -> bool {
    let (end, _) = crate::cleanup::scan_headers(message);
    !message[..end].is_ascii()
}

/// Postfix's `SMTPUTF8_FLAG_DERIVED`: the sender, one of `recipients` or a header is not ASCII.
pub fn derived<'a>(sender: &str, mut recipients: impl Iterator<Item = &'a str>, message: &[u8]) -> bool {
    !sender.is_ascii() || recipients.any(|r| !r.is_ascii()) || header_not_ascii(message)
}

/// A domain in A-label form (`bücher.example` → `xn--bcher-kva.example`), lowercased; `None`
/// when it cannot be one (the IDNA rules refuse it). An ASCII name is only lowercased.
pub fn domain_to_ascii(domain: &str) -> Option<String> {
    if domain.is_ascii() {
        return Some(domain.to_ascii_lowercase());
    }
    idna::domain_to_ascii(domain).ok().filter(|a| a.is_ascii())
}

/// The address with its domain in A-label form (the local part as it is), for lookups; the
/// address itself when its domain cannot be converted.
pub fn address_to_ascii_domain(addr: &str) -> String {
    match addr.rsplit_once('@') {
        Some((local, domain)) if !domain.is_ascii() => match domain_to_ascii(domain) {
            Some(a) => format!("{local}@{a}"),
            None => addr.to_string(),
        },
        _ => addr.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_labels() {
        assert_eq!(domain_to_ascii("Bücher.Example").as_deref(), Some("xn--bcher-kva.example"));
        assert_eq!(domain_to_ascii("Example.NET").as_deref(), Some("example.net"));
        assert_eq!(domain_to_ascii("b\u{fffd}.example"), None, "U+FFFD has no A-label form");
        assert_eq!(address_to_ascii_domain("jörg@bücher.example"), "jörg@xn--bcher-kva.example");
        assert_eq!(address_to_ascii_domain("u@Example.net"), "u@Example.net");
    }

    #[test]
    fn what_a_delivery_needs() {
        let ascii = b"Subject: hi\r\n\r\nbody with \xc3\xa9\r\n";
        assert!(!derived("s@x.example", ["u@y.example"].into_iter(), ascii), "a body is no reason");
        assert!(derived("s@x.example", ["jörg@y.example"].into_iter(), ascii));
        assert!(derived("sé@x.example", std::iter::empty(), ascii));
        assert!(derived("s@x.example", std::iter::empty(), "Subject: caf\u{e9}\r\n\r\nx\r\n".as_bytes()));
    }

    #[test]
    fn classes() {
        let dir = tempfile::tempdir().unwrap();
        let params = |text: &str| {
            let main = crate::config::MainCf::parse(text, &dir.path().join("main.cf")).unwrap();
            Params::from_parts(dir.path(), main, &[])
        };
        let a = Autodetect::from_params(&params("")).unwrap();
        assert!(a.covers(Source::Sendmail) && !a.covers(Source::Smtpd), "Postfix's default: sendmail, verify");
        let a = Autodetect::from_params(&params("smtputf8_autodetect_classes = all\n")).unwrap();
        assert!(a.covers(Source::Smtpd));
        let a = Autodetect::from_params(&params("smtputf8_enable = no\n")).unwrap();
        assert!(!a.covers(Source::Sendmail));
        let e = Autodetect::from_params(&params("smtputf8_autodetect_classes = sendmial\n")).unwrap_err().to_string();
        assert!(e.contains("unknown mail source class: sendmial"), "{e}");
    }
}
