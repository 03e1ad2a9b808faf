//! The ODMR provider (RFC 2645): smtpd with `smtpd_odmr_enable = yes` on its own port. A
//! real customer nobody here wrote (Debian's fetchmail, `proto odmr`, forwarding to a local
//! sink) takes exactly its own deferred mail, once; the refusals have RFC 2645's codes; a
//! customer that goes away mid-message leaves the message deferred and indexed, and a later
//! ATRN delivers it once; a message one session holds is not given to another.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use base64::Engine;

use crate::harness::smtp::{Client, Sink, free_port, queued_id};
use crate::harness::{FLUSH_ONLY, Install, text, wait_for};

pub(crate) const ALICE_PW: &str = "wonderland-42";

fn plain(user: &str, pw: &str) -> String {
    format!("AUTH PLAIN {}", base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pw}")))
}

/// A provider: the mail system (its relayhost never answers, so mail for the customers
/// stays deferred), its smtpd on `.1`, and the shipped odmr service's options on `.2`.
fn provider() -> (Install, u16, u16) {
    provider_with("", "")
}

/// The same with `main_extra` in main.cf and `odmr_extra` on the odmr service's command.
pub(crate) fn provider_with(main_extra: &str, odmr_extra: &str) -> (Install, u16, u16) {
    let (port, odmr) = (free_port(), free_port());
    (provider_on(port, odmr, main_extra, odmr_extra), port, odmr)
}

/// [`provider_with`] with smtpd on `port` and the odmr service on `odmr`.
pub(crate) fn provider_on(port: u16, odmr: u16, main_extra: &str, odmr_extra: &str) -> Install {
    let dir_users = format!("alice:{{PLAIN}}{ALICE_PW}\nbob:{{PLAIN}}bob-S3cr3t\n");
    let main = format!(
        "relayhost = [127.0.0.1]:{}\nrelay_domains = customer.example, other.example\n\
         smtpd_sasl_type = passwd-file\nsmtpd_sasl_path = sasl-users\n\
         smtpd_etrn_login_maps = inline:{{customer.example=alice, other.example=bob}}\n{main_extra}",
        free_port()
    );
    let master = format!(
        "127.0.0.1:{port} inet n - n - - smtpd\n\
         127.0.0.1:{odmr} inet n - n - - smtpd -o syslog_name=postern/odmr -o smtpd_odmr_enable=yes -o smtpd_sasl_auth_enable=yes {odmr_extra}\n\
         qmgr unix n - n 300 1 qmgr\nsmtp unix - - n - - smtp\n{FLUSH_ONLY}"
    );
    let mut inst = Install::new(&main, &master);
    std::fs::write(inst.etc.join("sasl-users"), dir_users).unwrap();
    inst.start();
    inst
}

/// Queue one message to `rcpt` and wait until it is deferred and in the flush index.
pub(crate) fn deferred_for(inst: &Install, port: u16, rcpt: &str, subject: &str) -> String {
    let mut c = Client::connect(port);
    c.cmd("EHLO sender.test");
    let id = queued_id(&c.send_mail("s@sender.test", &[rcpt], &format!("Subject: {subject}\n\nbody\n")));
    wait_for("the deferral", || indexed(inst, &id).then_some(()));
    id
}

pub(crate) fn indexed(inst: &Install, id: &str) -> bool {
    inst.queue_files("flush").iter().any(|p| std::fs::read_to_string(p).unwrap_or_default().contains(id))
}

pub(crate) fn deferred(inst: &Install, id: &str) -> bool {
    inst.queue_files("deferred").iter().any(|p| p.ends_with(id))
}

/// fetchmail as an ODMR customer of `port` for `domains`, handing the mail to `sink_port`.
pub(crate) fn fetchmail(inst: &Install, port: u16, user: &str, pw: &str, domains: &str, sink_port: u16) -> Output {
    let rc = inst.dir.path().join(format!("fetchmailrc-{user}"));
    std::fs::write(
        &rc,
        format!(
            "poll 127.0.0.1 service {port} proto odmr user \"{user}\" password \"{pw}\" fetchdomains {domains} smtphost 127.0.0.1/{sink_port}\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Its own lock file: as root, fetchmail would share /var/run/fetchmail.pid with the other
    // tests' fetchmails and refuse to run beside them.
    let pidfile = inst.dir.path().join(format!("fetchmail-{user}.pid"));
    Command::new("fetchmail")
        .env("HOME", inst.dir.path())
        .args(["-f", rc.to_str().unwrap(), "--pidfile", pidfile.to_str().unwrap(), "--nosyslog", "-v"])
        .output()
        .expect("fetchmail is not installed (tests/run installs it)")
}

pub(crate) fn said(out: &Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

#[test]
fn fetchmail_takes_exactly_its_own_mail_once() {
    let (inst, port, odmr) = provider();
    let mine = [deferred_for(&inst, port, "u@customer.example", "one"), deferred_for(&inst, port, "v@customer.example", "two")];
    let theirs = deferred_for(&inst, port, "w@other.example", "bob's");
    let sink = Sink::start(free_port());
    let out = fetchmail(&inst, odmr, "alice", ALICE_PW, "customer.example", sink.port);
    // The session's last line comes after the customer saw QUIT's reply.
    inst.wait_log("reversed session done: ");
    let log = inst.log();
    for id in &mine {
        assert!(log.contains(&format!("{id}: removed")), "{}\n{log}", said(&out));
        assert!(log.contains(&format!("{id}: to=<")) && log.contains("relay=odmr:localhost[127.0.0.1]"), "{log}");
    }
    let got = sink.messages();
    assert_eq!(got.len(), 2, "{}", said(&out));
    let mut subjects: Vec<&str> = got.iter().filter_map(|m| m.data.lines().find(|l| l.starts_with("Subject:"))).collect();
    subjects.sort();
    assert_eq!(subjects, ["Subject: one", "Subject: two"]);
    assert!(
        log.contains("ATRN from localhost[127.0.0.1]: domains=customer.example, sasl_username=alice: reversing the connection"),
        "{log}"
    );
    assert!(log.contains("reversed session done: messages=2 sent=2 bounced=0 deferred=0"), "{log}");
    assert!(deferred(&inst, &theirs) && indexed(&inst, &theirs), "bob's mail stays queued");
    for id in &mine {
        assert!(!indexed(&inst, id), "{id}: delivered mail leaves the flush index");
    }
    // Again: nothing left for alice.
    let out = fetchmail(&inst, odmr, "alice", ALICE_PW, "customer.example", sink.port);
    assert_eq!(sink.count(), 2, "{}", said(&out));
    inst.wait_log("sasl_username=alice: no mail");
}

#[test]
fn refusals_have_rfc2645_codes() {
    let (inst, port, odmr) = provider();
    let mut c = Client::connect(odmr);
    assert_eq!(c.cmd("ATRN customer.example"), "503 5.5.1 Error: send EHLO first");
    let ehlo = c.cmd("EHLO customer.example");
    assert!(ehlo.contains("\n250-AUTH PLAIN LOGIN CRAM-MD5\n250-ATRN\n250 ENHANCEDSTATUSCODES"), "{ehlo}");
    assert!(!ehlo.contains("ETRN") && !ehlo.contains("PIPELINING"), "{ehlo}");
    assert_eq!(c.cmd("ATRN customer.example"), "530 5.7.0 Authentication required");
    assert_eq!(c.cmd("MAIL FROM:<a@customer.example>"), "502 5.5.1 Error: command not implemented");
    assert_eq!(c.cmd("ETRN customer.example"), "502 5.5.1 Error: command not implemented");
    assert_eq!(c.cmd(&plain("alice", ALICE_PW)), "235 2.7.0 Authentication successful");
    assert_eq!(c.cmd("ATRN other.example"), "450 4.7.1 ATRN request refused");
    assert_eq!(c.cmd("ATRN customer.example,other.example"), "450 4.7.1 ATRN request refused");
    assert_eq!(c.cmd("ATRN bad..name"), "501 5.5.4 Syntax: ATRN [domain[,domain]...]");
    assert_eq!(c.cmd("ATRN customer.example"), "453 4.2.0 You have no mail");
    assert_eq!(c.cmd("ATRN"), "453 4.2.0 You have no mail", "every domain alice owns: none has mail");
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye");
    inst.wait_log("NOQUEUE: reject: ATRN from localhost[127.0.0.1]: 450 4.7.1 <other.example>: ATRN by user alice not allowed");
    let line = wait_for("the disconnect line", || {
        inst.log().lines().find(|l| l.contains("postern/odmr/smtpd") && l.contains("disconnect from")).map(str::to_string)
    });
    assert!(line.ends_with("disconnect from localhost[127.0.0.1] ehlo=1 auth=1 atrn=0/7 quit=1 unknown=0/2 commands=3/12"), "{line}");
    // A plain smtpd does not know ATRN.
    let mut c = Client::connect(port);
    c.cmd("EHLO customer.example");
    assert!(c.cmd("MAIL FROM:<a@sender.test>").starts_with("250"));
    assert!(c.cmd("ATRN customer.example").starts_with("502 5.5.2"));
}

/// The customer, by hand, up to its answer to the provider's DATA: returns the connection.
fn reversed(odmr: u16, domains: &str) -> Client {
    let mut c = Client::connect(odmr);
    c.cmd("EHLO customer.example");
    assert_eq!(c.cmd(&plain("alice", ALICE_PW)), "235 2.7.0 Authentication successful");
    assert_eq!(c.cmd(&format!("ATRN {domains}")), "250 2.0.0 OK now reversing the connection");
    c
}

#[test]
fn a_customer_gone_mid_message_gets_it_later_exactly_once() {
    let (inst, port, odmr) = provider();
    let id = deferred_for(&inst, port, "u@customer.example", "interrupted");
    let mut c = reversed(odmr, "customer.example");
    // Now the provider is the client: it waits for our greeting.
    assert!(c.cmd("220 customer.example ready").starts_with("EHLO "));
    assert!(c.cmd("250 customer.example").starts_with("MAIL FROM:<s@sender.test>"));
    assert_eq!(c.cmd("250 2.1.0 Ok"), "RCPT TO:<u@customer.example>");
    assert_eq!(c.cmd("250 2.1.5 Ok"), "DATA");
    c.send_raw(b"354 go ahead\r\n");
    let first = c.reply();
    assert!(first.starts_with("Received:") || !first.is_empty(), "{first}");
    drop(c);
    let line = inst.wait_log(&format!("{id}: to=<u@customer.example>, relay=odmr:localhost[127.0.0.1]"));
    assert!(line.contains("status=deferred"), "{line}");
    assert!(line.contains("lost connection with localhost[127.0.0.1] while sending"), "{line}");
    inst.wait_log("reversed session done: messages=1 sent=0 bounced=0 deferred=1");
    assert!(deferred(&inst, &id), "still deferred");
    assert!(indexed(&inst, &id), "still in the index");
    let sink = Sink::start(free_port());
    let out = fetchmail(&inst, odmr, "alice", ALICE_PW, "customer.example", sink.port);
    inst.wait_log(&format!("{id}: removed"));
    assert_eq!(sink.count(), 1, "{}", said(&out));
    assert_eq!(sink.count_containing("Subject: interrupted"), 1);
}

/// While one session holds a message, a second ATRN for the domain finds nothing to take and
/// an ETRN does not move it; the message is delivered once, by the first session.
#[test]
fn a_message_in_one_session_is_not_given_to_another() {
    let (inst, port, odmr) = provider();
    let id = deferred_for(&inst, port, "u@customer.example", "held");
    let mut first = reversed(odmr, "customer.example");
    let mut second = Client::connect(odmr);
    second.cmd("EHLO customer.example");
    second.cmd(&plain("alice", ALICE_PW));
    assert_eq!(second.cmd("ATRN customer.example"), "453 4.2.0 You have no mail");
    let mut etrn = Client::connect(port);
    etrn.cmd("EHLO customer.example");
    assert!(etrn.cmd("ETRN customer.example").starts_with("25"));
    assert!(deferred(&inst, &id), "the claimed file stays in deferred");
    // The first session goes on and delivers it.
    assert!(first.cmd("220 customer.example ready").starts_with("EHLO "));
    first.cmd("250 customer.example");
    first.cmd("250 2.1.0 Ok");
    assert_eq!(first.cmd("250 2.1.5 Ok"), "DATA");
    first.send_raw(b"354 go ahead\r\n");
    for _ in 0..100 {
        if first.reply() == "." {
            break;
        }
    }
    assert_eq!(first.cmd("250 2.0.0 Ok: queued as X"), "QUIT");
    first.send_raw(b"221 2.0.0 Bye\r\n");
    inst.wait_log(&format!("{id}: removed"));
    assert_eq!(inst.log_count(&format!("{id}: to=<u@customer.example>, relay=odmr:localhost[127.0.0.1]")), 1, "{}", inst.log());
    assert_eq!(inst.log_count("status=sent"), 1, "{}", inst.log());
}

/// The customer, by hand, through the provider's MAIL and RCPT (for u@customer.example) to
/// its `354` answer to DATA: the message comes next.
fn reversed_to_data(odmr: u16) -> Client {
    let mut c = reversed(odmr, "customer.example");
    assert!(c.cmd("220 customer.example ready").starts_with("EHLO "));
    c.cmd("250 customer.example");
    c.cmd("250 2.1.0 Ok");
    assert_eq!(c.cmd("250 2.1.5 Ok"), "DATA");
    c.send_raw(b"354 go ahead\r\n");
    c
}

/// `kill -9` of the provider's smtpd during a reversed session, mid-message: the message is
/// still deferred and indexed (the claim died with the process), and the restarted service
/// delivers it once to the next ATRN.
#[test]
fn a_provider_killed_mid_message_loses_nothing() {
    let (inst, port, odmr) = provider();
    let id = deferred_for(&inst, port, "u@customer.example", "killed");
    let mut c = reversed_to_data(odmr);
    assert!(!c.reply().is_empty());
    let service = format!("127.0.0.1:{odmr}");
    let pid = inst.child_pid(&service).expect("the odmr smtpd");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_for("the session to end", || (c.reply().is_empty()).then_some(()));
    assert!(deferred(&inst, &id) && indexed(&inst, &id), "still deferred and indexed");
    wait_for("a new odmr smtpd", || inst.child_pid(&service).filter(|p| *p != pid));
    let sink = Sink::start(free_port());
    let out = fetchmail(&inst, odmr, "alice", ALICE_PW, "customer.example", sink.port);
    inst.wait_log(&format!("{id}: removed"));
    assert_eq!(sink.count_containing("Subject: killed"), 1, "{}", said(&out));
    assert_eq!(sink.count(), 1);
}

/// `kill -9` of the queue manager and the flush service during a reversed session, mid-message:
/// the session does not depend on them once reversed, so the customer's acknowledgement
/// removes the message, and when they are back nothing is delivered twice (the restarted
/// flush service's index has no stale entry that an ETRN could act on).
#[test]
fn qmgr_and_flush_killed_mid_session_deliver_once() {
    let (inst, port, odmr) = provider();
    let id = deferred_for(&inst, port, "u@customer.example", "daemons killed");
    let mut c = reversed_to_data(odmr);
    let killed: Vec<i32> = ["qmgr", "flush"].iter().map(|p| inst.program_pid(p).expect("running")).collect();
    for pid in &killed {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    }
    for _ in 0..100 {
        if c.reply() == "." {
            break;
        }
    }
    assert_eq!(c.cmd("250 2.0.0 Ok: queued as X"), "QUIT");
    c.send_raw(b"221 2.0.0 Bye\r\n");
    inst.wait_log(&format!("{id}: removed"));
    for (program, old) in ["qmgr", "flush"].iter().zip(&killed) {
        wait_for(&format!("a new {program}"), || inst.program_pid(program).filter(|p| p != old));
    }
    assert!(!deferred(&inst, &id));
    let mut etrn = Client::connect(port);
    etrn.cmd("EHLO customer.example");
    assert_eq!(etrn.cmd("ETRN customer.example"), "251 OK, no messages waiting for node customer.example");
    assert_eq!(inst.log_count("status=sent"), 1, "{}", inst.log());
}

/// The shipped master.cf's `odmr` entry works once uncommented, and nothing else is needed:
/// port 366, ATRN in the EHLO reply, AUTH on, ATRN answered.
#[test]
fn the_shipped_odmr_entry_works_uncommented() {
    crate::harness::require_root("the odmr service listens on port 366");
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../etc/master.cf")).unwrap();
    let (mut master, mut in_odmr) = (String::new(), false);
    for line in shipped.lines() {
        if line.starts_with("#odmr ") {
            in_odmr = true;
        } else if !line.starts_with("#  -o") {
            in_odmr = false;
        }
        // The loopback smtpd of the shipped file moves to a free port (tests run side by side).
        let line = if line.starts_with("127.0.0.1:2525 ") { line.replacen("2525", &free_port().to_string(), 1) } else { line.to_string() };
        master.push_str(if in_odmr { &line[1..] } else { &line });
        master.push('\n');
    }
    assert!(master.contains("\nodmr      inet"), "{master}");
    let main = "smtpd_sasl_type = passwd-file\nsmtpd_sasl_path = sasl-users\nsmtpd_etrn_login_maps = inline:{customer.example=alice}\n\
         relay_domains = customer.example\n";
    let mut inst = Install::new(main, &master);
    std::fs::write(inst.etc.join("sasl-users"), format!("alice:{{PLAIN}}{ALICE_PW}\n")).unwrap();
    inst.start();
    let mut c = wait_for("the odmr port", || std::net::TcpStream::connect(("127.0.0.1", 366)).ok().map(Client::from_stream));
    assert!(c.cmd("EHLO customer.example").contains("\n250-ATRN\n"));
    assert_eq!(c.cmd(&plain("alice", ALICE_PW)), "235 2.7.0 Authentication successful");
    assert_eq!(c.cmd("ATRN"), "453 4.2.0 You have no mail");
    inst.wait_log("postern/odmr/smtpd");
}

/// A recipient the customer refuses for good bounces as in the queue manager: the sender gets
/// a notification, the other recipient is delivered, and the message is removed.
#[test]
fn a_recipient_the_customer_refuses_bounces() {
    let (inst, port, odmr) = provider();
    let mut c = Client::connect(port);
    c.cmd("EHLO sender.test");
    let id = queued_id(&c.send_mail("s@sender.test", &["u@customer.example", "reject-me@customer.example"], "Subject: half\n\nbody\n"));
    wait_for("the deferral", || indexed(&inst, &id).then_some(()));
    let sink = Sink::start(free_port());
    let out = fetchmail(&inst, odmr, "alice", ALICE_PW, "customer.example", sink.port);
    inst.wait_log(&format!("{id}: removed"));
    let line = inst.wait_log(&format!("{id}: to=<reject-me@customer.example>, relay=odmr:localhost[127.0.0.1]"));
    assert!(line.contains("dsn=5.1.1, status=bounced (host localhost[127.0.0.1] said: 550 5.1.1"), "{line}");
    inst.wait_log(&format!("{id}: sender non-delivery notification: "));
    inst.wait_log("reversed session done: messages=1 sent=1 bounced=1 deferred=0");
    assert_eq!(sink.count(), 1, "{}", said(&out));
    assert_eq!(sink.messages()[0].recipients, ["u@customer.example"]);
    // The notification is the queue manager's to deliver (to the sender, via the relayhost).
    inst.wait_log("from=<>, size=");
}

/// Over TLS: STARTTLS (required on the odmr service), AUTH, ATRN, and the reversed session
/// runs inside the same TLS session (Python's smtplib and ssl as the customer).
#[test]
fn the_reversed_session_stays_inside_tls() {
    let pki = crate::harness::pki::Pki::new();
    pki.server("server", "mx.test");
    let (inst, port, odmr) = provider_with(&pki.main_cf("server", "may"), "-o smtpd_tls_security_level=encrypt");
    let id = deferred_for(&inst, port, "u@customer.example", "over tls");
    let script = format!(
        r#"
import smtplib, ssl
s = smtplib.SMTP("127.0.0.1", {odmr}, timeout=20)
s.ehlo("customer.example")
print("plain:", s.docmd("ATRN", "customer.example"))
s.starttls(context=ssl.create_default_context(cafile="{ca}"))
s.ehlo("customer.example")
assert s.has_extn("atrn"), s.esmtp_features
s.login("alice", "{pw}")
code, msg = s.docmd("ATRN", "customer.example")
print("atrn:", code, msg.decode())
sock = s.sock
f = sock.makefile("rb")
sock.sendall(b"220 customer.example ready\r\n")
for _ in range(100):
    line = f.readline().decode().rstrip("\r\n")
    print("got:", line, "cipher:", sock.cipher()[0])
    verb = line[:4].upper()
    if verb == "DATA":
        sock.sendall(b"354 go ahead\r\n")
        while f.readline() != b".\r\n":
            pass
        sock.sendall(b"250 2.0.0 Ok: queued\r\n")
    elif verb == "QUIT":
        sock.sendall(b"221 2.0.0 Bye\r\n")
        break
    elif line:
        sock.sendall(b"250 customer.example\r\n")
    else:
        break
"#,
        ca = pki.path("ca.pem").display(),
        pw = ALICE_PW
    );
    let (ok, out) = crate::tls::run("python3", &["-c", &script], b"");
    assert!(ok, "python: {out}");
    assert!(out.contains("plain: (530, b'5.7.0 Must issue a STARTTLS command first')"), "{out}");
    assert!(out.contains("atrn: 250 2.0.0 OK now reversing the connection"), "{out}");
    assert!(out.contains("got: MAIL FROM:<s@sender.test> cipher: TLS_AES_256_GCM_SHA384"), "{out}");
    assert!(out.contains("got: QUIT"), "{out}");
    inst.wait_log(&format!("{id}: removed"));
    inst.wait_log("reversed session done: messages=1 sent=1 bounced=0 deferred=0");
}

/// Garbage instead of the customer's greeting ends the reversed session, and a customer that
/// stops reading mid-message is given up after `smtp_data_xfer_timeout`: both times the
/// message stays deferred and indexed.
#[test]
fn garbage_after_the_swap_and_a_customer_that_stops_reading() {
    let (inst, port, odmr) = provider_with("", "-o smtp_data_xfer_timeout=2s");
    let mut c = Client::connect(port);
    c.cmd("EHLO sender.test");
    // Larger than the socket buffers both ways, so that the provider's writes block.
    let body = format!("Subject: big\n\n{}", "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\n".repeat(100_000));
    let id = queued_id(&c.send_mail("s@sender.test", &["u@customer.example"], &body));
    wait_for("the deferral", || indexed(&inst, &id).then_some(()));

    let mut c = reversed(odmr, "customer.example");
    assert_eq!(c.cmd("hello, I am not SMTP"), "", "the provider hangs up");
    let line = inst.wait_log("reversed session failed: ");
    assert!(line.contains("malformed reply from localhost[127.0.0.1] while receiving the initial server greeting"), "{line}");
    assert!(deferred(&inst, &id) && indexed(&inst, &id));

    let c = reversed_to_data(odmr);
    // ... and read no more.
    let line = inst.wait_log(&format!("{id}: to=<u@customer.example>, relay=odmr:localhost[127.0.0.1]"));
    assert!(line.contains("status=deferred (conversation with localhost[127.0.0.1] timed out while sending message body)"), "{line}");
    inst.wait_log("reversed session done: messages=1 sent=0 bounced=0 deferred=1");
    assert!(deferred(&inst, &id) && indexed(&inst, &id));
    drop(c);
}

/// A provider whose notices reach the sender (`s@sender.test`) at `notices`, with `extra` in
/// main.cf.
fn provider_with_notices(notices: &Sink, extra: &str) -> (Install, u16, u16) {
    provider_with(&format!("transport_maps = inline:{{sender.test=smtp:[127.0.0.1]:{}}}\n{extra}", notices.port), "")
}

/// One message from `s@sender.test` to u@customer.example with ENVID `envid` and the RCPT
/// options `rcpt_options`, deferred and indexed.
fn deferred_with_dsn(inst: &Install, port: u16, envid: &str, rcpt_options: &str, subject: &str) -> String {
    let mut c = Client::connect(port);
    c.cmd("EHLO sender.test");
    assert_eq!(c.cmd(&format!("MAIL FROM:<s@sender.test> ENVID={envid}")), "250 2.1.0 Ok");
    assert_eq!(c.cmd(&format!("RCPT TO:<u@customer.example> {rcpt_options}")), "250 2.1.5 Ok");
    c.cmd("DATA");
    let id = queued_id(&c.cmd(&format!("Subject: {subject}\r\n\r\nbody\r\n.")));
    c.cmd("QUIT");
    wait_for("the deferral", || indexed(inst, &id).then_some(()));
    id
}

/// The customer, by hand, answering EHLO with `ehlo_reply`, up to the provider's (one) RCPT:
/// the connection, and the MAIL and RCPT command lines it got.
fn reversed_to_rcpt(odmr: u16, ehlo_reply: &str) -> (Client, String, String) {
    let mut c = reversed(odmr, "customer.example");
    assert!(c.cmd("220 customer.example ready").starts_with("EHLO "));
    let mail = c.cmd(ehlo_reply);
    let rcpt = c.cmd("250 2.1.0 Ok");
    (c, mail, rcpt)
}

/// The customer takes the message: the MAIL and RCPT command lines it got.
fn take_message(odmr: u16, ehlo_reply: &str) -> (String, String) {
    let (mut c, mail, rcpt) = reversed_to_rcpt(odmr, ehlo_reply);
    assert_eq!(c.cmd("250 2.1.5 Ok"), "DATA");
    c.send_raw(b"354 go ahead\r\n");
    while c.reply() != "." {}
    assert_eq!(c.cmd("250 2.0.0 Ok: queued as X"), "QUIT");
    c.send_raw(b"221 2.0.0 Bye\r\n");
    (mail, rcpt)
}

/// NOTIFY=SUCCESS as in the queue manager: a customer whose server does not offer DSN
/// cannot report the delivery, so the sender gets a success notice (`Action: relayed`) from
/// the provider; one that offers DSN gets NOTIFY, ORCPT and ENVID, and no notice comes from
/// here.
#[test]
fn notify_success_over_atrn_gets_a_success_notice_unless_the_customer_has_dsn() {
    let notices = Sink::start(free_port());
    let (inst, port, odmr) = provider_with_notices(&notices, "");
    let options = "NOTIFY=SUCCESS ORCPT=rfc822;U+2Bx@customer.example";
    let id = deferred_with_dsn(&inst, port, "odmr-1", options, "to a plain customer");
    let (mail, rcpt) = take_message(odmr, "250 customer.example");
    assert_eq!((mail.as_str(), rcpt.as_str()), ("MAIL FROM:<s@sender.test>", "RCPT TO:<u@customer.example>"));
    inst.wait_log(&format!("{id}: removed"));
    let n = crate::dsn::notice(&notices, &id, "Successful Mail Delivery Report");
    assert_eq!((n.sender.as_str(), n.recipients.clone()), ("", vec!["s@sender.test".to_string()]));
    let p = crate::dsn::parse_notice(&n.data);
    assert_eq!(p.report_type, "delivery-status");
    assert_eq!(p.parts, ["text/plain", "message/delivery-status", "text/rfc822-headers"]);
    assert_eq!(crate::dsn::field(&p.status[0], "Original-Envelope-Id"), Some("odmr-1"));
    assert_eq!(p.status.len(), 2, "{:?}", p.status);
    let u = &p.status[1];
    let field = |name| crate::dsn::field(u, name);
    assert_eq!(
        (field("Final-Recipient"), field("Original-Recipient"), field("Action"), field("Status")),
        (Some("rfc822; u@customer.example"), Some("rfc822;U+x@customer.example"), Some("relayed"), Some("2.0.0"))
    );
    let via = "delivery via odmr:localhost[127.0.0.1]: 250 2.0.0 Ok: queued as X";
    assert!(field("Diagnostic-Code").is_some_and(|d| d.contains(via)), "{u:?}");
    assert!(p.returned.contains("Subject: to a plain customer"), "{}", p.returned);
    inst.wait_log(&format!("{id}: sender delivery status notification: "));

    let id = deferred_with_dsn(&inst, port, "odmr-2", options, "to a DSN customer");
    let (mail, rcpt) = take_message(odmr, "250-customer.example\r\n250 DSN");
    assert_eq!(mail, "MAIL FROM:<s@sender.test> ENVID=odmr-2");
    assert_eq!(rcpt, "RCPT TO:<u@customer.example> ORCPT=rfc822;U+2Bx@customer.example NOTIFY=SUCCESS");
    inst.wait_log(&format!("{id}: removed"));
    assert_eq!(inst.log_count(&format!("{id}: sender delivery status notification")), 0, "{}", inst.log());
    assert_eq!(notices.count(), 1, "the first message's notice only");
}

/// A message the customer defers (450 to its recipient) stays deferred; once it is older than
/// `delay_warning_time` the provider sends its one delay notice, recorded in the queue file,
/// so a second session that defers it again sends none.
#[test]
fn a_message_left_deferred_past_delay_warning_time_gets_one_delay_notice() {
    let notices = Sink::start(free_port());
    let (inst, port, odmr) = provider_with_notices(&notices, "delay_warning_time = 3s\n");
    let id = deferred_with_dsn(&inst, port, "odmr-3", "NOTIFY=DELAY", "kept waiting");
    // Taken once the message is queued, so that its age reaches the warning time by then.
    let queued = std::time::Instant::now();
    assert_eq!(inst.log_count("delay notification"), 0, "too young for the queue manager's notice");
    // The warning time has to pass: nothing to wait on but the clock.
    std::thread::sleep(std::time::Duration::from_secs(3).saturating_sub(queued.elapsed()));
    let defer_once = || {
        let (mut c, mail, rcpt) = reversed_to_rcpt(odmr, "250 customer.example");
        assert_eq!((mail.as_str(), rcpt.as_str()), ("MAIL FROM:<s@sender.test>", "RCPT TO:<u@customer.example>"));
        assert_eq!(c.cmd("450 4.2.0 <u@customer.example>: mailbox busy"), "QUIT");
        c.send_raw(b"221 2.0.0 Bye\r\n");
    };
    defer_once();
    inst.wait_log("reversed session done: messages=1 sent=0 bounced=0 deferred=1");
    let n = crate::dsn::notice(&notices, &id, "Delayed Mail (still being retried)");
    let p = crate::dsn::parse_notice(&n.data);
    assert_eq!(p.parts, ["text/plain", "message/delivery-status", "text/rfc822-headers"]);
    let u = &p.status[1];
    let field = |name| crate::dsn::field(u, name);
    assert_eq!(
        (field("Final-Recipient"), field("Action"), field("Status")),
        (Some("rfc822; u@customer.example"), Some("delayed"), Some("4.2.0"))
    );
    assert!(field("Diagnostic-Code").is_some_and(|d| d.contains("mailbox busy")), "{u:?}");
    inst.wait_log(&format!("{id}: sender delay notification: "));
    assert!(deferred(&inst, &id) && indexed(&inst, &id), "still deferred and indexed");

    defer_once();
    wait_for("the second session", || (inst.log_count("reversed session done: messages=1 sent=0 bounced=0 deferred=1") == 2).then_some(()));
    assert_eq!(inst.log_count(&format!("{id}: sender delay notification")), 1, "{}", inst.log());
    assert!(deferred(&inst, &id) && indexed(&inst, &id));
}
