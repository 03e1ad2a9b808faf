//! postconf against real files: printing modes, main.cf and master.cf edits that keep
//! comments and order (reference §10 cases), and bad input that leaves files untouched.

use crate::harness::{Install, text};

const MASTER_CF: &str = "\
# top comment
127.0.0.1:2525 inet n - n - - smtpd
  -o smtpd_helo_required=yes
# after smtpd
flush     unix  n       -       n       1000?   0       flush
qmgr      unix  n       -       n       300     1       qmgr
";

fn install() -> Install {
    let inst = Install::new("", MASTER_CF);
    let main = std::fs::read_to_string(inst.etc.join("main.cf")).unwrap();
    std::fs::write(inst.etc.join("main.cf"), format!("# my comment\nrelay_domains = a.example,\n    b.example\n{main}")).unwrap();
    inst
}

fn ok(inst: &Install, args: &[&str]) -> (String, String) {
    let out = inst.cli("postconf", args);
    assert!(out.status.success(), "postconf {args:?}: {}", text(&out.stderr));
    (text(&out.stdout), text(&out.stderr))
}

fn main_cf(inst: &Install) -> String {
    std::fs::read_to_string(inst.etc.join("main.cf")).unwrap()
}

fn master_cf(inst: &Install) -> String {
    std::fs::read_to_string(inst.etc.join("master.cf")).unwrap()
}

#[test]
fn print_modes() {
    let inst = install();
    let (out, _) = ok(&inst, &["relay_domains", "fast_flush_domains"]);
    assert_eq!(out, "relay_domains = a.example,    b.example\nfast_flush_domains = $relay_domains\n");
    let (out, _) = ok(&inst, &["-x", "fast_flush_domains"]);
    assert_eq!(out, "fast_flush_domains = a.example,    b.example\n");
    let (out, _) = ok(&inst, &["-h", "queue_run_delay"]);
    assert_eq!(out, "300s\n");
    let (out, _) = ok(&inst, &["-d", "fast_flush_refresh_time", "fast_flush_purge_time", "relay_domains"]);
    assert_eq!(
        out,
        "fast_flush_refresh_time = 12h\nfast_flush_purge_time = 7d\nrelay_domains = ${{$compatibility_level} <level {2} ? {$mydestination} : {}}\n"
    );
    let (out, _) = ok(&inst, &["-n"]);
    let names: Vec<&str> = out.lines().map(|l| l.split(' ').next().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(names.contains(&"relay_domains") && !names.contains(&"queue_run_delay"));
    let (out, err) = ok(&inst, &["no_such_parameter"]);
    assert_eq!(out, "");
    assert!(err.contains("postconf: warning: no_such_parameter: unknown parameter"));
    let (all, _) = ok(&inst, &[]);
    assert!(all.lines().count() > 60);
    assert!(all.contains("\nfast_flush_domains = $relay_domains\n"));
}

#[test]
fn main_cf_edits_keep_comments_and_order() {
    let inst = install();
    ok(&inst, &["-e", "relay_domains=z.example", "zeta=1", "alpha=2"]);
    let text = main_cf(&inst);
    assert!(text.starts_with("# my comment\nrelay_domains = z.example\nqueue_directory"), "{text}");
    assert!(text.ends_with("alpha = 2\nzeta = 1\n"), "{text}");
    // Without -e, name=value arguments still edit (Postfix 2.8+).
    ok(&inst, &["zeta=3"]);
    assert!(main_cf(&inst).ends_with("alpha = 2\nzeta = 3\n"));
    ok(&inst, &["-#", "alpha"]);
    assert!(main_cf(&inst).ends_with("#alpha = 2\nzeta = 3\n"));
    ok(&inst, &["-X", "zeta"]);
    assert!(main_cf(&inst).ends_with("#alpha = 2\n"));
    let (out, _) = ok(&inst, &["-h", "relay_domains"]);
    assert_eq!(out, "z.example\n");
}

#[test]
fn master_cf_edits() {
    let inst = install();
    ok(&inst, &["-Me", "flush2/unix=flush2 unix n - n 1000? 0 flush"]);
    assert!(master_cf(&inst).ends_with("flush2     unix  n       -       n       1000?   0       flush\n"));
    let (out, _) = ok(&inst, &["-M", "flush2/unix"]);
    assert_eq!(out, "flush2     unix  n       -       n       1000?   0       flush\n");
    ok(&inst, &["-Fe", "qmgr/unix/wakeup=600"]);
    let (out, _) = ok(&inst, &["-F", "qmgr/unix/wakeup"]);
    assert_eq!(out, "qmgr/unix/wakeup = 600\n");
    ok(&inst, &["-Pe", "127.0.0.1:2525/inet/smtpd_banner=hello"]);
    let (out, _) = ok(&inst, &["-P", "127.0.0.1:2525/inet"]);
    assert_eq!(out, "127.0.0.1:2525/inet/smtpd_banner = hello\n127.0.0.1:2525/inet/smtpd_helo_required = yes\n");
    ok(&inst, &["-PX", "127.0.0.1:2525/inet/smtpd_helo_required"]);
    let (out, _) = ok(&inst, &["-P"]);
    assert_eq!(out, "127.0.0.1:2525/inet/smtpd_banner = hello\n");
    ok(&inst, &["-M#", "qmgr/unix"]);
    assert!(master_cf(&inst).contains("#qmgr       unix  n       -       n       600     1       qmgr\n"), "{}", master_cf(&inst));
    ok(&inst, &["-MX", "flush2/unix"]);
    let text = master_cf(&inst);
    assert!(text.starts_with("# top comment\n"));
    assert!(!text.contains("flush2"));
    assert!(text.contains("# after smtpd\n"));
    let (out, _) = ok(&inst, &["-Mf"]);
    assert!(out.contains("127.0.0.1:2525 inet n    -       n       -       -       smtpd\n    -o smtpd_banner=hello\n"), "{out}");
}

#[test]
fn bad_edits_fail_and_leave_files_untouched() {
    let inst = install();
    let main_before = main_cf(&inst);
    let master_before = master_cf(&inst);
    let cases: &[(&[&str], &str)] = &[
        (&["-e", "novalue"], "missing '=' after attribute name"),
        (&["-e", "a=1\nb=2"], "accepts no multi-line input"),
        (&["-X", "a=1"], "requires parameter names without value"),
        (&["-Me", "x/unix=x unix n - n"], "expected 8 or more fields"),
        (&["-Me", "x/tcp=x tcp n - n - - cmd"], "bad transport type: tcp"),
        (&["-Fe", "qmgr/unix/maxproc=2"], "invalid service attribute name: \"maxproc\""),
        (&["-Fe", "qmgr/unix/private=maybe"], "field \"private\": bad value: \"maybe\""),
        (&["-e", "-X", "a"], "specify only one of -e, -X or -#"),
        (&["-Z"], "invalid option -- Z"),
    ];
    for (args, want) in cases {
        let out = inst.cli("postconf", args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.starts_with("postconf: fatal: ") && err.contains(want), "{args:?}: {err}");
    }
    assert_eq!(main_cf(&inst), main_before);
    assert_eq!(master_cf(&inst), master_before);
    assert!(!inst.etc.join("main.cf.tmp").exists());
}

#[test]
fn edits_round_trip_through_the_parsers() {
    let inst = install();
    ok(&inst, &["-e", "smtpd_banner=$myhostname ESMTP hi", "relay_domains=x.example, y.example"]);
    let p = common::config::Params::load(&inst.etc, &[]).unwrap();
    assert_eq!(p.get("relay_domains").unwrap(), "x.example, y.example");
    ok(&inst, &["-Pe", "flush/unix/fast_flush_domains=z.example", "-Pe", "flush/unix/max_idle=5s"]);
    let cf = common::config::MasterCf::load(&inst.etc.join("master.cf")).unwrap();
    let flush = cf.entries.iter().find(|e| e.service == "flush").unwrap();
    assert_eq!(
        flush.overrides,
        vec![("fast_flush_domains".to_string(), "z.example".to_string()), ("max_idle".to_string(), "5s".to_string())]
    );
}

/// Postfix's postconf: a first argument with `=` edits, for master.cf's `-P` and `-F` too (it
/// used to exit 0 and change nothing); a configuration directory without main.cf is an error.
#[test]
fn implicit_master_cf_edits_and_a_missing_config_directory() {
    let inst = install();
    ok(&inst, &["-P", "127.0.0.1:2525/inet/smtpd_banner=implicit"]);
    let (out, _) = ok(&inst, &["-P", "127.0.0.1:2525/inet/smtpd_banner"]);
    assert_eq!(out, "127.0.0.1:2525/inet/smtpd_banner = implicit\n");
    ok(&inst, &["-F", "qmgr/unix/wakeup=450"]);
    assert!(master_cf(&inst).contains("qmgr       unix  n       -       n       450     1       qmgr\n"), "{}", master_cf(&inst));

    let out = crate::harness::run_cli("postconf", std::path::Path::new("/nonexistent"), &["mail_owner"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "postconf: fatal: open /nonexistent/main.cf: No such file or directory\n");
    let out = crate::harness::run_cli("postconf", std::path::Path::new("/nonexistent"), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    // The built-in defaults need no main.cf.
    let out = crate::harness::run_cli("postconf", std::path::Path::new("/nonexistent"), &["-d", "syslog_name"]);
    assert_eq!(text(&out.stdout), "syslog_name = postfix\n");
}
