//! The mail log read by the ecosystem's tools, unchanged and without extra flags: Debian's
//! pflogsumm, fail2ban's stock postfix filter (modes normal, aggressive, auth) and logwatch's
//! postfix service count what a test session did. They match on `postfix/<service>[pid]:`, on
//! Postfix's line shapes and on `delay=` figures, so this is where a drift from Postfix's log
//! shows first.

use std::process::Command;

use crate::harness::smtp::{Client, Sink, free_port, queued_id};
use crate::harness::{Install, text};

fn msg(id: &str) -> String {
    format!("From: s@sender.test\nSubject: {id}\nMessage-ID: <{id}@test>\n\nbody of {id}\n")
}

/// A session with two accepted messages (three recipients, all delivered), one refused relay
/// and one client that hangs up after EHLO; returns the install once everything is logged.
fn session() -> (Install, Sink) {
    let sink = Sink::start(free_port());
    // Loopback is no trusted network here, so a stranger's domain is refused (for good: 554,
    // not the 454 of Postfix's default defer_unauth_destination).
    let main = "mynetworks = 192.0.2.0/24\nsmtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n";
    let (inst, port) = Install::mail_system(main, sink.port);
    let mut c = Client::connect(port);
    c.cmd("EHLO client.test");
    let one = queued_id(&c.send_mail("s@sender.test", &["a@customer.example"], &msg("one")));
    let two = queued_id(&c.send_mail("t@sender.test", &["b@customer.example", "c@customer.example"], &msg("two")));
    assert!(c.cmd("MAIL FROM:<s@sender.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<u@stranger.example>").starts_with("554 5.7.1"));
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye");
    let mut gone = Client::connect(port);
    gone.cmd("EHLO hangup.test");
    drop(gone);
    inst.wait_log(&format!("{one}: removed"));
    inst.wait_log(&format!("{two}: removed"));
    inst.wait_log("lost connection after EHLO from localhost[127.0.0.1]");
    inst.wait_log("disconnect from localhost[127.0.0.1] ehlo=1 mail=3 rcpt=3/4 data=2 quit=1 commands=10/11");
    assert_eq!(sink.count(), 2);
    (inst, sink)
}

/// The number in front of `label` on a line of a report (`      3   delivered`).
fn count(report: &str, label: &str) -> u64 {
    report
        .lines()
        .find_map(|l| {
            let l = l.trim();
            let (n, rest) = l.split_once(char::is_whitespace)?;
            if rest.trim_start().starts_with(label) { n.replace(',', "").parse().ok() } else { None }
        })
        .unwrap_or_else(|| panic!("no \"{label}\" count in:\n{report}"))
}

fn fail2ban(inst: &Install, mode: &str) -> u64 {
    let out = Command::new("fail2ban-regex")
        .arg(&inst.maillog)
        .arg(format!("postfix[mode={mode}]"))
        .output()
        .expect("fail2ban-regex is not installed (tests/run installs fail2ban)");
    let said = text(&out.stdout);
    let line = said.lines().find(|l| l.starts_with("Lines:")).unwrap_or_else(|| panic!("fail2ban-regex said: {said}{}", text(&out.stderr)));
    // "Lines: 40 lines, 0 ignored, 3 matched, 37 missed"
    line.split(", ").find_map(|p| p.strip_suffix(" matched")).and_then(|n| n.parse().ok()).unwrap_or(0)
}

#[test]
fn pflogsumm_fail2ban_and_logwatch_count_the_session() {
    let (inst, _sink) = session();
    let log = inst.log();

    let out = Command::new("pflogsumm").arg(&inst.maillog).output().expect("pflogsumm is not installed (tests/run installs it)");
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}{}", text(&out.stderr));
    assert_eq!(count(&report, "received"), 2, "{report}");
    assert_eq!(count(&report, "delivered"), 3, "{report}");
    assert_eq!(count(&report, "rejected"), 1, "{report}{log}");
    assert_eq!(count(&report, "senders"), 2, "{report}");
    assert_eq!(count(&report, "recipients"), 3, "{report}");
    assert!(report.contains("customer.example"), "per-domain delivery table: {report}");

    // normal: the refused relay; aggressive adds the hang-up after EHLO; no logins were tried.
    assert_eq!(fail2ban(&inst, "normal"), 1, "{log}");
    assert_eq!(fail2ban(&inst, "aggressive"), 2, "{log}");
    assert_eq!(fail2ban(&inst, "auth"), 0, "{log}");

    // Debian's logwatch reads the maillog group from `mail.log` in the log directory.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&inst.maillog, dir.path().join("mail.log")).unwrap();
    let out = Command::new("logwatch")
        .args(["--service", "postfix", "--range", "All", "--detail", "High", "--output", "stdout", "--logdir"])
        .arg(dir.path())
        .output()
        .expect("logwatch is not installed (tests/run installs it)");
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}{}", text(&out.stderr));
    assert_eq!(count(&report, "Accepted"), 2, "{report}");
    assert_eq!(count(&report, "Rejected"), 1, "{report}");
    assert_eq!(count(&report, "5xx Reject relay denied"), 1, "{report}");
    assert_eq!(count(&report, "Sent via SMTP"), 3, "{report}");
    assert_eq!(count(&report, "Removed from queue"), 2, "{report}");
    assert_eq!(count(&report, "Connections"), 2, "{report}");
    assert_eq!(count(&report, "Disconnections"), 2, "{report}");
    // The delay figures parse (Postfix's precision), so the percentile table is there.
    assert!(report.contains("Delivery Delays Percentiles"), "{report}");
}
