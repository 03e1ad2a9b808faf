//! The trigger protocol of the queue manager and pickup (Postfix's `I D A F W` bytes written to
//! a fifo), as typed messages with an acknowledgement. Clients: [`super::trigger_client`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::hello::Protocol;

/// How long a trigger server (the queue manager, pickup) waits for a client's request:
/// Postfix's trigger server waits 10 seconds too (`read_wait(fd, 10)` in trigger_server.c),
/// with no parameter for it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One trigger. Several are sent together; modifiers apply before the scans they accompany.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Trigger {
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

/// The trigger protocol: the client sends one `Vec<Trigger>`, the server answers `Accepted`
/// once it has recorded them.
pub struct TriggerProtocol;

/// Acknowledgement of a trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TriggerReply {
    Accepted,
    /// The client's user may not force this work (`F`, `A`, `D` need root, `mail_owner` or a
    /// user in `authorized_flush_users`), or the queue manager cannot take the request (a
    /// relay request it has no room for, see [`super::qmgr`]); nothing was recorded.
    Denied {
        reason: String,
    },
}

impl Trigger {
    /// Triggers that force work the queue would otherwise do later (Postfix's `postqueue -f`):
    /// only users allowed to flush the queue may send them.
    pub fn forces_work(self) -> bool {
        matches!(self, Trigger::ScanDeferred | Trigger::IgnoreTimestamps | Trigger::ForgetDeadSites)
    }
}

impl Protocol for TriggerProtocol {
    const NAME: &'static str = "queue_trigger_protocol";
    const VERSION: u32 = 1;
    type Request = Vec<Trigger>;
    type Reply = TriggerReply;
}
