//! Per-client limits, as Postfix's anvil(8) keeps them, but inside smtpd: one smtpd process
//! serves every client of its service, so the counts need no server of their own. A client is
//! its IP address. Counts: connections open now, and connections and MAIL commands in the
//! current `anvil_rate_time_unit`. It survives reloads (it is not part of the configuration).
//!
//! The table holds only clients with an open connection or a rate window still running; it is
//! swept when it has doubled since the last sweep, so a flood from many addresses costs memory
//! in proportion to the clients of the last time unit, not of all time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Counts {
    open: u32,
    window_start: Instant,
    connections: u32,
    mails: u32,
}

#[derive(Debug, Default)]
struct Table {
    clients: HashMap<IpAddr, Counts>,
    /// Table size after the last sweep.
    swept_at: usize,
}

/// The per-client counts of one smtpd.
#[derive(Debug, Default)]
pub struct Anvil {
    table: Mutex<Table>,
}

/// One open connection, counted until it is dropped.
#[derive(Debug)]
pub struct Connection {
    anvil: Arc<Anvil>,
    addr: IpAddr,
    /// Connections from this client open now, this one included.
    pub count: u32,
    /// Connections from this client in this time unit, this one included.
    pub rate: u32,
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(c) = self.anvil.lock().clients.get_mut(&self.addr) {
            c.open = c.open.saturating_sub(1);
        }
    }
}

impl Anvil {
    fn lock(&self) -> MutexGuard<'_, Table> {
        // Counts stay usable after a panic elsewhere: they are plain numbers.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Count a new connection from `addr`.
    pub fn connect(self: &Arc<Self>, addr: IpAddr, unit: Duration) -> Connection {
        let now = Instant::now();
        let mut t = self.lock();
        if t.clients.len() >= 2 * t.swept_at.max(512) {
            t.clients.retain(|_, c| c.open > 0 || now.duration_since(c.window_start) < unit);
            t.swept_at = t.clients.len();
        }
        let c = t.clients.entry(addr).or_insert(Counts { open: 0, window_start: now, connections: 0, mails: 0 });
        roll_window(c, now, unit);
        c.open += 1;
        c.connections += 1;
        let (count, rate) = (c.open, c.connections);
        drop(t);
        Connection { anvil: self.clone(), addr, count, rate }
    }

    /// Count a MAIL command from `addr`; the client's rate in this time unit.
    pub fn mail(&self, addr: IpAddr, unit: Duration) -> u32 {
        let now = Instant::now();
        let mut t = self.lock();
        let c = t.clients.entry(addr).or_insert(Counts { open: 0, window_start: now, connections: 0, mails: 0 });
        roll_window(c, now, unit);
        c.mails += 1;
        c.mails
    }
}

/// Start a new time unit when the last one is over.
fn roll_window(c: &mut Counts, now: Instant, unit: Duration) {
    if now.duration_since(c.window_start) >= unit {
        c.window_start = now;
        c.connections = 0;
        c.mails = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_rates_and_sweeps() {
        let anvil = Arc::new(Anvil::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let unit = Duration::from_secs(60);
        let c1 = anvil.connect(a, unit);
        let c2 = anvil.connect(a, unit);
        assert_eq!((c1.count, c1.rate, c2.count, c2.rate), (1, 1, 2, 2));
        drop(c1);
        let c3 = anvil.connect(a, unit);
        assert_eq!((c3.count, c3.rate), (2, 3), "one closed, three in this time unit");
        assert_eq!(anvil.mail(a, unit), 1);
        assert_eq!(anvil.mail(a, unit), 2);
        // A new time unit starts the rates again; the open count stays.
        let c4 = anvil.connect(a, Duration::ZERO);
        assert_eq!((c4.count, c4.rate), (3, 1));
        drop((c2, c3, c4));
        // Many clients that came and went are swept away.
        for i in 0..5000u32 {
            drop(anvil.connect(IpAddr::from(i.to_be_bytes()), Duration::ZERO));
        }
        assert!(anvil.lock().clients.len() <= 1100, "{}", anvil.lock().clients.len());
    }
}
