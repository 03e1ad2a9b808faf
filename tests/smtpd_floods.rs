//! Floods (issue 9 §1): the session limit makes clients wait instead of refusing them, stress
//! shortens idle sessions, and Postfix's per-client limits (anvil) refuse a client that opens
//! too many connections or sends too much mail.

use crate::harness::smtp::{Client, Sink, free_port, queued_id};
use crate::harness::{Install, mail_system_master_cf, wait_for};

/// A mail system whose smtpd holds at most `maxproc` sessions.
fn limited(maxproc: u32, main_extra: &str) -> (Install, u16, Sink) {
    let sink = Sink::start(free_port());
    let port = free_port();
    let master = mail_system_master_cf(port).replace(" inet n - n - - smtpd", &format!(" inet n - n - {maxproc} smtpd"));
    let mut inst = Install::new(&format!("relayhost = [127.0.0.1]:{}\nrelay_domains = customer.example\n{main_extra}", sink.port), &master);
    inst.start();
    (inst, port, sink)
}

#[test]
fn a_client_beyond_the_session_limit_waits_instead_of_being_refused() {
    let (inst, port, _sink) = limited(2, "");
    let mut first = Client::connect(port);
    let second = Client::connect(port);
    assert!(first.banner.starts_with("220") && second.banner.starts_with("220"));
    // The third client is accepted by the kernel and waits for its greeting.
    let third = std::thread::spawn(move || {
        let c = Client::connect(port);
        c.banner.clone()
    });
    inst.wait_log("warning: service \"127.0.0.1:");
    inst.wait_log("has reached its process limit \"2\": new clients may experience noticeable delays");
    assert!(!third.is_finished(), "the third client is still waiting");
    assert_eq!(first.cmd("QUIT"), "221 2.0.0 Bye");
    let banner = third.join().unwrap();
    assert!(banner.starts_with("220 "), "served once a slot is free, not refused: {banner}");
    assert_eq!(inst.log_count("4.3.2 Service currently unavailable"), 0);
    drop(second);
}

#[test]
fn under_stress_idle_sessions_give_up_their_slots() {
    let (inst, port, sink) = limited(2, "smtpd_timeout = ${stress?{1}:{300}}s\n");
    // Two idle clients hold both slots; in normal times they could idle for 300 s.
    let idle: Vec<Client> = (0..2).map(|_| Client::connect(port)).collect();
    // A third client comes: the service is under stress and the idle sessions end.
    let mut c = Client::connect(port);
    assert!(c.banner.starts_with("220"), "{}", c.banner);
    // One slot is enough for it; the other idle session goes the same way a moment later.
    wait_for("both idle sessions ended", || (inst.log_count("timeout after CONNECT from localhost[127.0.0.1]") == 2).then_some(()));
    c.cmd("EHLO client.test");
    let id = queued_id(&c.send_mail("s@sender.test", &["u@customer.example"], "Subject: through\n\nthrough\n"));
    inst.wait_log(&format!("{id}: removed"));
    assert_eq!(sink.count(), 1);
    drop(idle);
}

#[test]
fn per_client_connection_and_message_limits() {
    let host = |inst: &Install| crate::harness::text(&inst.cli("postconf", &["-h", "myhostname"]).stdout).trim().to_string();
    // Concurrency: the third open connection from one client is refused instead of greeted.
    let (inst, port, _sink) = limited(10, "smtpd_client_event_limit_exceptions =\nsmtpd_client_connection_count_limit = 2\n");
    let open: Vec<Client> = (0..2).map(|_| Client::connect(port)).collect();
    let mut third = Client::connect(port);
    assert_eq!(third.banner, format!("421 4.7.0 {} Error: too many connections from 127.0.0.1", host(&inst)));
    assert_eq!(third.reply(), "", "and disconnected");
    inst.wait_log("warning: Connection concurrency limit exceeded: 3 from localhost[127.0.0.1] for service 127.0.0.1:");
    drop(open);
    wait_for("the connections closed", || (inst.log_count("disconnect from localhost[127.0.0.1]") == 3).then_some(()));
    assert!(Client::connect(port).banner.starts_with("220"), "closed connections no longer count");

    // Rate: the fourth connection in one time unit is refused.
    let (inst, port, _sink) =
        limited(10, "smtpd_client_event_limit_exceptions =\nsmtpd_client_connection_rate_limit = 3\nanvil_rate_time_unit = 1h\n");
    for _ in 0..3 {
        assert!(Client::connect(port).banner.starts_with("220"));
    }
    assert!(Client::connect(port).banner.starts_with("421 4.7.0"));
    inst.wait_log("warning: Connection rate limit exceeded: 4 from localhost[127.0.0.1] for service");

    // Messages: the third MAIL in one time unit gets 450.
    let (inst, port, _sink) =
        limited(10, "smtpd_client_event_limit_exceptions =\nsmtpd_client_message_rate_limit = 2\nanvil_rate_time_unit = 1h\n");
    let mut c = Client::connect(port);
    c.cmd("EHLO client.test");
    for _ in 0..2 {
        assert!(c.send_mail("s@sender.test", &["u@customer.example"], "Subject: x\n\nx\n").starts_with("250"));
    }
    assert_eq!(c.cmd("MAIL FROM:<s@sender.test>"), "450 4.7.1 Error: too much mail from 127.0.0.1");
    inst.wait_log("warning: Message delivery request rate limit exceeded: 3 from localhost[127.0.0.1] for service");
    // Clients in the exceptions (by default $mynetworks) are never limited.
    let (_inst, port, _sink) = limited(10, "smtpd_client_connection_count_limit = 1\n");
    let open: Vec<Client> = (0..3).map(|_| Client::connect(port)).collect();
    assert!(open.iter().all(|c| c.banner.starts_with("220")));
}

#[test]
fn a_thousand_idle_connections_delay_a_legitimate_client_by_seconds() {
    // 100 session slots (the default), 1,000 connections that say nothing, then one client with
    // mail. Postfix makes it wait for its 100 processes' timeouts; here the longest idle
    // sessions give up their slots to the clients waiting in the backlog.
    let (inst, port, sink) = limited(100, "");
    let hogs: Vec<std::net::TcpStream> = (0..1000)
        .map(|i| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("idle connection {i}: {e}")))
        .collect();
    let started = std::time::Instant::now();
    let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    // The client's patience: about ten seconds of evictions are expected here; with only
    // Postfix's stress timeouts (10 s per round of 100 idle sessions) it would take 90.
    s.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let mut c = Client::from_stream(s);
    assert!(c.banner.starts_with("220"), "{}", c.banner);
    c.cmd("EHLO client.test");
    let id = queued_id(&c.send_mail("s@sender.test", &["u@customer.example"], "Subject: through\n\nthrough\n"));
    eprintln!("the legitimate client's mail was queued {:?} after it connected behind 1,000 idle ones", started.elapsed());
    inst.wait_log(&format!("{id}: removed"));
    assert_eq!(sink.count(), 1);
    assert!(inst.log_count("timeout after CONNECT from localhost[127.0.0.1]") >= 900, "idle sessions gave up their slots");
    drop(hogs);
}
