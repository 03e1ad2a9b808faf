//! Hostile configuration: `postfix check` and `postfix start` report `file, line N` errors and
//! never panic; loops in `$name` expansion are bounded.

use crate::harness::{FLUSH_ONLY, Install, text};

fn check(main_extra: &str, master_cf: &str) -> (Option<i32>, String) {
    let inst = Install::new(main_extra, master_cf);
    let out = inst.cli("postfix", &["check"]);
    (out.status.code(), text(&out.stderr))
}

#[test]
fn bad_master_cf_lines_are_reported_with_their_line() {
    let cases = [
        ("flush unix n - n 1000? 0 flush\nbad unix n -\n", "master.cf, line 2: expected 8 or more fields, found 4"),
        ("x unix maybe - n - - cmd\n", "master.cf, line 1: field \"private\": bad value: \"maybe\""),
        ("x tcp n - n - - cmd\n", "master.cf, line 1: bad transport type: tcp"),
        ("\n# c\n25 inet - - n - - smtpd\n", "master.cf, line 3: inet service cannot be private"),
        ("x unix n - n - - cmd -o { a = b\n", "master.cf, line 1: missing '}'"),
        ("  x unix n - n - - cmd\n", "master.cf, line 1: continuation line without a preceding line"),
        ("x unix n - n 5m - cmd\n", "master.cf, line 1: field \"wakeup\": bad value: \"5m\""),
    ];
    for (master, want) in cases {
        let (code, err) = check("", master);
        assert_eq!(code, Some(1), "{master:?}: {err}");
        assert!(err.contains(want) && err.contains("fatal: "), "{master:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn bad_main_cf_values_are_reported_with_their_line() {
    let cases = [
        ("this line has no equals\n", "main.cf, line 6: missing '=' after attribute name"),
        ("smtpd_helo_required = perhaps\n", "main.cf, line 6: bad boolean configuration: smtpd_helo_required = perhaps"),
        ("queue_run_delay = 5 minutes\n", "main.cf, line 6: parameter queue_run_delay: invalid time value"),
        ("max_use = many\n", "main.cf, line 6: bad numerical configuration: max_use = many"),
        ("relay_domains = ${oops\n", "unbalanced brace"),
        ("a = $b\nb = $a\nrelay_domains = $a\n", "unreasonable macro call nesting"),
        ("relay_domains = hash:/etc/postfix/relay\n", "relay_domains: open database /etc/postfix/relay.db: No such file or directory"),
        ("relay_domains = btree:/etc/postfix/relay\n", "unsupported dictionary type: btree"),
    ];
    for (extra, want) in cases {
        let (code, err) = check(extra, FLUSH_ONLY);
        assert_eq!(code, Some(1), "{extra:?}: {err}");
        assert!(err.contains(want), "{extra:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn check_creates_missing_queue_directories() {
    let inst = Install::new("", FLUSH_ONLY);
    let out = inst.cli("postfix", &["check"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for d in ["incoming", "active", "deferred", "hold", "corrupt", "maildrop", "flush", "public", "private", "pid"] {
        assert!(inst.spool.join(d).is_dir(), "{d}");
    }
}

#[test]
fn start_refuses_a_bad_configuration() {
    let mut inst = Install::new("", "x unix n - n - - cmd -o\n");
    let out = inst.cli("postfix", &["start"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("master.cf, line 1: option requires an argument -- o"));
    assert!(inst.master_pid().is_none());
    inst.stop();
}

#[test]
fn duplicate_entries_warn_and_use_the_last() {
    let (code, err) = check("", "flush unix n - n 1000? 0 flush\nflush unix n - n 1000? 0 flush\n");
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("duplicate master.cf entry for service \"flush\" (unix) -- using the last entry"), "{err}");
}
