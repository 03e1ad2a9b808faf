//! What a message looks like at the next hop, byte for byte: the `Received:` header that smtpd
//! or pickup writes (with the queue ID, and with the recipient when there is only one), the
//! headers a local submission lacks (`Message-Id`, `Date`, `From`, added as Postfix's cleanup
//! adds them, for sendmail and for `local_header_rewrite_clients`, or for every client with
//! `always_add_missing_headers`), and the `message-id=` log line of every message.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::datetime::{rfc5322, utc_stamp};

use crate::harness::smtp::{Client, Sink, free_port, queued_id};
use crate::harness::{Install, run_cli, run_env, text, wait_for};

const HOST: &str = "mx.headers.test";

/// The rest of the line of `data` that starts with `prefix`.
fn line_value<'a>(data: &'a str, prefix: &str) -> &'a str {
    data.split("\r\n").find_map(|l| l.strip_prefix(prefix)).unwrap_or_else(|| panic!("no {prefix:?} line in {data:?}"))
}

/// A date Postfix's `mail_date` would write within the last minute.
fn assert_recent_date(date: &str) {
    let now = SystemTime::now();
    assert!((0..60).any(|s| rfc5322(now - Duration::from_secs(s)) == date), "not a recent mail_date: {date:?}");
}

/// The Message-Id cleanup gives the message with queue ID `id`: the time in the ID (the queue
/// file's creation, its first six base-36 digits) in UTC, then the ID and the host name.
fn added_message_id(id: &str) -> String {
    let secs = u64::from_str_radix(&id[..6], 36).unwrap();
    format!("{}.{id}@{HOST}", utc_stamp(UNIX_EPOCH + Duration::from_secs(secs)))
}

/// The queue ID on the first log line that contains `needle` (`ID: needle`).
fn logged_id(inst: &Install, needle: &str) -> String {
    let line = inst.wait_log(needle);
    let before = line.split(needle).next().unwrap();
    before.trim_end_matches(": ").rsplit(' ').next().unwrap().to_string()
}

#[test]
fn sendmail_gets_pickup_s_received_header_and_the_missing_headers() {
    let sink = Sink::start(free_port());
    let (mut inst, _port) = Install::mail_system(&format!("myhostname = {HOST}\n"), sink.port);
    inst.stop();
    let out =
        run_env("sendmail", &inst.etc, &["-f", "me@sender.test", "-F", "Jo Bloggs", "u@customer.example"], b"Subject: local\n\nbody\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dropped = inst.queue_files("maildrop");
    let maildrop_id = dropped[0].file_name().unwrap().to_str().unwrap().to_string();
    inst.start();
    wait_for("delivery", || (sink.count() == 1).then_some(()));
    let id = logged_id(&inst, ": uid=");
    let m = &sink.messages()[0];
    let date = line_value(&m.data, "Date: ");
    assert_recent_date(date);
    let mid = added_message_id(&id);
    let uid = nix::unistd::getuid();
    let want = format!(
        "Received: by {HOST} (Postern, from userid {uid})\r\n\tid {maildrop_id}; {date}\r\nSubject: local\r\nMessage-Id: <{mid}>\r\nDate: {date}\r\nFrom: Jo Bloggs <me@sender.test>\r\n\r\nbody\r\n"
    );
    assert_eq!(m.data, want);
    inst.wait_log(&format!("{id}: message-id=<{mid}>"));
}

/// Without `-F`, the full name is the password file's (root's GECOS field, up to its first
/// comma), or `NAME`'s; `header_from_format = obsolete` puts it after the address. The queue
/// file keeps it for postcat.
#[test]
fn sendmail_without_f_takes_the_name_from_the_password_file_or_name() {
    let sink = Sink::start(free_port());
    let (mut inst, _port) = Install::mail_system(&format!("myhostname = {HOST}\n"), sink.port);
    let user = nix::unistd::User::from_uid(nix::unistd::getuid()).unwrap().unwrap();
    let gecos = user.gecos.to_str().unwrap().split(',').next().unwrap().to_string();
    assert!(!gecos.is_empty() && !gecos.contains(['&', ';', '%', '"', '(', '.']), "a GECOS name this test can predict: {gecos:?}");
    inst.stop();
    let out = run_env("sendmail", &inst.etc, &["-f", "me@sender.test", "u@customer.example"], b"Subject: gecos\n\nbody\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = inst.queue_files("maildrop")[0].file_name().unwrap().to_str().unwrap().to_string();
    let postcat = run_cli("postcat", &inst.etc, &["-e", "-q", &id]);
    assert!(text(&postcat.stdout).contains(&format!("\nsender_fullname: {gecos}\nsender: me@sender.test\n")), "{}", text(&postcat.stdout));
    // NAME comes first; with the obsolete format the name is a comment after the address.
    let main = std::fs::read_to_string(inst.etc.join("main.cf")).unwrap();
    std::fs::write(inst.etc.join("main.cf"), format!("{main}header_from_format = obsolete\n")).unwrap();
    let mut child = std::process::Command::new(crate::harness::bin("sendmail"))
        .env("MAIL_CONFIG", &inst.etc)
        .env("NAME", "J\u{f6}rg (the) Bloggs")
        .args(["-f", "me@sender.test", "u@customer.example"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"Subject: name\n\nbody\n").unwrap();
    assert!(child.wait().unwrap().success());
    inst.start();
    wait_for("delivery", || (sink.count() == 2).then_some(()));
    let msgs = sink.messages();
    let from = |subject: &str| line_value(&msgs.iter().find(|m| m.data.contains(subject)).unwrap().data, "From: ").to_string();
    // Both are picked up under the obsolete format.
    assert_eq!(from("Subject: gecos"), format!("me@sender.test ({gecos})"));
    assert_eq!(from("Subject: name"), "me@sender.test (=?utf-8?Q?J=C3=B6rg_=28the=29_Bloggs?=)");
}

#[test]
fn a_local_smtp_client_gets_them_too_with_the_queue_id_and_recipient_in_received() {
    let sink = Sink::start(free_port());
    // inet_interfaces = 127.0.0.1: a client on loopback is this host (permit_inet_interfaces).
    let (inst, port) = Install::mail_system(&format!("myhostname = {HOST}\n"), sink.port);
    let mut c = Client::connect(port);
    c.cmd("EHLO client.test");
    let one = queued_id(&c.send_mail("s@sender.test", &["u@customer.example"], "Subject: one\n\nbody\n"));
    let two = queued_id(&c.send_mail("", &["a@customer.example", "b@customer.example"], "Subject: two\n\nbody\n"));
    wait_for("delivery", || (sink.count() == 2).then_some(()));
    let msgs = sink.messages();
    let m = msgs.iter().find(|m| m.data.contains("Subject: one")).unwrap();
    let date = line_value(&m.data, "Date: ");
    assert_recent_date(date);
    let mid = added_message_id(&one);
    let want = format!(
        "Received: from client.test (localhost [127.0.0.1])\r\n\tby {HOST} (Postern) with ESMTP id {one}\r\n\tfor <u@customer.example>; {date}\r\nSubject: one\r\nMessage-Id: <{mid}>\r\nDate: {date}\r\nFrom: s@sender.test\r\n\r\nbody\r\n"
    );
    assert_eq!(m.data, want);
    inst.wait_log(&format!("{one}: message-id=<{mid}>"));
    // Two recipients: none named; the null sender's From is MAILER-DAEMON.
    let m = msgs.iter().find(|m| m.data.contains("Subject: two")).unwrap();
    let date = line_value(&m.data, "Date: ");
    let mid = added_message_id(&two);
    let want = format!(
        "Received: from client.test (localhost [127.0.0.1])\r\n\tby {HOST} (Postern) with ESMTP id {two};\r\n\t{date}\r\nSubject: two\r\nMessage-Id: <{mid}>\r\nDate: {date}\r\nFrom: MAILER-DAEMON\r\n\r\nbody\r\n"
    );
    assert_eq!(m.data, want);
}

#[test]
fn a_remote_client_s_message_is_left_as_it_is_unless_always_add_missing_headers() {
    for (always, added) in [("no", false), ("yes", true)] {
        let sink = Sink::start(free_port());
        let main = format!("myhostname = {HOST}\nlocal_header_rewrite_clients =\nalways_add_missing_headers = {always}\n");
        let (inst, port) = Install::mail_system(&main, sink.port);
        let mut c = Client::connect(port);
        c.cmd("HELO client.test");
        let bare = queued_id(&c.send_mail("s@sender.test", &["u@customer.example"], "Subject: bare\n\nbody\n"));
        let whole =
            "From: Someone <s@sender.test>\nDate: Thu, 1 Jan 2026 00:00:00 +0000\nMessage-ID: <given@test>\nSubject: whole\n\nbody\n";
        let given = queued_id(&c.send_mail("s@sender.test", &["u@customer.example"], whole));
        wait_for("delivery", || (sink.count() == 2).then_some(()));
        let msgs = sink.messages();
        let m = msgs.iter().find(|m| m.data.contains("Subject: bare")).unwrap();
        let received = |id: &str, date: &str| {
            format!(
                "Received: from client.test (localhost [127.0.0.1])\r\n\tby {HOST} (Postern) with SMTP id {id}\r\n\tfor <u@customer.example>; {date}\r\n"
            )
        };
        let date = line_value(&m.data, "\tfor <u@customer.example>; ");
        assert_recent_date(date);
        if added {
            let mid = added_message_id(&bare);
            let want = format!(
                "{}Subject: bare\r\nMessage-Id: <{mid}>\r\nDate: {date}\r\nFrom: s@sender.test\r\n\r\nbody\r\n",
                received(&bare, date)
            );
            assert_eq!(m.data, want);
            inst.wait_log(&format!("{bare}: message-id=<{mid}>"));
        } else {
            assert_eq!(m.data, format!("{}Subject: bare\r\n\r\nbody\r\n", received(&bare, date)));
            inst.wait_log(&format!("{bare}: message-id=<>"));
        }
        // Nothing is added to a message that has it all, whoever sends it.
        let m = msgs.iter().find(|m| m.data.contains("Subject: whole")).unwrap();
        let date = line_value(&m.data, "\tfor <u@customer.example>; ");
        assert_eq!(m.data, format!("{}{}", received(&given, date), whole.replace('\n', "\r\n")));
        inst.wait_log(&format!("{given}: message-id=<given@test>"));
        assert_eq!(inst.log_count(&format!("{given}: message-id=")), 1, "{}", inst.log());
    }
}
