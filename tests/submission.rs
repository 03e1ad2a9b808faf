//! Local submission and queue listing: sendmail into maildrop (also while the mail system is
//! down), pickup, postqueue -p/-j and mailq in Postfix's layout, sendmail's queue options and
//! their exit codes.

use common::config::Params;
use common::queue::file::{Envelope, Recipient, now_us, write_new};
use common::queue::{QueueName, Spool};

use crate::harness::smtp::{Client, Sink, free_port, queued_id};
use crate::harness::{Install, run_env, text, wait_for};

#[test]
fn sendmail_works_while_the_system_is_down_and_pickup_delivers() {
    let sink = Sink::start(free_port());
    let (mut inst, _port) = Install::mail_system("", sink.port);
    inst.stop();
    let out = run_env(
        "sendmail",
        &inst.etc,
        &["-f", "me@sender.test", "u@customer.example"],
        b"Subject: down\nMessage-ID: <down@test>\n\nwritten while down\n.\nnot part of it\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(inst.queue_files("maildrop").len(), 1);
    inst.start();
    wait_for("delivery after start", || (sink.count_containing("Message-ID: <down@test>") == 1).then_some(()));
    let m = &sink.messages()[0];
    assert_eq!(m.sender, "me@sender.test");
    assert!(m.data.contains("written while down\r\n") && !m.data.contains("not part of it"), "{}", m.data);
    assert!(m.data.starts_with("Received: by "), "{}", m.data);
    inst.wait_log("uid=");
    assert!(inst.queue_files("maildrop").is_empty());
}

/// The body is what the user wrote, byte for byte: blank lines where they were (at its start
/// and its end), no extra empty line after the headers, UTF-8 text unchanged.
#[test]
fn sendmail_keeps_the_body_byte_for_byte() {
    let sink = Sink::start(free_port());
    let (inst, _port) = Install::mail_system("", sink.port);
    let body = "\nafter a blank line\n\n\nd\u{e9}j\u{e0} vu\n\n\n";
    let msg = format!("Subject: body\nMessage-ID: <body@test>\n\n{body}");
    let out = run_env("sendmail", &inst.etc, &["-i", "u@customer.example"], msg.as_bytes());
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_for("delivery", || (sink.count_containing("Message-ID: <body@test>") == 1).then_some(()));
    let data = &sink.messages()[0].data;
    let (_, delivered) = data.split_once("\r\n\r\n").expect("headers end");
    assert_eq!(delivered, body.replace('\n', "\r\n"), "{data}");
}

#[test]
fn sendmail_t_takes_recipients_from_headers_and_drops_bcc() {
    let sink = Sink::start(free_port());
    let (inst, _port) = Install::mail_system("", sink.port);
    let msg =
        b"To: A <a@customer.example>\nCc: b@customer.example\nBcc: hidden@customer.example\nSubject: t\n\n.line starting with a dot\n";
    let out = run_env("sendmail", &inst.etc, &["-t", "-i"], msg);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_for("delivery", || (sink.count() == 1).then_some(()));
    let m = &sink.messages()[0];
    let mut rcpts = m.recipients.clone();
    rcpts.sort();
    assert_eq!(rcpts, vec!["a@customer.example", "b@customer.example", "hidden@customer.example"]);
    assert!(!m.data.contains("Bcc:") && m.data.contains("\r\n.line starting with a dot\r\n"), "{}", m.data);
    assert!(m.data.contains("Message-Id: <") && m.data.contains("Date: "));
}

#[test]
fn postqueue_p_and_j_list_deferred_active_and_held_mail() {
    let (inst, port) = Install::mail_system("", free_port());
    let out = inst.cli("postqueue", &["-p"]);
    assert_eq!(text(&out.stdout), "Mail queue is empty\n");
    let mut c = Client::connect(port);
    c.cmd("EHLO x.test");
    let a = queued_id(&c.send_mail("s@sender.test", &["u@customer.example", "v@customer.example"], "Subject: a\n\nbody\n"));
    let b = queued_id(&c.send_mail("", &["w@other.example"], "Subject: b\n\nbody\n"));
    wait_for("both deferred", || (inst.queue_files("deferred").len() == 2).then_some(()));
    // Put one on hold by hand (postsuper -h is not there yet) to see the `!` marker.
    let held = inst.queue_files("deferred").into_iter().find(|p| p.ends_with(&b)).unwrap();
    std::fs::rename(&held, inst.spool.join("hold").join(&b)).unwrap();

    let out = inst.cli("postqueue", &["-p"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines[0], "----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------");
    let a_line = lines.iter().find(|l| l.starts_with(&a)).unwrap();
    assert!(a_line.ends_with(" s@sender.test"), "{a_line}");
    let b_line = lines.iter().find(|l| l.starts_with(&format!("{b}!"))).unwrap();
    assert!(b_line.ends_with(" MAILER-DAEMON"), "{b_line}");
    let reason = lines.iter().find(|l| l.trim_start().starts_with("(connect to 127.0.0.1[127.0.0.1]:")).unwrap();
    assert_eq!(reason.len(), 78, "reason right-aligned at column 76: {reason:?}");
    assert!(lines.contains(&format!("{}u@customer.example", " ".repeat(47)).as_str()), "{listing}");
    assert!(listing.ends_with(" Kbytes in 2 Requests.\n"), "{listing}");
    assert_eq!(text(&run_env("mailq", &inst.etc, &[], b"").stdout), listing);
    assert_eq!(text(&run_env("sendmail", &inst.etc, &["-bp"], b"").stdout), listing);

    let out = inst.cli("postqueue", &["-j"]);
    let objs: Vec<serde_json::Value> = text(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(objs.len(), 2);
    let ja = objs.iter().find(|o| o["queue_id"] == a.as_str()).unwrap();
    assert_eq!(ja["queue_name"], "deferred");
    assert_eq!(ja["sender"], "s@sender.test");
    assert_eq!(ja["recipients"].as_array().unwrap().len(), 2);
    assert!(ja["recipients"][0]["delay_reason"].as_str().unwrap().starts_with("connect to 127.0.0.1"));
    assert!(ja["arrival_time"].as_u64().unwrap() > 1_700_000_000 && ja["message_size"].as_u64().unwrap() > 0);
    let jb = objs.iter().find(|o| o["queue_id"] == b.as_str()).unwrap();
    assert_eq!(jb["queue_name"], "hold");
}

#[test]
fn sendmail_queue_options_and_exit_codes() {
    let sink_port = free_port();
    let (inst, port) = Install::mail_system("", sink_port);
    let mut c = Client::connect(port);
    c.cmd("EHLO x.test");
    let a = queued_id(&c.send_mail("s@sender.test", &["u@customer.example"], "Subject: qr\n\nbody\n"));
    let b = queued_id(&c.send_mail("s@sender.test", &["u@other.example"], "Subject: qi\n\nbody\n"));
    wait_for("deferred", || (inst.queue_files("deferred").len() == 2).then_some(()));
    let cases: &[(&[&str], i32, &str)] = &[
        (&["-qR"], 75, "sendmail: fatal: specify: -qRsitename\n"),
        (&["-qX"], 75, "sendmail: fatal: -qX is not implemented\n"),
        (&["-qRcustomer.example", "user@x.example"], 75, "sendmail: fatal: flush site requires no recipient\n"),
        (&["-qI"], 75, "sendmail: fatal: specify: -qIqueueid\n"),
        (&["-q30m"], 0, ""),
    ];
    for (args, code, err) in cases {
        let out = run_env("sendmail", &inst.etc, args, b"");
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stderr), *err, "{args:?}");
    }
    let sink = Sink::start(sink_port);
    // -qRsite is an ETRN over SMTP to the local smtpd found in master.cf.
    let out = run_env("sendmail", &inst.etc, &["-qRcustomer.example"], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    inst.wait_log(&format!("{a}: removed"));
    inst.wait_log("disconnect from localhost[127.0.0.1] helo=1 etrn=1 quit=1 commands=3");
    assert_eq!(sink.count(), 1);
    let out = run_env("sendmail", &inst.etc, &[&format!("-qI{b}")], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    inst.wait_log(&format!("{b}: removed"));
    assert_eq!(sink.count(), 2);
    let out = run_env("sendmail", &inst.etc, &["-qRnot.relayed.example"], b"");
    assert!(out.status.success(), "slow fallback answers 250: {}", text(&out.stderr));
}

#[test]
fn postsuper_holds_releases_requeues_and_deletes() {
    let sink_port = free_port();
    let (inst, port) = Install::mail_system("", sink_port);
    let mut c = Client::connect(port);
    c.cmd("EHLO x.test");
    let ids: Vec<String> =
        (0..3).map(|i| queued_id(&c.send_mail("s@sender.test", &["u@customer.example"], &format!("Subject: {i}\n\nbody\n")))).collect();
    wait_for("deferred", || (inst.queue_files("deferred").len() == 3).then_some(()));
    let out = inst.cli("postsuper", &["-h", &ids[0]]);
    assert!(out.status.success());
    assert!(text(&out.stderr).contains(&format!("{}: placed on hold", ids[0])), "{}", text(&out.stderr));
    assert!(inst.spool.join("hold").join(&ids[0]).exists());
    let out = inst.cli("postsuper", &["-d", &ids[1]]);
    assert!(text(&out.stderr).contains("Deleted: 1 message"), "{}", text(&out.stderr));
    assert_eq!(inst.queue_files("deferred").len(), 1);
    let sink = Sink::start(sink_port);
    // Released and requeued mail is delivered with the next flush.
    assert!(inst.cli("postsuper", &["-H", "ALL"]).status.success());
    assert!(inst.cli("postsuper", &["-r", &ids[2]]).status.success());
    assert!(inst.cli("postqueue", &["-f"]).status.success());
    wait_for("two deliveries", || (sink.count() == 2).then_some(()));
    inst.wait_log(&format!("{}: removed", ids[0]));
    inst.wait_log(&format!("{}: removed", ids[2]));
    let out = inst.cli("postsuper", &["-d", "bad/id"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "postsuper: fatal: invalid queue id: bad/id\n");
}

/// `postsuper -r` puts the message into incoming and tells the running queue manager, which
/// delivers it at once, not at its next start.
#[test]
fn postsuper_r_is_delivered_at_once() {
    let sink = Sink::start(free_port());
    let (inst, _port) = Install::mail_system("", sink.port);
    let spool = Spool::from_params(&Params::load(&inst.etc, &[]).unwrap()).unwrap();
    let env = Envelope {
        sender: "s@sender.test".into(),
        recipients: vec![Recipient { address: "u@customer.example".into(), ..Default::default() }],
        arrival_us: now_us(),
        client: Default::default(),
        ..Default::default()
    };
    let id = write_new(&spool, QueueName::Hold, &env, b"Subject: held\r\n\r\nbody\r\n").unwrap();
    let out = inst.cli("postsuper", &["-r", id.as_str()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_for("the requeued message delivered", || (sink.count() == 1).then_some(()));
    inst.wait_log(&format!("{id}: removed"));
}

#[test]
fn postqueue_p_marks_mail_being_delivered_as_active() {
    let sink = Sink::start(free_port());
    sink.data_delay_ms.store(3000, std::sync::atomic::Ordering::Relaxed);
    let (inst, port) = Install::mail_system("", sink.port);
    let mut c = Client::connect(port);
    c.cmd("EHLO x.test");
    let id = queued_id(&c.send_mail("s@sender.test", &["u@customer.example"], "Subject: slow\n\nx\n"));
    let line = wait_for("the message in active", || {
        let out = text(&inst.cli("postqueue", &["-p"]).stdout);
        out.lines().find(|l| l.starts_with(&format!("{id}*"))).map(str::to_string)
    });
    assert!(line.ends_with(" s@sender.test"), "{line}");
    inst.wait_log(&format!("{id}: removed"));
}
