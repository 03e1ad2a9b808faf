//! The fast flush service as a running daemon: the seed README's experiments, reconciliation
//! at start, hostile input on its socket, concurrent adds and sends, postqueue's replies, and
//! `qshape -f`'s table.

use std::collections::HashSet;
use std::os::unix::process::CommandExt;
use std::process::Command;

use common::config::Params;
use common::ipc::flush::{FlushReply, FlushRequest};
use common::queue::file::{Envelope, Recipient, now_us, write_new};
use common::queue::{QueueId, QueueName, Spool};

use crate::harness::{FLUSH_ONLY, Install, RawClient, bin, smtp, text, wait_for};

const RELAY: &str = "relay_domains = example.net, customer.example\n";

fn spool(inst: &Install) -> Spool {
    Spool::from_params(&Params::load(&inst.etc, &[]).unwrap()).unwrap()
}

/// A message deferred for `rcpts`, as the queue manager would leave it.
fn deferred(spool: &Spool, rcpts: &[&str]) -> QueueId {
    deferred_since(spool, rcpts, now_us())
}

/// [`deferred`], for a message that arrived at `arrival_us`.
fn deferred_since(spool: &Spool, rcpts: &[&str], arrival_us: u64) -> QueueId {
    let env = Envelope {
        sender: "sender@example.org".into(),
        recipients: rcpts.iter().map(|r| Recipient { address: r.to_string(), ..Default::default() }).collect(),
        arrival_us,
        client: Default::default(),
        ..Default::default()
    };
    let id = write_new(spool, QueueName::Incoming, &env, b"Subject: test\r\n\r\nhello\r\n").unwrap();
    assert!(spool.move_file(&id, QueueName::Incoming, QueueName::Deferred).unwrap());
    id
}

fn add(inst: &Install, site: &str, id: &QueueId) -> FlushReply {
    inst.flush(FlushRequest::Add { site: site.into(), queue_id: id.to_string() })
}

fn in_queue(spool: &Spool, q: QueueName, id: &QueueId) -> bool {
    spool.path(q, id).exists()
}

/// A send's reply comes before its moves (they follow at once, before the flush service takes
/// another request): wait until every one of `ids` is in incoming; a lost one times out.
fn moved_to_incoming(sp: &Spool, ids: &[&QueueId]) {
    wait_for("the sent messages in incoming", || ids.iter().all(|id| in_queue(sp, QueueName::Incoming, id)).then_some(()));
}

#[test]
fn seed_experiments_send_only_that_sites_mail() {
    let mut inst = Install::new(RELAY, FLUSH_ONLY);
    inst.start();
    let sp = spool(&inst);
    let a = deferred(&sp, &["u@customer.example"]);
    let b = deferred(&sp, &["v@customer.example"]);
    let c = deferred(&sp, &["w@example.net"]);
    for (site, id) in [("customer.example", &a), ("CUSTOMER.example", &b), ("example.net", &c)] {
        assert_eq!(add(&inst, site, id), FlushReply::ok(0));
    }
    let log = std::fs::read_to_string(inst.spool.join("flush/customer.example")).unwrap();
    assert_eq!(log, format!("{a}\n{b}\n"));

    // Experiment 1: the site's messages, and only those, go to incoming; the logfile empties
    // (right after the reply).
    assert_eq!(inst.send_site("customer.example"), FlushReply::ok(2));
    moved_to_incoming(&sp, &[&a, &b]);
    assert!(in_queue(&sp, QueueName::Deferred, &c));
    wait_for("the logfile emptied", || {
        std::fs::read_to_string(inst.spool.join("flush/customer.example")).unwrap().is_empty().then_some(())
    });
    // Deferred again: the IDs are added back.
    sp.move_file(&a, QueueName::Incoming, QueueName::Deferred).unwrap();
    add(&inst, "customer.example", &a);
    assert_eq!(std::fs::read_to_string(inst.spool.join("flush/customer.example")).unwrap(), format!("{a}\n"));

    // Experiment 2: an eligible site with no mail moves nothing.
    assert_eq!(inst.send_site("nomail.example.net"), FlushReply::ok(0));
    assert!(in_queue(&sp, QueueName::Deferred, &c));
    // Experiment 3: a site that is not eligible is denied (smtpd turns that into slow ETRN or 459).
    assert_eq!(inst.send_site("not.a.customer"), FlushReply::Deny);
    assert!(in_queue(&sp, QueueName::Deferred, &a));
}

#[test]
fn at_domain_covers_subdomains_only() {
    let mut inst = Install::new(RELAY, FLUSH_ONLY);
    inst.start();
    let sp = spool(&inst);
    let ids: Vec<(QueueId, &str)> = ["example.net", "a.example.net", "b.a.example.net", "badexample.net"]
        .into_iter()
        .map(|site| (deferred(&sp, &[&format!("u@{site}")]), site))
        .collect();
    for (id, site) in &ids {
        add(&inst, site, id);
    }
    let reply = inst.flush(FlushRequest::SendSite { site: "a.example.net".into(), subdomains: true });
    assert_eq!(reply, FlushReply::ok(2));
    moved_to_incoming(&sp, &[&ids[1].0, &ids[2].0]);
    assert!(in_queue(&sp, QueueName::Deferred, &ids[0].0));
    assert!(in_queue(&sp, QueueName::Deferred, &ids[3].0));
}

#[test]
fn restart_with_flush_directory_deleted_rebuilds_the_index() {
    let mut inst = Install::new(RELAY, FLUSH_ONLY);
    inst.start();
    let sp = spool(&inst);
    let a = deferred(&sp, &["u@customer.example", "v@other.example"]);
    inst.stop();
    std::fs::remove_dir_all(inst.spool.join("flush")).unwrap();
    inst.start();
    // No "sendmail -q" needed: the background scan puts the deferred mail into the logfile.
    let logfile = inst.spool.join("flush/customer.example");
    wait_for("reconciliation", || std::fs::read_to_string(&logfile).ok().filter(|t| t.contains(a.as_str())));
    assert!(!inst.spool.join("flush/other.example").exists());
    assert_eq!(inst.send_site("customer.example"), FlushReply::ok(1));
    moved_to_incoming(&sp, &[&a]);
    inst.wait_log("fast flush index reconciled with the deferred queue: 1 added");
}

fn flush_dir_names(inst: &Install) -> HashSet<String> {
    std::fs::read_dir(inst.spool.join("flush")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn hostile_input_gets_replies_and_touches_nothing_outside_flush() {
    let mut inst = Install::new(RELAY, FLUSH_ONLY);
    inst.start();
    let path = inst.socket("public", "flush");
    let top_before: HashSet<_> = std::fs::read_dir(&inst.spool).unwrap().map(|e| e.unwrap().file_name()).collect();

    let long = "a".repeat(300);
    for site in ["../../etc", "a..b", &long, "x\0y.example", "caf\u{fffd}.example.net", "\u{e9}/..", "/etc/passwd", "..", "."] {
        let r = inst.flush(FlushRequest::Add { site: site.into(), queue_id: "ABC".into() });
        assert!(matches!(r, FlushReply::Bad { .. }), "{site:?}: {r:?}");
        let r = inst.send_site(site);
        assert!(matches!(r, FlushReply::Bad { .. }), "{site:?}: {r:?}");
    }
    for id in ["../x", "bad/id", "", "A B"] {
        let r = inst.flush(FlushRequest::SendFile { queue_id: id.into() });
        assert!(matches!(r, FlushReply::Bad { .. }), "{id:?}: {r:?}");
    }

    // Not JSON at all: a Bad reply, then the connection closes.
    let mut c = RawClient::connect(&path);
    c.write(&[0, 0, 0, 5, 0xff, 0, b'{', b'\n', 0x80]);
    let reply: Option<FlushReply> = c.read_frame();
    assert!(matches!(reply, Some(FlushReply::Bad { .. })), "{reply:?}");
    assert!(c.closed());
    // A frame that claims to be 4 GiB: closed without reading it.
    let mut c = RawClient::connect(&path);
    c.write(&[0xff, 0xff, 0xff, 0xff, b'x']);
    assert!(c.closed());
    // Half a frame, then silence and close from our side: the server must not care.
    let mut c = RawClient::connect(&path);
    c.write(&[0, 0, 0, 100, b'{']);
    drop(c);
    // Raw bytes that are not even a length prefix.
    let mut c = RawClient::connect(&path);
    c.write(b"W\0");
    drop(c);

    inst.wait_log("warning: malformed request from flush socket client");
    assert_eq!(inst.send_site("example.net"), FlushReply::ok(0));
    // A UTF-8 site is its A-label form, a plain name inside flush/.
    let r = inst.flush(FlushRequest::Add { site: "caf\u{e9}.example.net".into(), queue_id: "ABC".into() });
    assert!(matches!(r, FlushReply::Ok { .. }), "{r:?}");
    assert!(flush_dir_names(&inst).contains("xn--caf-dma.example.net"), "{:?}", flush_dir_names(&inst));
    let top_after: HashSet<_> = std::fs::read_dir(&inst.spool).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(top_before, top_after);
    assert!(flush_dir_names(&inst).iter().all(|n| common::domain::valid_hostname(n)), "{:?}", flush_dir_names(&inst));
}

#[test]
fn ten_thousand_requests_on_one_connection() {
    let mut inst = Install::new(RELAY, FLUSH_ONLY);
    inst.start();
    let mut c = RawClient::connect(&inst.socket("public", "flush"));
    for i in 0..10_000u32 {
        let req = if i % 2 == 0 {
            FlushRequest::Add { site: "example.net".into(), queue_id: format!("ID{}", i % 500) }
        } else {
            FlushRequest::SendSite { site: "bad..site".into(), subdomains: false }
        };
        c.write(&common::ipc::frame::encode(&req).unwrap());
        let reply: FlushReply = c.read_frame().expect("reply");
        if i % 2 == 0 {
            assert_eq!(reply, FlushReply::ok(0));
        } else {
            assert!(matches!(reply, FlushReply::Bad { .. }));
        }
    }
    // 5000 adds of 250 distinct IDs: duplicates were not appended.
    let log = std::fs::read_to_string(inst.spool.join("flush/example.net")).unwrap();
    assert_eq!(log.lines().count(), 250);
}

#[test]
fn concurrent_adds_and_sends_lose_no_queue_id() {
    let mut inst = Install::new(RELAY, FLUSH_ONLY);
    inst.start();
    let sp = spool(&inst);
    const WRITERS: usize = 6;
    const PER_WRITER: usize = 60;
    let ids: Vec<Vec<QueueId>> = (0..WRITERS).map(|_| (0..PER_WRITER).map(|_| deferred(&sp, &["u@customer.example"])).collect()).collect();
    let moved = std::thread::scope(|s| {
        for batch in &ids {
            let inst = &inst;
            s.spawn(move || {
                for id in batch {
                    assert_eq!(add(inst, "customer.example", id), FlushReply::ok(0));
                }
            });
        }
        let sender = s.spawn(|| {
            let mut moved = 0;
            for _ in 0..40 {
                if let FlushReply::Ok { moved: m, .. } = inst.send_site("customer.example") {
                    moved += m;
                }
            }
            moved
        });
        sender.join().unwrap()
    });
    let FlushReply::Ok { moved: last, .. } = inst.send_site("customer.example") else { panic!("send failed") };
    // Every message was listed and moved exactly once: none left behind, none counted twice.
    assert_eq!(moved + last, (WRITERS * PER_WRITER) as u64);
    moved_to_incoming(&sp, &ids.iter().flatten().collect::<Vec<_>>());
}

#[test]
fn postqueue_replies_and_exit_codes() {
    let mut inst = Install::new(RELAY, FLUSH_ONLY);
    let down = inst.cli("postqueue", &["-s", "example.net"]);
    assert_eq!(down.status.code(), Some(69));
    assert_eq!(text(&down.stderr), "postqueue: fatal: Cannot flush mail queue - mail system is down\n");
    inst.start();
    let sp = spool(&inst);
    let a = deferred(&sp, &["u@example.net"]);
    add(&inst, "example.net", &a);
    let cases: &[(&[&str], i32, &str)] = &[
        (&["-s", "example.net"], 0, ""),
        (&["-s", "other.example"], 69, "postqueue: fatal: Flush service is not configured for destination \"other.example\"\n"),
        (&["-s", "bad..name"], 69, "postqueue: fatal: Cannot flush mail queue - invalid destination: \"bad..name\"\n"),
        (&["-s", "1.2.3.4"], 69, "postqueue: fatal: Cannot flush mail queue - invalid destination: \"1.2.3.4\"\n"),
        (&["-s", "[1.2.3.4]"], 69, "postqueue: fatal: Flush service is not configured for destination \"[1.2.3.4]\"\n"),
        (&["-i", "bad/id"], 69, "postqueue: fatal: Cannot flush queue ID - invalid name: \"bad/id\"\n"),
        (&["-i", "NOSUCH"], 0, ""),
        (&[], 69, "postqueue: fatal: usage: postqueue -f | postqueue -i queueid | postqueue -j | postqueue -p | postqueue -s site\n"),
        (
            &["-f", "-s", "x"],
            69,
            "postqueue: fatal: usage: postqueue -f | postqueue -i queueid | postqueue -j | postqueue -p | postqueue -s site\n",
        ),
    ];
    for (args, code, err) in cases {
        let out = inst.cli("postqueue", args);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stderr), *err, "{args:?}");
    }
    moved_to_incoming(&sp, &[&a]);
}

/// `qshape -f` without the cluster: this node's row (named `fast_flush_cluster_node`), the
/// site's listed messages in the buckets of their arrival times; nothing moves.
#[test]
fn qshape_f_shapes_the_sites_mail_by_arrival_time() {
    let mut inst = Install::new(&format!("{RELAY}fast_flush_cluster_node = mx9\n"), FLUSH_ONLY);
    inst.start();
    let sp = spool(&inst);
    let now = now_us();
    let ids: Vec<QueueId> =
        [1, 7, 7, 45].iter().map(|minutes| deferred_since(&sp, &["u@customer.example"], now - minutes * 60_000_000)).collect();
    for id in &ids {
        add(&inst, "customer.example", id);
    }
    // Another site's mail is not in the table.
    add(&inst, "example.net", &deferred(&sp, &["u@example.net"]));
    let qshape = |args: &[&str]| {
        let out = inst.cli("qshape", args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    let doubling = [
        "                                                                  T  5 10 20 20+",
        "                                                           TOTAL  4  1  2  0   1",
        "                                                             mx9  4  1  2  0   1",
    ];
    assert_eq!(qshape(&["-b", "4", "-f", "customer.example"]), doubling.join("\n") + "\n");
    let linear = [
        "                                                                  T 10 20 30 30+",
        "                                                           TOTAL  4  3  0  0   1",
        "                                                             mx9  4  3  0  0   1",
    ];
    assert_eq!(qshape(&["-l", "-t", "10", "-b", "4", "-f", "customer.example"]), linear.join("\n") + "\n");
    assert!(ids.iter().all(|id| in_queue(&sp, QueueName::Deferred, id)), "nothing moved");

    let cases: &[(&[&str], &str)] = &[
        (&["-f", "other.example"], "qshape: fatal: Flush service is not configured for destination \"other.example\"\n"),
        (&["-f", "bad..name"], "qshape: fatal: Cannot flush mail queue - invalid destination: \"bad..name\"\n"),
    ];
    for (args, err) in cases {
        let out = inst.cli("qshape", args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(text(&out.stderr), *err, "{args:?}");
    }
    let out = inst.cli("qshape", &["-s", "-f", "customer.example"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("qshape: fatal: -f takes no -s, -p or queue names\nUsage: qshape "), "{}", text(&out.stderr));
}

#[test]
fn authorized_flush_users_is_enforced_by_peer_credentials() {
    crate::harness::require_root("this test acts as another user");
    let mut inst = Install::new(&format!("{RELAY}authorized_flush_users = root\n"), FLUSH_ONLY);
    inst.start();
    // The checkout may sit below a directory other users cannot enter: run a copy.
    let postqueue = inst.dir.path().join("postqueue");
    std::fs::copy(bin("postqueue"), &postqueue).unwrap();
    let as_nobody = |args: &[&str]| {
        let mut cmd = Command::new(&postqueue);
        cmd.arg("-c").arg(&inst.etc).args(args);
        cmd.uid(65534).gid(65534);
        cmd.output().unwrap()
    };
    let out = as_nobody(&["-s", "example.net"]);
    assert_eq!(out.status.code(), Some(69));
    assert!(text(&out.stderr).contains("is not allowed to flush the mail queue"), "{}", text(&out.stderr));
    inst.wait_log("(65534) is not allowed to flush the mail queue");
    assert!(inst.cli("postqueue", &["-s", "example.net"]).status.success());
}

/// Subdomains in the descriptor test: many more logfiles than the flush process may open.
const SUBDOMAINS: usize = 500;

#[test]
fn at_domain_over_many_logfiles_works_in_groups_within_few_descriptors() {
    let mut inst = Install::new(RELAY, FLUSH_ONLY);
    inst.start();
    let sp = spool(&inst);
    let ids: Vec<QueueId> = (0..SUBDOMAINS).map(|n| deferred(&sp, &[&format!("u@s{n}.example.net")])).collect();
    inst.stop();
    inst.start();
    inst.wait_log(&format!("fast flush index reconciled with the deferred queue: {SUBDOMAINS} added"));
    // The flush process may hold 128 descriptors: far fewer than the logfiles one request covers.
    let flush = wait_for("the flush process", || inst.program_pid("flush"));
    let out = Command::new("prlimit").arg("--pid").arg(flush.to_string()).arg("--nofile=128:128").output().unwrap();
    assert!(out.status.success(), "prlimit: {}", text(&out.stderr));
    let reply = inst.flush(FlushRequest::SendSite { site: "example.net".into(), subdomains: true });
    assert_eq!(reply, FlushReply::ok(SUBDOMAINS as u64), "{}", inst.log());
    moved_to_incoming(&sp, &ids.iter().collect::<Vec<_>>());
    // Every logfile was emptied: a second request finds nothing to move.
    assert_eq!(inst.flush(FlushRequest::SendSite { site: "example.net".into(), subdomains: true }), FlushReply::ok(0));
    for id in &ids {
        assert!(sp.move_file(id, QueueName::Incoming, QueueName::Deferred).unwrap());
        assert_eq!(add(&inst, &format!("s{}.example.net", ids.iter().position(|i| i == id).unwrap()), id), FlushReply::ok(0));
    }
    // Purge covers every logfile the same way.
    assert_eq!(inst.flush(FlushRequest::Purge), FlushReply::ok(SUBDOMAINS as u64), "{}", inst.log());
}

/// `postqueue -i` delivers the message now even though its next hop is in the dead-route cache:
/// the flush service marks the file, and the queue manager forgets that route as it takes it
/// (Postfix's send_file unthrottles the same way). The other deferred message stays.
#[test]
fn postqueue_i_unthrottles_the_next_hop_of_that_message() {
    let sink_port = smtp::free_port();
    let (inst, port) = Install::mail_system("", sink_port);
    let mut c = smtp::Client::connect(port);
    c.cmd("EHLO x.test");
    let a = smtp::queued_id(&c.send_mail("s@sender.test", &["u@customer.example"], "Subject: a\n\nbody\n"));
    let b = smtp::queued_id(&c.send_mail("s@sender.test", &["v@customer.example"], "Subject: b\n\nbody\n"));
    wait_for("deferred", || (inst.queue_files("deferred").len() == 2).then_some(()));
    let sink = smtp::Sink::start(sink_port);
    let out = inst.cli("postqueue", &["-i", &a]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    inst.wait_log(&format!("{a}: removed"));
    assert_eq!(sink.count(), 1);
    let left: Vec<_> = inst.queue_files("deferred").iter().filter_map(|p| Some(p.file_name()?.to_str()?.to_string())).collect();
    assert_eq!(left, vec![b]);
}
