//! What the queue manager's socket (`public/qmgr`) accepts: the trigger protocol's
//! `Vec<Trigger>`, and requests that carry more than a trigger byte can. The hello and the
//! replies are the trigger protocol's, so every trigger client (smtpd, pickup's peers, the
//! command-line programs) talks to it unchanged, and a frame of triggers reads as before.

use serde::{Deserialize, Serialize};

use super::hello::Protocol;
use super::trigger::{Trigger, TriggerProtocol, TriggerReply};

/// One request on the queue manager's socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QmgrRequest {
    /// Triggers, as [`TriggerProtocol`] sends them (a bare JSON array).
    Triggers(Vec<Trigger>),
    /// A request with arguments (a JSON object naming it).
    Command(QmgrCommand),
}

/// The queue manager's requests with arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QmgrCommand {
    /// For each of `queue_ids`, when it is next routed, its recipients in exactly `site` go to
    /// `smtp:nexthop` instead of their usual route (the fast flush cluster's handover: this
    /// node's mail for a customer is relayed to the node that holds the customer's ODMR
    /// session). The queue manager keeps such a request for a while only; a lost one means
    /// the usual route. Only users who may flush the queue may send it.
    Relay { site: String, nexthop: String, queue_ids: Vec<String> },
    /// These messages were just moved into `incoming` (the flush service's send): the queue
    /// manager feeds them first, without listing `incoming` for them. `incoming` is one flat
    /// directory and ext4 never shrinks a directory, so once it has held a backlog each listing
    /// costs milliseconds however few files it holds (6 ms with 11 files, at a million queued).
    /// A scan of `incoming` (`ScanIncoming`) needs no privilege, and neither does this.
    Incoming { queue_ids: Vec<String> },
}

/// A relay request's next hop, in transport_maps syntax (`[host]:port`, `host`): printable
/// ASCII without blanks, at most 255 bytes.
pub fn valid_nexthop(nexthop: &str) -> bool {
    !nexthop.is_empty() && nexthop.len() <= 255 && nexthop.chars().all(|c| c.is_ascii_graphic())
}

/// The protocol of `public/qmgr`.
pub struct QmgrProtocol;

impl Protocol for QmgrProtocol {
    const NAME: &'static str = TriggerProtocol::NAME;
    const VERSION: u32 = TriggerProtocol::VERSION;
    type Request = QmgrRequest;
    type Reply = TriggerReply;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trigger client's frame is a request of this protocol, and a command is not mistaken
    /// for triggers.
    #[test]
    fn trigger_frames_still_read() {
        let old = serde_json::to_string(&vec![Trigger::ForgetDeadSites, Trigger::ScanIncoming]).unwrap();
        let read: QmgrRequest = serde_json::from_str(&old).unwrap();
        assert_eq!(read, QmgrRequest::Triggers(vec![Trigger::ForgetDeadSites, Trigger::ScanIncoming]));
        let relay = QmgrRequest::Command(QmgrCommand::Relay {
            site: "customer.example".into(),
            nexthop: "[10.0.0.1]:25".into(),
            queue_ids: vec!["ABC".into()],
        });
        let text = serde_json::to_string(&relay).unwrap();
        assert_eq!(serde_json::from_str::<QmgrRequest>(&text).unwrap(), relay);
        let moved = QmgrRequest::Command(QmgrCommand::Incoming { queue_ids: vec!["ABC".into()] });
        assert_eq!(serde_json::from_str::<QmgrRequest>(&serde_json::to_string(&moved).unwrap()).unwrap(), moved);
        assert!(valid_nexthop("[10.0.0.1]:25") && valid_nexthop("mx.example"));
        for bad in ["", "[10.0.0.1] :25", "a\tb", "caf\u{e9}", &"x".repeat(256)] {
            assert!(!valid_nexthop(bad), "{bad:?}");
        }
        for bad in [r#"{"Relay":{"site":"x"}}"#, r#"["Nonsense"]"#, r#"{"Other":{}}"#, "3"] {
            assert!(serde_json::from_str::<QmgrRequest>(bad).is_err(), "{bad}");
        }
    }
}
