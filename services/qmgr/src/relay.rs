//! Per-message relay overrides (the fast flush cluster's handover, flush(8)): "when message ID
//! is next routed, its recipients in SITE go to smtp:NEXTHOP". Each one is used once, by the
//! next admission of that message; one that is not used within [`LIFETIME`] is dropped, and
//! there are at most [`LIMIT`] at a time. An override that is lost (dropped, a restart) only
//! means that the message takes its usual route, so none of this needs to be durable.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::domain::{Site, lookup_domain};
use common::ipc::qmgr::valid_nexthop;
use common::queue::QueueId;

use crate::config::Route;

/// How long an override waits for its message to be routed: the flush service moves the
/// messages to `incoming` right after asking, so a scan takes them within seconds, unless
/// the active queue is full for longer; after this the handover is given up (the ODMR
/// session that asked for the mail has ended long before).
pub const LIFETIME: Duration = Duration::from_secs(600);

/// Overrides kept at most (about 100 bytes each): a request that would pass it is refused
/// whole, and its mail stays where it is.
pub const LIMIT: usize = 100_000;

/// Where a message's recipients in one site go instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    site: Arc<Site>,
    nexthop: Arc<str>,
    expires: Instant,
}

impl Relay {
    /// The route of `recipient` when this override covers it (a recipient in exactly its
    /// site), delivered by the smtp transport.
    pub fn route(&self, recipient: &str) -> Option<Route> {
        lookup_domain(recipient)
            .eq_ignore_ascii_case(self.site.as_str())
            .then(|| Route { transport: "smtp".into(), nexthop: self.nexthop.to_string() })
    }
}

/// The overrides waiting for their messages.
#[derive(Debug, Default)]
pub struct Relays {
    pending: HashMap<QueueId, Relay>,
}

impl Relays {
    /// Keep an override for each of `ids`; refused whole (nothing kept) when the site, a
    /// queue ID or the next hop is not valid, or when the overrides would pass [`LIMIT`].
    pub fn add(&mut self, site: &str, nexthop: &str, ids: &[String], now: Instant) -> Result<(), String> {
        let site = Site::parse(site).map_err(|_| format!("relay request: invalid site \"{}\"", common::text::printable(site, '?')))?;
        if !valid_nexthop(nexthop) {
            return Err(format!("relay request: invalid next hop \"{}\"", common::text::printable(nexthop, '?')));
        }
        let ids = ids.iter().map(|id| QueueId::parse(id)).collect::<Result<Vec<_>, _>>().map_err(|_| "relay request: invalid queue ID")?;
        self.pending.retain(|_, r| r.expires > now);
        let new = ids.iter().filter(|id| !self.pending.contains_key(id)).count();
        if self.pending.len() + new > LIMIT {
            return Err(format!("relay request: {} relay overrides are waiting already (at most {LIMIT})", self.pending.len()));
        }
        let relay = Relay { site: Arc::new(site), nexthop: nexthop.into(), expires: now + LIFETIME };
        for id in ids {
            self.pending.insert(id, relay.clone());
        }
        Ok(())
    }

    /// The override of `id`, which ends here: the next routing of the message is the usual.
    pub fn take(&mut self, id: &QueueId, now: Instant) -> Option<Relay> {
        self.pending.remove(id).filter(|r| r.expires > now)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("ID{i}")).collect()
    }

    #[test]
    fn used_once_for_the_site_only() {
        let mut r = Relays::default();
        let now = Instant::now();
        r.add("Customer.Example", "[10.0.0.1]:25", &ids(2), now).unwrap();
        let id = QueueId::parse("ID0").unwrap();
        let relay = r.take(&id, now).unwrap();
        assert_eq!(relay.route("u@customer.example"), Some(Route { transport: "smtp".into(), nexthop: "[10.0.0.1]:25".into() }));
        assert_eq!(relay.route("u@CUSTOMER.example"), relay.route("u@customer.example"));
        assert_eq!(relay.route("u@sub.customer.example"), None, "exactly the site, as the flush index lists it");
        assert_eq!(relay.route("u@other.example"), None);
        assert_eq!(r.take(&id, now), None, "consumed");
        assert!(r.take(&QueueId::parse("ID1").unwrap(), now).is_some());
        assert_eq!(r.take(&QueueId::parse("NOSUCH").unwrap(), now), None);
    }

    #[test]
    fn expires() {
        let mut r = Relays::default();
        let now = Instant::now();
        r.add("customer.example", "[10.0.0.1]:25", &ids(1), now).unwrap();
        assert_eq!(r.take(&QueueId::parse("ID0").unwrap(), now + LIFETIME), None);
        // Expired ones make room for new ones.
        r.add("customer.example", "[10.0.0.1]:25", &ids(3), now).unwrap();
        r.add("other.example", "[10.0.0.1]:25", &["X1".to_string()], now + LIFETIME).unwrap();
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn bounded_and_checked() {
        let mut r = Relays::default();
        let now = Instant::now();
        r.add("customer.example", "[10.0.0.1]:25", &ids(LIMIT - 1), now).unwrap();
        // The same IDs again take no more room; two more would pass the limit.
        r.add("customer.example", "[10.0.0.2]:25", &ids(LIMIT - 1), now).unwrap();
        let more = vec!["NEW1".to_string(), "NEW2".to_string()];
        let e = r.add("customer.example", "[10.0.0.1]:25", &more, now).unwrap_err();
        assert!(e.contains("at most 100000"), "{e}");
        assert_eq!(r.len(), LIMIT - 1, "refused whole");
        let mut r = Relays::default();
        for (site, nexthop, id) in [
            ("a..b", "[10.0.0.1]", "ID1"),
            ("customer.example", "", "ID1"),
            ("customer.example", "[10.0.0.1] x", "ID1"),
            ("customer.example", "[10.0.0.1]", "../x"),
        ] {
            assert!(r.add(site, nexthop, &[id.to_string()], now).is_err(), "{site} {nexthop} {id}");
        }
        assert_eq!(r.len(), 0);
    }
}
