//! What the fast flush cluster's nodes say to each other over NATS, and the tally of the answers
//! to one request. JSON, like the local protocol; everything that arrives is checked (it comes
//! from whoever may publish on the subject), and nothing here does I/O.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use common::ipc::flush::{FlushReply, NodeMissing, NodeMoved, NodeShape};
use common::queue::ages::Ages;

/// Largest request or answer read (far above any real one: a node name, a site, at most 64
/// bucket counts for a shape: under 1.5 kB).
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
    /// Count it in these age buckets (`qshape -f`), moving nothing; sent with `count` set,
    /// so that a node that does not know the field counts instead of sending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<Ages>,
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
    /// The answer to a shape: a count per age bucket.
    Shaped(Vec<u64>),
    /// Not eligible there (`fast_flush_domains`), or a bad site.
    Refused,
    Failed(String),
}

impl Outcome {
    /// What a node's own flush said, as an answer.
    pub fn of(reply: &FlushReply) -> Outcome {
        match reply {
            FlushReply::Ok { moved, .. } => Outcome::Moved(*moved),
            FlushReply::Shaped { buckets, .. } => Outcome::Shaped(buckets.clone()),
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

/// A node's messages over all its buckets (a hostile node's counts cannot overflow it).
fn sum(buckets: &[u64]) -> u64 {
    buckets.iter().fold(0, |sum, n| sum.saturating_add(*n))
}

/// The answers to one request, this node's own count first.
#[derive(Debug)]
pub struct Tally {
    own: NodeMoved,
    answered: Vec<NodeMoved>,
    /// The age buckets of the nodes in `answered` that answered a shape with them.
    shapes: Vec<NodeShape>,
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
            shapes: Vec::new(),
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
        let moved = match answer.outcome {
            Outcome::Moved(moved) => moved,
            // Counted as the sum of its buckets, which a shape's reply then shows.
            Outcome::Shaped(buckets) => {
                let moved = sum(&buckets);
                self.shapes.push(NodeShape { node: answer.node.clone(), buckets });
                moved
            }
            Outcome::Refused => return self.unable.push((answer.node, "refused".into())),
            Outcome::Failed(reason) => return self.unable.push((answer.node, reason)),
        };
        self.answered.push(NodeMoved { node: answer.node, moved });
        // By name, not by arrival: the same fleet gives the same reply and log line.
        self.answered.sort_by(|a, b| a.node.cmp(&b.node));
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

    /// Merge this node's own `Shaped` reply: every node's buckets (this node first, the
    /// others by name) and their sums, and who is not in the table, with why; any other
    /// local reply stands as it is.
    pub fn shaped(self, local: FlushReply, timeout: Duration) -> FlushReply {
        let FlushReply::Shaped { buckets: own, .. } = local else { return local };
        let mut total = own.clone();
        let mut nodes = vec![NodeShape { node: self.own.node, buckets: own }];
        let mut missing = Vec::new();
        let mut gone = |node: String, reason: String| missing.push(NodeMissing { node, reason });
        for a in self.answered {
            match self.shapes.iter().find(|s| s.node == a.node) {
                // A node answers with the buckets asked for, or its answer is not used.
                Some(s) if s.buckets.len() == total.len() => {
                    for (t, n) in total.iter_mut().zip(&s.buckets) {
                        *t = t.saturating_add(*n);
                    }
                    nodes.push(s.clone());
                }
                Some(s) => gone(a.node, format!("{} buckets answered for {}", s.buckets.len(), total.len())),
                None => gone(a.node, format!("answered a count without ages ({} messages): an older version", a.moved)),
            }
        }
        for (node, why) in self.unable {
            gone(node, why);
        }
        for node in self.awaited {
            gone(node, format!("no answer within {}s", timeout.as_secs()));
        }
        FlushReply::Shaped { buckets: total, nodes, missing }
    }

    /// The info line for the log (`verb` is `send` or `count`): who answered with how much, who
    /// could not, who is missing.
    pub fn log_line(&self, verb: &str, site: &str, local: &FlushReply, timeout: Duration) -> String {
        let own = match local {
            FlushReply::Ok { moved, .. } => Some(*moved),
            FlushReply::Shaped { buckets, .. } => Some(sum(buckets)),
            _ => None,
        };
        let total = own.map_or("unknown".into(), |own| self.answered.iter().fold(own, |sum, a| sum.saturating_add(a.moved)).to_string());
        let own = own.map_or("failed".into(), |own| own.to_string());
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
    fn shapes_merge_per_bucket_and_say_who_is_missing() {
        let mut t = Tally::new("mx2", &["mx1".into(), "mx3".into(), "mx4".into(), "mx5".into(), "mx6".into()]);
        let shaped = |node: &str, buckets: Vec<u64>| SendAnswer { node: node.into(), outcome: Outcome::Shaped(buckets) };
        t.add(shaped("mx3", vec![4, 0, 0]));
        t.add(shaped("mx1", vec![1, 1, u64::MAX]));
        // A node that does not know shapes counts; one answers with other buckets.
        t.add(moved("mx4", 7));
        t.add(shaped("mx5", vec![1; 40]));
        let local = FlushReply::Shaped { buckets: vec![3, 0, 0], nodes: Vec::new(), missing: Vec::new() };
        let line = t.log_line("shape", "example.net", &local, Duration::from_secs(1));
        assert_eq!(
            line,
            format!(
                "cluster shape example.net: {} messages; answered: mx2=3, mx1={}, mx3=4, mx4=7, mx5=40; no answer within 1s from: mx6",
                u64::MAX,
                u64::MAX
            )
        );
        let FlushReply::Shaped { buckets, nodes, missing } = t.shaped(local, Duration::from_secs(1)) else { panic!() };
        assert_eq!(buckets, [8, 1, u64::MAX], "summed per bucket, saturating");
        assert_eq!(nodes.iter().map(|n| n.node.as_str()).collect::<Vec<_>>(), ["mx2", "mx1", "mx3"], "this node first, then by name");
        let missing: Vec<String> = missing.iter().map(|m| format!("{}: {}", m.node, m.reason)).collect();
        assert_eq!(
            missing,
            [
                "mx4: answered a count without ages (7 messages): an older version",
                "mx5: 40 buckets answered for 3",
                "mx6: no answer within 1s"
            ]
        );
        // A local refusal stands.
        assert_eq!(Tally::new("mx1", &[]).shaped(FlushReply::Deny, Duration::from_secs(1)), FlushReply::Deny);
    }

    #[test]
    fn hostile_messages_are_errors() {
        assert!(decode::<SendRequest>(b"{").is_err());
        assert!(decode::<SendRequest>(&vec![b' '; MAX_MESSAGE + 1]).is_err());
        assert!(decode::<SendAnswer>(br#"{"node":"x","outcome":{"Moved":-1}}"#).is_err());
        let req =
            SendRequest { node: "mx1".into(), site: "example.net".into(), subdomains: true, count: false, handover: false, shape: None };
        assert_eq!(decode::<SendRequest>(&encode(&req)).unwrap(), req);
        let old = decode::<SendRequest>(br#"{"node":"mx1","site":"example.net"}"#).unwrap();
        assert!(!old.subdomains && !old.count && !old.handover && old.shape.is_none(), "a request without the fields is a plain send");
        let before_handover = decode::<SendRequest>(br#"{"node":"mx1","site":"example.net","subdomains":false,"count":true}"#).unwrap();
        assert!(before_handover.count && !before_handover.handover);
        let handover = SendRequest { handover: true, subdomains: false, ..req };
        assert_eq!(decode::<SendRequest>(&encode(&handover)).unwrap(), handover);
        // A request cannot say where the mail goes: an address in it is not part of the frame.
        let with_address = br#"{"node":"mx1","site":"example.net","handover":true,"nexthop":"[192.0.2.9]:25"}"#;
        assert_eq!(decode::<SendRequest>(with_address).unwrap(), handover);
        let shape = br#"{"node":"mx1","site":"example.net","count":true,"shape":{"buckets":3,"tick_minutes":5,"linear":false}}"#;
        assert_eq!(decode::<SendRequest>(shape).unwrap().shape, Some(Ages::new(3, 5, false).unwrap()));
        for hostile in [
            r#"{"buckets":0,"tick_minutes":5,"linear":false}"#,
            r#"{"buckets":1000000,"tick_minutes":5,"linear":false}"#,
            r#"{"buckets":3,"tick_minutes":0,"linear":false}"#,
            "7",
        ] {
            let frame = format!(r#"{{"node":"mx1","site":"example.net","count":true,"shape":{hostile}}}"#);
            assert!(decode::<SendRequest>(frame.as_bytes()).is_err(), "{hostile}");
        }
        assert!(decode::<SendAnswer>(br#"{"node":"x","outcome":{"Shaped":[1,-2]}}"#).is_err());
        let big = format!(r#"{{"node":"x","outcome":{{"Shaped":[{}]}}}}"#, vec!["1"; 3000].join(","));
        assert!(matches!(decode::<SendAnswer>(big.as_bytes()), Err(WireError::TooLong(_))));
    }
}
