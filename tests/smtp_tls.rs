//! The smtp client's STARTTLS (issue 11, item 2) against a real Postfix next hop from Debian's
//! postfix package ([`crate::harness::postfix`]) that demands TLS and relays what it accepts
//! to a harness sink, with certificates from a test CA made by the test: `verify` delivers
//! with Postfix's `Verified TLS connection` line and keeps the connection encrypted for the
//! next message; a wrong name and an untrusted CA defer with Postfix's reason and never
//! deliver in plaintext; `may` falls back to plaintext after a failed handshake and delivers
//! to a server without STARTTLS, where `encrypt` defers.

use crate::harness::pki::Pki;
use crate::harness::postfix::Postfix;
use crate::harness::smtp::{Client, Sink, free_port, queued_id};
use crate::harness::{Install, wait_for};

/// A Postfix next hop that requires STARTTLS, with a certificate for mx.test and 127.0.0.1
/// from `pki`'s CA, relaying to `sink`.
fn postfix_requiring_tls(pki: &Pki, sink: &Sink) -> Postfix {
    pki.server("nexthop", "mx.test");
    let main = format!(
        "smtpd_tls_security_level = encrypt\nsmtpd_tls_cert_file = {}\nsmtpd_tls_key_file = {}\nsmtpd_tls_received_header = yes\n",
        pki.path("nexthop.pem").display(),
        pki.path("nexthop.key").display()
    );
    Postfix::start(sink.port, &main)
}

/// Send one message through Postern's smtpd on `port`; its queue ID.
fn send_one(port: u16, subject: &str) -> String {
    let mut c = Client::connect(port);
    c.cmd("EHLO client.test");
    queued_id(&c.send_mail("s@sender.test", &["u@customer.example"], &format!("Subject: {subject}\n\nbody\n")))
}

fn wait_sink(sink: &Sink, n: usize) {
    wait_for(&format!("{n} messages at the sink"), || (sink.count() >= n).then_some(()));
}

#[test]
fn verify_delivers_to_a_postfix_that_demands_tls_and_reuses_the_tls_connection() {
    let sink = Sink::start(free_port());
    let pki = Pki::new();
    let postfix = postfix_requiring_tls(&pki, &sink);
    let main = format!(
        "smtp_tls_security_level = verify\nsmtp_tls_CAfile = {}\nsmtp_tls_loglevel = 1\nsmtp_connection_cache_time_limit = 30s\n",
        pki.path("ca.pem").display()
    );
    let (inst, port) = Install::mail_system(&main, postfix.port);
    let first = send_one(port, "first");
    let line = inst.wait_log(&format!("{first}: to=<u@customer.example>"));
    assert!(line.contains("status=sent"), "{line}\n{}", postfix.log());
    let verified = inst.wait_log("Verified TLS connection established to");
    assert!(
        verified
            .contains(&format!("Verified TLS connection established to 127.0.0.1[127.0.0.1]:{}: TLSv1.3 with cipher TLS_", postfix.port))
            && verified.contains(" server-signature ECDSA (prime256v1) server-digest SHA256"),
        "{verified}"
    );
    wait_sink(&sink, 1);
    // Postfix's Received: header says the message came to it over TLS.
    assert!(sink.messages()[0].data.contains("(using TLSv1.3 with cipher"), "{}", sink.messages()[0].data);

    // The second message goes over the kept connection, still encrypted: Postfix would refuse
    // MAIL in plaintext (530 Must issue a STARTTLS command first), and no new handshake is made.
    inst.wait_log(&format!("{first}: removed"));
    let second = send_one(port, "second");
    let line = inst.wait_log(&format!("{second}: to=<u@customer.example>"));
    assert!(line.contains(", conn_use=2, ") && line.contains("status=sent"), "{line}");
    wait_sink(&sink, 2);
    assert_eq!(inst.log_count("TLS connection established to"), 1, "{}", inst.log());
    assert_eq!(postfix.log().matches("TLS connection established from").count(), 1, "{}", postfix.log());
}

/// Postern with `main` relaying to `postfix`: the one message it sends is deferred with
/// Postfix's `Server certificate not verified` after `why` was logged; Postfix never sees a
/// MAIL command and the sink gets nothing.
fn refused(postfix: &Postfix, sink: &Sink, main: &str, why: &str, trust: &str) {
    let (inst, port) = Install::mail_system(main, postfix.port);
    let id = send_one(port, "must not arrive");
    let line = inst.wait_log(&format!("{id}: to=<u@customer.example>"));
    assert!(
        line.contains(&format!("relay=127.0.0.1[127.0.0.1]:{}", postfix.port))
            && line.contains("dsn=4.7.5, status=deferred (Server certificate not verified)"),
        "{line}"
    );
    let logged = inst.wait_log(why);
    assert!(logged.contains(&format!("127.0.0.1[127.0.0.1]:{}", postfix.port)), "{logged}");
    inst.wait_log(&format!("{trust} TLS connection established to 127.0.0.1[127.0.0.1]:{}", postfix.port));
    assert!(!postfix.log().contains(": client="), "no mail transaction at Postfix:\n{}", postfix.log());
    assert_eq!(sink.count(), 0);
}

#[test]
fn a_wrong_name_or_an_untrusted_ca_defers_and_never_sends_in_plaintext() {
    let sink = Sink::start(free_port());
    let pki = Pki::new();
    let postfix = postfix_requiring_tls(&pki, &sink);
    let ca = pki.path("ca.pem");
    // A trusted certificate whose names are not the one the policy asks for, chosen through
    // smtp_tls_policy_maps.
    let wrong_name = format!(
        "smtp_tls_security_level = may\nsmtp_tls_CAfile = {}\nsmtp_tls_loglevel = 1\n\
         smtp_tls_policy_maps = inline:{{ {{[127.0.0.1]:{} = secure match=wrong.test}} }}\n",
        ca.display(),
        postfix.port
    );
    refused(&postfix, &sink, &wrong_name, "server certificate verification failed for", "Trusted");
    // A certificate from a CA that is not trusted (another test CA).
    let other = Pki::new();
    let untrusted =
        format!("smtp_tls_security_level = verify\nsmtp_tls_CAfile = {}\nsmtp_tls_loglevel = 1\n", other.path("ca.pem").display());
    refused(&postfix, &sink, &untrusted, "certificate verification failed for", "Untrusted");
    assert!(postfix.log().contains("TLS connection established from"), "the handshakes were made:\n{}", postfix.log());
}

#[test]
fn encrypt_defers_at_a_server_without_starttls_where_may_delivers() {
    // The harness sink offers no STARTTLS.
    let sink = Sink::start(free_port());
    let (inst, port) = Install::mail_system("smtp_tls_security_level = encrypt\n", sink.port);
    let id = send_one(port, "needs tls");
    let line = inst.wait_log(&format!("{id}: to=<u@customer.example>"));
    assert!(line.contains("dsn=4.7.4, status=deferred (TLS is required, but was not offered by host 127.0.0.1[127.0.0.1])"), "{line}");
    let commands = sink.commands.lock().unwrap().iter().map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>();
    assert!(!commands.iter().any(|c| c.starts_with("MAIL")), "no mail in plaintext: {commands:?}");
    drop(inst);

    let (inst, port) = Install::mail_system("smtp_tls_security_level = may\nsmtp_tls_loglevel = 1\n", sink.port);
    let id = send_one(port, "opportunistic");
    let line = inst.wait_log(&format!("{id}: to=<u@customer.example>"));
    assert!(line.contains("status=sent"), "{line}");
    assert_eq!(sink.count(), 1);
}

#[test]
fn may_retries_in_plaintext_after_a_failed_handshake() {
    // Postfix offers STARTTLS with TLSv1.2 at most, Postern speaks only TLSv1.3 here: the
    // handshake fails, and `may` delivers over a new plaintext connection.
    let sink = Sink::start(free_port());
    let pki = Pki::new();
    pki.server("nexthop", "mx.test");
    let postfix_main = format!(
        "smtpd_tls_security_level = may\nsmtpd_tls_cert_file = {}\nsmtpd_tls_key_file = {}\nsmtpd_tls_protocols = >=TLSv1, <=TLSv1.2\nsmtpd_tls_received_header = yes\n",
        pki.path("nexthop.pem").display(),
        pki.path("nexthop.key").display()
    );
    let postfix = Postfix::start(sink.port, &postfix_main);
    let (inst, port) =
        Install::mail_system("smtp_tls_security_level = may\nsmtp_tls_protocols = TLSv1.3\nsmtp_tls_loglevel = 1\n", postfix.port);
    let id = send_one(port, "fallback");
    let line = inst.wait_log(&format!("{id}: to=<u@customer.example>"));
    assert!(line.contains("status=sent"), "{line}");
    inst.wait_log(&format!("SSL_connect error to 127.0.0.1[127.0.0.1]:{}", postfix.port));
    wait_sink(&sink, 1);
    assert!(!sink.messages()[0].data.contains("(using TLS"), "plaintext at Postfix: {}", sink.messages()[0].data);
}

#[test]
fn a_kept_plaintext_connection_never_serves_a_destination_that_requires_tls() {
    // A plaintext connection kept under `may`; then a reload makes TLS required for the same
    // next hop: the kept connection must not carry the next message.
    let sink = Sink::start(free_port());
    let (inst, port) = Install::mail_system("smtp_tls_security_level = may\nsmtp_connection_cache_time_limit = 60s\n", sink.port);
    let first = send_one(port, "plaintext is fine");
    inst.wait_log(&format!("{first}: removed"));
    assert_eq!(sink.count(), 1);
    assert!(inst.cli("postconf", &["-e", "smtp_tls_security_level=encrypt"]).status.success());
    assert!(inst.cli("postfix", &["reload"]).status.success());
    inst.wait_log("reload -- version");
    let second = send_one(port, "needs tls now");
    let line = inst.wait_log(&format!("{second}: to=<u@customer.example>"));
    assert!(line.contains("status=deferred (TLS is required, but was not offered by host 127.0.0.1[127.0.0.1])"), "{line}");
    assert_eq!(sink.count(), 1);
    assert_eq!(sink.connections.load(std::sync::atomic::Ordering::Relaxed), 2, "a new connection, not the kept one");
}
