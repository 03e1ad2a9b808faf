//! The administrator's tools as a Postfix site uses them: a usage line for a bad option from
//! every program, the command list for a bad `postfix` command, and `postfix logrotate`.

use crate::harness::smtp::{Client, free_port};
use crate::harness::{Install, text, wait_for};

#[test]
fn bad_options_get_a_usage_line_and_bad_commands_the_command_list() {
    let inst = Install::new("", "");
    for (program, usage) in [
        ("postfix", "usage: postfix "),
        ("postconf", "usage: postconf "),
        ("postqueue", "usage: postqueue "),
        ("postsuper", "usage: postsuper "),
        ("postmap", "usage: postmap "),
        ("sendmail", "usage: sendmail "),
        ("mailq", "usage: "),
    ] {
        let out = crate::harness::run_env(program, &inst.etc, &["-%"], b"");
        assert_ne!(out.status.code(), Some(0), "{program}");
        assert!(text(&out.stderr).contains(usage), "{program}: {}", text(&out.stderr));
    }
    let out = inst.cli("postfix", &["strat"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(
            "fatal: unknown command: 'strat'. Usage: postfix start (or stop, reload, abort, flush, check, status, start-fg, logrotate)"
        ),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn postfix_logrotate_renames_compresses_and_every_process_reopens() {
    let port = free_port();
    let (inst, smtpd) = Install::mail_system("maillog_file_rotate_suffix = rotated-%Y\n", port);
    let mut c = Client::connect(smtpd);
    c.cmd("QUIT");
    inst.wait_log("disconnect from localhost[127.0.0.1] quit=1 commands=1");
    let out = inst.cli("postfix", &["logrotate"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let year = text(&std::process::Command::new("date").arg("+%Y").output().unwrap().stdout).trim().to_string();
    let rotated = inst.maillog.with_file_name(format!("maillog.rotated-{year}.gz"));
    assert!(rotated.is_file(), "no {}", rotated.display());
    let gz = std::process::Command::new("zcat").arg(&rotated).output().unwrap();
    assert!(text(&gz.stdout).contains("disconnect from localhost[127.0.0.1] quit=1 commands=1"), "{}", text(&gz.stdout));
    // The same smtpd process (and the master) write to the new file from their next line on.
    let mut c = Client::connect(smtpd);
    c.cmd("NOOP");
    c.cmd("QUIT");
    wait_for("the next session in the new log", || {
        inst.log().contains("disconnect from localhost[127.0.0.1] noop=1 quit=1 commands=2").then_some(())
    });

    // Postfix's refusals.
    let stdout_log = Install::new("maillog_file = /dev/stdout\n", "");
    let out = stdout_log.cli("postfix", &["logrotate"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("fatal: not rotating '/dev/stdout'"), "{}", text(&out.stderr));
    let no_file = Install::new("maillog_file =\n", "");
    let out = no_file.cli("postfix", &["logrotate"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("fatal: empty 'maillog_file' parameter value - logfile rotation failed"), "{}", text(&out.stderr));
}
