//! The queue listing protocol: the client asks once, the server streams one frame per queued
//! message and then `End` (a large queue would not fit in one frame).

use serde::{Deserialize, Serialize};

use super::hello::Protocol;

/// One recipient still to be delivered, with the reason of its last deferral.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRecipient {
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_reason: Option<String>,
}

/// One queued message, with Postfix's `postqueue -j` field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub queue_name: String,
    pub queue_id: String,
    /// Seconds since the epoch.
    pub arrival_time: u64,
    pub message_size: u64,
    pub forced_expire: bool,
    pub sender: String,
    pub recipients: Vec<QueueRecipient>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShowqRequest {
    List,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShowqItem {
    Entry(QueueEntry),
    End,
    /// The client may not see the queue.
    Denied {
        reason: String,
    },
}

pub struct ShowqProtocol;

impl Protocol for ShowqProtocol {
    const NAME: &'static str = "queue_listing_protocol";
    const VERSION: u32 = 1;
    type Request = ShowqRequest;
    type Reply = ShowqItem;
}
