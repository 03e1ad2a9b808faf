//! smtpd STARTTLS and wrapper mode (issue 11, item 1), with real clients nobody here wrote:
//! `openssl s_client -starttls smtp`, Postfix's `posttls-finger`, `swaks --tls`, Python's
//! smtplib. The certificates are made by each test with the `openssl` command (a test CA and
//! server certificates it signs); no key is in the tree. Hostile clients: garbage instead of a
//! handshake, a handshake that never comes, plaintext pipelined after STARTTLS. A reload puts
//! a new certificate in place without cutting a TLS session.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::pki::Pki;
use crate::harness::smtp::{Client, Sink, free_port};
use crate::harness::{Install, mail_system_master_cf, text, wait_for};

/// The mail system with STARTTLS (`level`) on certificate "server", relaying to `sink`.
fn tls_system(pki: &Pki, level: &str, extra: &str, sink: &Sink) -> (Install, u16) {
    pki.server("server", "mx.test");
    Install::mail_system(&format!("{}{extra}", pki.main_cf("server", level)), sink.port)
}

/// How long a client program may take before it is killed (a client that waits for a reply
/// smtpd never sends must fail the test, not hang it).
const CLIENT_LIMIT: &str = "30";

/// Run a program to its end (at most [`CLIENT_LIMIT`] seconds), `stdin` fed to it; (success,
/// stdout + stderr).
pub(crate) fn run(program: &str, args: &[&str], stdin: &[u8]) -> (bool, String) {
    let mut child = Command::new("timeout")
        .arg(CLIENT_LIMIT)
        .arg(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), format!("{}{}", text(&out.stdout), text(&out.stderr)))
}

/// Postfix's line for a TLSv1.3 handshake with the tests' ECDSA P-256 certificates.
const TLS13_LOG: &str = "Anonymous TLS connection established from localhost[127.0.0.1]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature ECDSA (prime256v1) server-digest SHA256";

/// A message through `openssl s_client -starttls smtp`, once with TLSv1.3 and once with
/// TLSv1.2: delivered, with Postfix's log line and Received: clause.
#[test]
fn openssl_s_client_delivers_through_starttls() {
    let sink = Sink::start(free_port());
    let pki = Pki::new();
    let (inst, port) = tls_system(&pki, "may", "", &sink);
    let connect = format!("127.0.0.1:{port}");
    let ca = pki.path("ca.pem");
    for (version, subject) in [("-tls1_3", "s_client 1.3"), ("-tls1_2", "s_client 1.2")] {
        let session = format!(
            "EHLO client.test\nMAIL FROM:<s@sender.test>\nRCPT TO:<u@customer.example>\nDATA\nSubject: {subject}\n\nover TLS\n.\nQUIT\n"
        );
        let (ok, out) = run(
            "openssl",
            &[
                "s_client",
                "-starttls",
                "smtp",
                "-connect",
                &connect,
                version,
                "-crlf",
                "-quiet",
                "-CAfile",
                ca.to_str().unwrap(),
                "-verify_return_error",
            ],
            session.as_bytes(),
        );
        assert!(ok, "s_client {version}: {out}");
        assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
        wait_for("delivery", || (sink.count_containing(&format!("Subject: {subject}")) == 1).then_some(()));
    }
    inst.wait_log(TLS13_LOG);
    inst.wait_log(
        "Anonymous TLS connection established from localhost[127.0.0.1]: TLSv1.2 with cipher ECDHE-ECDSA-AES256-GCM-SHA384 (256/256 bits)",
    );
    let msgs = sink.messages();
    let m13 = msgs.iter().find(|m| m.data.contains("Subject: s_client 1.3")).unwrap();
    assert!(
        m13.data.starts_with(
            "Received: from client.test (localhost [127.0.0.1])\r\n\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)\r\n\t key-exchange X25519 server-signature ECDSA (prime256v1) server-digest SHA256)\r\n\t(No client certificate requested)\r\n\tby "
        ),
        "{}",
        m13.data
    );
    assert!(m13.data.contains("with ESMTPS id "), "{}", m13.data);
    let m12 = msgs.iter().find(|m| m.data.contains("Subject: s_client 1.2")).unwrap();
    assert!(m12.data.contains("\t(using TLSv1.2 with cipher ECDHE-ECDSA-AES256-GCM-SHA384 (256/256 bits))\r\n"), "{}", m12.data);
    inst.wait_log("disconnect from localhost[127.0.0.1] ehlo=2 starttls=1 mail=1 rcpt=1 data=1 quit=1 commands=7");
}

/// Postfix's TLS probe sees STARTTLS in the EHLO reply, verifies the chain served from
/// `smtpd_tls_chain_files` against the test CA, and prints both certificates.
#[test]
fn posttls_finger_sees_starttls_and_the_chain() {
    let sink = Sink::start(free_port());
    let pki = Pki::new();
    pki.server("server", "mx.test");
    let main = format!("smtpd_tls_security_level = may\nsmtpd_tls_chain_files = {}\n", pki.path("server.chain").display());
    let (_inst, port) = Install::mail_system(&main, sink.port);
    // posttls-finger reads a main.cf of its own: an empty one.
    let conf = tempfile::tempdir().unwrap();
    std::fs::write(conf.path().join("main.cf"), "").unwrap();
    let out = Command::new("timeout")
        .env("MAIL_CONFIG", conf.path())
        .args([
            CLIENT_LIMIT,
            "posttls-finger",
            "-C",
            "-l",
            "may",
            "-F",
            pki.path("ca.pem").to_str().unwrap(),
            &format!("[127.0.0.1]:{port}"),
        ])
        .output()
        .expect("run posttls-finger (Debian package postfix)");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(all.contains("< 250-STARTTLS"), "{all}");
    assert!(all.contains(&format!("Trusted TLS connection established to 127.0.0.1[127.0.0.1]:{port}: TLSv1.3 with cipher")), "{all}");
    assert!(all.contains(" 0 subject: /CN=mx.test\n    issuer: /CN=Postern Test CA\n"), "{all}");
    assert!(all.contains(" 1 subject: /CN=Postern Test CA\n"), "{all}");
    assert_eq!(all.matches("-----BEGIN CERTIFICATE-----").count(), 2, "the whole chain: {all}");
}

#[test]
fn swaks_delivers_with_tls() {
    let sink = Sink::start(free_port());
    let pki = Pki::new();
    // An RSA certificate this time: Postfix's RSA-PSS words in the log line.
    pki.rsa_server("server", "mx.test");
    let (inst, port) = Install::mail_system(&pki.main_cf("server", "encrypt"), sink.port);
    let (ok, out) = run(
        "swaks",
        &[
            "--server",
            &format!("127.0.0.1:{port}"),
            "--tls",
            "--from",
            "s@sender.test",
            "--to",
            "u@customer.example",
            "--header",
            "Subject: swaks tls",
        ],
        b"",
    );
    assert!(ok, "swaks: {out}");
    assert!(out.contains("<-  220 2.0.0 Ready to start TLS") && out.contains("~> MAIL FROM:<s@sender.test>"), "{out}");
    wait_for("delivery", || (sink.count_containing("Subject: swaks tls") == 1).then_some(()));
    // rustls signs with the first RSA-PSS digest the client offers of SHA512, SHA384, SHA256.
    inst.wait_log("key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA");
}

/// Python's smtplib: `starttls()` with certificate and host name checks against the test CA,
/// then `sendmail`. Also the `encrypt` level: MAIL before STARTTLS is refused as in Postfix.
#[test]
fn python_smtplib_starttls_and_encrypt_level() {
    let sink = Sink::start(free_port());
    let pki = Pki::new();
    let (inst, port) = tls_system(&pki, "encrypt", "", &sink);
    let script = format!(
        r#"
import smtplib, ssl
s = smtplib.SMTP("127.0.0.1", {port})
s.ehlo("client.test")
assert s.has_extn("starttls"), s.esmtp_features
code, msg = s.mail("early@sender.test")
print("before:", code, msg.decode())
s.rset()
s.starttls(context=ssl.create_default_context(cafile="{ca}"))
s.ehlo("client.test")
assert not s.has_extn("starttls"), s.esmtp_features
s.sendmail("s@sender.test", ["u@customer.example"], "Subject: smtplib tls\r\n\r\nhello\r\n")
print("cipher:", s.sock.cipher()[0])
s.quit()
"#,
        ca = pki.path("ca.pem").display()
    );
    let (ok, out) = run("python3", &["-c", &script], b"");
    assert!(ok, "python: {out}");
    assert!(out.contains("before: 530 5.7.0 Must issue a STARTTLS command first"), "{out}");
    wait_for("delivery", || (sink.count_containing("Subject: smtplib tls") == 1).then_some(()));
    inst.wait_log(TLS13_LOG);
}

/// An smtps service (`-o smtpd_tls_wrappermode=yes`): TLS before the greeting, for Python's
/// SMTP_SSL; a plaintext client there gets no SMTP at all.
#[test]
fn smtps_wrapper_mode() {
    let sink = Sink::start(free_port());
    let pki = Pki::new();
    pki.server("server", "mx.test");
    let (port, smtps) = (free_port(), free_port());
    let master = format!("{}127.0.0.1:{smtps} inet n - n - - smtpd\n  -o smtpd_tls_wrappermode=yes\n", mail_system_master_cf(port));
    let main = format!("relayhost = [127.0.0.1]:{}\nrelay_domains = customer.example\n{}", sink.port, pki.main_cf("server", "none"));
    let mut inst = Install::new(&main, &master);
    inst.start();
    let script = format!(
        r#"
import smtplib, ssl
s = smtplib.SMTP_SSL("127.0.0.1", {smtps}, context=ssl.create_default_context(cafile="{ca}"))
s.ehlo("client.test")
assert not s.has_extn("starttls"), s.esmtp_features
s.sendmail("s@sender.test", ["u@customer.example"], "Subject: smtps\r\n\r\nhello\r\n")
s.quit()
"#,
        ca = pki.path("ca.pem").display()
    );
    let (ok, out) = run("python3", &["-c", &script], b"");
    assert!(ok, "python: {out}");
    wait_for("delivery", || (sink.count_containing("Subject: smtps") == 1).then_some(()));
    inst.wait_log(TLS13_LOG);
    // The plain smtpd of the same system (level none) offers no STARTTLS.
    let mut plain = Client::connect(port);
    assert!(!plain.cmd("EHLO client.test").contains("STARTTLS"));
    // Plaintext on the smtps port: no greeting, the handshake fails, the connection closes.
    let mut s = TcpStream::connect(("127.0.0.1", smtps)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"EHLO client.test\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(!text(&rest).contains("220 "), "no SMTP greeting in plaintext: {:?}", text(&rest));
    inst.wait_log("SSL_accept error from localhost[127.0.0.1]: ");
    inst.wait_log("lost connection after CONNECT from localhost[127.0.0.1]");
}

/// Plain TCP up to `220 2.0.0 Ready to start TLS`.
fn up_to_starttls(port: u16) -> Client {
    let mut c = Client::connect(port);
    assert!(c.cmd("EHLO client.test").contains("250-STARTTLS"));
    assert_eq!(c.cmd("STARTTLS"), "220 2.0.0 Ready to start TLS");
    c
}

/// Garbage instead of a ClientHello, and a client that never starts the handshake: each
/// loses its connection with Postfix's log lines, and smtpd serves others meanwhile.
#[test]
fn hostile_handshakes_end_and_others_are_served() {
    let sink = Sink::start(free_port());
    let pki = Pki::new();
    let (inst, port) = tls_system(&pki, "may", "smtpd_starttls_timeout = 2s\n", &sink);

    let mut garbage = up_to_starttls(port);
    garbage.send_raw(b"GET / HTTP/1.0\r\nHost: mx.test\r\n\r\n");
    let reply = garbage.reply();
    assert!(!reply.starts_with('2') && !reply.starts_with('5'), "no SMTP reply to garbage: {reply:?}");
    inst.wait_log("SSL_accept error from localhost[127.0.0.1]: ");
    inst.wait_log("lost connection after STARTTLS from localhost[127.0.0.1]");

    let mut silent = up_to_starttls(port);
    // While the silent client holds its handshake open, others get their mail through.
    let mut other = Client::connect(port);
    other.cmd("EHLO other.test");
    assert!(other.send_mail("s@sender.test", &["u@customer.example"], "Subject: meanwhile\n\nx\n").starts_with("250 2.0.0 Ok"));
    assert_eq!(other.cmd("QUIT"), "221 2.0.0 Bye");
    // smtpd_starttls_timeout ends the silent one: the connection closes without a reply.
    assert_eq!(silent.reply(), "");
    inst.wait_log("SSL_accept error from localhost[127.0.0.1]: Connection timed out");
    wait_for("delivery", || (sink.count_containing("Subject: meanwhile") == 1).then_some(()));
}

/// Commands a client pipelined after STARTTLS in plaintext are thrown away, not run under TLS
/// (the CVE-2011-0411 class): Python sends EHLO, STARTTLS and MAIL in one write, then does the
/// handshake; RCPT under TLS finds no MAIL.
#[test]
fn plaintext_pipelined_after_starttls_is_not_executed() {
    let sink = Sink::start(free_port());
    let pki = Pki::new();
    let (inst, port) = tls_system(&pki, "may", "", &sink);
    let script = format!(
        r#"
import socket, ssl
s = socket.create_connection(("127.0.0.1", {port}))
f = s.makefile("rb")
def reply():
    lines = []
    while True:
        l = f.readline().decode()
        lines.append(l.strip())
        if len(l) < 4 or l[3] != "-":
            return " | ".join(lines)
reply()
s.sendall(b"EHLO client.test\r\nSTARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n")
print("ehlo:", reply())
print("starttls:", reply())
t = ssl.create_default_context(cafile="{ca}").wrap_socket(s, server_hostname="mx.test")
tf = t.makefile("rb")
def treply():
    lines = []
    while True:
        l = tf.readline().decode()
        lines.append(l.strip())
        if len(l) < 4 or l[3] != "-":
            return " | ".join(lines)
t.sendall(b"EHLO client.test\r\n")
print("ehlo2:", treply())
t.sendall(b"RCPT TO:<u@customer.example>\r\n")
print("rcpt:", treply())
t.sendall(b"QUIT\r\n")
print("quit:", treply())
"#,
        ca = pki.path("ca.pem").display()
    );
    let (ok, out) = run("python3", &["-c", &script], b"");
    assert!(ok, "python: {out}");
    assert!(out.contains("starttls: 220 2.0.0 Ready to start TLS"), "{out}");
    assert!(out.contains("rcpt: 503 5.5.1 Error: need MAIL command"), "the pipelined MAIL ran: {out}");
    inst.wait_log("disconnect from localhost[127.0.0.1] ehlo=2 starttls=1 rcpt=0/1 quit=1 commands=4/5");
    // Only Postfix's notice of the improper pipelining may quote the injected command.
    let log = inst.log();
    let quoting: Vec<&str> = log.lines().filter(|l| l.contains("injected@evil.test")).collect();
    assert!(
        quoting.iter().all(|l| l.contains("improper command pipelining after EHLO from localhost[127.0.0.1]: STARTTLS")),
        "{quoting:?}"
    );
}

/// `postfix reload` with a new certificate in main.cf: a new connection is served with it,
/// while a TLS session opened before the reload goes on with the old one and delivers.
#[test]
fn reload_serves_a_new_certificate_without_cutting_sessions() {
    let sink = Sink::start(free_port());
    let pki = Pki::new();
    let (inst, port) = tls_system(&pki, "may", "", &sink);
    pki.server("second", "mx2.test");
    // A session that waits on stdin between its handshake and its mail.
    let held = format!(
        r#"
import smtplib, ssl, sys
s = smtplib.SMTP("127.0.0.1", {port})
s.starttls(context=ssl.create_default_context(cafile="{ca}"))
print("cn:", dict(x[0] for x in s.sock.getpeercert()["subject"])["commonName"], flush=True)
sys.stdin.readline()
s.sendmail("s@sender.test", ["u@customer.example"], "Subject: held over reload\r\n\r\nhello\r\n")
print("cn after:", dict(x[0] for x in s.sock.getpeercert()["subject"])["commonName"], flush=True)
s.quit()
"#,
        ca = pki.path("ca.pem").display()
    );
    let mut child =
        Command::new("timeout").args([CLIENT_LIMIT, "python3", "-c", &held]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "cn: mx.test");

    let out = inst.cli(
        "postconf",
        &[
            "-e",
            &format!("smtpd_tls_cert_file = {}", pki.path("second.pem").display()),
            &format!("smtpd_tls_key_file = {}", pki.path("second.key").display()),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(inst.cli("postfix", &["reload"]).status.success());
    let probe = format!(
        r#"
import smtplib, ssl
s = smtplib.SMTP("127.0.0.1", {port})
s.starttls(context=ssl.create_default_context(cafile="{ca}"))
print(dict(x[0] for x in s.sock.getpeercert()["subject"])["commonName"])
s.quit()
"#,
        ca = pki.path("ca.pem").display()
    );
    wait_for("the new certificate on a new connection", || {
        let (ok, out) = run("python3", &["-c", &probe], b"");
        (ok && out.trim() == "mx2.test").then_some(())
    });

    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(child.wait().unwrap().success(), "the held session failed: {rest}");
    assert_eq!(rest.trim(), "cn after: mx.test");
    wait_for("delivery", || (sink.count_containing("Subject: held over reload") == 1).then_some(()));
}

/// A certificate that cannot be read: Postfix's warnings, STARTTLS still announced and
/// answered 454, mail in plaintext still accepted at level may.
#[test]
fn a_broken_certificate_disables_tls_with_warnings() {
    let sink = Sink::start(free_port());
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "not a certificate\n").unwrap();
    let main = format!("smtpd_tls_security_level = may\nsmtpd_tls_cert_file = {}\n", bad.display());
    let (inst, port) = Install::mail_system(&main, sink.port);
    let mut c = Client::connect(port);
    assert!(c.cmd("EHLO client.test").contains("250-STARTTLS"));
    assert_eq!(c.cmd("STARTTLS"), "454 4.7.0 TLS not available due to local problem");
    assert!(c.send_mail("s@sender.test", &["u@customer.example"], "Subject: plain\n\nx\n").starts_with("250 2.0.0 Ok"));
    inst.wait_log(&format!("warning: cannot get RSA certificate from file \"{}\": disabling TLS support", bad.display()));
    inst.wait_log("warning: No server certs available. TLS won't be enabled");
}
