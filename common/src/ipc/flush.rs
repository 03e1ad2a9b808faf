//! The fast flush protocol (Postfix `queue_flush_protocol`): requests to the flush service and
//! its status replies.

use serde::{Deserialize, Serialize};

use super::hello::Protocol;

/// A request to the flush service. Sites and queue IDs travel as text and are validated by the
/// server, which answers `Bad` for anything that is not a valid name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlushRequest {
    /// Remember that `queue_id` has mail deferred for `site`.
    Add { site: String, queue_id: String },
    /// Deliver the deferred mail of `site` now; with `subdomains`, also of every site below it
    /// (RFC 1985 `ETRN @domain`).
    SendSite {
        site: String,
        #[serde(default)]
        subdomains: bool,
    },
    /// Deliver one deferred message now (sendmail -qI, postqueue -i).
    SendFile { queue_id: String },
    /// Housekeeping: send logfiles not flushed for `fast_flush_refresh_time`, remove old empty ones.
    Refresh,
    /// Send every non-empty logfile.
    Purge,
    /// Which queue IDs are listed for `site` (exactly that site), without moving anything:
    /// smtpd's ODMR provider delivers them itself on the customer's connection.
    List { site: String },
    /// Drop these IDs from `site`'s logfile when they are in no queue any more (mail an ODMR
    /// session delivered), so that the next `List` costs only what still waits.
    Forget { site: String, queue_ids: Vec<String> },
}

/// The flush service's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlushReply {
    /// Done; `moved` messages were moved to the incoming queue.
    Ok { moved: u64 },
    /// A parameter is not valid (Postfix FLUSH_STAT_BAD).
    Bad { reason: String },
    /// The site is not eligible or the service is off (FLUSH_STAT_DENY).
    Deny,
    /// The request could not be carried out (FLUSH_STAT_FAIL).
    Fail { reason: String },
    /// The answer to `List`.
    Listed { ids: Vec<String> },
}

pub struct FlushProtocol;

impl Protocol for FlushProtocol {
    const NAME: &'static str = "queue_flush_protocol";
    const VERSION: u32 = 1;
    type Request = FlushRequest;
    type Reply = FlushReply;
}
