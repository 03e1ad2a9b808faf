//! Real ETRN clients that nobody here wrote: `msmtp --rmqs` and `fetchmail -p ETRN` (Debian
//! packages, installed by .ci/run) against the running system, in plaintext and over TLS.

use std::process::Command;

use crate::harness::pki::Pki;
use crate::harness::smtp::{Client, Sink, free_port, queued_id};
use crate::harness::{Install, mail_system_master_cf, text, wait_for};

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

/// fetchmail's own lock file: as root, every fetchmail shares /var/run/fetchmail.pid and
/// refuses to run beside another (the tests run in parallel).
fn own_lock(inst: &Install) -> [String; 2] {
    ["--pidfile".into(), inst.dir.path().join("fetchmail.pid").display().to_string()]
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
            .args(own_lock(&inst))
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

/// fetchmail's ETRN mode does no STARTTLS (its --sslproto is for POP3 and IMAP), so over TLS it
/// is `--ssl` against an smtps service (`smtpd_tls_wrappermode`), the certificate checked
/// against the test CA.
#[test]
fn fetchmail_etrn_over_tls_on_the_smtps_port() {
    let sink_port = free_port();
    let pki = Pki::new();
    pki.server("server", "127.0.0.1");
    let (port, smtps) = (free_port(), free_port());
    let master = format!("{}127.0.0.1:{smtps} inet n - n - - smtpd\n  -o smtpd_tls_wrappermode=yes\n", mail_system_master_cf(port));
    let main = format!(
        "relayhost = [127.0.0.1]:{sink_port}\nrelay_domains = customer.example\netrn_fallback = reject\n{}",
        pki.main_cf("server", "none")
    );
    let mut inst = Install::new(&main, &master);
    inst.start();
    let id = deferred_message(&inst, port);
    let sink = Sink::start(sink_port);
    let run = |domain: &str| {
        let ca = pki.path("ca.pem");
        Command::new("fetchmail")
            .env("HOME", inst.dir.path())
            .args(["-v", "-p", "ETRN", "--ssl", "--sslcertck", "--sslcertfile", ca.to_str().unwrap(), "--fetchdomains", domain])
            .args(["--service", &smtps.to_string(), "127.0.0.1"])
            .args(own_lock(&inst))
            .output()
            .expect("fetchmail is not installed (tests/run installs it)")
    };
    let out = run("customer.example");
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{said}");
    assert!(said.contains("Pending messages for customer.example started"), "{said}");
    inst.wait_log("TLS connection established from localhost[127.0.0.1]: TLSv1.3");
    inst.wait_log(&format!("{id}: removed"));
    assert_eq!(sink.count(), 1);
    let out = run("not.ours.example");
    assert!(!out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
}
