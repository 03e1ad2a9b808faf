//! Failures are visible (issue 9 §6): a daemon that cannot start says why in the mail log,
//! `postfix check` reports a configuration that `mail_owner` cannot read, and parameter values
//! no program can use are refused by name.

use std::os::unix::fs::PermissionsExt;

use crate::harness::smtp::{Client, free_port};
use crate::harness::{Install, alive, mail_system_master_cf, text, wait_for};

#[test]
fn a_configuration_mail_owner_cannot_read_is_reported_by_check_and_in_the_mail_log() {
    crate::harness::require_root("this test runs the services as nobody");
    let port = free_port();
    let mut inst = Install::new("relay_domains = customer.example\n", &mail_system_master_cf(port));
    inst.run_services_as_nobody();
    inst.start();
    let pickup = wait_for("pickup", || inst.program_pid("pickup"));

    // The configuration becomes private to root while the system runs.
    std::fs::set_permissions(&inst.etc, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = inst.cli("postfix", &["check"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("main.cf: mail_owner nobody (uid 65534) cannot read it"), "{err}");

    // A daemon restarted now cannot read main.cf: its reason is in the mail log, under its own
    // name, not only on a standard error nobody reads.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pickup), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_for("pickup gone", || (!alive(pickup)).then_some(()));
    let line = wait_for("the fatal line", || {
        inst.log().lines().find(|l| l.contains("postfix/pickup[") && l.contains("fatal:")).map(str::to_string)
    });
    assert!(line.contains("main.cf") && line.contains("Permission denied"), "{line}\n{}", inst.log());
    std::fs::set_permissions(&inst.etc, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_host_name_no_client_accepts_is_refused_by_name() {
    let port = free_port();
    let long = "a".repeat(10_000);
    let mut inst = Install::new("relay_domains = customer.example\n", &mail_system_master_cf(port));
    inst.start();
    let banner = Client::connect(port).banner;
    // postconf -e, then check and reload: refused, and the running configuration stays.
    assert!(inst.cli("postconf", &["-e", &format!("myhostname = {long}")]).status.success());
    let out = inst.cli("postfix", &["check"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("parameter myhostname: bad parameter value: aaaa"), "{err}");
    assert!(err.len() < 500, "the value is shown shortened: {} bytes", err.len());
    assert!(inst.cli("postfix", &["reload"]).status.success());
    inst.wait_log("parameter myhostname: bad parameter value");
    let after = Client::connect(port).banner;
    assert_eq!(after, banner, "the running configuration stays");
    assert!(after.len() < 512);
    inst.stop();
    let out = inst.cli("postfix", &["start"]);
    assert!(!out.status.success(), "start refuses it too");
    assert!(text(&out.stderr).contains("parameter myhostname: bad parameter value"));
}
