//! Address verification end to end (issue 12): a backup MX for customer.example with
//! `reject_unverified_recipient`, whose primary is a sink that knows some users and refuses
//! others at RCPT. Probes go the normal route (transport_maps), stop after RCPT, are made once
//! per address, leave no queue file and never reach the sink's DATA; the cache answers while
//! the primary is down and after a restart.

use crate::harness::smtp::{Client, Sink, free_port};
use crate::harness::{Install, mail_system_master_cf, wait_for};

const IN_PROGRESS: &str =
    "450 4.1.1 <known@customer.example>: Recipient address rejected: unverified address: Address verification in progress";

fn session(port: u16) -> Client {
    let mut c = Client::connect(port);
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<s@remote.test>").starts_with("250"));
    c
}

fn rcpts_at(sink: &Sink, addr: &str) -> usize {
    let wanted = format!("RCPT TO:<{addr}>\r\n");
    sink.commands.lock().unwrap().iter().filter(|l| l.as_slice() == wanted.as_bytes()).count()
}

fn queue_is_empty(inst: &Install) -> bool {
    ["maildrop", "incoming", "active", "deferred", "hold", "corrupt"].iter().all(|q| inst.queue_files(q).is_empty())
}

#[test]
fn probes_verify_recipients_once_and_the_cache_outlives_the_primary_and_a_restart() {
    let sink = Sink::start(free_port());
    let port = free_port();
    let main = format!(
        "relay_domains = customer.example\n\
         transport_maps = inline:{{customer.example=smtp:[127.0.0.1]:{}}}\n\
         smtpd_recipient_restrictions = reject_unauth_destination, reject_unverified_recipient\n\
         address_verify_poll_count = 1\n\
         unverified_recipient_reject_code = 550\n\
         data_directory = data\n\
         smtp_connection_cache_time_limit = 1s\n",
        sink.port
    );
    let master = format!("{}verify unix - - n - 1 verify\n", mail_system_master_cf(port));
    let mut inst = Install::new(&main, &master);
    inst.start();
    let unknown = "<reject-unknown@customer.example>";
    let refused = format!(
        "550 5.1.1 {unknown}: Recipient address rejected: undeliverable address: host 127.0.0.1[127.0.0.1] said: \
         550 5.1.1 {unknown}: Recipient address rejected: User unknown (in reply to RCPT TO command)"
    );

    // Nothing is known yet: both are probed, and the client is asked to come back.
    let mut c = session(port);
    assert_eq!(c.cmd("RCPT TO:<known@customer.example>"), IN_PROGRESS);
    assert_eq!(
        c.cmd(&format!("RCPT TO:{unknown}")),
        format!("450 4.1.1 {unknown}: Recipient address rejected: unverified address: Address verification in progress")
    );
    // Asking again while the probe is out sends no second probe.
    inst.wait_log("to=<known@customer.example>, relay=127.0.0.1[127.0.0.1]");
    inst.wait_log(&format!("to={unknown}, relay=127.0.0.1[127.0.0.1]"));
    let line = inst.wait_log("status=deliverable");
    assert!(line.contains("postfix/smtp[") && line.contains("dsn=2.1.5, status=deliverable (250 2.1.5 Ok)"), "{line}");
    let line = inst.wait_log("status=undeliverable");
    assert!(
        line.contains(&format!("to={unknown}")) && line.contains("dsn=5.1.1, status=undeliverable (host 127.0.0.1[127.0.0.1] said: 550"),
        "{line}"
    );
    let log = inst.log();
    assert!(log.contains(&format!("NOQUEUE: reject: RCPT from localhost[127.0.0.1]: {IN_PROGRESS}; from=<s@remote.test> to=<known@customer.example> proto=ESMTP helo=<client.test>")), "{log}");

    // The answers now come from the cache, in the same session.
    assert_eq!(c.cmd("RCPT TO:<known@customer.example>"), "250 2.1.5 Ok");
    assert_eq!(c.cmd(&format!("RCPT TO:{unknown}")), refused);
    drop(c);

    // One probe per address; the probes left no queue file and the primary never saw DATA.
    assert_eq!(rcpts_at(&sink, "known@customer.example"), 1);
    assert_eq!(rcpts_at(&sink, "reject-unknown@customer.example"), 1);
    wait_for("the probes' queue files to be removed", || (inst.log_count(": removed") == 2 && queue_is_empty(&inst)).then_some(()));
    let probe_sender =
        inst.log().lines().filter(|l| l.contains("from=<double-bounce@") && l.contains("size=0, nrcpt=1 (queue active)")).count();
    assert_eq!(probe_sender, 2, "{}", inst.log());

    // The primary goes down (after the agent closed the connections it kept to it): the cache
    // still decides, for the known and the unknown user.
    wait_for("the kept connections to be closed", || {
        let quits = sink.commands.lock().unwrap().iter().filter(|l| l.as_slice() == b"QUIT\r\n").count();
        (quits == sink.connections.load(std::sync::atomic::Ordering::Relaxed)).then_some(())
    });
    let sink_port = sink.port;
    let sink_commands = sink.commands.clone();
    drop(sink);
    wait_for("the primary to be down", || std::net::TcpStream::connect(("127.0.0.1", sink_port)).is_err().then_some(()));
    let mut c = session(port);
    assert_eq!(c.cmd("RCPT TO:<known@customer.example>"), "250 2.1.5 Ok");
    assert_eq!(c.cmd(&format!("RCPT TO:{unknown}")), refused);
    // A new address cannot be verified now: its probe fails, is settled at once, and the
    // client is deferred with the reason.
    assert!(c.cmd("RCPT TO:<new@customer.example>").contains("unverified address: Address verification in progress"));
    let line = inst.wait_log("to=<new@customer.example>, relay=none");
    assert!(line.contains("status=undeliverable (connect to 127.0.0.1[127.0.0.1]"), "{line}");
    wait_for("the failed probe's queue file to be removed", || (inst.log_count(": removed") == 3 && queue_is_empty(&inst)).then_some(()));
    assert_eq!(
        c.cmd("RCPT TO:<new@customer.example>"),
        format!(
            "450 4.1.1 <new@customer.example>: Recipient address rejected: unverified address: connect to 127.0.0.1[127.0.0.1]:{sink_port}: Connection refused"
        )
    );
    drop(c);

    // A restart of the whole system: the cache is on disk.
    inst.stop();
    inst.start();
    let mut c = session(port);
    assert_eq!(c.cmd("RCPT TO:<known@customer.example>"), "250 2.1.5 Ok");
    assert_eq!(c.cmd(&format!("RCPT TO:{unknown}")), refused);
    assert!(c.cmd("QUIT").starts_with("221"));
    assert!(inst.dir.path().join("etc/data/verify_cache.lmdb").is_file());
    assert!(queue_is_empty(&inst));
    let commands = sink_commands.lock().unwrap();
    assert!(!commands.iter().any(|l| l.eq_ignore_ascii_case(b"DATA\r\n")), "the primary saw DATA");
    assert!(!inst.log().contains("verify service failure"), "{}", inst.log());
}

#[test]
fn without_a_verify_service_the_recipient_is_deferred_not_accepted() {
    let sink = Sink::start(free_port());
    let port = free_port();
    let main = format!(
        "relay_domains = customer.example\nrelayhost = [127.0.0.1]:{}\n\
         smtpd_recipient_restrictions = reject_unauth_destination, reject_unverified_recipient\n\
         address_verify_poll_count = 1\n",
        sink.port
    );
    // No verify service in master.cf.
    let mut inst = Install::new(&main, &mail_system_master_cf(port));
    inst.start();
    let mut c = session(port);
    assert_eq!(
        c.cmd("RCPT TO:<known@customer.example>"),
        "450 4.1.1 <known@customer.example>: Recipient address rejected: address verification problem"
    );
    inst.wait_log("warning: verify service failure");
    assert_eq!(rcpts_at(&sink, "known@customer.example"), 0);
}
