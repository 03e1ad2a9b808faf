//! The address verification cache and its rules (Postfix's `verify_query_service`,
//! `verify_update_service` and cache validator), over a [`Store`], with the time passed in so
//! that the rules are tested without waiting.
//!
//! A query answers from the entry while it has not expired (`address_verify_positive_expire_time`
//! for a deliverable address, `address_verify_negative_expire_time` otherwise), and asks for a
//! new probe once the entry is older than the refresh time (`..._refresh_time`): the old answer
//! is still used until the probe's result comes. An address without a usable entry is
//! `Probing`, "Address verification in progress". A probe that got no result within
//! [`PROBE_TTL`] is taken as lost, and the next query sends another. An update never replaces a
//! deliverable entry with a failure (one failed probe does not make a good address bad until
//! the entry expires); with `address_verify_negative_cache = no`, failures are not kept.

use std::time::Duration;

use common::config::{ConfigError, Params};
use common::ipc::verify::AddressStatus;
use common::log_warning;
use common::text::printable;

use crate::entry::{Entry, cache_key};
use crate::store::{Store, StoreError};

/// A probe without a result after this many seconds is taken as lost (Postfix's PROBE_TTL).
pub const PROBE_TTL: u64 = 1000;

/// What the rules read from main.cf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRules {
    pub positive_expire: u64,
    pub positive_refresh: u64,
    pub negative_expire: u64,
    pub negative_refresh: u64,
    pub negative_cache: bool,
}

impl CacheRules {
    pub fn from_params(p: &Params) -> Result<CacheRules, ConfigError> {
        let secs = |name: &str| -> Result<u64, ConfigError> {
            let d: Duration = p.time(name)?;
            // Postfix requires at least 1s for these.
            if d.as_secs() == 0 {
                return Err(ConfigError::value(name, "must be at least 1s"));
            }
            Ok(d.as_secs())
        };
        Ok(CacheRules {
            positive_expire: secs("address_verify_positive_expire_time")?,
            positive_refresh: secs("address_verify_positive_refresh_time")?,
            negative_expire: secs("address_verify_negative_expire_time")?,
            negative_refresh: secs("address_verify_negative_refresh_time")?,
            negative_cache: p.bool("address_verify_negative_cache")?,
        })
    }

    fn expired(&self, e: &Entry, now: u64) -> bool {
        let life = if e.status == AddressStatus::Deliverable { self.positive_expire } else { self.negative_expire };
        e.updated.saturating_add(life) < now
    }

    fn refresh_due(&self, e: &Entry, now: u64) -> bool {
        let every = if e.status == AddressStatus::Deliverable { self.positive_refresh } else { self.negative_refresh };
        e.updated.saturating_add(every) < now
    }

    /// No probe is outstanding (or the outstanding one is taken as lost).
    fn may_probe(e: &Entry, now: u64) -> bool {
        now.saturating_sub(e.probed) > PROBE_TTL
    }
}

/// The answer to a query, and whether a probe must go out for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: AddressStatus,
    pub text: String,
    pub probe: bool,
    /// When the answer's result came (0: none yet), for the entry that records the probe.
    updated: u64,
}

/// A request the cache cannot take.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("address too long for the cache: {0} bytes")]
    TooLong(usize),
    #[error("empty address")]
    Empty,
    #[error("bad recipient status {0:?} for recipient {1}")]
    Status(AddressStatus, String),
}

pub struct Cache {
    pub rules: CacheRules,
    pub store: Store,
}

impl Cache {
    fn key(&self, address: &str) -> Result<String, RequestError> {
        if address.is_empty() {
            return Err(RequestError::Empty);
        }
        let key = cache_key(address);
        if key.len() > self.store.max_key() {
            return Err(RequestError::TooLong(key.len()));
        }
        Ok(key)
    }

    /// What is known of `address` at `now` (seconds since the epoch), and whether to probe it.
    /// A store that cannot be read answers `Deferred`, "Address verification status
    /// unavailable", and sends no probe.
    pub fn query(&mut self, address: &str, now: u64) -> Result<Answer, RequestError> {
        let key = self.key(address)?;
        let raw = match self.store.get(&key) {
            Ok(raw) => raw,
            Err(e) => {
                log_warning!("{e}");
                return Ok(Answer {
                    status: AddressStatus::Deferred,
                    text: "Address verification status unavailable".into(),
                    probe: false,
                    updated: 0,
                });
            }
        };
        let parsed = raw.as_deref().and_then(|r| {
            let e = Entry::parse(r);
            if e.is_none() {
                log_warning!("bad address verify table entry: {}", r.chars().take(100).collect::<String>());
            }
            e
        });
        let entry = match parsed {
            Some(e) if !(CacheRules::may_probe(&e, now) && self.rules.expired(&e, now)) => e,
            _ => {
                if raw.is_some() && !self.rules.negative_cache {
                    warn(self.store.delete(&key));
                }
                Entry { status: AddressStatus::Probing, probed: 0, updated: 0, text: "Address verification in progress".into() }
            }
        };
        let probe = CacheRules::may_probe(&entry, now) && self.rules.refresh_due(&entry, now);
        Ok(Answer { status: entry.status, text: entry.text, probe, updated: entry.updated })
    }

    /// A probe of `address` went out at `now`: remember it, so that other queries do not send
    /// another (unless failures are not cached and nothing is known yet).
    pub fn probe_sent(&mut self, address: &str, answer: &Answer, now: u64) {
        let Ok(key) = self.key(address) else { return };
        if answer.updated != 0 || self.rules.negative_cache {
            let e = Entry { status: answer.status, probed: now, updated: answer.updated, text: answer.text.clone() };
            warn(self.store.put(&key, &e.format()));
        }
    }

    /// A probe's result. A failure does not replace a deliverable entry.
    pub fn update(&mut self, address: &str, status: AddressStatus, text: &str, now: u64) -> Result<(), RequestError> {
        if status == AddressStatus::Probing {
            return Err(RequestError::Status(status, address.to_string()));
        }
        let key = self.key(address)?;
        let current = self.store.get(&key).ok().flatten().and_then(|r| Entry::parse(&r));
        if status == AddressStatus::Deliverable || current.is_none_or(|e| e.status != AddressStatus::Deliverable) {
            let e = Entry { status, probed: 0, updated: now, text: printable(text, '?').into_owned() };
            warn(self.store.put(&key, &e.format()));
        }
        Ok(())
    }

    /// `address_verify_cache_cleanup_interval`: remove entries that are malformed, or expired
    /// with no probe outstanding. Returns how many went.
    pub fn clean(&mut self, now: u64) -> usize {
        let rules = self.rules.clone();
        let removed = self.store.remove_where(|_, raw| match Entry::parse(raw) {
            // Kept while its probe is out or it has not expired.
            Some(e) => now.saturating_sub(e.probed) >= PROBE_TTL && rules.expired(&e, now),
            None => true,
        });
        match removed {
            Ok(n) => n,
            Err(e) => {
                log_warning!("{e}");
                0
            }
        }
    }
}

/// A failed write is a warning: the request is still answered, and the address is probed
/// again later.
fn warn(r: Result<(), StoreError>) {
    if let Err(e) = r {
        log_warning!("{e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86400;

    fn cache(negative_cache: bool) -> Cache {
        let rules = CacheRules {
            positive_expire: 31 * DAY,
            positive_refresh: 7 * DAY,
            negative_expire: 3 * DAY,
            negative_refresh: 3 * 3600,
            negative_cache,
        };
        Cache { rules, store: Store::open("").unwrap() }
    }

    fn ask(c: &mut Cache, addr: &str, now: u64) -> (AddressStatus, String, bool) {
        let a = c.query(addr, now).unwrap();
        if a.probe {
            c.probe_sent(addr, &a, now);
        }
        (a.status, a.text, a.probe)
    }

    const T: u64 = 1_800_000_000;

    #[test]
    fn a_new_address_is_probed_once_then_answered_from_the_cache() {
        let mut c = cache(true);
        let in_progress = (AddressStatus::Probing, "Address verification in progress".to_string(), true);
        assert_eq!(ask(&mut c, "u@x", T), in_progress);
        // The probe is out: no second one, the same answer.
        assert_eq!(ask(&mut c, "u@x", T + 10), (AddressStatus::Probing, in_progress.1.clone(), false));
        c.update("u@x", AddressStatus::Deliverable, "250 2.1.5 Ok", T + 20).unwrap();
        assert_eq!(ask(&mut c, "u@x", T + 30), (AddressStatus::Deliverable, "250 2.1.5 Ok".into(), false));
        // Past the refresh time the old answer is used while a new probe goes out, once.
        let later = T + 20 + 7 * DAY + 1;
        assert_eq!(ask(&mut c, "u@x", later), (AddressStatus::Deliverable, "250 2.1.5 Ok".into(), true));
        assert!(!ask(&mut c, "u@x", later + 5).2);
        // A probe that never came back is taken as lost after PROBE_TTL.
        assert!(ask(&mut c, "u@x", later + PROBE_TTL + 1).2);
        // Past the expiry time, with no probe outstanding, nothing is known any more.
        assert_eq!(ask(&mut c, "u@x", T + 20 + 31 * DAY + 2 * PROBE_TTL).0, AddressStatus::Probing);
    }

    #[test]
    fn failures_are_cached_for_their_own_times_and_never_clobber_a_good_address() {
        let mut c = cache(true);
        ask(&mut c, "bad@x", T);
        c.update("bad@x", AddressStatus::Undeliverable, "host h said: 550 5.1.1 no\r\n", T + 1).unwrap();
        assert_eq!(ask(&mut c, "bad@x", T + 2), (AddressStatus::Undeliverable, "host h said: 550 5.1.1 no??".into(), false));
        assert!(ask(&mut c, "bad@x", T + 1 + 3 * 3600 + 1).2, "refreshed after 3h");
        c.update("good@x", AddressStatus::Deliverable, "250 ok", T).unwrap();
        c.update("good@x", AddressStatus::Undeliverable, "550 no", T + 1).unwrap();
        assert_eq!(ask(&mut c, "good@x", T + 2).0, AddressStatus::Deliverable);
        assert!(c.update("good@x", AddressStatus::Probing, "", T).is_err());
        assert!(matches!(c.query("", T), Err(RequestError::Empty)));
    }

    #[test]
    fn without_negative_caching_failures_are_probed_again() {
        let mut c = cache(false);
        assert!(ask(&mut c, "bad@x", T).2);
        // Nothing was stored for the probe, so every query probes.
        assert!(ask(&mut c, "bad@x", T + 1).2);
        c.update("bad@x", AddressStatus::Undeliverable, "550 no", T + 2).unwrap();
        assert_eq!(ask(&mut c, "bad@x", T + 3).0, AddressStatus::Undeliverable);
    }

    #[test]
    fn cleanup_removes_expired_and_malformed_entries() {
        let mut c = cache(true);
        c.update("old@x", AddressStatus::Undeliverable, "no", T).unwrap();
        c.update("new@x", AddressStatus::Deliverable, "ok", T).unwrap();
        c.store.put("junk@x", "garbage").unwrap();
        assert_eq!(c.clean(T + 4 * DAY), 2);
        assert_eq!(ask(&mut c, "new@x", T + 4 * DAY).0, AddressStatus::Deliverable);
        assert_eq!(c.store.get("junk@x").unwrap(), None);
    }
}
