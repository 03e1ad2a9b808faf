//! The fast flush protocol (Postfix `queue_flush_protocol`): requests to the flush service and
//! its status replies.

use serde::{Deserialize, Serialize};

use super::hello::Protocol;
use crate::queue::ages::Ages;

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
    /// How many queued messages are listed for `site` (exactly that site), without moving
    /// anything (`postqueue -n`). Answered with `Ok`, whose `moved` is then that count; with the
    /// fast flush cluster, a client's request also asks the other nodes, as `SendSite` does, and
    /// `nodes` says how many each of them holds.
    CountSite { site: String },
    /// `qshape -f site` (Postern): the messages counted as `CountSite` counts them, in age
    /// buckets by their arrival time. Answered with `Shaped`; with the fast flush cluster a
    /// client's request also asks the other nodes.
    ShapeSite { site: String, ages: Ages },
    /// Which queue IDs are listed for `site` (exactly that site), without moving anything:
    /// smtpd's ODMR provider delivers them itself on the customer's connection.
    List { site: String },
    /// Drop these IDs from `site`'s logfile when they are in no queue any more (mail an ODMR
    /// session delivered), so that the next `List` costs only what still waits.
    Forget { site: String, queue_ids: Vec<String> },
    /// Ask the other nodes of the fast flush cluster to relay their mail for `site` (exactly
    /// that site) to this node, where an ODMR session for it is under way; moves nothing
    /// here. Answered with `Ok`: `moved` is how many messages the nodes that answered within
    /// `fast_flush_cluster_timeout` are relaying, `nodes` who said how much (this node first,
    /// with 0); without the cluster, or without a connection to it, `moved` is 0.
    HandOver { site: String },
}

/// The flush service's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlushReply {
    /// Done; `moved` messages were moved to the incoming queue. With the fast flush cluster
    /// (`fast_flush_cluster_servers`), a `SendSite` from a client also asks the other nodes:
    /// `moved` is then the total of this node and of every node that answered within
    /// `fast_flush_cluster_timeout`, and `nodes` says who answered with how much (this node
    /// first). Without the cluster `nodes` is empty and not sent, so older peers read the frame.
    Ok {
        moved: u64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        nodes: Vec<NodeMoved>,
    },
    /// A parameter is not valid (Postfix FLUSH_STAT_BAD).
    Bad { reason: String },
    /// The site is not eligible or the service is off (FLUSH_STAT_DENY).
    Deny,
    /// The request could not be carried out (FLUSH_STAT_FAIL).
    Fail { reason: String },
    /// The answer to `List`.
    Listed { ids: Vec<String> },
    /// The answer to `ShapeSite`: one count per age bucket, of every node that answered
    /// (this node's alone without the cluster). With the cluster, `nodes` has each node's
    /// counts (this node first, then the others by name) and `missing` the nodes that were
    /// asked and are not in `nodes`, with why.
    Shaped {
        buckets: Vec<u64>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        nodes: Vec<NodeShape>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        missing: Vec<NodeMissing>,
    },
}

impl FlushReply {
    /// `Ok` for this node alone.
    pub fn ok(moved: u64) -> FlushReply {
        FlushReply::Ok { moved, nodes: Vec::new() }
    }
}

/// How many messages one node of the fast flush cluster moved for a send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMoved {
    /// The node's `fast_flush_cluster_node`.
    pub node: String,
    pub moved: u64,
}

/// One node's answer to a `ShapeSite`: a count per age bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeShape {
    pub node: String,
    pub buckets: Vec<u64>,
}

/// A node of the fast flush cluster whose counts are not in a `Shaped` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMissing {
    pub node: String,
    /// `no answer within 1s`, `refused`, ...
    pub reason: String,
}

pub struct FlushProtocol;

impl Protocol for FlushProtocol {
    const NAME: &'static str = "queue_flush_protocol";
    const VERSION: u32 = 1;
    type Request = FlushRequest;
    type Reply = FlushReply;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply without cluster answers is the frame older clients know, and a frame without
    /// `nodes` still reads.
    #[test]
    fn ok_stays_compatible() {
        assert_eq!(serde_json::to_string(&FlushReply::ok(3)).unwrap(), r#"{"Ok":{"moved":3}}"#);
        let old: FlushReply = serde_json::from_str(r#"{"Ok":{"moved":3}}"#).unwrap();
        assert_eq!(old, FlushReply::ok(3));
        let full = FlushReply::Ok {
            moved: 5,
            nodes: vec![NodeMoved { node: "mx1".into(), moved: 2 }, NodeMoved { node: "mx2".into(), moved: 3 }],
        };
        let text = serde_json::to_string(&full).unwrap();
        assert_eq!(serde_json::from_str::<FlushReply>(&text).unwrap(), full);
    }
}
