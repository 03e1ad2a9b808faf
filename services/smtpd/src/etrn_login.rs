//! `reject_etrn_login_mismatch` in `smtpd_etrn_restrictions`: with `smtpd_etrn_login_maps`
//! (domain → the SASL logins that own it, as `smtpd_sender_login_maps` maps senders to
//! logins), a customer who logged in may ETRN their own domains (and `@domain` within them)
//! and nothing else; an owned domain needs its owner's login. The same table will authorize
//! ATRN (ODMR).

use common::config::table::Table;

use crate::reply::Reply;
use crate::session::Session;

/// The logins that own `site`: the nearest entry of `site` or a parent domain, from the
/// first table that has one. `None` when no one owns it.
pub fn owners(maps: &[Table], site: &str) -> Option<Vec<String>> {
    let mut name = site.to_ascii_lowercase();
    loop {
        if let Some(v) = maps.iter().find_map(|t| t.lookup(&name)) {
            // "alice, bob", "alice bob", or an inline table's "{alice bob}".
            let v = v.trim().trim_start_matches('{').trim_end_matches('}');
            return Some(v.split([',', ' ', '\t']).filter(|w| !w.is_empty()).map(String::from).collect());
        }
        name = name.split_once('.')?.1.to_string();
    }
}

/// `Some(459 ...)` when the client may not ETRN `site`; `None` to go on to the next
/// restriction (an unowned site without a login is not this restriction's business).
pub fn mismatch(s: &Session<'_>, site: &str) -> Option<Reply> {
    let owners = owners(&s.cfg.etrn_login_maps, site);
    let login = s.sasl_authenticated().then(|| s.sasl_login.as_ref().map(|l| l.username.as_str())).flatten();
    let site = common::text::printable(site, '?');
    match (login, owners) {
        (Some(user), Some(o)) if o.iter().any(|x| x == user) => None,
        (Some(user), _) => Some(Reply::plain(459, format!("<{site}>: ETRN by user {user} not allowed"))),
        (None, Some(_)) => Some(Reply::plain(459, format!("<{site}>: ETRN without login not allowed"))),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_entry_owns() {
        let t = Table::open(
            "inline:{customer.example=alice, shared.example={alice bob}, sub.customer.example=carol}",
            std::path::Path::new("/"),
        )
        .unwrap();
        let maps = [t];
        assert_eq!(owners(&maps, "customer.example"), Some(vec!["alice".to_string()]));
        assert_eq!(owners(&maps, "MX.Customer.example"), Some(vec!["alice".to_string()]));
        assert_eq!(owners(&maps, "sub.customer.example"), Some(vec!["carol".to_string()]));
        assert_eq!(owners(&maps, "shared.example"), Some(vec!["alice".to_string(), "bob".to_string()]));
        assert_eq!(owners(&maps, "other.example"), None);
    }
}
