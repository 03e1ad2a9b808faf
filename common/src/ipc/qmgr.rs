//! Queue manager triggers (Postfix's `I D A F W` bytes) as a typed, one-way message.

use serde::{Deserialize, Serialize};

use super::hello::Protocol;

/// One trigger. Several are sent together; modifiers apply before the scans they accompany.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum QmgrTrigger {
    /// `I`: scan the incoming queue.
    ScanIncoming,
    /// `D`: scan the deferred queue.
    ScanDeferred,
    /// `A`: ignore future timestamps in the next scans.
    IgnoreTimestamps,
    /// `F`: forget dead sites and override `defer_transports` for the next scans.
    ForgetDeadSites,
    /// `W`: wakeup, the same as `I`.
    Wakeup,
}

/// The queue manager's trigger protocol: the client sends one `Vec<QmgrTrigger>`, the server
/// answers `Accepted` once it has recorded them.
pub struct QmgrProtocol;

/// Acknowledgement of a trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TriggerReply {
    Accepted,
    /// The client's user may not force this work (`F`, `A`, `D` need root, `mail_owner` or a
    /// user in `authorized_flush_users`); nothing was recorded.
    Denied {
        reason: String,
    },
}

impl QmgrTrigger {
    /// Triggers that force work the queue would otherwise do later (Postfix's `postqueue -f`):
    /// only users allowed to flush the queue may send them.
    pub fn forces_work(self) -> bool {
        matches!(self, QmgrTrigger::ScanDeferred | QmgrTrigger::IgnoreTimestamps | QmgrTrigger::ForgetDeadSites)
    }
}

impl Protocol for QmgrProtocol {
    const NAME: &'static str = "queue_trigger_protocol";
    const VERSION: u32 = 1;
    type Request = Vec<QmgrTrigger>;
    type Reply = TriggerReply;
}
