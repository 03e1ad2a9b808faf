//! SMTPUTF8 (RFC 6531) end to end: smtpd offers it and takes UTF-8 addresses only from a client
//! that declares it (Postfix's replies otherwise), the request is kept in the queue file and
//! passed on to a next hop that offers SMTPUTF8; a next hop that does not gets the messages that
//! need no SMTPUTF8, the others go to the next MX host and bounce as Postfix bounces them when
//! no host offers it. sendmail's mail asks for it by itself (`smtputf8_autodetect_classes`),
//! smtpd's when that says so, for an address or a header. UTF-8 domains meet `relay_domains`
//! and the flush
//! logfiles in A-label form.

use crate::harness::dnsmasq::Dnsmasq;
use crate::harness::smtp::{Client, Sink, free_port, queued_id};
use crate::harness::{Install, run_env, text, wait_for};

/// A sink whose EHLO reply offers SMTPUTF8 (or not).
fn sink(smtputf8: bool) -> Sink {
    let sink = Sink::start(free_port());
    if smtputf8 {
        sink.extensions.lock().unwrap().push("SMTPUTF8".into());
    }
    sink
}

/// The MAIL commands the sink was sent, without their line ends.
fn mail_commands(sink: &Sink) -> Vec<String> {
    let commands = sink.commands.lock().unwrap();
    commands.iter().map(|c| String::from_utf8_lossy(c).trim_end().to_string()).filter(|c| c.starts_with("MAIL FROM:")).collect()
}

/// One transaction with the commands as given; the reply to the final dot.
fn send(c: &mut Client, mail: &str, rcpt: &str, message: &str) -> String {
    assert_eq!(c.cmd(mail), "250 2.1.0 Ok", "{mail}");
    assert_eq!(c.cmd(rcpt), "250 2.1.5 Ok", "{rcpt}");
    assert!(c.cmd("DATA").starts_with("354"));
    c.send_raw(message.replace('\n', "\r\n").as_bytes());
    c.cmd(".")
}

#[test]
fn utf8_addresses_need_smtputf8_and_travel_with_it() {
    let sink = sink(true);
    let (inst, port) = Install::mail_system("", sink.port);
    let mut c = Client::connect(port);
    let ehlo = c.cmd("EHLO client.test");
    assert!(ehlo.ends_with("\n250-8BITMIME\n250-DSN\n250 SMTPUTF8"), "{ehlo}");
    // Not declared: a UTF-8 domain is bad syntax, as in Postfix.
    assert_eq!(c.cmd("MAIL FROM:<s@bücher.example>"), "501 5.1.7 Bad sender address syntax");
    inst.wait_log("warning: Illegal address syntax from localhost[127.0.0.1] in MAIL command: <s@bücher.example>");
    assert_eq!(c.cmd("MAIL FROM:<s@sender.test>"), "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<jörg@bücher.customer.example>"), "501 5.1.3 Bad recipient address syntax");
    assert_eq!(c.cmd("RSET"), "250 2.0.0 Ok");
    let id =
        queued_id(&send(&mut c, "MAIL FROM:<jörg@bücher.example> SMTPUTF8", "RCPT TO:<zoë@customer.example>", "Subject: grüße\n\nbody\n"));
    wait_for("delivery", || (sink.count() == 1).then_some(()));
    assert_eq!(mail_commands(&sink), ["MAIL FROM:<jörg@bücher.example> SMTPUTF8"]);
    let m = &sink.messages()[0];
    assert_eq!(m.recipients, ["zoë@customer.example"]);
    assert!(m.data.contains(&format!("with UTF8SMTP id {id}\r\n\tfor <zoë@customer.example>; ")), "{}", m.data);
    assert!(m.data.contains("Subject: grüße\r\n"), "{}", m.data);
}

#[test]
fn a_next_hop_without_smtputf8_gets_what_needs_none_and_the_rest_bounces() {
    let sink = sink(false);
    let (inst, port) = Install::mail_system("", sink.port);
    let mut c = Client::connect(port);
    c.cmd("EHLO client.test");
    // Declared, but nothing in the envelope or the header is UTF-8 (the body does not count).
    let plain = queued_id(&send(&mut c, "MAIL FROM:<s@sender.test> SMTPUTF8", "RCPT TO:<u@customer.example>", "Subject: plain\n\nbodé\n"));
    let needs =
        queued_id(&send(&mut c, "MAIL FROM:<s@sender.test> SMTPUTF8", "RCPT TO:<zoë@customer.example>", "Subject: needs\n\nbody\n"));
    inst.wait_log(&format!("{plain}: to=<u@customer.example>, relay=127.0.0.1[127.0.0.1]:{}", sink.port));
    let bounced = inst.wait_log(&format!("{needs}: to=<zoë@customer.example>"));
    assert!(
        bounced.ends_with(
            "dsn=5.6.7, status=bounced (message requires SMTPUTF8, but no server was found that supports SMTPUTF8. The last attempted server was 127.0.0.1[127.0.0.1])"
        ),
        "{bounced}"
    );
    // The plain one went without the keyword the server did not offer; the bounce went back.
    wait_for("the message and the bounce", || (sink.count() == 2).then_some(()));
    assert!(mail_commands(&sink).iter().all(|m| !m.contains("SMTPUTF8")), "{:?}", mail_commands(&sink));
    assert_eq!(sink.count_containing("Subject: plain\r\n"), 1);
    assert_eq!(sink.messages().iter().filter(|m| m.sender.is_empty() && m.recipients == ["s@sender.test"]).count(), 1);
}

/// As Postfix's smtp_helo (since its fix of 20250824): a server without SMTPUTF8 is skipped for mail that
/// requires it, and the next MX host gets the mail; only when the last one lacks it too does
/// the mail bounce (5.6.7, naming that one).
#[test]
fn mail_that_needs_smtputf8_tries_the_next_mx_host_before_it_bounces() {
    let dns_port = free_port();
    let _dns = Dnsmasq::start(
        dns_port,
        &[
            "--mx-host=utf8.example.test,u1.example.test,10",
            "--mx-host=utf8.example.test,u2.example.test,20",
            "--host-record=u1.example.test,127.0.0.71",
            "--host-record=u2.example.test,127.0.0.72",
            "--mx-host=none.example.test,n1.example.test,10",
            "--mx-host=none.example.test,n2.example.test,20",
            "--host-record=n1.example.test,127.0.0.73",
            "--host-record=n2.example.test,127.0.0.74",
        ],
    );
    let port = free_port();
    let [u1, u2, n1, n2] = [71, 72, 73, 74].map(|host| Sink::start_on(&format!("127.0.0.{host}"), port));
    u2.extensions.lock().unwrap().push("SMTPUTF8".into());
    let smtpd = free_port();
    let main = format!(
        "smtp_dns_nameservers = 127.0.0.1:{dns_port}\nrelay_domains = example.test\n\
         transport_maps = inline:{{utf8.example.test=smtp:utf8.example.test:{port}, none.example.test=smtp:none.example.test:{port}}}\n"
    );
    let mut inst = Install::new(&main, &crate::harness::mail_system_master_cf(smtpd));
    inst.start();
    let mut c = Client::connect(smtpd);
    c.cmd("EHLO client.test");
    let needs = |n: &str| {
        "message requires SMTPUTF8, but no server was found that supports SMTPUTF8. The last attempted server was ".to_string() + n
    };

    // Plain mail first: the first MX host takes it, and its connection is kept.
    let plain = queued_id(&send(&mut c, "MAIL FROM:<s@sender.test>", "RCPT TO:<u@utf8.example.test>", "Subject: plain\n\nbody\n"));
    inst.wait_log(&format!("{plain}: to=<u@utf8.example.test>, relay=u1.example.test[127.0.0.71]:{port}"));
    let id = queued_id(&send(&mut c, "MAIL FROM:<s@sender.test> SMTPUTF8", "RCPT TO:<zoë@utf8.example.test>", "Subject: next\n\nbody\n"));
    let line = inst.wait_log(&format!("{id}: to=<zoë@utf8.example.test>, relay=u2.example.test[127.0.0.72]:{port}"));
    assert!(line.contains("status=sent"), "{line}");
    inst.wait_log(&format!("{id}: {}", needs("u1.example.test[127.0.0.71]")));
    assert_eq!(mail_commands(&u2), ["MAIL FROM:<s@sender.test> SMTPUTF8"]);
    // The kept connection does not serve it; a new one gets EHLO and QUIT only.
    assert_eq!(mail_commands(&u1), ["MAIL FROM:<s@sender.test>"]);
    assert_eq!(u1.connections.load(std::sync::atomic::Ordering::Relaxed), 2);

    let id = queued_id(&send(&mut c, "MAIL FROM:<s@sender.test> SMTPUTF8", "RCPT TO:<zoë@none.example.test>", "Subject: none\n\nbody\n"));
    let line = inst.wait_log(&format!("{id}: to=<zoë@none.example.test>, relay=n2.example.test[127.0.0.74]:{port}"));
    assert!(line.ends_with(&format!("dsn=5.6.7, status=bounced ({})", needs("n2.example.test[127.0.0.74]"))), "{line}");
    inst.wait_log(&format!("{id}: {}", needs("n1.example.test[127.0.0.73]")));
    assert!(mail_commands(&n1).is_empty() && mail_commands(&n2).is_empty());
    assert_eq!(n1.connections.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn sendmail_s_utf8_mail_asks_for_smtputf8_by_itself() {
    let sink = sink(true);
    let (inst, _port) = Install::mail_system("", sink.port);
    for (rcpt, subject) in [("zoë@customer.example", "utf8"), ("u@customer.example", "ascii")] {
        let message = format!("Subject: {subject}\n\nbody\n");
        let out = run_env("sendmail", &inst.etc, &["-f", "s@sender.test", rcpt], message.as_bytes());
        assert!(out.status.success(), "{}", text(&out.stderr));
        wait_for("delivery", || (sink.count_containing(&format!("Subject: {subject}\r\n")) == 1).then_some(()));
    }
    assert_eq!(mail_commands(&sink), ["MAIL FROM:<s@sender.test> SMTPUTF8", "MAIL FROM:<s@sender.test>"]);
}

/// With `smtpd` in `smtputf8_autodetect_classes`, a client's mail asks for SMTPUTF8 when a
/// header is UTF-8, also one that comes after the first 64 KiB of headers (the envelope is on
/// disk by then); a UTF-8 body is no reason. Without it, nothing is autodetected.
#[test]
fn smtpd_s_autodetection_looks_at_the_headers_too() {
    let filler: String = (0..1500).map(|i| format!("X-Filler-{i}: {}\n", "x".repeat(40))).collect();
    for (classes, autodetected) in [("smtpd", true), ("sendmail, verify", false)] {
        let sink = sink(true);
        let (inst, port) = Install::mail_system(&format!("smtputf8_autodetect_classes = {classes}\n"), sink.port);
        let mut c = Client::connect(port);
        c.cmd("EHLO client.test");
        let messages = [
            ("s1@sender.test", "Subject: grüße\n\nbody\n".to_string()),
            ("s2@sender.test", format!("Subject: long\n{filler}X-Last: café\n\nbody\n")),
            ("s3@sender.test", "Subject: plain\n\nbodé\n".to_string()),
        ];
        for (sender, message) in &messages {
            queued_id(&send(&mut c, &format!("MAIL FROM:<{sender}>"), "RCPT TO:<u@customer.example>", message));
        }
        wait_for("delivery", || (sink.count() == 3).then_some(()));
        let mut got = mail_commands(&sink);
        got.sort();
        let keyword = if autodetected { " SMTPUTF8" } else { "" };
        assert_eq!(
            got,
            [
                format!("MAIL FROM:<s1@sender.test>{keyword}"),
                format!("MAIL FROM:<s2@sender.test>{keyword}"),
                "MAIL FROM:<s3@sender.test>".into()
            ],
            "{classes}"
        );
        assert_eq!(sink.count_containing("X-Last: café\r\n"), 1, "the long one arrives whole");
        drop(inst);
    }
}

#[test]
fn utf8_domains_meet_relay_domains_and_flush_logfiles_as_a_labels() {
    // Nobody listens on the sink's port: the mail is deferred and listed for its site.
    let main = "mynetworks = 192.0.2.0/24\nrelay_domains = xn--bcher-kva.example\nsmtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n";
    let (inst, port) = Install::mail_system(main, free_port());
    let mut c = Client::connect(port);
    c.cmd("EHLO client.test");
    assert_eq!(c.cmd("MAIL FROM:<s@sender.test> SMTPUTF8"), "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<u@other.example>"), "554 5.7.1 <u@other.example>: Relay access denied");
    assert_eq!(c.cmd("RCPT TO:<jörg@Bücher.example>"), "250 2.1.5 Ok");
    assert!(c.cmd("DATA").starts_with("354"));
    let id = queued_id(&c.cmd("Subject: idn\r\n\r\nbody\r\n."));
    inst.wait_log(&format!("{id}: to=<jörg@Bücher.example>"));
    let logfile = inst.spool.join("flush").join("xn--bcher-kva.example");
    wait_for("the flush logfile", || std::fs::read_to_string(&logfile).ok().filter(|t| t.contains(&id)));
    // The site may be named either way: this logfile's mail is tried again at once (and
    // deferred again, with nobody listening).
    let out = inst.cli("postqueue", &["-s", "Bücher.example"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_for("a second attempt", || (inst.log_count(&format!("{id}: to=<jörg@Bücher.example>")) == 2).then_some(()));
}
