//! MX routing against a real DNS server on loopback (dnsmasq, started by the test): the preferred
//! MX host is down, so mail goes to the second one; a domain without MX gets its A record; a
//! domain that does not exist bounces; a null MX bounces without a connection; hostile MX lists
//! are bounded by `smtp_mx_address_limit` and `smtp_mx_session_limit`.

use crate::harness::Install;
use crate::harness::dnsmasq::Dnsmasq;
use crate::harness::smtp::{Client, Sink, free_port, queued_id};

fn dnsmasq(port: u16) -> Dnsmasq {
    Dnsmasq::start(
        port,
        &[
            "--mx-host=mx.example.test,mx1.mx.example.test,10",
            "--mx-host=mx.example.test,mx2.mx.example.test,20",
            "--host-record=mx1.mx.example.test,127.0.0.2",
            "--host-record=mx2.mx.example.test,127.0.0.3",
            "--host-record=amx.example.test,127.0.0.3",
            // RFC 7505 null MX: preference 0, the root as exchange (wire format 00 00 00).
            "--dns-rr=nullmx.example.test,15,000000",
            // An MX exchange that is no host name: the label "x y".
            "--dns-rr=badmx.example.test,15,000a0378207900",
            // Six MX hosts where nobody listens, and three that defer every recipient.
            "--mx-host=dead.example.test,d1.example.test,1",
            "--mx-host=dead.example.test,d2.example.test,2",
            "--mx-host=dead.example.test,d3.example.test,3",
            "--mx-host=dead.example.test,d4.example.test,4",
            "--mx-host=dead.example.test,d5.example.test,5",
            "--mx-host=dead.example.test,d6.example.test,6",
            "--host-record=d1.example.test,127.0.0.41",
            "--host-record=d2.example.test,127.0.0.42",
            "--host-record=d3.example.test,127.0.0.43",
            "--host-record=d4.example.test,127.0.0.44",
            "--host-record=d5.example.test,127.0.0.45",
            "--host-record=d6.example.test,127.0.0.46",
            "--mx-host=busy.example.test,b1.example.test,1",
            "--mx-host=busy.example.test,b2.example.test,2",
            "--mx-host=busy.example.test,b3.example.test,3",
            "--host-record=b1.example.test,127.0.0.51",
            "--host-record=b2.example.test,127.0.0.52",
            "--host-record=b3.example.test,127.0.0.53",
            // This system (127.0.0.9) as the best MX, as a backup MX, and as the only MX with
            // an address.
            "--mx-host=selfmx.example.test,self9.example.test,10",
            "--host-record=self9.example.test,127.0.0.9",
            "--mx-host=backup.example.test,p.example.test,10",
            "--mx-host=backup.example.test,self9.example.test,20",
            "--host-record=p.example.test,127.0.0.61",
            "--mx-host=nopri.example.test,noaddr.example.test,10",
            "--mx-host=nopri.example.test,self9.example.test,20",
        ],
    )
}

#[test]
fn mx_preference_order_with_the_preferred_host_down() {
    let dns_port = free_port();
    let _dns = dnsmasq(dns_port);
    let port = free_port();
    let sink = Sink::start_on("127.0.0.3", port);
    let smtpd = free_port();
    let main = format!(
        "smtp_dns_nameservers = 127.0.0.1:{dns_port}\nrelay_domains = example.test\ntransport_maps = inline:{{mx.example.test=smtp:mx.example.test:{port}, amx.example.test=smtp:amx.example.test:{port}, nx.example.test=smtp:nx.example.test:{port}}}\n"
    );
    let mut inst = Install::new(&main, &crate::harness::mail_system_master_cf(smtpd));
    inst.start();
    let mut c = Client::connect(smtpd);
    c.cmd("EHLO x.test");
    let a = queued_id(&c.send_mail("s@sender.test", &["u@mx.example.test"], "Subject: mx\n\nx\n"));
    let line = inst.wait_log(&format!("{a}: to=<u@mx.example.test>, relay=mx2.mx.example.test[127.0.0.3]:{port}"));
    assert!(line.contains("status=sent"), "{line}");
    let log = inst.log();
    let refused = log
        .find(&format!("connect to mx1.mx.example.test[127.0.0.2]:{port}: Connection refused"))
        .expect("the preferred MX was tried first");
    assert!(refused < log.find(&line).unwrap());

    let b = queued_id(&c.send_mail("s@sender.test", &["u@amx.example.test"], "Subject: a\n\nx\n"));
    let line = inst.wait_log(&format!("{b}: to=<u@amx.example.test>, relay=amx.example.test[127.0.0.3]:{port}"));
    assert!(line.contains("status=sent"), "{line}");
    assert_eq!(sink.count(), 2);

    let n = queued_id(&c.send_mail("s@sender.test", &["u@nx.example.test"], "Subject: nx\n\nx\n"));
    let line = inst.wait_log(&format!("{n}: to=<u@nx.example.test>"));
    // A domain that does not exist is a permanent failure, as in Postfix.
    assert!(
        line.contains(
            "dsn=5.4.4, status=bounced (Host or domain name not found. Name service error for name=nx.example.test type=MX: Host not found)"
        ),
        "{line}"
    );
}

#[test]
fn null_mx_bounces_at_once_and_mx_lists_are_bounded() {
    let dns_port = free_port();
    let _dns = dnsmasq(dns_port);
    let port = free_port();
    let busy: Vec<Sink> = ["127.0.0.51", "127.0.0.52", "127.0.0.53"].iter().map(|ip| Sink::start_on(ip, port)).collect();
    let smtpd = free_port();
    let main = format!(
        "smtp_dns_nameservers = 127.0.0.1:{dns_port}\nrelay_domains = example.test\ntransport_maps = inline:{{nullmx.example.test=smtp:nullmx.example.test:{port}, badmx.example.test=smtp:badmx.example.test:{port}, dead.example.test=smtp:dead.example.test:{port}, busy.example.test=smtp:busy.example.test:{port}}}\n"
    );
    let mut inst = Install::new(&main, &crate::harness::mail_system_master_cf(smtpd));
    inst.start();
    let mut c = Client::connect(smtpd);
    c.cmd("EHLO x.test");

    // Null MX: a bounce with Postfix's text, and no connection at all.
    let n = queued_id(&c.send_mail("s@sender.test", &["u@nullmx.example.test"], "Subject: n\n\nx\n"));
    let line = inst.wait_log(&format!("{n}: to=<u@nullmx.example.test>"));
    assert!(
        line.contains("relay=none")
            && line.contains("dsn=5.1.10, status=bounced (Domain nullmx.example.test does not accept mail (nullMX))"),
        "{line}"
    );
    // A malformed MX answer: Postfix's bounce and warning, no lookup of the bad name.
    let m = queued_id(&c.send_mail("s@sender.test", &["u@badmx.example.test"], "Subject: m\n\nx\n"));
    let line = inst.wait_log(&format!("{m}: to=<u@badmx.example.test>"));
    assert!(
        line.contains(
            "dsn=5.4.4, status=bounced (Name service error for name=badmx.example.test type=MX: Malformed or unexpected name server reply)"
        ),
        "{line}"
    );
    inst.wait_log("warning: malformed domain name in resource data of MX record for badmx.example.test: x\\040y");
    assert_eq!(inst.log_count("connect to"), 0, "{}", inst.log());

    // Six dead MX hosts: smtp_mx_address_limit (5) addresses are tried, the sixth is not.
    let d = queued_id(&c.send_mail("s@sender.test", &["u@dead.example.test"], "Subject: d\n\nx\n"));
    let line = inst.wait_log(&format!("{d}: to=<u@dead.example.test>"));
    assert!(line.contains("status=deferred (connect to d5.example.test[127.0.0.45]"), "{line}");
    assert_eq!(inst.log_count("[127.0.0.4"), 6, "five connects and the delivery line:\n{}", inst.log());
    assert_eq!(inst.log_count("d6.example.test"), 0, "{}", inst.log());

    // Three MX hosts that defer the recipient: smtp_mx_session_limit (2) sessions, the third
    // host is never asked.
    let b = queued_id(&c.send_mail("s@sender.test", &["defer@busy.example.test"], "Subject: b\n\nx\n"));
    let line = inst.wait_log(&format!("{b}: to=<defer@busy.example.test>"));
    assert!(line.contains("relay=b2.example.test[127.0.0.52]") && line.contains("status=deferred"), "{line}");
    let sessions: Vec<usize> = busy.iter().map(|s| s.connections.load(std::sync::atomic::Ordering::Relaxed)).collect();
    assert_eq!(sessions, vec![1, 1, 0]);
}

#[test]
fn this_system_in_an_mx_list_on_port_25() {
    let dns_port = free_port();
    let _dns = dnsmasq(dns_port);
    let smtpd = free_port();
    // Port 25 (no port in the next hop), and 127.0.0.9 is one of ours; nothing needs to listen.
    let main = format!(
        "smtp_dns_nameservers = 127.0.0.1:{dns_port}\ninet_interfaces = 127.0.0.1, 127.0.0.9\nrelay_domains = example.test\n\
         transport_maps = inline:{{selfmx.example.test=smtp:selfmx.example.test, backup.example.test=smtp:backup.example.test, nopri.example.test=smtp:nopri.example.test}}\n"
    );
    let mut inst = Install::new(&main, &crate::harness::mail_system_master_cf(smtpd));
    inst.start();
    let mut c = Client::connect(smtpd);
    c.cmd("EHLO x.test");
    let a = queued_id(&c.send_mail("s@sender.test", &["u@selfmx.example.test"], "Subject: a\n\nx\n"));
    let line = inst.wait_log(&format!("{a}: to=<u@selfmx.example.test>"));
    assert!(
        line.contains("relay=none") && line.contains("dsn=5.4.6, status=bounced (mail for selfmx.example.test loops back to myself)"),
        "{line}"
    );
    // A backup MX only tries the better hosts.
    let b = queued_id(&c.send_mail("s@sender.test", &["u@backup.example.test"], "Subject: b\n\nx\n"));
    let line = inst.wait_log(&format!("{b}: to=<u@backup.example.test>"));
    assert!(line.contains("status=deferred (connect to p.example.test[127.0.0.61]:25: Connection refused)"), "{line}");
    // The better host has no address: not a loop, a deferral.
    let n = queued_id(&c.send_mail("s@sender.test", &["u@nopri.example.test"], "Subject: n\n\nx\n"));
    let line = inst.wait_log(&format!("{n}: to=<u@nopri.example.test>"));
    assert!(line.contains("dsn=4.4.4, status=deferred (unable to find primary relay for nopri.example.test)"), "{line}");
    assert_eq!(inst.log_count("[127.0.0.9]"), 0, "this system was never connected to:\n{}", inst.log());
}
