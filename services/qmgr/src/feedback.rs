//! Concurrency feedback and dead routes (Postfix's `qmgr_feedback` and its dead-site
//! throttle): how many requests a route may have in flight, and which routes are suspended
//! after a failure.
//!
//! A route starts with `initial_destination_concurrency` requests in flight (slow start); each
//! request that ends without a site failure widens its window by one, up to
//! `default_destination_concurrency_limit`. A site failure (a failed connection, a dead or
//! silent agent) narrows it to the start again and suspends the route for
//! `minimal_backoff_time`: its queued recipients are deferred meanwhile. `postqueue -f`
//! (`ForgetDeadSites`) lifts every suspension at once.

use std::collections::HashMap;
use std::time::Instant;

use crate::config::Route;

/// The per-route windows and suspensions. Pure state: the caller passes the clock and limits,
/// so the rules are tested without waiting.
#[derive(Debug, Default)]
pub struct Feedback {
    /// Routes whose window has grown (or been reset); absent means the initial window.
    window: HashMap<Route, usize>,
    /// Suspended routes: until when, and the failure that suspended them.
    dead: HashMap<Route, (Instant, String)>,
}

/// The concurrency limits from main.cf.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `initial_destination_concurrency`.
    pub initial: usize,
    /// `default_destination_concurrency_limit`.
    pub limit: usize,
}

impl Feedback {
    /// Requests `route` may have in flight now.
    pub fn window(&self, route: &Route, l: Limits) -> usize {
        self.window.get(route).copied().unwrap_or(l.initial).min(l.limit)
    }

    /// A request on `route` ended without a site failure: one more may run at once.
    pub fn success(&mut self, route: Route, l: Limits) {
        let w = self.window.entry(route).or_insert(l.initial);
        *w = (*w + 1).min(l.limit);
    }

    /// A request on `route` failed at the site: start slow again, and suspend the route
    /// until `until` with `why` as the reason given to its deferred recipients.
    pub fn failure(&mut self, route: Route, why: String, until: Instant) {
        self.window.remove(&route);
        self.dead.insert(route, (until, why));
    }

    /// Why `route` is suspended at `now`, if it is; a suspension that has run out is forgotten.
    pub fn dead(&mut self, route: &Route, now: Instant) -> Option<String> {
        match self.dead.get(route) {
            Some((until, why)) if *until > now => Some(why.clone()),
            Some(_) => {
                self.dead.remove(route);
                None
            }
            None => None,
        }
    }

    /// `ForgetDeadSites`: every route may be tried again at once.
    pub fn forget_dead(&mut self) {
        self.dead.clear();
    }

    /// One message asked to be delivered now (`postqueue -i`): its route may be tried again.
    pub fn forget(&mut self, route: &Route) {
        self.dead.remove(route);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn route(nexthop: &str) -> Route {
        Route { transport: "smtp".into(), nexthop: nexthop.into() }
    }

    const LIMITS: Limits = Limits { initial: 2, limit: 5 };

    #[test]
    fn slow_start_grows_by_one_per_success_up_to_the_limit() {
        let mut f = Feedback::default();
        let r = route("a.example");
        let mut seen = vec![f.window(&r, LIMITS)];
        for _ in 0..5 {
            f.success(r.clone(), LIMITS);
            seen.push(f.window(&r, LIMITS));
        }
        assert_eq!(seen, [2, 3, 4, 5, 5, 5]);
        // Another route is not affected; a lower limit after a reload applies at once.
        assert_eq!(f.window(&route("b.example"), LIMITS), 2);
        assert_eq!(f.window(&r, Limits { initial: 2, limit: 3 }), 3);
    }

    #[test]
    fn a_site_failure_suspends_the_route_and_restarts_slow() {
        let mut f = Feedback::default();
        let (r, other) = (route("a.example"), route("b.example"));
        let now = Instant::now();
        f.success(r.clone(), LIMITS);
        f.success(r.clone(), LIMITS);
        f.failure(r.clone(), "connect refused".into(), now + Duration::from_secs(300));
        assert_eq!(f.window(&r, LIMITS), 2);
        assert_eq!(f.dead(&r, now).as_deref(), Some("connect refused"));
        assert_eq!(f.dead(&r, now + Duration::from_secs(299)).as_deref(), Some("connect refused"));
        assert_eq!(f.dead(&other, now), None);
        // Once the suspension has run out the route is tried again, and stays forgotten.
        assert_eq!(f.dead(&r, now + Duration::from_secs(300)), None);
        assert_eq!(f.dead(&r, now), None);
    }

    #[test]
    fn forget_dead_sites_lifts_every_suspension() {
        let mut f = Feedback::default();
        let now = Instant::now();
        for h in ["a.example", "b.example"] {
            f.failure(route(h), "down".into(), now + Duration::from_secs(300));
        }
        f.forget_dead();
        assert_eq!(f.dead(&route("a.example"), now), None);
        assert_eq!(f.dead(&route("b.example"), now), None);
    }
}
