//! Lookup tables in a running system: `hash:` tables built with `postmap` for `transport_maps`
//! and `check_client_access`, a `cidr:` client table, tables rebuilt while the system runs,
//! `postfix check` refusing a table it cannot open, warnings about parameters Postern does not
//! use, and `postmap -q` answers compared with Debian's real postmap on the same files.

use std::path::Path;
use std::process::Command;

use crate::harness::smtp::{Client, Sink, free_port, queued_id};
use crate::harness::{Install, mail_system_master_cf, run_env, text, wait_for};

fn msg(id: &str) -> String {
    format!("From: s@sender.test\nTo: u@outside.example\nSubject: {id}\nMessage-ID: <{id}@test>\n\nbody\n")
}

/// `postmap <file>` in the installation; asserts success.
fn postmap(inst: &Install, file: &Path) {
    let out = inst.cli("postmap", &[&file.display().to_string()]);
    assert!(out.status.success(), "postmap {}: {}", file.display(), text(&out.stderr));
}

/// Write a table source file in the configuration directory and index it.
fn table(inst: &Install, name: &str, content: &str) {
    let file = inst.etc.join(name);
    std::fs::write(&file, content).unwrap();
    postmap(inst, &file);
}

#[test]
fn hash_tables_built_with_postmap_route_and_permit_and_are_rebuilt_live() {
    let sink = Sink::start(free_port());
    let port = free_port();
    // No relayhost: without transport_maps the mail would go to the DNS MX of outside.example.
    let main = "relay_domains = customer.example\ntransport_maps = hash:transport\n\
                smtpd_relay_restrictions = check_client_access hash:access, reject_unauth_destination\n";
    let mut inst = Install::new(main, &mail_system_master_cf(port));
    table(&inst, "transport", &format!("# routes\nOutside.Example  smtp:[127.0.0.1]:{}\n", sink.port));
    table(&inst, "access", "# clients\n127.0.0.1 OK\n");
    assert!(inst.etc.join("transport.db").is_file());
    inst.start();

    // The access table lets this client relay to a domain that is not a relay domain, and
    // the transport table routes it to the sink.
    let mut c = Client::connect(port);
    c.cmd("EHLO client.test");
    let id = queued_id(&c.send_mail("s@sender.test", &["u@outside.example"], &msg("first")));
    inst.wait_log(&format!("{id}: removed"));
    assert_eq!(sink.count_containing("Message-ID: <first@test>"), 1);

    // Rebuilt while the system runs: the next lookup sees the new tables, no restart.
    let second = Sink::start(free_port());
    table(&inst, "transport", &format!("outside.example smtp:[127.0.0.1]:{}\n", second.port));
    table(&inst, "access", "127.0.0.1 REJECT no relaying for you\n");
    assert_eq!(c.cmd("MAIL FROM:<s@sender.test>").split(' ').next(), Some("250"),);
    assert_eq!(c.cmd("RCPT TO:<u@outside.example>"), "554 5.7.1 <localhost[127.0.0.1]>: Client host rejected: no relaying for you");
    assert_eq!(c.cmd("RCPT TO:<u@customer.example>").split(' ').next(), Some("554"), "the access table decides first");
    c.cmd("RSET");
    inst.wait_log(&format!("table {} has changed -- reopening", inst.etc.join("access.db").display()));

    table(&inst, "access", "127.0.0.1 OK\n");
    let id = queued_id(&c.send_mail("s@sender.test", &["u@outside.example"], &msg("second")));
    inst.wait_log(&format!("{id}: removed"));
    assert_eq!(second.count_containing("Message-ID: <second@test>"), 1, "routed by the rebuilt transport table");
    assert_eq!(sink.count_containing("Message-ID: <second@test>"), 0);
    let sent = inst.wait_log(&format!("{id}: to=<u@outside.example>, relay=127.0.0.1[127.0.0.1]:{}", second.port));
    assert!(sent.contains("status=sent"), "{sent}");
    inst.stop();
}

#[test]
fn a_cidr_client_table_refuses_and_permits_by_network() {
    let sink = Sink::start(free_port());
    let port = free_port();
    let main = format!(
        "relayhost = [127.0.0.1]:{}\nrelay_domains = customer.example\nmynetworks =\n\
         smtpd_relay_restrictions = check_client_access cidr:clients, permit_mynetworks, reject_unauth_destination\n",
        sink.port
    );
    let mut inst = Install::new(&main, &mail_system_master_cf(port));
    std::fs::write(inst.etc.join("clients"), "# by network\nif 127.0.0.0/8\n!127.0.0.1 DUNNO\n127.0.0.0/8 OK\nendif\n").unwrap();
    inst.start();
    let mut c = Client::connect(port);
    c.cmd("EHLO client.test");
    c.cmd("MAIL FROM:<s@sender.test>");
    assert_eq!(c.cmd("RCPT TO:<u@outside.example>"), "250 2.1.5 Ok", "127.0.0.0/8 OK");
    c.cmd("RSET");
    // The file edited while running: now this client is refused.
    std::fs::write(inst.etc.join("clients"), "127.0.0.1/32 550 5.7.9 go away\n").unwrap();
    c.cmd("MAIL FROM:<s@sender.test>");
    assert_eq!(c.cmd("RCPT TO:<u@outside.example>"), "550 5.7.9 <localhost[127.0.0.1]>: Client host rejected: go away");
    inst.stop();
}

#[test]
fn mynetworks_takes_a_cidr_table() {
    let port = free_port();
    let main = "relay_domains = customer.example\nmynetworks = !127.0.0.2, cidr:trusted\n\
                smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n";
    let mut inst = Install::new(main, &mail_system_master_cf(port));
    std::fs::write(inst.etc.join("trusted"), "127.0.0.0/8 trusted\n").unwrap();
    inst.start();
    let mut c = Client::connect(port);
    c.cmd("EHLO client.test");
    c.cmd("MAIL FROM:<s@sender.test>");
    assert_eq!(c.cmd("RCPT TO:<u@outside.example>"), "250 2.1.5 Ok", "127.0.0.1 is in cidr:trusted");
    inst.stop();
}

#[test]
fn postfix_check_and_start_refuse_a_table_they_cannot_open() {
    let main = "myhostname = mx.example\ntransport_maps = hash:nosuch\n";
    let mut inst = Install::new(main, &mail_system_master_cf(free_port()));
    for cmd in ["check", "start"] {
        let out = inst.cli("postfix", &[cmd]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {err}");
        let want = format!(
            "main.cf, line 7: parameter transport_maps: open database {}: No such file or directory",
            inst.etc.join("nosuch.db").display()
        );
        assert!(err.contains(&want) && err.contains("fatal: "), "{cmd}: {err}");
    }
    assert!(inst.master_pid().is_none());

    // A master.cf override names its service and line; an unsupported type is refused too.
    let master =
        "flush unix n - n 1000? 0 flush\n127.0.0.1:2 inet n - n - - smtpd\n  -o smtpd_relay_restrictions=check_client_access,cidr:gone\n";
    let inst2 = Install::new("", master);
    let err = text(&inst2.cli("postfix", &["check"]).stderr);
    let want = format!(
        "master.cf, line 2: service 127.0.0.1:2/inet: parameter smtpd_relay_restrictions: open {}",
        inst2.etc.join("gone").display()
    );
    assert!(err.contains(&want), "{err}");
    let err = text(&Install::new("relay_domains = btree:/etc/x\n", "").cli("postfix", &["check"]).stderr);
    assert!(err.contains("unsupported dictionary type: btree"), "{err}");
    inst.stop();
}

#[test]
fn reload_refuses_a_table_it_cannot_open_and_keeps_running() {
    let port = free_port();
    let mut inst = Install::new("relay_domains = customer.example\n", &mail_system_master_cf(port));
    inst.start();
    let master = inst.master_pid().unwrap();
    let mut cf = std::fs::read_to_string(inst.etc.join("main.cf")).unwrap();
    cf.push_str("transport_maps = lmdb:gone\n");
    std::fs::write(inst.etc.join("main.cf"), cf).unwrap();
    let out = inst.cli("postfix", &["reload"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("parameter transport_maps: open database {}", inst.etc.join("gone.lmdb").display())), "{err}");
    // A SIGHUP from elsewhere (systemctl reload): the master refuses the new configuration.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(master), nix::sys::signal::Signal::SIGHUP).unwrap();
    let line = inst.wait_log("reload failed, keeping the running configuration: ");
    assert!(line.contains("parameter transport_maps: open database"), "{line}");
    assert!(Client::connect(port).banner.starts_with("220 "), "still serving");
    assert_eq!(inst.master_pid(), Some(master));
    inst.stop();
}

#[test]
fn parameters_postern_does_not_use_are_never_silent() {
    let main = "foo = bar\nsmtpd_milters = inet:localhost:8891\nmy_banner = hello\nsmtpd_banner = $myhostname $my_banner\n";
    let master = "flush unix n - n 1000? 0 flush\nrelay unix - - n - - smtp\n  -o bogus=1\n  -o smtp_tls_fingerprint_digest=sha256\n";
    let mut inst = Install::new(main, master);
    let main_cf = inst.etc.join("main.cf").display().to_string();
    let master_cf = inst.etc.join("master.cf").display().to_string();
    let unknown = format!("{main_cf}: unused parameter: foo=bar");
    let unimplemented = format!("{main_cf}, line 7: Postfix parameter not implemented by Postern: smtpd_milters=inet:localhost:8891");

    let out = inst.cli("postconf", &["-n"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("postconf: warning: {unknown}\n")), "{err}");
    assert!(err.contains(&format!("postconf: warning: {unimplemented}\n")), "{err}");
    assert!(!err.contains("my_banner"), "a user-defined parameter used as $my_banner is not unused: {err}");
    let err = text(&inst.cli("postconf", &["-P"]).stderr);
    assert!(err.contains(&format!("postconf: warning: {master_cf}: unused parameter: bogus=1")), "{err}");
    assert!(
        err.contains(&format!(
            "{master_cf}, line 2: Postfix parameter not implemented by Postern: smtp_tls_fingerprint_digest=sha256 (service relay/unix)"
        )),
        "{err}"
    );

    let out = inst.cli("postfix", &["check"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    for w in [&unknown, &unimplemented] {
        assert!(err.contains(&format!("warning: {w}")), "{err}");
    }

    // A parameter added before a reload: the master logs it too.
    inst.start();
    let mut text_cf = std::fs::read_to_string(inst.etc.join("main.cf")).unwrap();
    text_cf.push_str("late_addition = 1\n");
    std::fs::write(inst.etc.join("main.cf"), text_cf).unwrap();
    let out = inst.cli("postfix", &["reload"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line = wait_for("the master's warning", || {
        inst.log().lines().find(|l| l.contains("/master[") && l.contains("unused parameter: late_addition=1")).map(str::to_string)
    });
    assert!(line.contains(&format!("warning: {main_cf}: unused parameter: late_addition=1")), "{line}");
    inst.stop();
}

/// Debian's postmap, or a clear failure (tests/run installs postfix and postfix-pcre).
fn debian_postmap() -> &'static str {
    let p = "/usr/sbin/postmap";
    assert!(Path::new(p).exists(), "Debian's postfix is not installed: run tests/run, which installs it");
    p
}

#[test]
fn postmap_queries_match_debians_postmap() {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path();
    std::fs::write(etc.join("main.cf"), "").unwrap();
    let files = [
        (
            "cidr",
            "c",
            "192.168.1.1 OK\n192.168.0.0/16 REJECT\n[2001:db8::1] OK v6\n2001:db8::/32 REJECT v6\nif 10.0.0.0/8\n!10.1.0.0/16 not-10.1\nendif\n",
        ),
        (
            "regexp",
            "r",
            "/[%!@].*[%!@]/ 550 routing\n/^postmaster@/ OK\nif !/^owner-/\n/^(.*)-outgoing@(.*)$/ 550 Use ${1}@${2} instead $$x\nendif\n/^CaSe@/i exact\n/^a@(x|y)\\.example$/!/^a@y/ only-x $1\n",
        ),
        ("pcre", "p", "/^(.*)@example\\.com$/ user $1\n/a b/ spaced\n/^sub.*fast$/m multi\n/x+?y/ lazy\n/^CaSe@/i exact\n"),
        ("texthash", "t", "Example.COM  smtp:[127.0.0.1]:25\n\"q q\"  quoted\nuser@example.com  u\nkey value\n  continued\n"),
    ];
    let keys = "192.168.1.1\n192.168.7.7\n2001:db8::1\n2001:0db8::2\n10.2.3.4\n10.1.3.4\n1.2.3.4\n\
                a@b@c\nPOSTMASTER@example.com\nlist-outgoing@example.com\nowner-list-outgoing@example.com\nCaSe@x\ncase@x\n\
                a@x.example\na@y.example\njoe@example.com\nJOE@EXAMPLE.COM\na b\nab\nxxy\nexample.com\nEXAMPLE.COM\n\"q q\"\nkey\n\
                User@Example.com\nnothing\n";
    for (kind, name, content) in files {
        std::fs::write(etc.join(name), content).unwrap();
        let spec = format!("{kind}:{}", etc.join(name).display());
        let theirs = Command::new(debian_postmap())
            .args(["-c", &etc.display().to_string(), "-q", "-", &spec])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(keys.as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        let ours = run_env("postmap", etc, &["-q", "-", &spec], keys.as_bytes());
        assert!(!text(&theirs.stdout).is_empty(), "{kind}: Debian's postmap found nothing: {}", text(&theirs.stderr));
        assert_eq!(text(&ours.stdout), text(&theirs.stdout), "{kind}: ours vs Debian's\n{}", text(&ours.stderr));
        assert_eq!(ours.status.code(), theirs.status.code(), "{kind}");
    }
}

#[test]
fn lmdb_files_are_read_both_ways_with_debians_postmap() {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path();
    std::fs::write(etc.join("main.cf"), "").unwrap();
    let source = "Customer.Example  smtp:[192.0.2.1]:25\n\"q q\"  quoted value\nplain  x\n";
    let keys = "customer.example\nCUSTOMER.EXAMPLE\n\"q q\"\nplain\nmissing\n";
    for (builder, reader) in [("debian", "ours"), ("ours", "debian")] {
        let file = etc.join(format!("t-{builder}"));
        std::fs::write(&file, source).unwrap();
        let spec = format!("lmdb:{}", file.display());
        let built = match builder {
            "debian" => Command::new(debian_postmap()).args(["-c", &etc.display().to_string(), &spec]).output().unwrap(),
            _ => run_env("postmap", etc, &[&spec], b""),
        };
        assert!(built.status.success(), "{builder} postmap: {}", text(&built.stderr));
        let query = |who: &str| match who {
            "debian" => {
                let mut c = Command::new(debian_postmap())
                    .args(["-c", &etc.display().to_string(), "-q", "-", &spec])
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                use std::io::Write;
                c.stdin.take().unwrap().write_all(keys.as_bytes()).unwrap();
                text(&c.wait_with_output().unwrap().stdout)
            }
            _ => text(&run_env("postmap", etc, &["-q", "-", &spec], keys.as_bytes()).stdout),
        };
        let got = query(reader);
        assert_eq!(
            got, "customer.example\tsmtp:[192.0.2.1]:25\nCUSTOMER.EXAMPLE\tsmtp:[192.0.2.1]:25\n\"q q\"\tquoted value\nplain\tx\n",
            "built by {builder}, read by {reader}"
        );
        assert_eq!(got, query(builder), "built by {builder}");
    }
}
