//! `reject_etrn_login_mismatch` in `smtpd_etrn_restrictions`: with `smtpd_etrn_login_maps`
//! (domain → the SASL logins that own it, as `smtpd_sender_login_maps` maps senders to
//! logins), a customer who logged in may ETRN their own domains (and `@domain` within them)
//! and nothing else; an owned domain needs its owner's login. The same table will authorize
//! ATRN (ODMR).

use common::config::table::search::{ParentStyle, domain_keys, find};
use common::config::table::{Table, TableError};
use common::log_warning;

use crate::reply::Reply;
use crate::session::Session;

/// The logins that own `site`: the nearest entry of `site` or a parent domain. `None` when no
/// one owns it.
pub fn owners(maps: &[Table], site: &str) -> Result<Option<Vec<String>>, TableError> {
    let keys = domain_keys(&site.to_ascii_lowercase(), ParentStyle::Parent);
    Ok(find(maps, &keys)?.map(|(_, v)| {
        // "alice, bob", "alice bob", or an inline table's "{alice bob}".
        let v = v.trim().trim_start_matches('{').trim_end_matches('}');
        v.split([',', ' ', '\t']).filter(|w| !w.is_empty()).map(String::from).collect()
    }))
}

/// `Some(459 ...)` when the client may not ETRN `site`; `None` to go on to the next
/// restriction (an unowned site without a login is not this restriction's business).
pub fn mismatch(s: &Session<'_>, site: &str) -> Option<Reply> {
    let owners = match owners(&s.cfg.etrn_login_maps, site) {
        Ok(o) => o,
        // A table that cannot be read now is no answer: try again later, as Postfix does.
        Err(e) => {
            log_warning!("{e}");
            return Some(Reply::new(451, "4.3.5", "Server configuration error"));
        }
    };
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
        assert_eq!(owners(&maps, "customer.example").unwrap(), Some(vec!["alice".to_string()]));
        assert_eq!(owners(&maps, "MX.Customer.example").unwrap(), Some(vec!["alice".to_string()]));
        assert_eq!(owners(&maps, "sub.customer.example").unwrap(), Some(vec!["carol".to_string()]));
        assert_eq!(owners(&maps, "shared.example").unwrap(), Some(vec!["alice".to_string(), "bob".to_string()]));
        assert_eq!(owners(&maps, "other.example").unwrap(), None);
    }
}
