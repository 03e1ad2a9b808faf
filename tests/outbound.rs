//! The smtp agent as an attacker would try it from the queue: message text with smuggling
//! sequences and long lines reaches the next hop as clean SMTP (on a new and on a reused
//! connection), addresses with line breaks never become commands, and a next hop that is this
//! system on port 25 bounces at once (by its address, or by its EHLO name) while another port
//! (a content filter) is left alone.

use common::config::Params;
use common::ipc::trigger::Trigger;
use common::ipc::trigger_client::trigger_blocking;
use common::queue::file::{Envelope, Recipient, now_us, write_new};
use common::queue::{QueueId, QueueName, Spool};

use crate::harness::smtp::{Client, Sink, free_port, queued_id};
use crate::harness::{Install, WAIT, mail_system_master_cf, wait_for};

/// Put a message into `incoming` as smtpd or pickup would, and tell the queue manager.
fn enqueue(inst: &Install, sender: &str, rcpts: &[&str], message: &[u8]) -> QueueId {
    let spool = Spool::from_params(&Params::load(&inst.etc, &[]).unwrap()).unwrap();
    let env = Envelope {
        sender: sender.into(),
        recipients: rcpts.iter().map(|r| Recipient { address: r.to_string(), ..Default::default() }).collect(),
        arrival_us: now_us(),
        client: Default::default(),
        ..Default::default()
    };
    let id = write_new(&spool, QueueName::Incoming, &env, message).unwrap();
    trigger_blocking(&inst.socket("public", "qmgr"), &[Trigger::ScanIncoming], WAIT).unwrap();
    id
}

/// Every smuggling sequence of issue 9 with what the next hop must see instead (bare LF is a
/// line end, a stray CR a space, every line starting with a dot gets another one), a body line
/// that looks like a command, a line of 2,500 bytes and no final newline.
fn hostile_message() -> (Vec<u8>, Vec<u8>) {
    let long = "L".repeat(2500);
    let pieces: Vec<(String, String)> = vec![
        ("Subject: smuggling\r\n\r\n".into(), "Subject: smuggling\r\n\r\n".into()),
        ("a\n.\nb\n".into(), "a\r\n..\r\nb\r\n".into()),
        ("c\n.\rd\n".into(), "c\r\n.. d\r\n".into()),
        ("e\r.\nf\n".into(), "e .\r\nf\r\n".into()),
        ("g\r.\rh\n".into(), "g . h\r\n".into()),
        ("i\n.\r\nj\n".into(), "i\r\n..\r\nj\r\n".into()),
        ("k\r.\r\nl\n".into(), "k .\r\nl\r\n".into()),
        ("m\r\n.\nn\n".into(), "m\r\n..\r\nn\r\n".into()),
        ("o\r\n\0.\r\np\r\n".into(), "o\r\n\0.\r\np\r\n".into()),
        (
            "MAIL FROM:<smuggled@evil.test>\r\nRCPT TO:<smuggled@evil.test>\r\n".into(),
            "MAIL FROM:<smuggled@evil.test>\r\nRCPT TO:<smuggled@evil.test>\r\n".into(),
        ),
        (".leading dot\r\n".into(), "..leading dot\r\n".into()),
        // Broken as Postfix does at smtp_line_length_limit (998): CRLF SPACE, the space counts.
        (format!("{long}\n"), format!("{}\r\n {}\r\n {}\r\n", &long[..998], &long[..997], &long[..505])),
        ("no final newline".into(), "no final newline\r\n".into()),
    ];
    let input = pieces.iter().flat_map(|(i, _)| i.bytes()).collect();
    let mut wire: Vec<u8> = pieces.iter().flat_map(|(_, w)| w.bytes()).collect();
    wire.extend_from_slice(b".\r\n");
    (input, wire)
}

fn assert_only_crlf(raw: &[u8]) {
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\r' {
            assert_eq!(raw.get(i + 1), Some(&b'\n'), "bare CR at byte {i}");
        }
        if b == b'\n' {
            assert!(i > 0 && raw[i - 1] == b'\r', "bare LF at byte {i}");
        }
    }
}

#[test]
fn outbound_text_is_clean_smtp_on_new_and_reused_connections() {
    let sink = Sink::start(free_port());
    let (inst, _) = Install::mail_system("smtp_connection_cache_time_limit = 60s\n", sink.port);
    let (message, wire) = hostile_message();
    for (n, name) in ["first", "second"].iter().enumerate() {
        let id = enqueue(&inst, "s@sender.test", &["u@customer.example"], &message);
        inst.wait_log(&format!("{id}: removed"));
        let sent = inst.wait_log(&format!("{id}: to=<u@customer.example>"));
        assert!(sent.contains("status=sent"), "{name}: {sent}");
        if n == 1 {
            assert!(sent.contains("conn_use=2"), "the second message goes over the kept connection: {sent}");
        }
        inst.wait_log(&format!("{id}: breaking line > 998 bytes with <CR><LF>SPACE"));
        let got = sink.messages();
        assert_eq!(got.len(), n + 1, "{name}: one message per queue file, nothing smuggled");
        let raw = &got[n].raw;
        assert_only_crlf(raw);
        assert_eq!(String::from_utf8_lossy(raw), String::from_utf8_lossy(&wire), "{name}: the DATA bytes at the next hop");
    }
    let commands = sink.commands.lock().unwrap().clone();
    let mails = commands.iter().filter(|c| c.starts_with(b"MAIL FROM:")).count();
    assert_eq!(mails, 2, "{commands:?}");
    assert!(!commands.iter().any(|c| String::from_utf8_lossy(c).contains("smuggled")), "{commands:?}");
}

#[test]
fn addresses_with_line_breaks_never_become_commands() {
    let sink = Sink::start(free_port());
    let (inst, _) = Install::mail_system("", sink.port);
    let bad_sender = enqueue(&inst, "a@client.test>\r\nRCPT TO:<injected@x.test", &["u@customer.example"], b"Subject: a\r\n\r\na\r\n");
    let line = inst.wait_log(&format!("{bad_sender}: to=<u@customer.example>"));
    assert!(
        line.contains("relay=none") && line.contains("dsn=5.1.7, status=bounced (bad sender address syntax: control character in address)"),
        "{line}"
    );
    inst.wait_log(&format!("warning: {bad_sender}: sender address with a control character: <a@client.test>??RCPT TO:<injected@x.test>"));

    let bad_rcpt = enqueue(
        &inst,
        "s@sender.test",
        &["v@customer.example>\r\nRCPT TO:<injected@x.test", "u@customer.example"],
        b"Subject: b\r\n\r\nb\r\n",
    );
    let line = inst.wait_log(&format!("{bad_rcpt}: to=<v@customer.example>??RCPT TO:<injected@x.test>"));
    assert!(line.contains("dsn=5.1.3, status=bounced (bad recipient address syntax: control character in address)"), "{line}");
    let line = inst.wait_log(&format!("{bad_rcpt}: to=<u@customer.example>"));
    assert!(line.contains("status=sent"), "{line}");
    inst.wait_log(&format!("{bad_rcpt}: removed"));
    inst.wait_log(&format!("{bad_sender}: removed"));

    let got = sink.messages();
    let to_u: Vec<_> = got.iter().filter(|m| m.recipients == vec!["u@customer.example".to_string()]).collect();
    assert_eq!(to_u.len(), 1, "only the message with a clean sender went out: {got:?}");
    assert_eq!(to_u[0].sender, "s@sender.test");
    let commands = sink.commands.lock().unwrap().clone();
    assert!(!commands.iter().any(|c| String::from_utf8_lossy(c).contains("injected")), "{commands:?}");
    for c in &commands {
        assert_only_crlf(c);
    }
}

#[test]
fn own_address_on_port_25_is_a_loop_and_other_ports_are_not() {
    // 127.0.0.9 is one of ours. Port 25 there: bounce without a connection. Another port (a
    // content filter, here a sink that even says our own name): delivered as usual.
    let sink = Sink::start_on("127.0.0.9", free_port());
    let smtpd = free_port();
    let main = format!(
        "myhostname = sink.test\ninet_interfaces = 127.0.0.1, 127.0.0.9\nrelay_domains = loop.example, filter.example\n\
         transport_maps = inline:{{loop.example=smtp:[127.0.0.9]:25, filter.example=smtp:[127.0.0.9]:{}}}\n",
        sink.port
    );
    let mut inst = Install::new(&main, &mail_system_master_cf(smtpd));
    inst.start();
    let mut c = Client::connect(smtpd);
    c.cmd("EHLO client.test");
    let id = queued_id(&c.send_mail("s@sender.test", &["u@loop.example"], "Subject: loop\n\nx\n"));
    let line = inst.wait_log(&format!("{id}: to=<u@loop.example>"));
    assert!(line.contains("relay=none") && line.contains("dsn=5.4.6, status=bounced (mail for 127.0.0.9 loops back to myself)"), "{line}");
    assert_eq!(inst.log_count("connect to 127.0.0.9"), 0, "no connection was tried:\n{}", inst.log());

    let id = queued_id(&c.send_mail("s@sender.test", &["u@filter.example"], "Subject: filter\n\nx\n"));
    let line = inst.wait_log(&format!("{id}: to=<u@filter.example>"));
    assert!(line.contains(&format!("relay=127.0.0.9[127.0.0.9]:{}", sink.port)) && line.contains("status=sent"), "{line}");
    assert_eq!(sink.count(), 1);
}

#[test]
fn own_smtpd_on_port_25_is_recognized_by_its_ehlo_name() {
    // Postfix's observation (postfix-behavior.md 16.4): a relay domain routed to the system's
    // own smtpd on port 25 bounces at once. Binding port 25 takes root (CI runs as root).
    crate::harness::require_root("this test binds port 25");
    let smtpd = free_port();
    let master = format!("127.0.0.9:25 inet n - n - - smtpd\n{}", mail_system_master_cf(smtpd));
    let main = "myhostname = postern.test\nrelay_domains = loop.example\ntransport_maps = inline:{loop.example=smtp:[127.0.0.9]:25}\n";
    let mut inst = Install::new(main, &master);
    inst.start();
    let mut c = Client::connect(smtpd);
    c.cmd("EHLO client.test");
    let id = queued_id(&c.send_mail("s@sender.test", &["u@loop.example"], "Subject: loop\n\nx\n"));
    let line = inst.wait_log(&format!("{id}: to=<u@loop.example>"));
    assert!(
        line.contains("relay=127.0.0.9[127.0.0.9]:25")
            && line.contains("dsn=5.4.6, status=bounced (mail for [127.0.0.9]:25 loops back to myself)"),
        "{line}"
    );
    inst.wait_log("warning: host 127.0.0.9[127.0.0.9]:25 replied to HELO/EHLO with my own hostname postern.test");
    inst.wait_log(&format!("{id}: removed"));
    // No hop at all: the only message smtpd took is the one the test sent.
    assert_eq!(inst.log_count(": client="), 1, "{}", inst.log());
}

#[test]
fn a_relay_domain_routed_to_our_own_smtpd_on_another_port_ends_at_hopcount_limit() {
    // Not port 25, so no loop detection (it could be a content filter): the hop count ends it
    // with one bounce, which goes to the sender's own next hop (the sink).
    let sink = Sink::start(free_port());
    let smtpd = free_port();
    let main = format!(
        "relayhost = [127.0.0.1]:{}\nrelay_domains = loop.example\ntransport_maps = inline:{{loop.example=smtp:[127.0.0.1]:{smtpd}}}\n",
        sink.port
    );
    let mut inst = Install::new(&main, &mail_system_master_cf(smtpd));
    inst.start();
    let mut c = Client::connect(smtpd);
    c.cmd("EHLO client.test");
    queued_id(&c.send_mail("s@sender.test", &["u@loop.example"], "Subject: round and round\n\nx\n"));
    wait_for("the bounce at the sink", || (sink.count() == 1).then_some(()));
    let bounce = &sink.messages()[0];
    assert_eq!(bounce.recipients, vec!["s@sender.test".to_string()]);
    assert!(bounce.data.contains("554 5.4.0 Error: too many hops"), "{}", bounce.data);
    // The test's message, then one hop per Received: header up to the limit; no more (every
    // message taken by smtpd is removed, and so is the bounce).
    wait_for("the loop's messages removed", || (inst.log_count(": removed") == inst.log_count(": client=") + 1).then_some(()));
    assert_eq!(inst.log_count(": client=localhost[127.0.0.1]"), 50, "{}", inst.log_count(": client="));
    assert_eq!(inst.log_count("NOQUEUE: reject: DATA from localhost[127.0.0.1]: 554 5.4.0 Error: too many hops"), 1);
}
