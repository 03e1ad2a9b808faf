//! No message stays in `active/`: a delivery agent that dies in the middle of a request, or
//! a request that never gets an answer, ends in a deferral with Postfix's reason, and the
//! message is delivered once things work again.

use std::sync::atomic::Ordering;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::harness::smtp::{Client, Sink, free_port, queued_id};
use crate::harness::{Install, text, wait_for};

fn queue_one(port: u16, mid: &str) -> String {
    let mut c = Client::connect(port);
    c.cmd("EHLO client.test");
    let reply = c.send_mail("s@sender.test", &["u@customer.example"], &format!("Subject: stuck\nMessage-ID: <{mid}>\n\nbody\n"));
    assert!(reply.starts_with("250 "), "{reply}");
    queued_id(&reply)
}

#[test]
fn a_delivery_agent_killed_mid_request_defers_the_message() {
    let sink = Sink::start(free_port());
    let (inst, port) = Install::mail_system("", sink.port);
    // A first delivery leaves qmgr a kept connection to the agent: the death must be noticed
    // on that one too.
    let first = queue_one(port, "first@test");
    inst.wait_log(&format!("{first}: removed"));
    // The sink takes the next message and never answers the end of DATA: the agent is
    // mid-request.
    sink.data_delay_ms.store(600_000, Ordering::Relaxed);
    let id = queue_one(port, "killed@test");
    wait_for("the agent to send the message", || (sink.data_ends.load(Ordering::Relaxed) == 2).then_some(()));
    inst.wait_log(&format!("{id}: from=<s@sender.test>"));
    let smtp = wait_for("the smtp agent", || inst.program_pid("smtp"));
    assert!(!inst.queue_files("active").is_empty(), "the message is active while the agent works");
    kill(Pid::from_raw(smtp), Signal::SIGKILL).unwrap();
    let line = inst.wait_log(&format!("{id}: to=<u@customer.example>, relay=none"));
    assert!(line.contains("dsn=4.3.0, status=deferred (unknown mail transport error)"), "{line}");
    inst.wait_log("warning: private/smtp: premature disconnect");
    wait_for("the message to leave active", || inst.queue_files("active").is_empty().then_some(()));
    assert_eq!(inst.queue_files("deferred").len(), 1);
    // The route is suspended, as in Postfix, until `postqueue -f` (F) lifts it. Once the next
    // hop answers, the deferred message is delivered.
    sink.data_delay_ms.store(0, Ordering::Relaxed);
    let out = inst.cli("postqueue", &["-f"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    inst.wait_log(&format!("{id}: removed"));
}

#[test]
fn a_request_without_an_answer_times_out_and_defers() {
    let sink = Sink::start(free_port());
    sink.data_delay_ms.store(600_000, Ordering::Relaxed);
    let (inst, port) = Install::mail_system("daemon_timeout = 2s\n", sink.port);
    let id = queue_one(port, "timeout@test");
    let warning = inst.wait_log(&format!("{id}: timeout receiving delivery status from transport: smtp"));
    assert!(warning.contains("warning: "), "{warning}");
    let line = inst.wait_log(&format!("{id}: to=<u@customer.example>, relay=none"));
    assert!(line.contains("dsn=4.3.0, status=deferred (unknown mail transport error)"), "{line}");
    wait_for("the message to leave active", || inst.queue_files("active").is_empty().then_some(()));
    assert_eq!(inst.queue_files("deferred").len(), 1);
}

#[test]
fn a_deferral_that_cannot_reach_deferred_leaves_active_for_incoming() {
    let port = free_port();
    let (inst, smtpd) = Install::mail_system("", port);
    // The deferred queue cannot take files: each hash directory is a plain file instead (a
    // permission change would not stop a test that runs as root).
    let hash_dirs: Vec<_> = (0..16).map(|h| inst.spool.join(format!("deferred/{h:X}"))).collect();
    for d in &hash_dirs {
        let _ = std::fs::remove_dir(d);
        std::fs::write(d, "").unwrap();
    }
    // Nothing listens on the next hop: the message is deferred.
    let id = queue_one(smtpd, "nowhere@test");
    inst.wait_log(&format!("warning: {id}: move from active to deferred: "));
    wait_for("the message to leave active", || inst.queue_files("active").is_empty().then_some(()));
    assert!(inst.queue_files("incoming").iter().any(|p| p.ends_with(&id)), "{:?}", inst.queue_files("incoming"));
    for d in &hash_dirs {
        std::fs::remove_file(d).unwrap();
    }
    // It is retried from there.
    let sink = Sink::start(port);
    let out = inst.cli("postqueue", &["-f"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    inst.wait_log(&format!("{id}: removed"));
    assert_eq!(sink.count_containing("Message-ID: <nowhere@test>"), 1);
}
