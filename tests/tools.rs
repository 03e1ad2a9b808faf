//! The administrator's tools as a Postfix site uses them: a usage line for a bad option from
//! every program, the command list for a bad `postfix` command, and `postfix logrotate`.

use crate::harness::smtp::{Client, free_port, queued_id};
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

#[test]
fn postcat_shows_the_envelope_and_the_message_of_a_queued_file() {
    let (inst, smtpd) = Install::mail_system("", free_port());
    let mut c = Client::connect(smtpd);
    c.cmd("EHLO client.test");
    let body = "From: s@sender.test\nSubject: postcat\nX-Folded: one\n two\n\nfirst body line\nSubject: not a header\n";
    let id = queued_id(&c.send_mail("s@sender.test", &["a@customer.example", "b@customer.example"], body));
    c.cmd("QUIT");
    inst.wait_log(&format!("{id}: to=<b@customer.example>, relay=none"));
    wait_for("the deferred file", || inst.queue_files("deferred").into_iter().find(|p| p.ends_with(&id)));

    let out = inst.cli("postcat", &["-q", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines[0], format!("*** ENVELOPE RECORDS deferred/{id} ***"));
    assert!(lines[1].starts_with("message_size: "), "{shown}");
    assert!(
        lines[2].starts_with("message_arrival_time: ") && lines[2].len() == "message_arrival_time: Wed Dec  2 01:50:25 2026".len(),
        "{shown}"
    );
    for want in [
        "named_attribute: log_client_name=localhost",
        "named_attribute: log_client_address=127.0.0.1",
        "named_attribute: log_helo_name=client.test",
        "sender: s@sender.test",
        "recipient: a@customer.example",
        "recipient: b@customer.example",
        &format!("*** MESSAGE CONTENTS deferred/{id} ***"),
        "Subject: postcat",
        "X-Folded: one",
        " two",
        "first body line",
        &format!("*** HEADER EXTRACTED deferred/{id} ***"),
        &format!("*** MESSAGE FILE END deferred/{id} ***"),
    ] {
        assert!(lines.contains(&want), "no {want:?} in:\n{shown}");
    }
    assert_eq!(lines.last(), Some(&format!("*** MESSAGE FILE END deferred/{id} ***").as_str()));

    // -h: the header only (with our Received: first); -b: from the empty line on; -e: no text.
    let header = text(&inst.cli("postcat", &["-hq", &id]).stdout);
    assert!(header.starts_with("Received: from client.test (localhost [127.0.0.1])"), "{header}");
    // (A local client: cleanup's Message-Id: and Date: end the header.)
    assert!(header.contains("X-Folded: one\n two\nMessage-Id: <") && header.lines().last().unwrap().starts_with("Date: "), "{header}");
    let body = text(&inst.cli("postcat", &["-bq", &id]).stdout);
    assert_eq!(body, "\nfirst body line\nSubject: not a header\n");
    let env = text(&inst.cli("postcat", &["-eq", &id]).stdout);
    assert!(env.contains("sender: s@sender.test\n") && !env.contains("first body line"), "{env}");
    // -v adds the recorded results; a path works as well as -q.
    let path = inst.queue_files("deferred").into_iter().find(|p| p.ends_with(&id)).unwrap();
    let verbose = text(&inst.cli("postcat", &["-v", path.to_str().unwrap()]).stdout);
    assert!(
        verbose.contains("delivery_result: a@customer.example dsn=4.4.1, status=deferred (connect to 127.0.0.1[127.0.0.1]:"),
        "{verbose}"
    );

    let out = inst.cli("postcat", &["-q", "TPEAG1ARJY5YYQR"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "postcat: fatal: open queue file TPEAG1ARJY5YYQR: No such file or directory\n");
    let out = inst.cli("postcat", &[inst.etc.join("main.cf").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("main.cf: input is not a valid queue file"), "{}", text(&out.stderr));
}

/// Postfix's postqueue runs showq stand-alone for the superuser when the system is down;
/// Postern lets root and the mail system's own user (the harness's mail_owner) do so.
#[test]
fn mailq_reads_the_queue_directly_while_the_system_is_down() {
    let (mut inst, smtpd) = Install::mail_system("", free_port());
    let mut c = Client::connect(smtpd);
    c.cmd("EHLO client.test");
    let id = queued_id(&c.send_mail("s@sender.test", &["a@customer.example"], "Subject: down\n\nbody\n"));
    c.cmd("QUIT");
    inst.wait_log(&format!("{id}: to=<a@customer.example>, relay=none"));
    let up = text(&inst.cli("postqueue", &["-p"]).stdout);
    inst.stop();
    for (program, args) in [("postqueue", &["-p"][..]), ("mailq", &[][..])] {
        let out = crate::harness::run_env(program, &inst.etc, args, b"");
        assert!(out.status.success(), "{program}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr)
                .starts_with("postqueue: warning: Mail system is down -- accessing queue directly (Connect to the Postern showq service: "),
            "{program}: {}",
            text(&out.stderr)
        );
        // The same listing as showq gave while the system was up (shared code).
        assert_eq!(text(&out.stdout), up, "{program}");
        assert!(up.contains(&format!("\n{id} ")) && up.contains("(connect to 127.0.0.1[127.0.0.1]:"), "{up}");
    }
    let json = text(&inst.cli("postqueue", &["-j"]).stdout);
    assert!(json.contains(&format!("\"queue_id\":\"{id}\"")), "{json}");
}

/// One synthetic message: age in minutes, sender, recipients.
type Synthetic = (u64, &'static str, &'static [&'static str]);

/// Ages away from the bucket edges (5, 10, 20, 40, ... minutes), so that both programs put
/// each message in the same bucket; counts chosen without ties, since Postfix's qshape orders
/// equal counts of equal length in Perl's hash order.
const QUEUE: [Synthetic; 10] = [
    (1, "", &["u1@big.example", "u2@big.example"]),
    (7, "a@s1.test", &["u3@big.example", "u1@x.sub.example.org"]),
    (15, "a@s1.test", &["u4@big.example", "u1@mx.test"]),
    (30, "b@s2.example", &["u5@big.example", "u2@x.sub.example.org"]),
    (60, "b@s2.example", &["u6@Big.Example", "u1@y.sub.example.org"]),
    (180, "b@s2.example", &["u3@x.sub.example.org", "u2@y.sub.example.org"]),
    (2880, "c@s3.example.com", &["u4@x.sub.example.org", "u2@mx.test"]),
    (2880, "c@s3.example.com", &["u3@y.sub.example.org"]),
    (7, "c@s3.example.com", &["u1@solo.example.net"]),
    (15, "c@s3.example.com", &["u7@big.example"]),
];

/// A Postfix queue file as cleanup writes it, in the record format qshape reads: each record
/// is a type byte, a length (7 bits a byte, low first) and the data.
fn postfix_queue_file(arrival: u64, sender: &str, rcpts: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rec = |t: u8, data: &str| {
        out.push(t);
        let mut len = data.len();
        loop {
            let b = (len & 0x7f) as u8;
            len >>= 7;
            out.push(if len > 0 { b | 0x80 } else { b });
            if len == 0 {
                break;
            }
        }
        out.extend_from_slice(data.as_bytes());
    };
    rec(b'C', &format!("{:>15} {:>15} {:>15} {:>15} {:>15}", 0, 0, rcpts.len(), 0, 0));
    rec(b'T', &format!("{arrival} 0"));
    rec(b'S', sender);
    for r in rcpts {
        rec(b'R', r);
    }
    rec(b'M', "");
    rec(b'X', "");
    rec(b'E', "");
    out
}

/// The same synthetic queue in Postfix's format (read by Debian's /usr/sbin/qshape) and in
/// Postern's (read by ours): the outputs must be the same text, option by option.
#[test]
fn qshape_matches_postfix_qshape_on_the_same_queue() {
    use common::queue::file::{ClientInfo, Envelope, Recipient, write_new};
    use common::queue::{QueueName, Spool};
    use std::os::unix::fs::PermissionsExt;

    let inst = Install::new("", "");
    let postfix_queue = inst.dir.path().join("postfix-queue/deferred");
    std::fs::create_dir_all(&postfix_queue).unwrap();
    let spool = Spool::new(inst.spool.clone(), &["deferred".to_string()], 1);
    spool.create_dirs().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    for (i, (age, sender, rcpts)) in QUEUE.iter().enumerate() {
        let arrival = now - age * 60;
        let path = postfix_queue.join(format!("4F{i:08}A"));
        std::fs::write(&path, postfix_queue_file(arrival, sender, rcpts)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
        let envelope = Envelope {
            sender: sender.to_string(),
            recipients: rcpts.iter().map(|r| Recipient { address: r.to_string(), ..Default::default() }).collect(),
            arrival_us: arrival * 1_000_000,
            client: ClientInfo::default(),
            ..Default::default()
        };
        write_new(&spool, QueueName::Deferred, &envelope, b"Subject: x\n\nbody\n").unwrap();
    }
    let pq = postfix_queue.to_str().unwrap();
    for opts in
        [&[][..], &["-s"], &["-p", "-m", "2"], &["-p"], &["-l", "-b", "5", "-t", "10"], &["-w", "100", "-b", "12"], &["-s", "-t", "3"]]
    {
        let theirs = std::process::Command::new("/usr/sbin/qshape")
            .args(opts)
            .arg(pq)
            .output()
            .expect("qshape is not installed (tests/run installs Debian's postfix)");
        assert!(theirs.status.success(), "{}", text(&theirs.stderr));
        let mut args = opts.to_vec();
        args.push("deferred");
        let ours = inst.cli("qshape", &args);
        assert!(ours.status.success(), "{}", text(&ours.stderr));
        assert_eq!(text(&ours.stdout), text(&theirs.stdout), "qshape {opts:?}");
    }
    let shown = text(&inst.cli("qshape", &["deferred"]).stdout);
    assert!(shown.lines().nth(1).is_some_and(|l| l.trim_start().starts_with("TOTAL 17")), "{shown}");
    // An absolute queue path works too, and the default queues (incoming, active) are empty.
    let abs = inst.spool.join("deferred");
    assert_eq!(text(&inst.cli("qshape", &[abs.to_str().unwrap()]).stdout), shown);
    let empty = inst.dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let theirs = std::process::Command::new("/usr/sbin/qshape").arg(&empty).output().unwrap();
    assert_eq!(text(&inst.cli("qshape", &[]).stdout), text(&theirs.stdout));
}
