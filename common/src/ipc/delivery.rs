//! Delivery requests from the queue manager to a delivery agent (`smtp`), and the agent's
//! per-recipient results. The agent reads the message from the queue file itself.

use serde::{Deserialize, Serialize};

use super::hello::Protocol;
use crate::queue::file::Outcome;
use crate::queue::{QueueId, QueueName};

/// One recipient to deliver: its index in the queue file and its address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecipient {
    pub index: usize,
    pub address: String,
}

/// Deliver some recipients of one message to one next hop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRequest {
    pub queue_id: QueueId,
    /// The queue the file is in while being delivered (`active`).
    pub queue: QueueName,
    /// `[host]:port`, `[host]`, `host:port` or `host` (MX lookup).
    pub nexthop: String,
    pub sender: String,
    pub recipients: Vec<DeliveryRecipient>,
    /// Arrival time and the time the queue manager took the message, microseconds since the
    /// epoch, for the `delay=` and `delays=` log fields.
    pub arrival_us: u64,
    pub active_us: u64,
    /// The sender asked for SMTPUTF8 (the queue file's envelope says so).
    #[serde(default)]
    pub smtputf8: bool,
    /// An address verification probe: MAIL and RCPT only, never DATA; each result goes to the
    /// verify service and is logged as `status=deliverable` or `status=undeliverable`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verify_probe: bool,
}

/// What happened to one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryResult {
    pub index: usize,
    pub outcome: Outcome,
    pub dsn: String,
    /// The remote reply or the local reason.
    pub text: String,
    /// True when the next hop itself failed (connection, greeting): the queue manager then
    /// treats the destination as dead for a while.
    pub site_failure: bool,
    /// Sent to a next hop that offers DSN: it got the recipient's NOTIFY and reports success
    /// itself, so no success notice is due here (Postfix's `smtp_rcpt_done`).
    #[serde(default)]
    pub dsn_passed_on: bool,
    /// `host[addr]:port` of the next hop that took it (`delivery via ...` in a success notice);
    /// empty when none did.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub relay: String,
}

/// The agent's answer: one result per requested recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryReply {
    pub results: Vec<DeliveryResult>,
}

pub struct DeliveryProtocol;

impl Protocol for DeliveryProtocol {
    const NAME: &'static str = "delivery_request_protocol";
    const VERSION: u32 = 1;
    type Request = DeliveryRequest;
    type Reply = DeliveryReply;
}
