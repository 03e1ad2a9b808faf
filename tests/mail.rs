//! The mail path end to end: smtpd → incoming → qmgr → smtp → a real SMTP sink, deferral with
//! backoff and retry, relay control, and hostile SMTP input.

use std::time::SystemTime;

use crate::harness::smtp::{Client, Sink, free_port, queued_id};
use crate::harness::{Install, wait_for};

fn msg(id: &str) -> String {
    format!("From: s@sender.test\nTo: u@customer.example\nSubject: test {id}\nMessage-ID: <{id}@test>\n\nbody of {id}\n.leading dot line\n")
}

#[test]
fn mail_reaches_the_sink_exactly_once_with_postfix_log_lines() {
    let sink = Sink::start(free_port());
    let (inst, port) = Install::mail_system("", sink.port);
    let mut c = Client::connect(port);
    assert!(c.banner.starts_with("220 "), "{}", c.banner);
    let ehlo = c.cmd("EHLO client.test");
    for kw in ["PIPELINING", "SIZE 10240000", "VRFY", "ETRN", "ENHANCEDSTATUSCODES", "8BITMIME", "DSN"] {
        assert!(ehlo.contains(kw), "{ehlo}");
    }
    let reply = c.send_mail("s@sender.test", &["u@customer.example"], &msg("one"));
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    let id = queued_id(&reply);
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye");
    inst.wait_log(&format!("{id}: removed"));
    assert_eq!(sink.count(), 1);
    let m = &sink.messages()[0];
    assert_eq!(m.sender, "s@sender.test");
    assert_eq!(m.recipients, vec!["u@customer.example".to_string()]);
    assert!(m.data.contains("Message-ID: <one@test>\r\n"));
    assert!(m.data.contains("\r\n.leading dot line\r\n"), "dot-stuffing round trip: {}", m.data);
    assert!(m.data.starts_with("Received: from client.test (localhost [127.0.0.1])"), "{}", m.data);
    inst.wait_log(&format!("{id}: client=localhost[127.0.0.1]"));
    inst.wait_log(&format!("{id}: from=<s@sender.test>, size="));
    let sent = inst.wait_log(&format!("{id}: to=<u@customer.example>, relay=127.0.0.1[127.0.0.1]:{}", sink.port));
    assert!(sent.contains("postfix/smtp[") && sent.contains(", dsn=2.0.0, status=sent (250 2.0.0 Ok: queued)"), "{sent}");
    inst.wait_log("disconnect from localhost[127.0.0.1] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5");
    for q in ["incoming", "active", "deferred"] {
        assert!(inst.queue_files(q).is_empty(), "{q} not empty");
    }
}

#[test]
fn sink_down_defers_with_backoff_and_postqueue_f_delivers_once() {
    let port = free_port();
    let (inst, smtpd) = Install::mail_system("", port);
    let mut c = Client::connect(smtpd);
    c.cmd("HELO client.test");
    let id = queued_id(&c.send_mail("s@sender.test", &["u@customer.example"], &msg("later")));
    let line = inst.wait_log(&format!("{id}: to=<u@customer.example>, relay=none"));
    assert!(line.contains("dsn=4.4.1, status=deferred (connect to 127.0.0.1[127.0.0.1]:"), "{line}");
    let file = wait_for("the deferred file", || inst.queue_files("deferred").into_iter().find(|p| p.ends_with(&id)));
    let hash_dir = file.parent().unwrap();
    assert_eq!(hash_dir.parent().unwrap(), inst.spool.join("deferred"), "hashed one level deep");
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    assert!(mtime > SystemTime::now() + std::time::Duration::from_secs(200), "next retry time is in the future");

    let sink = Sink::start(port);
    let out = inst.cli("postqueue", &["-f"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    inst.wait_log(&format!("{id}: removed"));
    assert_eq!(sink.count_containing("Message-ID: <later@test>"), 1);
}

#[test]
fn recipients_get_their_own_results_and_bounces_go_to_the_sender() {
    let sink = Sink::start(free_port());
    let (inst, port) = Install::mail_system("", sink.port);
    let mut c = Client::connect(port);
    c.cmd("EHLO client.test");
    let id = queued_id(&c.send_mail("s@sender.test", &["u@customer.example", "reject-me@customer.example"], &msg("mixed")));
    inst.wait_log(&format!("{id}: removed"));
    let bounced = inst.wait_log(&format!("{id}: to=<reject-me@customer.example>"));
    assert!(bounced.contains("dsn=5.1.1, status=bounced (host 127.0.0.1[127.0.0.1] said: 550 5.1.1"), "{bounced}");
    assert!(bounced.contains("(in reply to RCPT TO command)"), "{bounced}");
    let notice = inst.wait_log(&format!("{id}: sender non-delivery notification: "));
    let bounce_id = notice.rsplit(' ').next().unwrap().to_string();
    inst.wait_log(&format!("{bounce_id}: removed"));
    // The sink got the message for the good recipient, and the notification with the null sender.
    wait_for("two messages at the sink", || (sink.count() == 2).then_some(()));
    let msgs = sink.messages();
    let dsn = msgs.iter().find(|m| m.sender.is_empty()).expect("a null-sender notification");
    assert_eq!(dsn.recipients, vec!["s@sender.test".to_string()]);
    assert!(dsn.data.contains("Final-Recipient: rfc822; reject-me@customer.example"));
    let good = msgs.iter().find(|m| !m.sender.is_empty()).unwrap();
    assert_eq!(good.recipients, vec!["u@customer.example".to_string()]);
}

#[test]
fn open_relay_probes_are_refused_for_untrusted_clients() {
    let sink = Sink::start(free_port());
    let (inst, port) = Install::mail_system("mynetworks = 192.0.2.0/24\n", sink.port);
    let mut c = Client::connect(port);
    c.cmd("EHLO probe.test");
    assert_eq!(c.cmd("MAIL FROM:<spammer@evil.test>"), "250 2.1.0 Ok");
    let refused = [
        "victim@elsewhere.example",
        "victim%elsewhere.example@customer.example",
        "elsewhere.example!victim@customer.example",
        "\"victim@elsewhere.example\"@customer.example",
        "@customer.example:victim@elsewhere.example",
        "victim@elsewhere.example@customer.example",
    ];
    for r in refused {
        let reply = c.cmd(&format!("RCPT TO:<{r}>"));
        assert!(
            reply.starts_with("454 4.7.1 <") && reply.ends_with(">: Relay access denied") || reply.starts_with("501 5.1.3"),
            "{r}: {reply}"
        );
    }
    assert_eq!(c.cmd("RCPT TO:<u@customer.example>"), "250 2.1.5 Ok");
    assert_eq!(c.cmd("RCPT TO:<u@sub.example.test>"), "250 2.1.5 Ok");
    c.cmd("QUIT");
    drop(inst);
}

#[test]
fn malformed_input_gets_clear_replies_and_no_partial_queue_file() {
    let sink = Sink::start(free_port());
    let (inst, port) = Install::mail_system("", sink.port);
    let mut c = Client::connect(port);
    assert_eq!(c.cmd(&"X".repeat(10_000)), "500 5.5.0 Error: line too long");
    assert_eq!(c.cmd("NOOP\0junk"), "500 5.5.2 Error: bad syntax");
    c.send_raw(b"MAIL FROM:<\xff\xfe@x.example>\r\n");
    assert_eq!(c.reply(), "500 5.5.2 Error: bad UTF-8 syntax");
    assert_eq!(c.cmd("RCPT TO:<u@customer.example>"), "503 5.5.1 Error: need MAIL command");
    assert_eq!(c.cmd("DATA"), "503 5.5.1 Error: need RCPT command");
    assert_eq!(c.cmd("FOO bar"), "502 5.5.2 Error: command not recognized");
    assert_eq!(c.cmd("EHLO"), "501 Syntax: EHLO hostname");
    assert_eq!(c.cmd("MAIL FROM:<a@b.example> SIZE=999999999"), "552 5.3.4 Message size exceeds fixed limit");
    assert_eq!(c.cmd("VRFY u@customer.example"), "252 2.0.0 u@customer.example");
    // Pipelined commands get their replies in order.
    c.send_raw(b"RSET\r\nNOOP\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@customer.example>\r\n");
    assert_eq!(c.reply(), "250 2.0.0 Ok");
    assert_eq!(c.reply(), "250 2.0.0 Ok");
    assert_eq!(c.reply(), "250 2.1.0 Ok");
    assert_eq!(c.reply(), "250 2.1.5 Ok");
    // Pipelined garbage gets one reply per line, in order.
    c.send_raw(b"FOO\r\nBAR baz\r\n\r\nNOOP\r\n");
    assert_eq!(c.reply(), "502 5.5.2 Error: command not recognized");
    assert_eq!(c.reply(), "502 5.5.2 Error: command not recognized");
    assert_eq!(c.reply(), "500 5.5.2 Error: bad syntax");
    assert_eq!(c.reply(), "250 2.0.0 Ok");
    // Bare LF inside DATA is accepted and stored as CRLF.
    assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>");
    c.send_raw(b"Subject: bare\nMessage-ID: <bare@test>\n\nline one\nline two\r\n.\r\n");
    assert!(c.reply().starts_with("250 2.0.0 Ok: queued as"));
    // (A local client: cleanup's Date: and From: come between its headers and the body.)
    wait_for("the bare-LF message", || (sink.count_containing("Subject: bare\r\nMessage-ID: <bare@test>\r\n") == 1).then_some(()));
    assert_eq!(sink.count_containing("\r\n\r\nline one\r\nline two\r\n"), 1);
    // A client that stops in the middle of DATA leaves nothing behind.
    let mut c2 = Client::connect(port);
    c2.cmd("HELO x");
    c2.cmd("MAIL FROM:<a@b.example>");
    c2.cmd("RCPT TO:<u@customer.example>");
    c2.cmd("DATA");
    c2.send_raw(b"Subject: cut\r\n\r\nhalf a mess");
    drop(c2);
    inst.wait_log("lost connection after DATA");
    assert!(inst.queue_files("incoming").is_empty(), "{:?}", inst.queue_files("incoming"));
    assert_eq!(sink.count_containing("Subject: cut"), 0);
    // The daemon still serves.
    let mut c3 = Client::connect(port);
    assert_eq!(c3.cmd("HELO again"), format!("250 {}", c3.banner.split(' ').nth(1).unwrap()));
}

#[test]
fn too_many_errors_disconnects() {
    let sink = Sink::start(free_port());
    let (inst, port) = Install::mail_system("smtpd_hard_error_limit = 3\nsmtpd_error_sleep_time = 0s\n", sink.port);
    let mut c = Client::connect(port);
    c.cmd("BAD1");
    c.cmd("BAD2");
    let r = c.cmd("BAD3");
    assert!(r.starts_with("502 5.5.2 Error: command not recognized\n421 4.7.0") || r.starts_with("502"), "{r}");
    inst.wait_log("too many errors after BAD3 from localhost[127.0.0.1]");
}

#[test]
fn a_silent_client_is_cut_off_and_others_are_served() {
    let sink = Sink::start(free_port());
    let (inst, port) = Install::mail_system("smtpd_timeout = 1s\n", sink.port);
    let mut silent = Client::connect(port);
    silent.cmd("EHLO slow.test");
    // Meanwhile another client is served normally.
    let mut busy = Client::connect(port);
    busy.cmd("EHLO busy.test");
    assert!(busy.send_mail("s@sender.test", &["u@customer.example"], "Subject: busy\n\nx\n").starts_with("250 2.0.0 Ok"));
    let r = silent.reply();
    assert!(r.starts_with("421 4.4.2 ") && r.ends_with(" Error: timeout exceeded"), "{r}");
    inst.wait_log("timeout after EHLO from localhost[127.0.0.1]");
}

#[test]
fn queue_trouble_gives_451_and_leaves_no_file() {
    let sink = Sink::start(free_port());
    let (inst, port) = Install::mail_system("", sink.port);
    // Replace incoming/ with a plain file: every queue file write fails (root ignores modes).
    let incoming = inst.spool.join("incoming");
    std::fs::rename(&incoming, inst.spool.join("incoming.away")).unwrap();
    std::fs::write(&incoming, b"not a directory").unwrap();
    let mut c = Client::connect(port);
    c.cmd("EHLO x.test");
    c.cmd("MAIL FROM:<s@sender.test>");
    c.cmd("RCPT TO:<u@customer.example>");
    c.cmd("DATA");
    assert_eq!(c.cmd("Subject: t\r\n\r\nbody\r\n."), "451 4.3.0 Error: queue file write error");
    inst.wait_log("warning: queue file write error");
    std::fs::remove_file(&incoming).unwrap();
    std::fs::rename(inst.spool.join("incoming.away"), &incoming).unwrap();
    assert!(std::fs::read_dir(&incoming).unwrap().next().is_none(), "no partial file");
    // After the trouble the same session can queue mail again.
    assert!(c.send_mail("s@sender.test", &["u@customer.example"], "Subject: again\n\nx\n").starts_with("250 2.0.0 Ok"));
}

#[test]
fn expired_mail_is_returned_to_the_sender() {
    let port = free_port();
    let (inst, smtpd) = Install::mail_system("maximal_queue_lifetime = 1s\nbounce_queue_lifetime = 1s\n", port);
    let mut c = Client::connect(smtpd);
    c.cmd("EHLO x.test");
    let id = queued_id(&c.send_mail("s@sender.test", &["u@customer.example"], "Subject: old\n\nx\n"));
    inst.wait_log(&format!("{id}: to=<u@customer.example>"));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert!(inst.cli("postqueue", &["-f"]).status.success());
    inst.wait_log(&format!("{id}: from=<s@sender.test>, status=expired, returned to sender"));
    let notice = inst.wait_log(&format!("{id}: sender non-delivery notification: "));
    inst.wait_log(&format!("{id}: removed"));
    // The notification itself has the null sender and is never bounced again.
    let bounce_id = notice.rsplit(' ').next().unwrap().to_string();
    inst.wait_log(&format!("{bounce_id}: from=<>, size="));
}

#[test]
fn flush_service_down_does_not_change_delivery() {
    let port = free_port();
    let smtpd = free_port();
    let master = format!("127.0.0.1:{smtpd} inet n - n - - smtpd\nqmgr unix n - n 300 1 qmgr\nsmtp unix - - n - - smtp\n");
    let mut inst = Install::new(&format!("relayhost = [127.0.0.1]:{port}\nrelay_domains = customer.example\n"), &master);
    inst.start();
    let mut c = Client::connect(smtpd);
    c.cmd("EHLO x.test");
    let id = queued_id(&c.send_mail("s@sender.test", &["u@customer.example"], "Subject: f\n\nx\n"));
    inst.wait_log(&format!("warning: {id}: flush service failure"));
    let sink = Sink::start(port);
    assert!(inst.cli("postqueue", &["-f"]).status.success());
    inst.wait_log(&format!("{id}: removed"));
    assert_eq!(sink.count(), 1);
}

/// Send one message to `rcpt` in a session of its own; returns its queue ID.
fn send_one(port: u16, rcpt: &str) -> String {
    let mut c = Client::connect(port);
    c.cmd("EHLO x.test");
    queued_id(&c.send_mail("s@sender.test", &[rcpt], &format!("Subject: for {rcpt}\n\nx\n")))
}

#[test]
fn consecutive_deliveries_reuse_the_connection() {
    let sink = Sink::start(free_port());
    let (inst, port) = Install::mail_system("smtp_connection_cache_time_limit = 5s\n", sink.port);
    let a = send_one(port, "u@customer.example");
    inst.wait_log(&format!("{a}: removed"));
    let b = send_one(port, "v@customer.example");
    let line = inst.wait_log(&format!("{b}: to=<v@customer.example>"));
    assert!(line.contains(", conn_use=2, ") && line.contains("status=sent"), "{line}");
    assert_eq!(sink.count(), 2);
    assert_eq!(sink.connections.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn a_reload_reaches_the_delivery_agent_on_its_kept_connection() {
    // qmgr keeps its connections to smtp between deliveries; smtp must still use the
    // configuration of the moment for each delivery. (No SMTP connection caching, so that each
    // delivery says EHLO.)
    let sink = Sink::start(free_port());
    let (inst, port) = Install::mail_system("smtp_connection_cache_time_limit = 0s\n", sink.port);
    let a = send_one(port, "u@customer.example");
    inst.wait_log(&format!("{a}: removed"));
    let smtp = inst.program_pid("smtp");
    assert!(inst.cli("postconf", &["-e", "myhostname=renamed.test"]).status.success());
    assert!(inst.cli("postfix", &["reload"]).status.success());
    inst.wait_log("reload -- version");
    // The agent applies the reload when its own loop reads the master's command, a moment
    // after the master's line: a delivery soon after uses the new name, from the same process.
    wait_for("a delivery with the new name", || {
        let b = send_one(port, "v@customer.example");
        inst.wait_log(&format!("{b}: removed"));
        (sink.messages().last().map(|m| m.helo.clone()).as_deref() == Some("renamed.test")).then_some(())
    });
    assert_eq!(inst.program_pid("smtp"), smtp, "the agent was reloaded, not restarted");
    let helos: Vec<String> = sink.messages().into_iter().map(|m| m.helo).collect();
    assert_ne!(helos[0], "renamed.test", "before the reload: {helos:?}");
}
