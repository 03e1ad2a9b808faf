//! The master: start/status/stop, restart after SIGKILL without refusing clients, throttling,
//! reload adding and removing services, wakeups, SIGTERM.

use std::time::Duration;

use common::ipc::flush::{FlushReply, FlushRequest};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::harness::{FLUSH_ONLY, Install, alive, text, wait_for};

#[test]
fn start_status_stop_leaves_no_process() {
    let mut inst = Install::new("", FLUSH_ONLY);
    let out = inst.cli("postfix", &["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("the Postern mail system is not running"));

    inst.start();
    let master = inst.master_pid().expect("master pid");
    let out = inst.cli("postfix", &["status"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains(&format!("the Postern mail system is running: PID: {master}")), "{}", text(&out.stderr));
    let again = inst.cli("postfix", &["start"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("fatal: the Postern mail system is already running"));
    inst.wait_log(&format!("postfix/master[{master}]: daemon started -- version"));
    // Public sockets are born 0666 (no chmod by path in mail_owner's directory).
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::symlink_metadata(inst.socket("public", "flush")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o666, "{mode:o}");

    let kids: Vec<i32> = inst.children().into_iter().map(|(p, _)| p).collect();
    assert_eq!(kids.len(), 1, "{:?}", inst.children());
    inst.stop();
    assert!(!alive(master));
    for k in kids {
        assert!(!alive(k), "child {k} survived postfix stop");
    }
    inst.wait_log("terminating on signal 15");
    let out = inst.cli("postfix", &["stop"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("the Postern mail system is not running"));
}

#[test]
fn killed_child_is_replaced_and_waiting_clients_are_served() {
    let mut inst = Install::new("relay_domains = example.net\n", FLUSH_ONLY);
    inst.start();
    let old = inst.child_pid("flush").expect("flush child");
    kill(Pid::from_raw(old), Signal::SIGKILL).expect("kill");
    // Connect right away: the master holds the socket, so the client waits in the backlog
    // and is served by the replacement instead of being refused.
    let reply = inst.send_site("example.net");
    assert_eq!(reply, FlushReply::ok(0));
    let new = wait_for("a new flush process", || inst.child_pid("flush").filter(|p| *p != old));
    assert!(alive(new));
    inst.wait_log(&format!("pid {old} killed by signal 9"));
    assert!(!inst.log().contains("throttling"), "{}", inst.log());
}

#[test]
fn a_service_that_exits_at_once_is_throttled_and_the_rest_keep_running() {
    let master_cf = format!("{FLUSH_ONLY}broken unix n - n - 1 /bin/false\n");
    let mut inst = Install::new("relay_domains = example.net\n", &master_cf);
    inst.start();
    let line = inst.wait_log("/bin/false: bad command startup -- throttling");
    assert!(line.contains("postfix/master["), "{line}");
    inst.wait_log("warning: process /bin/false pid ");
    assert_eq!(inst.send_site("example.net"), FlushReply::ok(0));
    // After service_throttle_time (2s here) the master tries again, and throttles again.
    wait_for("a second throttle", || (inst.log().matches("bad command startup -- throttling").count() >= 2).then_some(()));
    assert_eq!(inst.send_site("example.net"), FlushReply::ok(0));
}

#[test]
fn missing_command_is_throttled() {
    let master_cf = format!("{FLUSH_ONLY}ghost unix n - n - 1 no-such-program\n");
    let mut inst = Install::new("", &master_cf);
    inst.start();
    inst.wait_log("master_spawn: exec ");
    inst.wait_log("no-such-program: bad command startup -- throttling");
}

#[test]
fn reload_starts_added_and_stops_removed_services_without_touching_others() {
    let mut inst = Install::new("relay_domains = example.net\n", FLUSH_ONLY);
    inst.start();
    let flush = inst.child_pid("flush").expect("flush");
    let out = inst.cli("postconf", &["-Me", "flush2/unix=flush2 unix n - n 1000? 0 flush"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = inst.cli("postfix", &["reload"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    inst.wait_log("reload -- version");
    let flush2 = wait_for("flush2 process", || inst.child_pid("flush2"));
    let path = inst.socket("public", "flush2");
    let reply = common::ipc::client::call_blocking::<common::ipc::flush::FlushProtocol>(
        &path,
        &FlushRequest::SendSite { site: "example.net".into(), subdomains: false },
        Duration::from_secs(5),
    )
    .expect("flush2 answers");
    assert_eq!(reply, FlushReply::ok(0));
    assert_eq!(inst.child_pid("flush"), Some(flush), "reload restarted an unchanged service");

    let out = inst.cli("postconf", &["-MX", "flush2/unix"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(inst.cli("postfix", &["reload"]).status.success());
    wait_for("flush2 to stop", || (!alive(flush2)).then_some(()));
    assert_eq!(inst.child_pid("flush2"), None);
    assert_eq!(inst.child_pid("flush"), Some(flush));
}

#[test]
fn reload_replaces_a_changed_service() {
    let mut inst = Install::new("relay_domains = example.net\n", FLUSH_ONLY);
    inst.start();
    let old = inst.child_pid("flush").expect("flush");
    assert!(inst.cli("postconf", &["-Pe", "flush/unix/fast_flush_domains=other.example"]).status.success());
    assert!(inst.cli("postfix", &["reload"]).status.success());
    let new = wait_for("replacement flush", || inst.child_pid("flush").filter(|p| *p != old));
    wait_for("old flush to exit", || (!alive(old)).then_some(()));
    assert!(alive(new));
    assert_eq!(inst.send_site("example.net"), FlushReply::Deny);
    assert_eq!(inst.send_site("other.example"), FlushReply::ok(0));
}

#[test]
fn sigterm_leaves_no_children() {
    let mut inst = Install::new("", FLUSH_ONLY);
    inst.start();
    let master = inst.master_pid().expect("master");
    let kids: Vec<i32> = inst.children().into_iter().map(|(p, _)| p).collect();
    assert!(!kids.is_empty());
    kill(Pid::from_raw(master), Signal::SIGTERM).expect("kill");
    wait_for("master exit", || inst.master_pid().is_none().then_some(()));
    for k in kids {
        wait_for("child exit", || (!alive(k)).then_some(()));
    }
    inst.wait_log("terminating on signal 15");
}

#[test]
fn wakeup_timer_runs_flush_housekeeping() {
    // A 1-second unconditional wakeup: the flush daemon refreshes, purging an old empty logfile.
    let mut inst = Install::new("relay_domains = example.net\n", "flush unix n - n 1 0 flush\n");
    inst.start();
    let stale = inst.spool.join("flush/old.example.net");
    std::fs::write(&stale, "").expect("write");
    let ten_days_ago = std::time::SystemTime::now() - Duration::from_secs(10 * 86400);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .expect("open")
        .set_times(std::fs::FileTimes::new().set_accessed(ten_days_ago).set_modified(ten_days_ago))
        .expect("set times");
    wait_for("the wakeup to purge the old logfile", || (!stale.exists()).then_some(()));
}

#[test]
fn master_gone_children_exit() {
    let mut inst = Install::new("", FLUSH_ONLY);
    inst.start();
    let master = inst.master_pid().expect("master");
    let kids: Vec<i32> = inst.children().into_iter().map(|(p, _)| p).collect();
    kill(Pid::from_raw(master), Signal::SIGKILL).expect("kill");
    for k in kids {
        wait_for("orphaned child to exit", || (!alive(k)).then_some(()));
    }
    inst.wait_log("master disconnect -- exiting");
}
