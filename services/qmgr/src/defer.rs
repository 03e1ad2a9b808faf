//! Deferring a message (Postfix's `qmgr_defer` and the backoff of `qmgr_active_done`): when its
//! next attempt is due, moving it to `deferred` with that time as its mtime, and listing it
//! with the flush service for its deferred recipients' domains that are eligible for fast
//! flush.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::ipc::client::Persistent;
use common::ipc::flush::{FlushProtocol, FlushReply, FlushRequest};
use common::log_warning;
use common::queue::file;
use common::queue::{QueueId, QueueName, Spool};

use crate::config::QmgrConfig;

/// The next attempt waits as long as the message has already waited, within
/// [`minimal_backoff_time`, `maximal_backoff_time`] (a maximum below the minimum is the
/// minimum).
pub fn retry_delay(age: Duration, minimal: Duration, maximal: Duration) -> Duration {
    age.clamp(minimal, maximal.max(minimal))
}

/// Worker side: make the recorded results durable, set the retry time and move the file to
/// `deferred`. True when it is there; otherwise it is back in `incoming` (never left in
/// `active`, where only a restart would find it again), its retry time still applying.
pub fn defer_file(spool: &Spool, id: &QueueId, path: &Path, when: SystemTime) -> bool {
    // The recipients' results are made durable once, before the file moves on.
    if let Err(e) = file::sync(path) {
        log_warning!("{id}: {e}");
    }
    if let Err(e) = fs::File::open(path).and_then(|f| f.set_times(fs::FileTimes::new().set_accessed(when).set_modified(when))) {
        log_warning!("{id}: set retry time: {e}");
    }
    if let Err(e) = spool.move_file(id, QueueName::Active, QueueName::Deferred) {
        log_warning!("{id}: move from active to deferred: {e}");
        if let Err(e) = spool.move_file(id, QueueName::Active, QueueName::Incoming) {
            log_warning!("{id}: move from active to incoming: {e}");
        }
        return false;
    }
    true
}

/// The deferred domains that the flush service keeps logfiles for (`fast_flush_domains`).
pub fn flush_sites(cfg: &QmgrConfig, domains: BTreeSet<String>) -> Vec<String> {
    if cfg.fast_flush.is_empty() {
        return Vec::new();
    }
    domains
        .into_iter()
        .filter(|d| {
            // On a lookup error the flush service decides (it answers a temporary failure if
            // it cannot read the table either): dropping the site would lose its logfile entry.
            cfg.fast_flush.matches(d).unwrap_or_else(|e| {
                log_warning!("{e}");
                true
            })
        })
        .collect()
}

/// The connection task of one `Add`: list `id` under `site`, waiting for the flush service up
/// to `ipc_timeout` as Postfix's qmgr does; a failure is only logged (the message is delivered
/// at its retry time anyway).
pub async fn add_to_flush(flush: Arc<Persistent<FlushProtocol>>, ipc_timeout: Duration, id: QueueId, site: String) {
    let req = FlushRequest::Add { site, queue_id: id.to_string() };
    match flush.call(&req, ipc_timeout).await {
        Ok(FlushReply::Ok { .. } | FlushReply::Deny) => {}
        _ => log_warning!("{id}: flush service failure"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::config;

    #[test]
    fn backoff() {
        struct Case {
            name: &'static str,
            age: u64,
            min: u64,
            max: u64,
            want: u64,
        }
        let cases = [
            Case { name: "new mail waits the minimum", age: 10, min: 300, max: 4000, want: 300 },
            Case { name: "as long as it has waited", age: 1000, min: 300, max: 4000, want: 1000 },
            Case { name: "at most the maximum", age: 86400, min: 300, max: 4000, want: 4000 },
            Case { name: "maximum below minimum", age: 86400, min: 300, max: 100, want: 300 },
        ];
        let s = Duration::from_secs;
        for c in &cases {
            assert_eq!(retry_delay(s(c.age), s(c.min), s(c.max)), s(c.want), "{}", c.name);
        }
    }

    #[test]
    fn only_fast_flush_domains_are_listed() {
        let tmp = tempfile::tempdir().unwrap();
        let domains: BTreeSet<String> = ["a.example", "b.example", "c.example"].map(String::from).into();
        let cfg = config(tmp.path(), "fast_flush_domains = a.example, c.example\n");
        assert_eq!(flush_sites(&cfg, domains.clone()), ["a.example", "c.example"]);
        let cfg = config(tmp.path(), "fast_flush_domains =\n");
        assert!(flush_sites(&cfg, domains.clone()).is_empty());
        // A table that cannot be read: the flush service decides, so nothing is dropped here.
        let table = tmp.path().join("flush_domains");
        std::fs::write(&table, "a.example x\n").unwrap();
        let cfg = config(tmp.path(), &format!("fast_flush_domains = texthash:{}\n", table.display()));
        assert_eq!(flush_sites(&cfg, domains.clone()), ["a.example"]);
        std::fs::remove_file(&table).unwrap();
        assert_eq!(flush_sites(&cfg, domains), ["a.example", "b.example", "c.example"]);
    }
}
