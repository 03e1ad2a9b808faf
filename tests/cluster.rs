//! The fast flush cluster (flush(8), `fast_flush_cluster_servers`): three Postern nodes on
//! loopback, each with its own configuration, queue and ports, joined by a real NATS server
//! that the test starts. A customer's deferred mail is spread over the three; an ETRN at one
//! node delivers all of it, once, and answers the total (`postqueue -n` counts it and
//! `qshape -f` shapes it per node, moving nothing); a node killed (`kill -9`) or NATS down never holds the answer past the deadline,
//! what is not known is not counted, and a killed node's mail goes out once after its restart;
//! a killed flush daemon rejoins. NATS with a password, nkeys or TLS: the fleet flushes, and a
//! node that NATS refuses says why and flushes its own mail. An ATRN (ODMR) at one node gets
//! the customer's mail of every node, relayed to that node by the others, once; a node that
//! has no relay route for the asking node refuses and keeps its mail.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::etrn::{submit, wait_deferred};
use crate::harness::nats::Nats;
use crate::harness::pki::Pki;
use crate::harness::smtp::{Client, Sink, free_port};
use crate::harness::{Install, wait_for};
use crate::odmr::{ALICE_PW, fetchmail, provider_on, said};

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
    fleet_with(&nats.url(), sink_port, per_node, "")
}

/// [`fleet`] on NATS at `servers`, with more main.cf settings for every node.
fn fleet_with(servers: &str, sink_port: u16, per_node: [usize; 3], extra: &str) -> Vec<Node> {
    NODES
        .iter()
        .zip(per_node)
        .map(|(name, n)| {
            let (inst, port) = start_node(servers, name, sink_port, extra);
            inst.wait_log(&format!("fast flush cluster: node {name} listening on postern.flush"));
            let ids = queue_mail(&inst, port, name, n);
            Node { inst, port, ids }
        })
        .collect()
}

/// A node `name` of the fleet on NATS at `servers`, relaying to `sink_port`; with its smtpd port.
fn start_node(servers: &str, name: &str, sink_port: u16, extra: &str) -> (Install, u16) {
    let cfg = format!(
        "fast_flush_cluster_servers = {servers}\nfast_flush_cluster_node = {name}\nfast_flush_cluster_members = {}\n{extra}",
        NODES.join(" ")
    );
    Install::mail_system(&cfg, sink_port)
}

/// Queue `n` messages for customer.example and one for other.example at node `name`, and wait
/// until they are deferred; returns the customer's queue IDs.
fn queue_mail(inst: &Install, port: u16, name: &str, n: usize) -> Vec<String> {
    let rcpts: Vec<String> = (0..n).map(|i| format!("u{i}.{name}@customer.example")).collect();
    let ids = submit(port, &rcpts);
    let other = submit(port, &[format!("x.{name}@other.example")]);
    wait_deferred(inst, &ids.iter().chain(&other).cloned().collect::<Vec<_>>());
    ids
}

/// A node mx4 with settings `extra` that NATS at `servers` refuses: it logs `warning` (once,
/// however often async-nats retries), and an ETRN there sends its own mail.
fn refused_node_flushes_locally(servers: &str, extra: &str, warning: &str) {
    let sink_port = free_port();
    let (inst, port) = start_node(servers, "mx4", sink_port, extra);
    let warning = format!("warning: fast flush cluster: node mx4: {warning}");
    inst.wait_log(&warning);
    let ids = queue_mail(&inst, port, "mx4", 1);
    let sink = Sink::start(sink_port);
    assert_eq!(etrn(port, "customer.example"), "253 OK, 1 pending messages for node customer.example started");
    inst.wait_log("warning: fast flush cluster: not connected to NATS; send customer.example: this node's mail only");
    wait_for("mx4's message at the sink", || (sink.count() == 1).then_some(()));
    assert!(!inst.queue_files("deferred").iter().any(|p| p.ends_with(&ids[0])));
    assert_eq!(inst.log_count(&warning), 1, "{}", inst.log());
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

/// `qshape -b 3 -f customer.example` at `inst`: its output, which it must succeed with.
fn qshape_fleet(inst: &Install) -> String {
    let out = inst.cli("qshape", &["-b", "3", "-f", "customer.example"]);
    assert!(out.status.success(), "{}", crate::harness::text(&out.stderr));
    crate::harness::text(&out.stdout)
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
    // So does qshape -f, each node's mail in its age buckets (all of it under 5 minutes old).
    assert_eq!(
        qshape_fleet(&nodes[1].inst),
        [
            "                                                                     T  5 10 10+",
            "                                                              TOTAL  9  9  0   0",
            "                                                                mx2  3  3  0   0",
            "                                                                mx1  2  2  0   0",
            "                                                                mx3  4  4  0   0",
        ]
        .join("\n")
            + "\n"
    );
    nodes[1].inst.wait_log("cluster shape customer.example: 9 messages; answered: mx2=3, mx1=2, mx3=4");
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
fn a_killed_node_does_not_hold_the_answer_and_delivers_after_restart() {
    let nats = Nats::start();
    let sink_port = free_port();
    let mut nodes = fleet(&nats, sink_port, [1, 2, 3]);
    let sink = Sink::start(sink_port);
    // A crash, not a stop: master and daemons gone at once, no goodbye to NATS, nothing
    // cleaned up in the queue or the flush logfiles.
    nodes[2].inst.kill_9();

    // qshape -f shows the nodes that answered, and says which one did not.
    assert_eq!(
        qshape_fleet(&nodes[0].inst),
        [
            "                                                                     T  5 10 10+",
            "                                                              TOTAL  3  3  0   0",
            "                                                                mx1  1  1  0   0",
            "                                                                mx2  2  2  0   0",
            "missing: mx3 (no answer within 1s)",
        ]
        .join("\n")
            + "\n"
    );

    let started = Instant::now();
    // Only what is known: mx1's and mx2's messages.
    assert_eq!(etrn(nodes[0].port, "customer.example"), "253 OK, 3 pending messages for node customer.example started");
    let took = started.elapsed();
    // The deadline is fast_flush_cluster_timeout (1s); the rest is the SMTP session.
    assert!(took < Duration::from_secs(3), "answer took {took:?}");
    nodes[0].inst.wait_log("cluster send customer.example: 3 messages; answered: mx1=1, mx2=2; no answer within 1s from: mx3");
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
    nodes[1].inst.wait_log("cluster send customer.example: 3 messages; answered: mx2=0, mx1=0, mx3=3");
    wait_for("all six messages at the sink", || (sink.count() == 6).then_some(()));
    // Nothing lost, nothing twice.
    assert_eq!(delivered_once(&sink).len(), 6);
    assert!(nodes.iter().all(|n| n.ids.iter().all(|id| !n.inst.queue_files("deferred").iter().any(|p| p.ends_with(id)))));
}

#[test]
fn a_killed_flush_daemon_rejoins_and_answers() {
    let nats = Nats::start();
    let sink_port = free_port();
    let nodes = fleet(&nats, sink_port, [1, 1, 1]);
    let mx2 = &nodes[1].inst;
    let old = mx2.program_pid("flush").expect("flush runs");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(old), nix::sys::signal::Signal::SIGKILL).expect("kill flush");
    // The master starts a new flush process at once, which joins NATS again on its own.
    let listening = "fast flush cluster: node mx2 listening on postern.flush";
    wait_for("mx2's new flush process listening", || (mx2.log_count(listening) == 2).then_some(()));
    assert_ne!(mx2.program_pid("flush"), Some(old));

    let sink = Sink::start(sink_port);
    assert_eq!(etrn(nodes[0].port, "customer.example"), "253 OK, 3 pending messages for node customer.example started");
    nodes[0].inst.wait_log("cluster send customer.example: 3 messages; answered: mx1=1, mx2=1, mx3=1");
    wait_for("all three messages at the sink", || (sink.count() == 3).then_some(()));
    assert_eq!(delivered_once(&sink).len(), 3);
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
    let password = secret_file(&dir, "nats.pw", "s3cret\n");
    let sink_port = free_port();
    let extra = format!("fast_flush_cluster_user = flush\nfast_flush_cluster_password_file = {}\n", password.display());
    let nodes = fleet_with(&nats.url(), sink_port, [1, 1, 2], &extra);
    let sink = Sink::start(sink_port);
    assert_eq!(etrn(nodes[2].port, "customer.example"), "253 OK, 4 pending messages for node customer.example started");
    wait_for("all four messages at the sink", || (sink.count() == 4).then_some(()));

    // A node with the wrong password is refused by NATS, says so, and flushes its own mail.
    std::fs::write(&password, "wrong\n").unwrap();
    refused_node_flushes_locally(&nats.url(), &extra, &format!("cannot connect to NATS {}: authorization violation", nats.url()));
}

/// A file that only its owner may read, as flush wants its secrets.
fn secret_file(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[test]
fn nkey_authentication() {
    let user = nkeys::KeyPair::new_user();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("nats.conf");
    std::fs::write(&conf, format!("authorization {{ users = [ {{ nkey: {} }} ] }}\n", user.public_key())).unwrap();
    let nats = Nats::start_with(&["-c", conf.to_str().unwrap()]);
    let seed = secret_file(&dir, "flush.nk", &format!("{}\n", user.seed().unwrap()));
    let extra = format!("fast_flush_cluster_nkey_file = {}\n", seed.display());
    let sink_port = free_port();
    let nodes = fleet_with(&nats.url(), sink_port, [2, 1, 1], &extra);
    let sink = Sink::start(sink_port);
    assert_eq!(etrn(nodes[1].port, "customer.example"), "253 OK, 4 pending messages for node customer.example started");
    wait_for("all four messages at the sink", || (sink.count() == 4).then_some(()));
    assert_eq!(delivered_once(&sink).len(), 4);

    // Another user's seed, which the server does not know, is refused.
    let stranger = secret_file(&dir, "stranger.nk", &nkeys::KeyPair::new_user().seed().unwrap());
    refused_node_flushes_locally(
        &nats.url(),
        &format!("fast_flush_cluster_nkey_file = {}\n", stranger.display()),
        &format!("cannot connect to NATS {}: authorization violation", nats.url()),
    );
}

#[test]
fn tls_connections_to_nats() {
    let pki = Pki::new();
    pki.server("nats", "nats.test");
    let (cert, key) = (pki.path("nats.pem"), pki.path("nats.key"));
    let nats = Nats::start_with(&["--tls", "--tlscert", cert.to_str().unwrap(), "--tlskey", key.to_str().unwrap()]);
    let servers = format!("tls://127.0.0.1:{}", nats.port);
    let extra = format!("fast_flush_cluster_tls_CAfile = {}\n", pki.path("ca.pem").display());
    let sink_port = free_port();
    let nodes = fleet_with(&servers, sink_port, [1, 2, 1], &extra);
    let sink = Sink::start(sink_port);
    assert_eq!(etrn(nodes[0].port, "customer.example"), "253 OK, 4 pending messages for node customer.example started");
    wait_for("all four messages at the sink", || (sink.count() == 4).then_some(()));
    assert_eq!(delivered_once(&sink).len(), 4);

    // Without the CA the server's certificate is not trusted: no connection, in clear text
    // neither (the server requires TLS).
    for url in [servers, nats.url()] {
        refused_node_flushes_locally(&url, "", &format!("cannot connect to NATS {url}: IO error: invalid peer certificate: UnknownIssuer"));
    }
}

/// Three ODMR providers (tests/odmr.rs) on NATS with `per_node[i]` messages for
/// customer.example and one for other.example at node i, and `extra` in every main.cf; node
/// i's `fast_flush_cluster_relay_maps` names the smtpd port of each node in `relays_to[i]`
/// (an entry `node=nexthop` is taken as it is). Returns the nodes and each one's odmr port.
fn odmr_fleet(nats: &Nats, per_node: [usize; 3], relays_to: [&[&str]; 3], extra: &str) -> Vec<(Node, u16)> {
    let ports: Vec<(u16, u16)> = NODES.iter().map(|_| (free_port(), free_port())).collect();
    let smtpd = |node: &str| NODES.iter().zip(&ports).find(|(n, _)| **n == node).map(|(_, (p, _))| *p).unwrap();
    NODES
        .iter()
        .zip(&ports)
        .zip(per_node.into_iter().zip(relays_to))
        .map(|((name, &(port, odmr)), (n, relays))| {
            let map: Vec<String> =
                relays.iter().map(|r| if r.contains('=') { r.to_string() } else { format!("{r}=[127.0.0.1]:{}", smtpd(r)) }).collect();
            let main = format!(
                "fast_flush_cluster_servers = {}\nfast_flush_cluster_node = {name}\nfast_flush_cluster_members = {}\n\
                 fast_flush_cluster_relay_maps = inline:{{ {} }}\n{extra}",
                nats.url(),
                NODES.join(" "),
                map.join(", ")
            );
            let inst = provider_on(port, odmr, &main, "");
            inst.wait_log(&format!("fast flush cluster: node {name} listening on postern.flush"));
            let ids = queue_mail(&inst, port, name, n);
            (Node { inst, port, ids }, odmr)
        })
        .collect()
}

/// The customer's message IDs (`Message-ID:` of [`submit`]) the sink got, each once, and only
/// the customer's.
fn message_ids(sink: &Sink) -> Vec<String> {
    let mut got: Vec<String> = delivered_once(sink).into_iter().collect();
    got.sort();
    got
}

/// What [`queue_mail`] gave node `name` for the customer, as [`message_ids`] shows it.
fn queued_message_ids(name: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("Message-ID: <u{i}.{name}@customer.example.{n}@test>")).collect()
}

/// The IDs left in a node's deferred queue.
fn deferred_ids(inst: &Install) -> HashSet<String> {
    inst.queue_files("deferred").iter().filter_map(|p| p.file_name()?.to_str().map(str::to_string)).collect()
}

#[test]
fn atrn_at_one_node_gets_the_customers_mail_from_every_node() {
    let nats = Nats::start();
    let nodes = odmr_fleet(&nats, [2, 3, 4], [&["mx2", "mx3"], &["mx1", "mx3"], &["mx1", "mx2"]], "");
    let (mx1, odmr) = (&nodes[0].0, nodes[0].1);
    let sink = Sink::start(free_port());
    // A real customer (fetchmail) at mx1's ODMR port: mx1's own two messages, and the seven
    // that mx2 and mx3 relay to mx1's smtpd meanwhile, on the same reversed connection.
    let out = fetchmail(&mx1.inst, odmr, "alice", ALICE_PW, "customer.example", sink.port);
    mx1.inst.wait_log("reversed session done: ");
    let log = mx1.inst.log();
    assert!(log.contains("cluster handover customer.example: 7 messages; answered: mx1=0, mx2=3, mx3=4"), "{}\n{log}", said(&out));
    assert!(log.contains("ATRN from localhost[127.0.0.1]: 7 messages from other nodes: mx2=3, mx3=4"), "{log}");
    assert!(log.contains("reversed session done: messages=9 sent=9 bounced=0 deferred=0"), "{}\n{log}", said(&out));
    let mut want: Vec<String> = NODES.iter().zip([2, 3, 4]).flat_map(|(name, n)| queued_message_ids(name, n)).collect();
    want.sort();
    assert_eq!(message_ids(&sink), want, "{}", said(&out));
    // The other nodes relayed through their own queue manager and smtp agent, to mx1's smtpd.
    for (n, count) in nodes[1..].iter().zip([3, 4]) {
        let relayed = format!("relay=127.0.0.1[127.0.0.1]:{}, ", mx1.port);
        let sent = n.0.inst.log().lines().filter(|l| l.contains(&relayed) && l.contains("status=sent")).count();
        assert_eq!(sent, count, "{}", n.0.inst.log());
    }
    // Every node keeps other.example's message, and nothing else.
    for (n, _) in &nodes {
        wait_for("only other.example's mail left", || {
            let left = deferred_ids(&n.inst);
            (n.ids.iter().all(|id| !left.contains(id)) && left.len() == 1).then_some(())
        });
        assert!(n.inst.queue_files("flush").iter().any(|p| p.ends_with("other.example")));
    }
    // Nothing is delivered twice: a second ATRN finds no mail anywhere.
    let out = fetchmail(&mx1.inst, odmr, "alice", ALICE_PW, "customer.example", sink.port);
    mx1.inst.wait_log("sasl_username=alice: no mail");
    assert_eq!(sink.count(), 9, "{}", said(&out));
}

#[test]
fn a_node_without_a_relay_route_refuses_the_handover_and_keeps_its_mail() {
    let nats = Nats::start();
    // mx3 has no entry for mx1.
    let nodes = odmr_fleet(&nats, [1, 2, 2], [&["mx2", "mx3"], &["mx1", "mx3"], &["mx2"]], "");
    let (mx1, odmr) = (&nodes[0].0, nodes[0].1);
    let sink = Sink::start(free_port());
    let out = fetchmail(&mx1.inst, odmr, "alice", ALICE_PW, "customer.example", sink.port);
    mx1.inst.wait_log("reversed session done: ");
    mx1.inst.wait_log("cluster handover customer.example: 2 messages; answered: mx1=0, mx2=2, mx3=(refused)");
    nodes[2].0.inst.wait_log(
        "warning: fast flush cluster: handover customer.example to node mx1: no entry for the node in fast_flush_cluster_relay_maps; refused",
    );
    let mut want: Vec<String> = queued_message_ids("mx1", 1).into_iter().chain(queued_message_ids("mx2", 2)).collect();
    want.sort();
    assert_eq!(message_ids(&sink), want, "{}", said(&out));
    let left = deferred_ids(&nodes[2].0.inst);
    assert!(nodes[2].0.ids.iter().all(|id| left.contains(id)), "mx3 keeps its mail");
}

/// A node whose relayed mail does not come (its route to the session's node is down): the
/// session delivers the rest and ends `smtpd_odmr_cluster_wait` after the last message; that
/// node's mail stays deferred there.
#[test]
fn relayed_mail_that_does_not_come_ends_the_wait_and_stays_queued() {
    let nats = Nats::start();
    let down_port = free_port();
    let down = format!("mx1=[127.0.0.1]:{down_port}");
    let nodes = odmr_fleet(&nats, [1, 1, 2], [&["mx2", "mx3"], &["mx1", "mx3"], &[&down]], "smtpd_odmr_cluster_wait = 2s\n");
    let (mx1, odmr) = (&nodes[0].0, nodes[0].1);
    let sink = Sink::start(free_port());
    let out = fetchmail(&mx1.inst, odmr, "alice", ALICE_PW, "customer.example", sink.port);
    mx1.inst.wait_log("reversed session done: messages=2 sent=2 bounced=0 deferred=0");
    mx1.inst.wait_log("ATRN from localhost[127.0.0.1]: 3 messages from other nodes: mx2=1, mx3=2");
    mx1.inst.wait_log(
        "ATRN from localhost[127.0.0.1]: 1 of 3 messages from other nodes delivered (smtpd_odmr_cluster_wait 2s); the rest waits for the next ATRN",
    );
    let mut want: Vec<String> = queued_message_ids("mx1", 1).into_iter().chain(queued_message_ids("mx2", 1)).collect();
    want.sort();
    assert_eq!(message_ids(&sink), want, "{}", said(&out));
    // mx3 tried mx1 (the handover's route), failed, and keeps its mail, deferred and indexed.
    let mx3 = &nodes[2].0;
    // Each deferred by the smtp agent's refused connection, or, once the route is known to
    // be down, by the queue manager's suspension of it.
    let tried = format!("connect to 127.0.0.1[127.0.0.1]:{down_port}: Connection refused)");
    let deferrals = || mx3.inst.log().lines().filter(|l| l.contains("status=deferred") && l.contains(&tried)).count();
    wait_for("mx3's two deferrals", || (deferrals() == 2).then_some(()));
    wait_for("mx3's mail deferred and indexed", || {
        let left = deferred_ids(&mx3.inst);
        mx3.ids.iter().all(|id| left.contains(id) && crate::odmr::indexed(&mx3.inst, id)).then_some(())
    });
}
