//! Reloads under load (issue 10): `postfix reload` — plain, after `postconf -e` of an smtpd
//! parameter, and after `postconf -Pe` of an `-o` override on the smtpd service, which
//! replaces the smtpd process — while 20 clients are in the middle of multi-message sessions.
//! No session is cut and every acknowledged message is delivered; the new parameters
//! (`smtpd_banner`, `syslog_name`) apply to what comes after.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::harness::smtp::{Client, Sink, free_port, queued_id};
use crate::harness::{Install, mail_system_master_cf, text, wait_for};

#[test]
fn reloads_cut_no_session_and_lose_no_message() {
    let sink = Sink::start(free_port());
    let port = free_port();
    let service = format!("127.0.0.1:{port}");
    let mut inst = Install::new(
        &format!("relayhost = [127.0.0.1]:{}\nrelay_domains = customer.example\nsmtpd_banner = $myhostname ESMTP first\n", sink.port),
        &mail_system_master_cf(port),
    );
    inst.start();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..20)
        .map(|n| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(port);
                assert!(c.cmd("EHLO client.test").starts_with("250"));
                let mut acked = Vec::new();
                // Bounded: the test stops the clients after its reloads, and never later than this.
                while !stop.load(Ordering::Relaxed) && acked.len() < 2000 {
                    let reply = c.send_mail(
                        "s@sender.test",
                        &["u@customer.example"],
                        &format!("Subject: client {n} message {}\n\nx\n", acked.len()),
                    );
                    assert!(reply.starts_with("250 2.0.0 Ok: queued as"), "client {n}: {reply}");
                    acked.push(queued_id(&reply));
                    std::thread::sleep(Duration::from_millis(5));
                }
                assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye", "client {n}: its session was not cut");
                acked
            })
        })
        .collect();
    let sent = |inst: &Install| inst.log_count(": client=localhost[127.0.0.1]");
    wait_for("every client under way", || (sent(&inst) >= 40).then_some(()));

    // 1. A plain reload.
    assert!(inst.cli("postfix", &["reload"]).status.success());
    let before = sent(&inst);
    wait_for("mail after the plain reload", || (sent(&inst) > before + 40).then_some(()));

    // 2. main.cf changes that smtpd applies in place: the banner and the syslog name.
    assert!(inst.cli("postconf", &["-e", "smtpd_banner = $myhostname ESMTP second", "syslog_name = postern2"]).status.success());
    assert!(inst.cli("postfix", &["reload"]).status.success());
    wait_for("the new banner", || Client::connect(port).banner.ends_with("ESMTP second").then_some(()));
    inst.wait_log("postern2/smtpd[");
    let before = sent(&inst);
    wait_for("mail after the main.cf reload", || (sent(&inst) > before + 40).then_some(()));

    // 3. An -o override on the smtpd service: the master replaces the process; the old one
    //    stops accepting and finishes its sessions.
    let out = inst.cli("postconf", &["-Pe", &format!("{service}/inet/syslog_name=postern3")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let old_smtpd = inst.program_pid("smtpd").unwrap();
    assert!(inst.cli("postfix", &["reload"]).status.success());
    wait_for("a new smtpd", || inst.children().iter().any(|(p, cmd)| *p != old_smtpd && cmd.starts_with("smtpd")).then_some(()));
    // New clients are served by the new process, which logs under its new name. (The old one
    // may still serve a client that its acceptor took before it read the master's word.)
    wait_for("a client served by the new smtpd", || {
        let mut probe = Client::connect(port);
        assert_eq!(probe.cmd("QUIT"), "221 2.0.0 Bye");
        inst.log().contains("postern3/smtpd[").then_some(())
    });
    assert!(crate::harness::alive(old_smtpd), "the old smtpd still serves its sessions");
    let before = sent(&inst);
    wait_for("mail after the master.cf reload", || (sent(&inst) > before + 40).then_some(()));

    stop.store(true, Ordering::Relaxed);
    let results: Vec<_> = clients.into_iter().map(|c| c.join()).collect();
    // A failed client has printed its reply; the log says what the server did meanwhile.
    assert!(results.iter().all(Result::is_ok), "a client failed; the mail log:\n{}", inst.log());
    let acked: Vec<String> = results.into_iter().flat_map(Result::unwrap).collect();
    // Its sessions over, the old smtpd exits by itself.
    wait_for("the old smtpd gone", || (!crate::harness::alive(old_smtpd)).then_some(()));
    wait_for("every acknowledged message delivered", || (sink.count() >= acked.len()).then_some(()));
    // The sink has them all; the queue manager logs each removal just after.
    wait_for("every acknowledged message removed", || {
        let log = inst.log();
        acked.iter().all(|id| log.contains(&format!("{id}: removed"))).then_some(())
    });
    // (The test's own banner probes hang up after CONNECT; no session lost anything else.)
    let cut = inst.log().lines().filter(|l| l.contains("lost connection after") && !l.contains("after CONNECT")).count();
    assert_eq!(cut, 0, "{}", inst.log());
    assert_eq!(inst.log_count("timeout after"), 0);
}

#[test]
fn a_replaced_smtpd_and_its_successor_share_maxproc() {
    let sink = Sink::start(free_port());
    let port = free_port();
    let service = format!("127.0.0.1:{port}");
    let master = mail_system_master_cf(port).replace(" inet n - n - - smtpd", " inet n - n - 3 smtpd");
    let mut inst = Install::new(&format!("relayhost = [127.0.0.1]:{}\nrelay_domains = customer.example\n", sink.port), &master);
    inst.start();
    // The old process serves three sessions: all of maxproc.
    let mut old: Vec<Client> = (0..3).map(|_| Client::connect(port)).collect();
    for c in &mut old {
        assert!(c.cmd("EHLO client.test").starts_with("250"));
    }
    let old_smtpd = inst.program_pid("smtpd").unwrap();
    assert!(inst.cli("postconf", &["-Pe", &format!("{service}/inet/syslog_name=postern-next")]).status.success());
    assert!(inst.cli("postfix", &["reload"]).status.success());
    wait_for("the successor", || inst.children().iter().any(|(p, cmd)| *p != old_smtpd && cmd.starts_with("smtpd")).then_some(()));
    // A fourth client waits: the successor keeps the three slots its predecessor still uses.
    let fourth = std::thread::spawn(move || {
        let mut c = Client::connect(port);
        let banner = c.banner.clone();
        assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye");
        banner
    });
    inst.wait_log("postern-next/smtpd[");
    inst.wait_log("has reached its process limit \"3\"");
    assert!(!fourth.is_finished());
    // One old session ends: its slot passes to the successor, which serves the fourth client.
    assert_eq!(old[0].cmd("QUIT"), "221 2.0.0 Bye");
    assert!(fourth.join().unwrap().starts_with("220 "));
    // The old sessions were never cut.
    for c in &mut old[1..] {
        assert_eq!(c.cmd("NOOP"), "250 2.0.0 Ok");
        assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye");
    }
    wait_for("the old smtpd gone", || (!crate::harness::alive(old_smtpd)).then_some(()));
}

#[test]
fn a_successor_whose_predecessor_is_already_gone_serves_at_once() {
    // An idle smtpd drains at once, often before its successor is ready: the successor must
    // still learn that no slot is held for it.
    let port = free_port();
    let mut inst = Install::new("relay_domains = customer.example\n", &mail_system_master_cf(port));
    inst.start();
    for round in 0..3 {
        let old = inst.program_pid("smtpd").unwrap();
        assert!(inst.cli("postconf", &["-Pe", &format!("127.0.0.1:{port}/inet/smtpd_error_sleep_time={round}s")]).status.success());
        assert!(inst.cli("postfix", &["reload"]).status.success());
        wait_for("the old smtpd gone", || (!crate::harness::alive(old)).then_some(()));
        wait_for("a new smtpd", || inst.program_pid("smtpd").filter(|p| *p != old));
        let mut c = Client::connect(port);
        assert!(c.banner.starts_with("220"), "round {round}: {}", c.banner);
        assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye");
    }
}
