//! The connection cache (`smtp_connection_cache_time_limit`): connections left clean by a
//! transaction are kept, by next hop, for the next delivery to the same next hop. One actix
//! actor owns them and their expiry: a delivery checks a connection out (one message, answered
//! with the newest one still fresh, or none) and back in (one message, not answered). The
//! actor closes connections idle for too long on a timer of its own, with a polite QUIT in a
//! task of its own, so neither a delivery nor the actor waits for a peer that says goodbye
//! slowly. It runs on the thread of the delivery tasks: a checkout wakes no other thread.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;

use common::smtp_client::connection::Connection;

/// How often the actor looks for connections idle for too long.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// An open connection between deliveries.
pub struct Cached {
    pub conn: Connection,
    /// `host[addr]`, for reply texts.
    pub peer: String,
    /// `host[addr]:port`, for the delivery lines.
    pub relay: String,
    /// Transactions on this connection so far (`conn_use=`).
    pub uses: u32,
    /// The server offers DSN (RFC 3461).
    pub dsn: bool,
}

/// Idle entries by next hop, each with the moment it went idle; the newest is reused first.
/// The time is a parameter, so the rules are tested without a clock.
struct IdleList<T> {
    by_hop: HashMap<String, Vec<(T, Instant)>>,
}

impl<T> IdleList<T> {
    fn new() -> IdleList<T> {
        IdleList { by_hop: HashMap::new() }
    }

    fn put(&mut self, nexthop: String, item: T, now: Instant) {
        self.by_hop.entry(nexthop).or_default().push((item, now));
    }

    /// The newest entry for `nexthop` idle for less than `limit`. The older ones of that next
    /// hop that are past the limit are dropped on the way (closed without QUIT).
    fn take(&mut self, nexthop: &str, now: Instant, limit: Duration) -> Option<T> {
        let list = self.by_hop.get_mut(nexthop)?;
        list.retain(|(_, since)| now.saturating_duration_since(*since) < limit);
        let item = list.pop().map(|(item, _)| item);
        if list.is_empty() {
            self.by_hop.remove(nexthop);
        }
        item
    }

    /// Remove and return every entry idle for `limit` or longer.
    fn expire(&mut self, now: Instant, limit: Duration) -> Vec<T> {
        let mut stale = Vec::new();
        for list in self.by_hop.values_mut() {
            let (old, keep): (Vec<_>, Vec<_>) = list.drain(..).partition(|(_, since)| now.saturating_duration_since(*since) >= limit);
            *list = keep;
            stale.extend(old.into_iter().map(|(item, _)| item));
        }
        self.by_hop.retain(|_, list| !list.is_empty());
        stale
    }
}

struct CacheActor {
    idle: IdleList<Cached>,
    /// `smtp_connection_cache_time_limit`, as of the last reload.
    limit: Duration,
    /// `smtp_quit_timeout`, as of the last reload.
    quit_timeout: Duration,
}

impl Actor for CacheActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(SWEEP_INTERVAL, |act, _| {
            for c in act.idle.expire(Instant::now(), act.limit) {
                actix_rt::spawn(quit(c, act.quit_timeout));
            }
        });
    }
}

/// Say goodbye on a connection nobody will use again, within `smtp_quit_timeout`; a peer that
/// does not answer in time is simply left, and the connection closes either way.
async fn quit(mut c: Cached, timeout: Duration) {
    c.conn.timeout = timeout;
    let _ = c.conn.command("QUIT").await;
}

#[derive(Message)]
#[rtype(result = "Option<Cached>")]
struct CheckOut(String);

impl Handler<CheckOut> for CacheActor {
    type Result = Option<Cached>;
    fn handle(&mut self, msg: CheckOut, _: &mut Context<Self>) -> Option<Cached> {
        self.idle.take(&msg.0, Instant::now(), self.limit)
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct CheckIn {
    nexthop: String,
    conn: Cached,
}

impl Handler<CheckIn> for CacheActor {
    type Result = ();
    fn handle(&mut self, msg: CheckIn, _: &mut Context<Self>) {
        self.idle.put(msg.nexthop, msg.conn, Instant::now());
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct SetTimeLimits {
    limit: Duration,
    quit_timeout: Duration,
}

impl Handler<SetTimeLimits> for CacheActor {
    type Result = ();
    fn handle(&mut self, msg: SetTimeLimits, _: &mut Context<Self>) {
        self.limit = msg.limit;
        self.quit_timeout = msg.quit_timeout;
    }
}

/// The only way other code reaches the cache.
#[derive(Clone)]
pub struct ConnCache {
    addr: Addr<CacheActor>,
}

impl ConnCache {
    /// Start the cache on the current arbiter, keeping idle connections for `limit`
    /// (`smtp_connection_cache_time_limit`) and giving each `quit_timeout` for its QUIT.
    /// Must be called inside an actix `System`.
    pub fn start(limit: Duration, quit_timeout: Duration) -> ConnCache {
        ConnCache { addr: CacheActor { idle: IdleList::new(), limit, quit_timeout }.start() }
    }

    /// The newest idle connection to `nexthop` that is still fresh, if any. It belongs to the
    /// caller until it is checked in again (or dropped, when it is no longer clean).
    pub async fn check_out(&self, nexthop: &str) -> Option<Cached> {
        // A stopped actor has no connections: the caller connects afresh.
        self.addr.send(CheckOut(nexthop.to_string())).await.ok().flatten()
    }

    /// Keep a connection in a clean state for the next delivery to `nexthop`.
    pub fn check_in(&self, nexthop: &str, conn: Cached) {
        self.addr.do_send(CheckIn { nexthop: nexthop.to_string(), conn });
    }

    /// A reload's `smtp_connection_cache_time_limit` and `smtp_quit_timeout`; they apply to
    /// the connections already kept too.
    pub fn set_time_limits(&self, limit: Duration, quit_timeout: Duration) {
        self.addr.do_send(SetTimeLimits { limit, quit_timeout });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_entries_by_next_hop() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut idle = IdleList::new();
        idle.put("a".into(), 1, t0);
        idle.put("a".into(), 2, t0 + s(5));
        idle.put("b".into(), 3, t0);
        // The newest first; another next hop's entries are never handed out.
        assert_eq!(idle.take("a", t0 + s(6), s(10)), Some(2));
        assert_eq!(idle.take("c", t0 + s(6), s(10)), None);
        // Past the limit: dropped on the way, not handed out.
        assert_eq!(idle.take("a", t0 + s(10), s(10)), None);
        assert!(!idle.by_hop.contains_key("a"));
        // A limit of zero keeps nothing for reuse.
        idle.put("a".into(), 4, t0 + s(10));
        assert_eq!(idle.take("a", t0 + s(10), Duration::ZERO), None);

        idle.put("a".into(), 5, t0 + s(8));
        let mut stale = idle.expire(t0 + s(10), s(10));
        stale.sort();
        assert_eq!(stale, vec![3]);
        assert_eq!(idle.expire(t0 + s(18), s(10)), vec![5]);
        assert!(idle.by_hop.is_empty());
    }

    /// A real connection to a local peer, and the peer's end of it.
    async fn connection() -> (Cached, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (peer, _) = listener.accept().await.unwrap();
        let conn = Connection::new(stream, Duration::from_secs(10));
        (Cached { conn, peer: "peer[127.0.0.1]".into(), relay: "peer[127.0.0.1]:25".into(), uses: 1, dsn: false }, peer)
    }

    #[actix_rt::test]
    async fn check_out_what_was_checked_in() {
        let cache = ConnCache::start(Duration::from_secs(60), Duration::from_secs(2));
        assert!(cache.check_out("[127.0.0.1]:25").await.is_none());
        let (c, _peer) = connection().await;
        cache.check_in("[127.0.0.1]:25", Cached { uses: 3, ..c });
        assert!(cache.check_out("[127.0.0.2]:25").await.is_none());
        let back = cache.check_out("[127.0.0.1]:25").await.expect("the connection checked in");
        assert_eq!((back.uses, back.relay.as_str()), (3, "peer[127.0.0.1]:25"));
        assert!(cache.check_out("[127.0.0.1]:25").await.is_none(), "checked out once only");
    }

    /// The actor's own timer closes a connection past the limit with a QUIT (the limit as set
    /// by a reload), while a delivery never sees it.
    #[actix_rt::test]
    async fn idle_connections_are_closed_with_quit() {
        use tokio::io::AsyncReadExt;
        let cache = ConnCache::start(Duration::from_secs(3600), Duration::from_secs(2));
        let (c, mut peer) = connection().await;
        cache.check_in("[127.0.0.1]:25", c);
        cache.set_time_limits(Duration::ZERO, Duration::from_secs(2));
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while !got.ends_with(b"\r\n") && got.len() < 64 {
            let n = tokio::time::timeout(Duration::from_secs(10), peer.read(&mut buf))
                .await
                .expect("a QUIT within the sweep interval")
                .unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"QUIT\r\n");
        assert!(cache.check_out("[127.0.0.1]:25").await.is_none());
    }
}
