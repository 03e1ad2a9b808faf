//! The queue listing that `mailq` shows: one entry per queued message, read from the queue
//! files. The showq daemon streams these to clients; `postqueue -p` reads them itself when
//! the mail system is down (as Postfix's postqueue runs showq stand-alone), so both share
//! this code.

use crate::ipc::showq::{QueueEntry, QueueRecipient};
use crate::queue::file::{self, Outcome};
use crate::queue::{QueueId, QueueName, Spool, maildrop};

/// The queues listed, in Postfix's order.
pub const LISTED: [QueueName; 5] = [QueueName::Maildrop, QueueName::Incoming, QueueName::Active, QueueName::Deferred, QueueName::Hold];

/// The listing entry of one queue file, or `None` when it vanished or cannot be read.
/// A maildrop file is read as pickup reads it (`maildrop_cap`): never a FIFO, a link or more
/// than the cap, so that no local user can make the listing block or balloon.
pub fn entry(spool: &Spool, queue: QueueName, id: &QueueId, maildrop_cap: Option<u64>) -> Option<QueueEntry> {
    let path = spool.path(queue, id);
    let qf = if queue == QueueName::Maildrop { maildrop::read(&path, maildrop_cap).ok()?.file } else { file::read(&path).ok()? };
    let recipients = qf
        .pending()
        .map(|(i, r)| QueueRecipient {
            address: r.address.clone(),
            delay_reason: qf.last_result(i).filter(|x| x.outcome == Outcome::Deferred).map(|x| x.text.clone()),
        })
        .collect();
    Some(QueueEntry {
        queue_name: queue.as_str().to_string(),
        queue_id: id.to_string(),
        arrival_time: qf.envelope.arrival_us / 1_000_000,
        message_size: qf.message.len() as u64,
        forced_expire: false,
        sender: qf.envelope.sender.clone(),
        recipients,
    })
}

/// Every entry of the queues in [`LISTED`] order; files that vanish meanwhile are left out.
pub fn entries(spool: &Spool, maildrop_cap: Option<u64>) -> impl Iterator<Item = QueueEntry> + '_ {
    LISTED.into_iter().flat_map(move |queue| {
        let ids = spool.list(queue).unwrap_or_default();
        ids.into_iter().filter_map(move |id| entry(spool, queue, &id, maildrop_cap))
    })
}
