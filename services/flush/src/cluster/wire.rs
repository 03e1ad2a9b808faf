//! What the fast flush cluster's nodes say to each other over NATS, and the tally of the answers
//! to one request. JSON, like the local protocol; everything that arrives is checked (it comes
//! from whoever may publish on the subject), and nothing here does I/O.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use common::ipc::flush::{FlushReply, NodeMoved};

/// Largest request or answer read (far above any real one: a node name and a site).
const MAX_MESSAGE: usize = 4096;

/// "Send this site" (or, with `count`, "how much mail do you hold for it"): published on
/// `fast_flush_cluster_subject` with a reply subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRequest {
    /// The asking node (its own subscription hears the request too, and ignores it).
    pub node: String,
    pub site: String,
    #[serde(default)]
    pub subdomains: bool,
    /// Count the site's queued mail, move nothing (`postqueue -n`).
    #[serde(default)]
    pub count: bool,
    /// Relay your mail for the site to me (an ODMR session for it is under way here). Where
    /// to is the answering node's own setting for the asking node
    /// (`fast_flush_cluster_relay_maps`), never part of the request.
    #[serde(default)]
    pub handover: bool,
}

/// One node's answer: how many messages it moved, or why it could not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendAnswer {
    pub node: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Moved(u64),
    /// Not eligible there (`fast_flush_domains`), or a bad site.
    Refused,
    Failed(String),
}

impl Outcome {
    /// What a node's own flush said, as an answer.
    pub fn of(reply: &FlushReply) -> Outcome {
        match reply {
            FlushReply::Ok { moved, .. } => Outcome::Moved(*moved),
            FlushReply::Deny | FlushReply::Bad { .. } => Outcome::Refused,
            FlushReply::Fail { reason } => Outcome::Failed(reason.clone()),
            FlushReply::Listed { .. } => Outcome::Failed("unexpected reply".into()),
        }
    }
}

/// Why a message from the cluster was not used.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("message of {0} bytes is too long")]
    TooLong(usize),
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
}

pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // Plain structs of strings and numbers: serializing cannot fail.
    serde_json::to_vec(msg).unwrap_or_default()
}

pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, WireError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(WireError::TooLong(bytes.len()));
    }
    Ok(serde_json::from_slice(bytes)?)
}

/// The answers to one request, this node's own count first.
#[derive(Debug)]
pub struct Tally {
    own: NodeMoved,
    answered: Vec<NodeMoved>,
    /// Nodes that answered with a refusal or failure (they count as heard from, moved nothing).
    unable: Vec<(String, String)>,
    /// `fast_flush_cluster_members` other than this node: who is still awaited.
    awaited: Vec<String>,
    /// Whether there is a member list at all.
    listed: bool,
}

impl Tally {
    pub fn new(own_node: &str, peers: &[String]) -> Tally {
        Tally {
            own: NodeMoved { node: own_node.to_string(), moved: 0 },
            answered: Vec::new(),
            unable: Vec::new(),
            awaited: peers.to_vec(),
            listed: !peers.is_empty(),
        }
    }

    fn heard(&self, node: &str) -> bool {
        node == self.own.node || self.answered.iter().any(|a| a.node == node) || self.unable.iter().any(|(n, _)| n == node)
    }

    /// Take one answer; a second answer from the same node (or one claiming to be this node) is
    /// dropped, so nothing is counted twice.
    pub fn add(&mut self, answer: SendAnswer) {
        if self.heard(&answer.node) {
            return;
        }
        self.awaited.retain(|n| *n != answer.node);
        match answer.outcome {
            Outcome::Moved(moved) => {
                self.answered.push(NodeMoved { node: answer.node, moved });
                // By name, not by arrival: the same fleet gives the same reply and log line.
                self.answered.sort_by(|a, b| a.node.cmp(&b.node));
            }
            Outcome::Refused => self.unable.push((answer.node, "refused".into())),
            Outcome::Failed(reason) => self.unable.push((answer.node, reason)),
        }
    }

    /// Every listed member has answered (never true without a member list).
    pub fn complete(&self) -> bool {
        self.listed && self.awaited.is_empty()
    }

    /// Merge this node's own reply: the total and who answered, when it succeeded; otherwise
    /// the local reply stands as it is.
    pub fn reply(mut self, local: FlushReply) -> FlushReply {
        match local {
            FlushReply::Ok { moved, .. } => {
                self.own.moved = moved;
                let total = moved + self.answered.iter().map(|a| a.moved).sum::<u64>();
                let mut nodes = vec![self.own];
                nodes.extend(self.answered);
                FlushReply::Ok { moved: total, nodes }
            }
            other => other,
        }
    }

    /// The info line for the log (`verb` is `send` or `count`): who answered with how much, who
    /// could not, who is missing.
    pub fn log_line(&self, verb: &str, site: &str, local: &FlushReply, timeout: Duration) -> String {
        let own = match local {
            FlushReply::Ok { moved, .. } => moved.to_string(),
            _ => "failed".into(),
        };
        let total = match local {
            FlushReply::Ok { moved, .. } => (moved + self.answered.iter().map(|a| a.moved).sum::<u64>()).to_string(),
            _ => "unknown".into(),
        };
        let mut line = format!("cluster {verb} {site}: {total} messages; answered: {}={own}", self.own.node);
        for a in &self.answered {
            line.push_str(&format!(", {}={}", a.node, a.moved));
        }
        for (node, why) in &self.unable {
            line.push_str(&format!(", {node}=({why})"));
        }
        if !self.awaited.is_empty() {
            line.push_str(&format!("; no answer within {}s from: {}", timeout.as_secs(), self.awaited.join(", ")));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moved(node: &str, n: u64) -> SendAnswer {
        SendAnswer { node: node.into(), outcome: Outcome::Moved(n) }
    }

    #[test]
    fn total_and_nodes() {
        let mut t = Tally::new("mx1", &["mx2".into(), "mx3".into()]);
        t.add(moved("mx3", 5));
        assert!(!t.complete());
        t.add(moved("mx3", 5));
        t.add(moved("mx1", 100));
        t.add(moved("mx2", 4));
        assert!(t.complete());
        let line = t.log_line("send", "example.net", &FlushReply::ok(2), Duration::from_secs(1));
        assert_eq!(line, "cluster send example.net: 11 messages; answered: mx1=2, mx2=4, mx3=5");
        let FlushReply::Ok { moved, nodes } = t.reply(FlushReply::ok(2)) else { panic!() };
        assert_eq!(moved, 11);
        assert_eq!(nodes.iter().map(|n| (n.node.as_str(), n.moved)).collect::<Vec<_>>(), [("mx1", 2), ("mx2", 4), ("mx3", 5)]);
    }

    #[test]
    fn missing_and_failed_nodes_are_told() {
        let mut t = Tally::new("mx1", &["mx2".into(), "mx3".into()]);
        t.add(SendAnswer { node: "mx2".into(), outcome: Outcome::Failed("disk".into()) });
        let line = t.log_line("count", "example.net", &FlushReply::ok(1), Duration::from_secs(1));
        assert_eq!(line, "cluster count example.net: 1 messages; answered: mx1=1, mx2=(disk); no answer within 1s from: mx3");
        assert_eq!(t.reply(FlushReply::Deny), FlushReply::Deny);
    }

    #[test]
    fn without_members_it_waits_for_the_deadline() {
        let mut t = Tally::new("mx1", &[]);
        t.add(moved("mx2", 1));
        assert!(!t.complete());
    }

    #[test]
    fn hostile_messages_are_errors() {
        assert!(decode::<SendRequest>(b"{").is_err());
        assert!(decode::<SendRequest>(&vec![b' '; MAX_MESSAGE + 1]).is_err());
        assert!(decode::<SendAnswer>(br#"{"node":"x","outcome":{"Moved":-1}}"#).is_err());
        let req = SendRequest { node: "mx1".into(), site: "example.net".into(), subdomains: true, count: false, handover: false };
        assert_eq!(decode::<SendRequest>(&encode(&req)).unwrap(), req);
        let old = decode::<SendRequest>(br#"{"node":"mx1","site":"example.net"}"#).unwrap();
        assert!(!old.subdomains && !old.count && !old.handover, "a request without the fields is a plain send");
        let before_handover = decode::<SendRequest>(br#"{"node":"mx1","site":"example.net","subdomains":false,"count":true}"#).unwrap();
        assert!(before_handover.count && !before_handover.handover);
        let handover = SendRequest { handover: true, subdomains: false, ..req };
        assert_eq!(decode::<SendRequest>(&encode(&handover)).unwrap(), handover);
        // A request cannot say where the mail goes: an address in it is not part of the frame.
        let with_address = br#"{"node":"mx1","site":"example.net","handover":true,"nexthop":"[192.0.2.9]:25"}"#;
        assert_eq!(decode::<SendRequest>(with_address).unwrap(), handover);
    }
}
