//! The fast flush cluster (flush(8), `fast_flush_cluster_servers`): three Postern nodes on
//! loopback, each with its own configuration, queue and ports, joined by a real NATS server
//! that the test starts. A customer's deferred mail is spread over the three; an ETRN at one
//! node delivers all of it, once, and answers the total (`postqueue -n` counts it, moving
//! nothing); a node down or NATS down never holds the answer past the deadline, and what is
//! not known is not counted.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::etrn::{submit, wait_deferred};
use crate::harness::nats::Nats;
use crate::harness::smtp::{Client, Sink, free_port};
use crate::harness::{Install, wait_for};

const NODES: [&str; 3] = ["mx1", "mx2", "mx3"];

struct Node {
    inst: Install,
    port: u16,
    /// The customer's messages queued here.
    ids: Vec<String>,
}

/// Three nodes relaying to `sink_port` (not listening yet, so the mail is deferred), with
/// `per_node[i]` messages for customer.example queued at node i and one for other.example at
/// each, every node's flush connected to NATS.
fn fleet(nats: &Nats, sink_port: u16, per_node: [usize; 3]) -> Vec<Node> {
    fleet_with(nats, sink_port, per_node, "")
}

/// [`fleet`] with more main.cf settings for every node.
fn fleet_with(nats: &Nats, sink_port: u16, per_node: [usize; 3], extra: &str) -> Vec<Node> {
    NODES
        .iter()
        .zip(per_node)
        .map(|(name, n)| {
            let cfg = format!(
                "fast_flush_cluster_servers = {}\nfast_flush_cluster_node = {name}\nfast_flush_cluster_members = {}\n{extra}",
                nats.url(),
                NODES.join(" ")
            );
            let (inst, port) = Install::mail_system(&cfg, sink_port);
            inst.wait_log(&format!("fast flush cluster: node {name} listening on postern.flush"));
            let rcpts: Vec<String> = (0..n).map(|i| format!("u{i}.{name}@customer.example")).collect();
            let ids = submit(port, &rcpts);
            let other = submit(port, &[format!("x.{name}@other.example")]);
            wait_deferred(&inst, &ids.iter().chain(&other).cloned().collect::<Vec<_>>());
            Node { inst, port, ids }
        })
        .collect()
}

fn etrn(port: u16, site: &str) -> String {
    let mut c = Client::connect(port);
    c.cmd("EHLO client.test");
    c.cmd(&format!("ETRN {site}"))
}

/// The Message-IDs the sink got, each counted once; panics on a duplicate.
fn delivered_once(sink: &Sink) -> HashSet<String> {
    let mut seen = HashSet::new();
    for m in sink.messages() {
        let id = m.data.lines().find(|l| l.starts_with("Message-ID:")).unwrap_or_default().to_string();
        assert!(seen.insert(id.clone()), "delivered twice: {id}");
        assert!(m.recipients.iter().all(|r| r.ends_with("@customer.example")), "{:?}", m.recipients);
    }
    seen
}

#[test]
fn etrn_at_one_node_flushes_the_whole_fleet() {
    let nats = Nats::start();
    let sink_port = free_port();
    let nodes = fleet(&nats, sink_port, [2, 3, 4]);

    // postqueue -n answers for the fleet and moves nothing.
    let out = nodes[1].inst.cli("postqueue", &["-n", "customer.example"]);
    assert!(out.status.success(), "{}", crate::harness::text(&out.stderr));
    assert_eq!(crate::harness::text(&out.stdout), "customer.example: 9 queued messages (mx2=3, mx1=2, mx3=4)\n");
    nodes[1].inst.wait_log("cluster count customer.example: 9 messages; answered: mx2=3, mx1=2, mx3=4");
    for (n, want) in nodes.iter().zip([2, 3, 4]) {
        assert_eq!(n.inst.queue_files("deferred").len(), want + 1, "nothing moved");
    }

    let sink = Sink::start(sink_port);
    assert_eq!(etrn(nodes[0].port, "customer.example"), "253 OK, 9 pending messages for node customer.example started");
    wait_for("all nine messages at the sink", || (sink.count() == 9).then_some(()));
    assert_eq!(delivered_once(&sink).len(), 9);
    nodes[0].inst.wait_log("cluster send customer.example: 9 messages; answered: mx1=2, mx2=3, mx3=4");
    // Each node sent exactly its own mail, and only the customer's.
    for n in &nodes {
        wait_for("the customer's mail gone from the queue", || {
            let left: HashSet<String> =
                n.inst.queue_files("deferred").iter().filter_map(|p| p.file_name()?.to_str().map(str::to_string)).collect();
            (n.ids.iter().all(|id| !left.contains(id)) && left.len() == 1).then_some(())
        });
    }
    // A second ETRN finds nothing anywhere, and nothing is delivered again.
    assert_eq!(etrn(nodes[1].port, "customer.example"), "251 OK, no messages waiting for node customer.example");
    nodes[1].inst.wait_log("cluster send customer.example: 0 messages; answered: mx2=0");
    assert_eq!(sink.count(), 9);
}

#[test]
fn a_node_down_does_not_hold_the_answer_and_delivers_after_restart() {
    let nats = Nats::start();
    let sink_port = free_port();
    let mut nodes = fleet(&nats, sink_port, [1, 2, 3]);
    let sink = Sink::start(sink_port);
    nodes[2].inst.stop();

    let started = Instant::now();
    // Only what is known: mx1's and mx2's messages.
    assert_eq!(etrn(nodes[0].port, "customer.example"), "253 OK, 3 pending messages for node customer.example started");
    let took = started.elapsed();
    // The deadline is fast_flush_cluster_timeout (1s); the rest is the SMTP session.
    assert!(took < Duration::from_secs(3), "answer took {took:?}");
    nodes[0].inst.wait_log("no answer within 1s from: mx3");
    wait_for("mx1's and mx2's messages at the sink", || (sink.count() == 3).then_some(()));

    // mx3 comes back with its queue (its index reconciled at start); the next ETRN anywhere
    // sends its mail too.
    // Wait for its subscription, not only its connection: a request published before the
    // server has it would not reach mx3.
    let listening = "fast flush cluster: node mx3 listening on postern.flush";
    let before = nodes[2].inst.log_count(listening);
    nodes[2].inst.start();
    wait_for("mx3 listening again", || (nodes[2].inst.log_count(listening) > before).then_some(()));
    assert_eq!(etrn(nodes[1].port, "customer.example"), "253 OK, 3 pending messages for node customer.example started");
    wait_for("all six messages at the sink", || (sink.count() == 6).then_some(()));
    assert_eq!(delivered_once(&sink).len(), 6);
}

#[test]
fn nats_down_etrn_still_flushes_locally() {
    let mut nats = Nats::start();
    let sink_port = free_port();
    let nodes = fleet(&nats, sink_port, [2, 1, 1]);
    let sink = Sink::start(sink_port);
    nats.kill();
    nodes[0].inst.wait_log("fast flush cluster: node mx1: NATS disconnected");

    let started = Instant::now();
    assert_eq!(etrn(nodes[0].port, "customer.example"), "253 OK, 2 pending messages for node customer.example started");
    assert!(started.elapsed() < Duration::from_secs(3), "answer took {:?}", started.elapsed());
    nodes[0].inst.wait_log("warning: fast flush cluster: not connected to NATS; send customer.example: this node's mail only");
    wait_for("mx1's two messages at the sink", || (sink.count() == 2).then_some(()));
    assert_eq!(delivered_once(&sink).len(), 2);
    // The other nodes' mail waits for their own ETRN or queue run: nothing was lost.
    for n in &nodes[1..] {
        assert!(n.ids.iter().all(|id| n.inst.queue_files("deferred").iter().any(|p| p.ends_with(id))));
    }
}

#[test]
fn authenticated_connections_to_nats() {
    let nats = Nats::start_with(&["--user", "flush", "--pass", "s3cret"]);
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("nats.pw");
    std::fs::write(&password, "s3cret\n").unwrap();
    let sink_port = free_port();
    let extra = format!("fast_flush_cluster_user = flush\nfast_flush_cluster_password_file = {}\n", password.display());
    let nodes = fleet_with(&nats, sink_port, [1, 1, 2], &extra);
    let sink = Sink::start(sink_port);
    assert_eq!(etrn(nodes[2].port, "customer.example"), "253 OK, 4 pending messages for node customer.example started");
    wait_for("all four messages at the sink", || (sink.count() == 4).then_some(()));

    // A node with the wrong password is refused by NATS, says so, and flushes its own mail.
    std::fs::write(&password, "wrong\n").unwrap();
    let cfg = format!("fast_flush_cluster_servers = {}\nfast_flush_cluster_node = mx4\n{extra}", nats.url());
    let (inst, port) = Install::mail_system(&cfg, sink_port);
    inst.wait_log("fast flush cluster: node mx4: NATS");
    assert_eq!(etrn(port, "customer.example"), "251 OK, no messages waiting for node customer.example");
    inst.wait_log("warning: fast flush cluster: not connected to NATS; send customer.example: this node's mail only");
}
