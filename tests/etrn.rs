//! Fast ETRN end to end: mail deferred for an unreachable site, then `ETRN site` over SMTP
//! re-schedules exactly that site's mail (the seed README's experiments), at queue scale, with
//! Postfix's check order and reply texts, restrictions, fallbacks and hostile arguments.

use std::collections::HashSet;

use crate::harness::smtp::{Client, Sink, free_port, queued_id};
use crate::harness::{Install, wait_for};

/// Queue IDs that qmgr logged `(queue active)` for in the log text after byte `from`.
fn activated_since(inst: &Install, from: usize) -> HashSet<String> {
    let log = inst.log();
    log[from.min(log.len())..]
        .lines()
        .filter(|l| l.contains("(queue active)"))
        .filter_map(|l| l.split("]: ").nth(1)?.split(':').next().map(str::to_string))
        .collect()
}

/// Submit one message per recipient over one session; returns the queue IDs.
pub(crate) fn submit(port: u16, rcpts: &[String]) -> Vec<String> {
    let mut c = Client::connect(port);
    c.cmd("EHLO client.test");
    rcpts
        .iter()
        .map(|r| {
            let body = format!("Subject: for {r}\nMessage-ID: <{r}.{}@test>\n\nhello\n", rcpts.len());
            queued_id(&c.send_mail("s@sender.test", &[r], &body))
        })
        .collect()
}

/// Wait until every ID is in the deferred queue and listed in its site's logfile.
pub(crate) fn wait_deferred(inst: &Install, ids: &[String]) {
    wait_for("all messages deferred", || {
        let deferred: HashSet<String> =
            inst.queue_files("deferred").iter().filter_map(|p| p.file_name()?.to_str().map(str::to_string)).collect();
        ids.iter().all(|id| deferred.contains(id)).then_some(())
    });
    wait_for("all IDs in flush logfiles", || {
        let listed: String = inst.queue_files("flush").iter().filter_map(|p| std::fs::read_to_string(p).ok()).collect();
        ids.iter().all(|id| listed.contains(id.as_str())).then_some(())
    });
}

#[test]
fn the_seed_readme_experiments() {
    let sink_port = free_port();
    let (inst, port) = Install::mail_system("", sink_port);
    let customer = submit(port, &["a@customer.example".into(), "b@customer.example".into()]);
    let other = submit(port, &["c@other.example".into()]);
    let all: Vec<String> = customer.iter().chain(&other).cloned().collect();
    wait_deferred(&inst, &all);
    let logfile = std::fs::read_to_string(inst.spool.join("flush/customer.example")).unwrap();
    assert_eq!(logfile.lines().collect::<HashSet<_>>(), customer.iter().map(String::as_str).collect());

    // 1. ETRN for a site with mail: exactly its messages are activated; still down, they are
    //    deferred again and their IDs are added back to the logfile.
    let mut c = Client::connect(port);
    c.cmd("HELO my.client.name");
    let mark = inst.log().len();
    assert_eq!(c.cmd("ETRN customer.example"), "253 OK, 2 pending messages for node customer.example started");
    wait_for("both customer messages activated", || (activated_since(&inst, mark) == customer.iter().cloned().collect()).then_some(()));
    wait_deferred(&inst, &customer);
    assert_eq!(activated_since(&inst, mark), customer.iter().cloned().collect::<HashSet<_>>());

    // 2. ETRN for a relay domain with no mail queued: no delivery at all.
    let mark = inst.log().len();
    assert_eq!(c.cmd("ETRN some.other.customer.example"), "251 OK, no messages waiting for node some.other.customer.example");
    // flush moves files before it answers: nothing left deferred/ for this ETRN.
    wait_deferred(&inst, &all);
    assert!(activated_since(&inst, mark).is_empty(), "{:?}", activated_since(&inst, mark));

    // 3. ETRN for a destination we do not relay to: the default fallback delivers all mail.
    let mark = inst.log().len();
    assert_eq!(c.cmd("ETRN not.a.customer.domain"), "250 OK, queuing for node not.a.customer.domain started");
    wait_for("every queued message activated", || (activated_since(&inst, mark) == all.iter().cloned().collect()).then_some(()));
}

#[test]
fn reject_fallback_and_postfix_reply_style() {
    let (inst, port) = Install::mail_system("etrn_fallback = reject\netrn_reply_style = postfix\n", free_port());
    let mut c = Client::connect(port);
    assert_eq!(c.cmd("ETRN not.a.customer"), "459 <not.a.customer>: service unavailable");
    inst.wait_log("warning: reject: ETRN not.a.customer... from localhost[127.0.0.1]");
    assert_eq!(c.cmd("ETRN customer.example"), "250 Queuing started");
    assert_eq!(c.cmd("ETRN [127.0.0.1]"), "459 <[127.0.0.1]>: service unavailable");
}

#[test]
fn fast_flush_off_uses_the_fallback() {
    let (_inst, port) = Install::mail_system("fast_flush_domains =\netrn_fallback = reject\n", free_port());
    let mut c = Client::connect(port);
    assert_eq!(c.cmd("ETRN customer.example"), "459 <customer.example>: service unavailable");
}

#[test]
fn check_order_and_reply_texts() {
    let (inst, port) = Install::mail_system("smtpd_helo_required = yes\nsmtpd_error_sleep_time = 0s\n", free_port());
    let mut c = Client::connect(port);
    assert_eq!(c.cmd("ETRN customer.example"), "503 Error: send HELO/EHLO first");
    assert_eq!(c.cmd("HELO x"), format!("250 {}", c.banner.split(' ').nth(1).unwrap()));
    assert_eq!(c.cmd("ETRN"), "500 Syntax: ETRN domain");
    assert_eq!(c.cmd("ETRN a b"), "500 Syntax: ETRN domain");
    for bad in ["bad_domain..x", "customer.example.", "-customer.example", "1.2.3.4", "@", "../../etc", "a..b"] {
        assert_eq!(c.cmd(&format!("ETRN {bad}")), "501 Error: invalid parameter syntax", "{bad}");
    }
    assert_eq!(c.cmd(&format!("ETRN {}", "a".repeat(300))), "501 Error: invalid parameter syntax");
    assert!(c.cmd("ETRN #queue1").starts_with("501 Error: ETRN #queue is not supported"));
    assert_eq!(c.cmd("etrn CUSTOMER.example"), "251 OK, no messages waiting for node CUSTOMER.example");
    assert_eq!(c.cmd("MAIL FROM:<a@b.example>"), "250 2.1.0 Ok");
    assert_eq!(c.cmd("ETRN customer.example"), "503 Error: MAIL transaction in progress");
    assert_eq!(c.cmd("RSET"), "250 2.0.0 Ok");
    assert_eq!(c.cmd("ETRN customer.example"), "251 OK, no messages waiting for node customer.example");
    c.send_raw(b"ETRN caf\xc3\xa9.example\r\n");
    assert_eq!(c.reply(), "501 Error: invalid parameter syntax");
    c.send_raw(b"ETRN \xff\xfe\r\n");
    assert_eq!(c.reply(), "500 5.5.2 Error: bad UTF-8 syntax");
    assert_eq!(c.cmd("ETRN a\0b"), "500 5.5.2 Error: bad syntax");
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye");
    // Postfix's order (its command table), not the order of first use.
    inst.wait_log("disconnect from localhost[127.0.0.1] helo=1 mail=1 rset=1 etrn=");
    assert!(inst.queue_files("flush").iter().all(|p| p.parent() == Some(inst.spool.join("flush").as_path())));
}

#[test]
fn etrn_restrictions() {
    let (inst, port) =
        Install::mail_system("smtpd_etrn_restrictions = check_etrn_access inline:{ok.customer.example=OK}, reject\n", free_port());
    let mut c = Client::connect(port);
    c.cmd("EHLO x.test");
    assert_eq!(c.cmd("ETRN ok.customer.example"), "251 OK, no messages waiting for node ok.customer.example");
    assert_eq!(c.cmd("ETRN customer.example"), "554 5.7.1 <customer.example>: Etrn command rejected: Access denied");
    inst.wait_log("NOQUEUE: reject: ETRN from localhost[127.0.0.1]: 554 5.7.1 <customer.example>: Etrn command rejected: Access denied; proto=ESMTP helo=<x.test>");

    let (_i2, port2) = Install::mail_system("mynetworks = 192.0.2.0/24\nsmtpd_etrn_restrictions = permit_mynetworks, defer\n", free_port());
    let mut c = Client::connect(port2);
    assert_eq!(c.cmd("ETRN customer.example"), "450 4.3.2 <customer.example>: Etrn command rejected: Try again later");
}

#[test]
fn flush_service_unreachable_gives_458() {
    let (inst, port) = Install::mail_system("", free_port());
    assert!(inst.cli("postconf", &["-Pe", &format!("127.0.0.1:{port}/inet/flush_service_name=nosuch")]).status.success());
    assert!(inst.cli("postfix", &["reload"]).status.success());
    inst.wait_log("reload -- version");
    wait_for("the reloaded smtpd", || {
        let mut c = Client::connect(port);
        (c.cmd("ETRN customer.example") == "458 Unable to queue messages").then_some(())
    });
    inst.wait_log("warning: unable to talk to fast flush service");
}

#[test]
fn an_unreadable_fast_flush_domains_table_is_a_temporary_failure() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("flush_domains");
    std::fs::write(&table, "customer.example ok\n").unwrap();
    let (inst, port) =
        Install::mail_system(&format!("fast_flush_domains = texthash:{}\netrn_fallback = reject\n", table.display()), free_port());
    let mut c = Client::connect(port);
    assert_eq!(c.cmd("ETRN customer.example"), "251 OK, no messages waiting for node customer.example");
    assert_eq!(c.cmd("ETRN other.example"), "459 <other.example>: service unavailable");
    // Not "not eligible" (459, or a whole-queue run with the slow fallback): try again later.
    std::fs::remove_file(&table).unwrap();
    assert_eq!(c.cmd("ETRN customer.example"), "458 Unable to queue messages");
    inst.wait_log("flush_domains: No such file or directory");
}

#[test]
fn etrn_after_the_flush_service_restarted() {
    // smtpd keeps its connection to the flush service between ETRNs; a restarted service must
    // not turn the next ETRN into a failure or a repeated request.
    let (inst, port) = Install::mail_system("", free_port());
    let queued = submit(port, &["a@customer.example".into()]);
    wait_deferred(&inst, &queued);
    let mut c = Client::connect(port);
    c.cmd("HELO my.client.name");
    assert_eq!(c.cmd("ETRN other.customer.example"), "251 OK, no messages waiting for node other.customer.example");
    let old = inst.program_pid("flush").expect("flush runs");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(old), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_for("a new flush process", || inst.program_pid("flush").filter(|&p| p != old));
    wait_deferred(&inst, &queued);
    assert_eq!(c.cmd("ETRN customer.example"), "253 OK, 1 pending messages for node customer.example started");
    assert_eq!(inst.log_count("unable to talk to fast flush service"), 0, "{}", inst.log());
}

#[test]
fn two_thousand_messages_for_two_hundred_domains() {
    let sink_port = free_port();
    let (inst, port) = Install::mail_system("", sink_port);
    // 200 domains below example.test, 10 messages each; d1 has subdomains s1.d1 and s2.d1.
    let mut rcpts = Vec::new();
    for d in 0..200 {
        for m in 0..10 {
            let domain = match (d, m) {
                (1, 7) => "s1.d1.example.test".to_string(),
                (1, 8 | 9) => "s2.d1.example.test".to_string(),
                _ => format!("d{d}.example.test"),
            };
            rcpts.push(format!("u{m}@{domain}"));
        }
    }
    let ids = submit(port, &rcpts);
    wait_deferred(&inst, &ids);
    let by_domain = |pred: &dyn Fn(&str) -> bool| -> HashSet<String> {
        rcpts.iter().zip(&ids).filter(|(r, _)| pred(r.split('@').nth(1).unwrap())).map(|(_, id)| id.clone()).collect()
    };

    let sink = Sink::start(sink_port);
    let mut c = Client::connect(port);
    c.cmd("EHLO client.test");
    let mark = inst.log().len();
    assert_eq!(c.cmd("ETRN d42.example.test"), "253 OK, 10 pending messages for node d42.example.test started");
    let want = by_domain(&|d| d == "d42.example.test");
    wait_for("d42's ten messages at the sink", || (sink.count() == 10).then_some(()));
    for m in sink.messages() {
        assert_eq!(m.recipients.len(), 1);
        assert!(m.recipients[0].ends_with("@d42.example.test"), "{:?}", m.recipients);
    }
    assert_eq!(activated_since(&inst, mark), want);
    let delivered: HashSet<String> = sink.messages().iter().map(|m| m.data.clone()).collect();
    assert_eq!(delivered.len(), 10, "each message exactly once");

    // ETRN @d1.example.test: d1 and its subdomains, nothing else.
    let mark = inst.log().len();
    assert_eq!(c.cmd("ETRN @d1.example.test"), "253 OK, 10 pending messages for node d1.example.test started");
    wait_for("d1 and its subdomains delivered", || (sink.count() == 20).then_some(()));
    assert_eq!(activated_since(&inst, mark), by_domain(&|d| d.ends_with("d1.example.test")));
    // ETRN for the plain subdomain only sends nothing more (already sent), and d10 stays queued.
    assert_eq!(c.cmd("ETRN s1.d1.example.test"), "251 OK, no messages waiting for node s1.d1.example.test");
    // flush moves files before it answers, so the queue already shows that nothing moved.
    assert_eq!(sink.count(), 20);
    assert_eq!(inst.queue_files("deferred").len(), 2000 - 20);
}

#[test]
fn ten_thousand_etrns_in_one_session() {
    let (inst, port) = Install::mail_system("smtpd_junk_command_limit = 20000\n", free_port());
    let mut c = Client::connect(port);
    c.cmd("EHLO client.test");
    for i in 0..10_000 {
        let site = if i % 3 == 0 { "customer.example".to_string() } else { format!("d{}.example.test", i % 50) };
        let r = c.cmd(&format!("ETRN {site}"));
        assert!(r.starts_with("251 OK, no messages waiting for node"), "{i}: {r}");
    }
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye");
    inst.wait_log("etrn=10000 quit=1 commands=10002");
    // With the default junk limit a client that only sends ETRN is cut off, and the server
    // keeps serving others.
    let (inst2, port2) = Install::mail_system("smtpd_error_sleep_time = 0s\n", free_port());
    let mut c = Client::connect(port2);
    let mut last = String::new();
    for _ in 0..200 {
        last = c.cmd("ETRN customer.example");
        if last.is_empty() || last.contains("421") {
            break;
        }
    }
    assert!(last.contains("421 4.7.0") || last.is_empty(), "{last}");
    inst2.wait_log("too many errors after ETRN from localhost[127.0.0.1]");
    let mut c2 = Client::connect(port2);
    assert!(c2.cmd("ETRN customer.example").starts_with("251"));
}
