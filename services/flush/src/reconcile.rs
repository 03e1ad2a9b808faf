//! The start-up scan of the deferred queue that makes the seed's "run sendmail -q first" step
//! unnecessary: every pending recipient's domain of every deferred message is reported, and the
//! actor adds what its logfiles miss and drops what is gone. Runs on its own thread, so the
//! service answers requests while a large queue is read.

use std::time::{Duration, Instant};

use common::domain::{Site, lookup_domain};
use common::log_warning;
use common::queue::file;
use common::queue::{QueueId, QueueName, Spool};

/// What the start-up scan found.
#[derive(Debug, Default)]
pub struct Scan {
    /// (site, queue ID) for every pending recipient of every readable deferred message.
    pub found: Vec<(Site, QueueId)>,
    /// Deferred messages listed.
    pub messages: usize,
    /// How long listing and reading them took.
    pub took: Duration,
}

/// Scan the deferred queue: every pending recipient's site of every readable message.
pub fn scan_deferred(spool: &Spool) -> Scan {
    let started = Instant::now();
    let ids = match spool.list(QueueName::Deferred) {
        Ok(ids) => ids,
        Err(e) => {
            log_warning!("scan {}: {e}", spool.queue_dir(QueueName::Deferred).display());
            return Scan::default();
        }
    };
    let messages = ids.len();
    let mut out = Vec::new();
    for id in ids {
        // Unreadable or torn files are the queue manager's to quarantine; skip them here. Only
        // the envelope is read: a deferred queue of large messages costs no more than a small.
        let Ok(qf) = file::read_envelope(&spool.path(QueueName::Deferred, &id)) else {
            continue;
        };
        let mut sites: Vec<Site> = qf.pending().filter_map(|(_, r)| Site::parse(&lookup_domain(&r.address)).ok()).collect();
        sites.sort();
        sites.dedup();
        out.extend(sites.into_iter().map(|s| (s, id.clone())));
    }
    Scan { found: out, messages, took: started.elapsed() }
}
