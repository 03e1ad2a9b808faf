//! access(5) table results: the first entry found for a subject decides. `OK`/`PERMIT` accept,
//! `REJECT [text]`, `DEFER [text]` and `4NN/5NN text` refuse, `HOLD [text]` queues the message
//! on hold, `DISCARD [text]` accepts and drops it, `DUNNO` (or no entry) goes on with the next
//! restriction. An action Postern does not have (FILTER, REDIRECT, PREPEND, ...) is logged and
//! answered with Postfix's `451 4.3.5 Server configuration error`, never taken as DUNNO.

use common::log_warning;

use crate::reply::Reply;

/// What a table entry decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Permit,
    Refuse(Reply),
    /// `HOLD`: the text for the `hold:` log line.
    Hold(String),
    /// `DISCARD`: the text for the `discard:` log line.
    Discard(String),
}

/// `access_map_reject_code` and `access_map_defer_code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapCodes {
    pub reject: u16,
    pub defer: u16,
}

impl Default for MapCodes {
    fn default() -> MapCodes {
        MapCodes { reject: 554, defer: 450 }
    }
}

/// A leading RFC 3463 code of `text` (Postfix's `dsn_split`), else `default`.
fn split_dsn<'t>(text: &'t str, default: &str) -> (String, &'t str) {
    let (head, rest) = text.split_once(' ').unwrap_or((text, ""));
    let parts: Vec<&str> = head.split('.').collect();
    let valid = parts.len() == 3
        && parts.iter().all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
        && matches!(parts[0], "2" | "4" | "5");
    if valid { (head.to_string(), rest.trim_start()) } else { (default.to_string(), text) }
}

/// Turn an access table value into a verdict for `<reply_name>: <reply_class> rejected: ...`;
/// `None` is DUNNO.
pub fn table_result(value: &str, reply_name: &str, reply_class: &str, spec: &str, codes: MapCodes) -> Option<Verdict> {
    let (word, text) = value.split_once([' ', '\t']).map_or((value, ""), |(w, t)| (w, t.trim()));
    let refuse = |code: u16, dsn_default: &str, fallback: &str| {
        let (dsn, text) = split_dsn(text, dsn_default);
        // The class of the code must agree with the reply code, as Postfix's smtpd_check_reject fixes it.
        let dsn = if dsn.starts_with(char::from(b'0' + (code / 100) as u8)) { dsn } else { format!("{}{}", code / 100, &dsn[1..]) };
        let text = if text.is_empty() { fallback } else { text };
        Some(Verdict::Refuse(Reply::new(code, &dsn, format!("<{reply_name}>: {reply_class} rejected: {text}"))))
    };
    match word.to_ascii_uppercase().as_str() {
        "OK" | "PERMIT" => Some(Verdict::Permit),
        "DUNNO" => None,
        "REJECT" => refuse(codes.reject, "5.7.1", "Access denied"),
        "DEFER" => refuse(codes.defer, "4.7.1", "Access denied"),
        "HOLD" => {
            Some(Verdict::Hold(format!("<{reply_name}>: {reply_class} {}", if text.is_empty() { "triggers HOLD action" } else { text })))
        }
        "DISCARD" => Some(Verdict::Discard(format!(
            "<{reply_name}>: {reply_class} {}",
            if text.is_empty() { "triggers DISCARD action" } else { text }
        ))),
        w if w.len() == 3 && (w.starts_with('4') || w.starts_with('5')) && w.bytes().all(|b| b.is_ascii_digit()) => {
            let code: u16 = w.parse().unwrap_or(450);
            refuse(code, if code >= 500 { "5.7.1" } else { "4.7.1" }, "Access denied")
        }
        _ => {
            // An action Postern does not have must not pass as DUNNO unseen.
            log_warning!("access table {spec}: unknown or unsupported action \"{word}\" for {reply_name}: answering a temporary failure");
            Some(Verdict::Refuse(Reply::new(451, "4.3.5", "Server configuration error")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions() {
        let r = |v: &str| table_result(v, "h[1.2.3.4]", "Client host", "t", MapCodes::default());
        let refuse = |code, dsn, text: &str| Some(Verdict::Refuse(Reply::new(code, dsn, text)));
        assert_eq!(r("OK"), Some(Verdict::Permit));
        assert_eq!(r("dunno"), None);
        assert_eq!(r("REJECT"), refuse(554, "5.7.1", "<h[1.2.3.4]>: Client host rejected: Access denied"));
        assert_eq!(r("REJECT go away"), refuse(554, "5.7.1", "<h[1.2.3.4]>: Client host rejected: go away"));
        assert_eq!(r("REJECT 5.7.9 go away"), refuse(554, "5.7.9", "<h[1.2.3.4]>: Client host rejected: go away"));
        assert_eq!(r("DEFER"), refuse(450, "4.7.1", "<h[1.2.3.4]>: Client host rejected: Access denied"));
        assert_eq!(r("450 4.7.9 later"), refuse(450, "4.7.9", "<h[1.2.3.4]>: Client host rejected: later"));
        assert_eq!(r("521 no"), refuse(521, "5.7.1", "<h[1.2.3.4]>: Client host rejected: no"));
        assert_eq!(r("HOLD"), Some(Verdict::Hold("<h[1.2.3.4]>: Client host triggers HOLD action".into())));
        assert_eq!(r("DISCARD spam"), Some(Verdict::Discard("<h[1.2.3.4]>: Client host spam".into())));
        assert_eq!(r("FILTER x:y"), refuse(451, "4.3.5", "Server configuration error"));
        assert_eq!(r("REDIRECT a@b"), refuse(451, "4.3.5", "Server configuration error"));
    }
}
