//! `qshape -f site`: the ages of one site's queued mail, counted per bucket. The flush index
//! says which messages are listed for the site; each one's arrival time is read from its
//! queue file's envelope (the message is skipped over). That is a read per message, so it
//! runs off the actor's thread (see [`crate::actor::FlushHandle::request`]).

use std::time::{SystemTime, UNIX_EPOCH};

use common::ipc::flush::FlushReply;
use common::queue::ages::Ages;
use common::queue::file::read_envelope;
use common::queue::{QueueId, QueueName, Spool};

/// The messages of one site to shape, taken from the index under the actor.
#[derive(Debug)]
pub struct ShapeJob {
    pub spool: Spool,
    pub ids: Vec<QueueId>,
    pub ages: Ages,
}

impl ShapeJob {
    /// Count each listed message that is still queued (where `CountSite` looks for it) in the
    /// bucket of its age at `now`; one that has gone meanwhile, or cannot be read, is not
    /// counted.
    pub fn run(self, now: SystemTime) -> FlushReply {
        let now = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let mut buckets = vec![0u64; self.ages.buckets()];
        for id in &self.ids {
            let arrival = [QueueName::Deferred, QueueName::Incoming, QueueName::Active]
                .iter()
                .find_map(|q| read_envelope(&self.spool.path(*q, id)).ok())
                .map(|q| q.envelope.arrival_us / 1_000_000);
            if let Some(arrival) = arrival {
                buckets[self.ages.bucket(now.saturating_sub(arrival))] += 1;
            }
        }
        FlushReply::Shaped { buckets, nodes: Vec::new(), missing: Vec::new() }
    }
}
