//! SASL AUTH in the smtp client (issue 11, item 4): relaying through a private Postfix smart
//! host ([`crate::harness::postfix`]) that takes logins from a private Dovecot
//! (`smtpd_sasl_type = dovecot`, [`crate::harness::dovecot`]) and relays only for clients that
//! logged in. PLAIN goes only over TLS and only when `smtp_sasl_tls_security_options` allows
//! it; in plaintext the default options leave CRAM-MD5, and a filter that leaves only
//! plaintext mechanisms sends no password at all; a wrong password defers with Postfix's text.

use std::os::unix::fs::PermissionsExt;

use crate::harness::dovecot::Dovecot;
use crate::harness::pki::Pki;
use crate::harness::postfix::Postfix;
use crate::harness::smtp::{Client, Sink, free_port, queued_id};
use crate::harness::{Install, wait_for};

const PASSWORD: &str = "s3cret-Pa55";

/// Dovecot with the smart host's one user, its auth socket in a directory Postfix's daemons
/// (user postfix) can reach; the directory must outlive Dovecot.
fn dovecot() -> (tempfile::TempDir, Dovecot, std::path::PathBuf) {
    let dir = tempfile::Builder::new().prefix("postern-auth").tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = dir.path().join("auth");
    let d = Dovecot::start(&socket, &format!("relayuser:{{PLAIN}}{PASSWORD}\n"));
    (dir, d, socket)
}

/// A Postfix smart host that relays only for clients that logged in; `tls` lines on top.
fn smart_host(sink: &Sink, socket: &std::path::Path, tls: &str) -> Postfix {
    let main = format!(
        "smtpd_sasl_auth_enable = yes\nsmtpd_sasl_type = dovecot\nsmtpd_sasl_path = {}\n\
         smtpd_relay_restrictions = permit_sasl_authenticated, reject\nsmtpd_recipient_restrictions = permit_sasl_authenticated, reject\n{tls}",
        socket.display()
    );
    Postfix::start(sink.port, &main)
}

fn send_one(port: u16) -> String {
    let mut c = Client::connect(port);
    c.cmd("EHLO client.test");
    queued_id(&c.send_mail("s@sender.test", &["u@customer.example"], "Subject: via the smart host\n\nbody\n"))
}

/// Postern relaying to `host` with `main`; the delivery line of one message.
fn relay(host: &Postfix, main: &str) -> (Install, String) {
    let (inst, port) = Install::mail_system(main, host.port);
    let id = send_one(port);
    let line = inst.wait_log(&format!("{id}: to=<u@customer.example>"));
    assert!(!inst.log().contains(PASSWORD), "the password is in the log:\n{}", inst.log());
    (inst, line)
}

fn passwords(host: &Postfix, pass: &str) -> String {
    format!("smtp_sasl_auth_enable = yes\nsmtp_sasl_password_maps = inline:{{ {{[127.0.0.1]:{} = relayuser:{pass}}} }}\n", host.port)
}

#[test]
fn plain_over_verified_tls_to_a_postfix_smart_host() {
    let sink = Sink::start(free_port());
    let (_dir, _dovecot, socket) = dovecot();
    let pki = Pki::new();
    pki.server("smarthost", "mx.test");
    let tls = format!(
        "smtpd_tls_security_level = encrypt\nsmtpd_tls_auth_only = yes\nsmtpd_tls_cert_file = {}\nsmtpd_tls_key_file = {}\n",
        pki.path("smarthost.pem").display(),
        pki.path("smarthost.key").display()
    );
    let host = smart_host(&sink, &socket, &tls);
    let main = format!(
        "{}smtp_sasl_tls_security_options = noanonymous\nsmtp_sasl_mechanism_filter = plain\n\
         smtp_tls_security_level = verify\nsmtp_tls_CAfile = {}\n",
        passwords(&host, PASSWORD),
        pki.path("ca.pem").display()
    );
    let (_inst, line) = relay(&host, &main);
    assert!(line.contains("status=sent"), "{line}\n{}", host.log());
    host.wait_log("sasl_method=PLAIN, sasl_username=relayuser");
    wait_for("the message at the sink", || (sink.count() == 1).then_some(()));
}

#[test]
fn without_tls_no_password_is_sent_unless_the_mechanism_hides_it() {
    let sink = Sink::start(free_port());
    let (_dir, _dovecot, socket) = dovecot();
    let host = smart_host(&sink, &socket, "");

    // The default options (noplaintext, noanonymous) leave CRAM-MD5.
    let (_inst, line) = relay(&host, &passwords(&host, PASSWORD));
    assert!(line.contains("status=sent"), "{line}\n{}", host.log());
    host.wait_log("sasl_method=CRAM-MD5, sasl_username=relayuser");
    wait_for("the message at the sink", || (sink.count() == 1).then_some(()));

    // A filter that leaves only mechanisms that send the password: no AUTH at all.
    let (_inst, line) = relay(&host, &format!("{}smtp_sasl_mechanism_filter = plain, login\n", passwords(&host, PASSWORD)));
    assert!(
        line.contains("dsn=4.7.0, status=deferred (SASL authentication failed; cannot authenticate to server 127.0.0.1[127.0.0.1]: no mechanism available)"),
        "{line}"
    );

    // A wrong password: Postfix's 535, deferred (smtp_sasl_auth_soft_bounce).
    let (_inst, line) = relay(&host, &passwords(&host, "wrong"));
    assert!(
        line.contains("dsn=4.7.8, status=deferred (SASL authentication failed; server 127.0.0.1[127.0.0.1] said: 535 5.7.8 Error: authentication failed"),
        "{line}"
    );
    assert_eq!(host.log().matches("sasl_method=").count(), 1, "{}", host.log());
    assert_eq!(sink.count(), 1);
}
