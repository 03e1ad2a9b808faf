//! Real ETRN clients that nobody here wrote: `msmtp --rmqs` and `fetchmail -p ETRN` (Debian
//! packages, installed by .ci/run) against the running system.

use std::process::Command;

use crate::harness::smtp::{Client, Sink, free_port, queued_id};
use crate::harness::{Install, text, wait_for};

fn have(program: &str) -> bool {
    Command::new(program).arg("--version").output().is_ok()
}

fn deferred_message(inst: &Install, port: u16) -> String {
    let mut c = Client::connect(port);
    c.cmd("EHLO x.test");
    let id = queued_id(&c.send_mail("s@sender.test", &["u@customer.example"], "Subject: etrn client\n\nbody\n"));
    wait_for("the deferral", || {
        inst.queue_files("flush").iter().any(|p| std::fs::read_to_string(p).unwrap_or_default().contains(&id)).then_some(())
    });
    id
}

#[test]
fn msmtp_rmqs_releases_the_sites_mail() {
    assert!(have("msmtp"), "msmtp is not installed (.ci/run installs it)");
    let sink_port = free_port();
    let (inst, port) = Install::mail_system("etrn_fallback = reject\n", sink_port);
    let id = deferred_message(&inst, port);
    let sink = Sink::start(sink_port);
    let out = Command::new("msmtp").args(["--host=127.0.0.1", &format!("--port={port}"), "--rmqs=customer.example"]).output().unwrap();
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    inst.wait_log(&format!("{id}: removed"));
    assert_eq!(sink.count(), 1);
    let out = Command::new("msmtp").args(["--host=127.0.0.1", &format!("--port={port}"), "--rmqs=@customer.example"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = Command::new("msmtp").args(["--host=127.0.0.1", &format!("--port={port}"), "--rmqs=not.ours.example"]).output().unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("459"), "{}", text(&out.stderr));
}

#[test]
fn fetchmail_etrn_releases_the_sites_mail() {
    assert!(have("fetchmail"), "fetchmail is not installed (.ci/run installs it)");
    let sink_port = free_port();
    let (inst, port) = Install::mail_system("etrn_fallback = reject\n", sink_port);
    let id = deferred_message(&inst, port);
    let sink = Sink::start(sink_port);
    let run = |domain: &str| {
        Command::new("fetchmail")
            .env("HOME", inst.dir.path())
            .args(["-p", "ETRN", "--fetchdomains", domain, "--service", &port.to_string(), "127.0.0.1"])
            .output()
            .unwrap()
    };
    let out = run("customer.example");
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(said.contains("Pending messages for customer.example started"), "{said}");
    inst.wait_log(&format!("{id}: removed"));
    assert_eq!(sink.count(), 1);
    let out = run("not.ours.example");
    assert!(!out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
}
