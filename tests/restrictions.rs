//! Restriction lists in a running system, checked against the real Postfix: the same main.cf
//! lines (with `hash:` tables built by each system's postmap and a `cidr:` client table), the
//! same SMTP dialogues, the same reply codes and texts and the same `NOQUEUE:` log lines. The
//! newcomer's backup MX from issue 12: an unknown recipient of a relay domain is refused at
//! RCPT, a known one is accepted and delivered; HOLD keeps a message in the hold queue and
//! DISCARD accepts and drops one.

use std::net::TcpStream;
use std::os::fd::OwnedFd;

use crate::harness::dnsmasq::Dnsmasq;
use crate::harness::real_postfix::RealPostfix;
use crate::harness::smtp::{Client, Sink, free_port};
use crate::harness::{Install, mail_system_master_cf, require_root};

const RESTRICTIONS: &str = "myhostname = mx.test\n\
    relay_domains = customer.example\n\
    relay_recipient_maps = hash:$config_directory/relay_recipients\n\
    mynetworks = 192.0.2.0/24\n\
    smtpd_client_restrictions = check_client_access cidr:$config_directory/clients\n\
    smtpd_helo_restrictions = reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname\n\
    smtpd_sender_restrictions = reject_non_fqdn_sender, check_sender_access hash:$config_directory/senders\n\
    smtpd_recipient_restrictions = reject_non_fqdn_recipient, check_recipient_access hash:$config_directory/recipients, reject_unauth_destination\n\
    smtpd_data_restrictions = reject_unauth_pipelining\n";

const TABLES: &[(&str, &str)] = &[
    (
        "relay_recipients",
        "known@customer.example x\nheld@customer.example x\ngone@customer.example x\nblocked@customer.example x\nlater@customer.example x\n",
    ),
    ("clients", "127.0.0.2 REJECT not from this address\n127.0.0.0/8 DUNNO\n"),
    ("senders", "spammer@sender.test REJECT\nsender.test OK\n"),
    (
        "recipients",
        "held@customer.example HOLD\ngone@customer.example DISCARD\nblocked@customer.example 550 5.2.1 mailbox disabled\nlater@customer.example DEFER\n",
    ),
];

/// A connection from `source` (another loopback address) to 127.0.0.1:`port`.
fn connect_from(source: &str, port: u16) -> Client {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, socket};
    let fd: OwnedFd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::empty(), None).expect("socket");
    let local: SockaddrIn = format!("{source}:0").parse::<std::net::SocketAddrV4>().expect("address").into();
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &local).expect("bind");
    let peer: SockaddrIn = std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, port).into();
    connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &peer).expect("connect");
    let s = TcpStream::from(fd);
    s.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    Client::from_stream(s)
}

/// One step of a dialogue: a line (or several, sent at once) and how many replies to read.
struct Step {
    send: &'static str,
    /// Compare the reply code only (EHLO's extension lists and queue IDs differ).
    code_only: bool,
}

fn line(send: &'static str) -> Step {
    Step { send, code_only: false }
}

fn code(send: &'static str) -> Step {
    Step { send, code_only: true }
}

/// The replies of one session from `source`.
fn run(port: u16, source: &str, steps: &[Step]) -> Vec<String> {
    let mut c = if source == "127.0.0.1" { Client::connect(port) } else { connect_from(source, port) };
    let mut out = Vec::new();
    for step in steps {
        c.send_raw(format!("{}\r\n", step.send).as_bytes());
        for _ in 0..step.send.matches("\r\n").count() + 1 {
            let r = c.reply();
            out.push(if step.code_only { r.chars().take(3).collect() } else { r });
        }
    }
    out
}

/// A log line without its time, program and process, and without the queue ID (Postfix has
/// one from the first accepted RCPT on, Postern from the end of DATA): what parsers read.
fn message(line: &str) -> String {
    let rest = line.split_once("]: ").map_or(line, |(_, r)| r);
    match rest.split_once(": ") {
        Some((id, r)) if id.bytes().all(|b| b.is_ascii_alphanumeric()) && !id.is_empty() => r.to_string(),
        _ => rest.to_string(),
    }
}

#[test]
fn restriction_lists_answer_as_postfix_does() {
    require_root("a private Postfix instance runs as root");
    let sink = Sink::start(free_port());
    let port = free_port();
    let main = format!("relayhost = [127.0.0.1]:{}\n{RESTRICTIONS}", sink.port);
    let mut inst = Install::new(&main, &mail_system_master_cf(port));
    for (name, content) in TABLES {
        std::fs::write(inst.etc.join(name), content).unwrap();
        if *name != "clients" {
            let out = inst.cli("postmap", &[&inst.etc.join(name).display().to_string()]);
            assert!(out.status.success(), "postmap {name}");
        }
    }
    inst.start();
    let postfix = RealPostfix::start(RESTRICTIONS, TABLES, &["relay_recipients", "senders", "recipients"]);

    let sessions: Vec<(&str, Vec<Step>)> = vec![
        // The newcomer's backup MX: unknown recipients of the relay domain are refused.
        (
            "127.0.0.1",
            vec![
                code("EHLO client.test"),
                line("MAIL FROM:<s@sender.test>"),
                line("RCPT TO:<nosuchuser@customer.example>"),
                line("RCPT TO:<u@stranger.example>"),
                line("RCPT TO:<u@customer>"),
                line("RCPT TO:<blocked@customer.example>"),
                line("RCPT TO:<later@customer.example>"),
                line("RCPT TO:<known@customer.example>"),
                line("RSET"),
                line("QUIT"),
            ],
        ),
        // HELO and sender checks, delayed to RCPT.
        (
            "127.0.0.1",
            vec![
                code("EHLO localhost"),
                line("MAIL FROM:<s@sender.test>"),
                line("RCPT TO:<known@customer.example>"),
                code("EHLO bad_name!"),
                line("MAIL FROM:<s@sender.test>"),
                line("RCPT TO:<known@customer.example>"),
                code("EHLO client.test"),
                line("MAIL FROM:<s@localhost>"),
                line("RCPT TO:<known@customer.example>"),
                line("RSET"),
                line("MAIL FROM:<spammer@sender.test>"),
                line("RCPT TO:<known@customer.example>"),
                line("QUIT"),
            ],
        ),
        // A client the cidr: table refuses, at RCPT (smtpd_delay_reject).
        (
            "127.0.0.2",
            vec![code("EHLO client.test"), line("MAIL FROM:<s@sender.test>"), line("RCPT TO:<known@customer.example>"), line("QUIT")],
        ),
        // A HELO client that pipelines: DATA is refused.
        (
            "127.0.0.1",
            vec![
                line("HELO client.test\r\nMAIL FROM:<s@sender.test>"),
                line("RCPT TO:<known@customer.example>"),
                line("DATA"),
                line("QUIT"),
            ],
        ),
    ];
    // Postern does no reverse DNS lookup of clients (loopback clients are "localhost"); Postfix
    // names 127.0.0.2, which has no verified name here, "unknown".
    let same_name = |s: String| s.replace("unknown[127.0.0.2]", "localhost[127.0.0.2]");
    for (source, steps) in &sessions {
        let ours = run(port, source, steps);
        let theirs: Vec<String> = run(postfix.port, source, steps).into_iter().map(same_name).collect();
        assert_eq!(ours, theirs, "Postern's replies (left) and Postfix's (right) from {source}");
    }
    // The texts, literally, for the record.
    let first = run(port, "127.0.0.1", &sessions[0].1);
    assert_eq!(first[2], "550 5.1.1 <nosuchuser@customer.example>: Recipient address rejected: User unknown in relay recipient table");
    assert_eq!(first[3], "454 4.7.1 <u@stranger.example>: Relay access denied");
    assert_eq!(first[7], "250 2.1.5 Ok");

    // The log lines fail2ban and pflogsumm parse, field by field as Postfix writes them.
    for needle in [
        "to=<nosuchuser@customer.example>",
        "to=<blocked@customer.example>",
        "helo=<bad_name!>",
        "from=<spammer@sender.test>",
        "[127.0.0.2]: 554",
        "Improper use",
        "improper command pipelining after HELO",
    ] {
        let theirs = same_name(message(&postfix.wait_log(needle)));
        let ours = message(&inst.wait_log(needle));
        assert_eq!(ours, theirs, "log line for {needle}");
    }

    // HOLD and DISCARD: both accept; Postern keeps the held message in the hold queue and
    // drops the discarded one; the log lines are Postfix's.
    let mut c = Client::connect(port);
    c.cmd("EHLO client.test");
    let held = c.send_mail("s@sender.test", &["held@customer.example"], "Subject: held\n\nbody\n");
    assert!(held.starts_with("250 2.0.0 Ok: queued as "), "{held}");
    let gone = c.send_mail("s@sender.test", &["gone@customer.example"], "Subject: gone\n\nbody\n");
    assert!(gone.starts_with("250 2.0.0 Ok: queued as "), "{gone}");
    let known = c.send_mail("s@sender.test", &["known@customer.example"], "Subject: known\n\nbody\n");
    let known_id = crate::harness::smtp::queued_id(&known);
    inst.wait_log(&format!("{known_id}: removed"));
    assert_eq!(sink.count(), 1, "only the known recipient's message is delivered");
    assert_eq!(sink.count_containing("Subject: known"), 1);
    assert_eq!(inst.queue_files("hold").len(), 1, "the held message waits in hold");
    assert_eq!(inst.queue_files("incoming").len() + inst.queue_files("active").len() + inst.queue_files("deferred").len(), 0);
    let mut p = Client::connect(postfix.port);
    p.cmd("EHLO client.test");
    assert!(p.send_mail("s@sender.test", &["held@customer.example"], "Subject: held\n\nbody\n").starts_with("250 2.0.0 Ok: queued as "));
    assert!(p.send_mail("s@sender.test", &["gone@customer.example"], "Subject: gone\n\nbody\n").starts_with("250 2.0.0 Ok: queued as "));
    for needle in [
        "hold: RCPT from localhost[127.0.0.1]: <held@customer.example>",
        "discard: RCPT from localhost[127.0.0.1]: <gone@customer.example>",
    ] {
        assert_eq!(message(&inst.wait_log(needle)), message(&postfix.wait_log(needle)), "log line for {needle}");
    }
    inst.stop();
}

/// `reject_rbl_client`, `reject_rhsbl_sender` and `reject_unknown_{sender,recipient}_domain`
/// against a dnsmasq the test starts (Postfix cannot be pointed at it, so the texts are checked
/// literally, in Postfix's forms).
#[test]
fn dns_lists_and_unknown_domains() {
    let dns_port = free_port();
    let _dns = Dnsmasq::start(
        dns_port,
        &[
            "--host-record=1.0.0.127.bl.example.test,127.0.0.2",
            "--txt-record=1.0.0.127.bl.example.test,Listed for testing",
            "--host-record=spam.example.test.rhsbl.example.test,127.0.0.4",
            "--host-record=ok.example.test,127.0.0.5",
            "--host-record=spam.example.test,127.0.0.6",
            "--mx-host=customer.example.test,mx.customer.example.test,10",
            // RFC 7505 null MX: preference 0, the root as exchange.
            "--dns-rr=nullmx.example.test,15,000000",
        ],
    );
    let port = free_port();
    let main = format!(
        "relay_domains = customer.example.test\nsmtpd_dns_nameservers = 127.0.0.1:{dns_port}\n\
         smtpd_client_restrictions = reject_rbl_client bl.example.test=127.0.0.3\n\
         smtpd_sender_restrictions = reject_rhsbl_sender rhsbl.example.test, reject_unknown_sender_domain\n\
         smtpd_recipient_restrictions = reject_unknown_recipient_domain\n\
         smtpd_data_restrictions = reject_rbl_client bl.example.test\n"
    );
    let mut inst = Install::new(&main, &mail_system_master_cf(port));
    inst.start();
    let mut c = Client::connect(port);
    c.cmd("EHLO client.test");
    assert_eq!(c.cmd("MAIL FROM:<x@spam.example.test>"), "250 2.1.0 Ok");
    let listed = "554 5.7.1 Service unavailable; Sender address [spam.example.test] blocked using rhsbl.example.test";
    assert_eq!(c.cmd("RCPT TO:<u@customer.example.test>"), listed);
    inst.wait_log(&format!(
        "NOQUEUE: reject: RCPT from localhost[127.0.0.1]: {listed}; from=<x@spam.example.test> to=<u@customer.example.test> proto=ESMTP helo=<client.test>"
    ));
    c.cmd("RSET");
    assert_eq!(c.cmd("MAIL FROM:<x@nowhere.example.test>"), "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<u@customer.example.test>"), "450 4.1.8 <x@nowhere.example.test>: Sender address rejected: Domain not found");
    c.cmd("RSET");
    assert_eq!(c.cmd("MAIL FROM:<x@ok.example.test>"), "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<u@customer.example.test>"), "250 2.1.5 Ok", "the client's listing does not match the filter 127.0.0.3");
    assert_eq!(
        c.cmd("RCPT TO:<u@nullmx.example.test>"),
        "556 5.1.10 <u@nullmx.example.test>: Recipient address rejected: Domain nullmx.example.test does not accept mail (nullMX)"
    );
    assert_eq!(c.cmd("DATA"), "554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using bl.example.test; Listed for testing");
    inst.stop();
}
