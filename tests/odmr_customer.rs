//! The ODMR customer (the `odmr` program) against Postern's own provider (tests/odmr.rs's
//! smtpd with `smtpd_odmr_enable`), each a mail system with its own configuration and spool:
//! mail queued at the provider while the customer was away reaches the customer's final sink
//! after one poll, over TLS (a verified certificate) with AUTH, and another customer's mail
//! stays queued; refusals and failed logins are logged and retried at the next poll; a
//! customer killed mid-session loses nothing the provider saw acknowledged and gets the rest
//! at its next poll, once; a reload applies good settings and refuses bad ones.

use crate::harness::pki::Pki;
use crate::harness::smtp::{Sink, free_port};
use crate::harness::{FLUSH_ONLY, Install, text, wait_for};
use crate::odmr::{ALICE_PW, deferred, deferred_for, indexed, provider_with};

/// A provider whose odmr service requires STARTTLS (certificate for mx.test, signed by `pki`).
fn tls_provider(pki: &Pki) -> (Install, u16, u16) {
    pki.server("server", "mx.test");
    provider_with(&pki.main_cf("server", "may"), "-o smtpd_tls_security_level=encrypt")
}

/// A customer mail system: its mail for customer.example goes on to `sink_port`; its atrn
/// service (the shipped entry) polls the provider on `odmr` as `user` with `password`;
/// `extra` is more main.cf, `master_extra` more services.
fn customer(pki: &Pki, odmr: u16, user: &str, password: &str, sink_port: u16, extra: &str, master_extra: &str) -> Install {
    let main = format!(
        "relayhost = [127.0.0.1]:{sink_port}\nrelay_domains = customer.example\nmyhostname = customer.example\n\
         odmr_provider = [127.0.0.1]:{odmr}\nodmr_domains = customer.example\n\
         odmr_tls_security_level = verify\nodmr_tls_CAfile = {}\nodmr_tls_verify_cert_match = mx.test\nodmr_tls_loglevel = 1\n{extra}",
        pki.path("ca.pem").display()
    );
    let master = format!("qmgr unix n - n 300 1 qmgr\nsmtp unix - - n - - smtp\n{}\n{master_extra}{FLUSH_ONLY}", shipped_entry());
    let mut inst = Install::new(&main, &master);
    let passwords = inst.dir.path().join("odmr-passwords");
    std::fs::write(&passwords, format!("[127.0.0.1]:{odmr} {user}:{password}\n")).unwrap();
    let mut main = std::fs::read_to_string(inst.etc.join("main.cf")).unwrap();
    main.push_str(&format!("odmr_sasl_password_maps = texthash:{}\n", passwords.display()));
    std::fs::write(inst.etc.join("main.cf"), main).unwrap();
    inst.start();
    inst
}

/// The shipped master.cf's customer entry, uncommented: all an administrator does there.
fn shipped_entry() -> String {
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../etc/master.cf")).unwrap();
    let line = shipped.lines().find(|l| l.starts_with("#atrn ")).expect("a commented-out atrn entry in etc/master.cf");
    line[1..].to_string()
}

fn poll_now(inst: &Install) {
    let out = inst.cli("postfix", &["odmr"]);
    assert!(out.status.success(), "postfix odmr: {}{}", text(&out.stdout), text(&out.stderr));
}

#[test]
fn mail_queued_while_away_arrives_after_one_poll_over_tls_with_auth() {
    let pki = Pki::new();
    let (provider, port, odmr) = tls_provider(&pki);
    let mine = [deferred_for(&provider, port, "u@customer.example", "one"), deferred_for(&provider, port, "v@customer.example", "two")];
    let theirs = deferred_for(&provider, port, "w@other.example", "bob's");
    let sink = Sink::start(free_port());
    // Polls only when asked: exactly one poll in this test.
    let customer = customer(&pki, odmr, "alice", ALICE_PW, sink.port, "odmr_poll_interval = 0\n", "");
    poll_now(&customer);
    wait_for("both messages at the customer's sink", || (sink.count() == 2).then_some(()));
    let got = sink.messages();
    let mut subjects: Vec<&str> = got.iter().filter_map(|m| m.data.lines().find(|l| l.starts_with("Subject:"))).collect();
    subjects.sort();
    assert_eq!(subjects, ["Subject: one", "Subject: two"]);
    // The customer queued them itself: its own Received: line says the session was TLS.
    for m in &got {
        assert!(m.data.contains("by customer.example (Postern) with ESMTPS"), "{}", m.data);
    }
    let log = customer.log();
    assert!(log.contains(&format!("Verified TLS connection established to 127.0.0.1[127.0.0.1]:{odmr}")), "{log}");
    assert!(log.contains(&format!("ATRN to 127.0.0.1[127.0.0.1]:{odmr}: domains=customer.example: reversing the connection")), "{log}");
    assert_eq!(customer.log_count("ATRN to "), 1, "one poll: {log}");
    customer.wait_log("disconnect from localhost[127.0.0.1] ehlo=1 mail=2 rcpt=2 data=2 rset=1 quit=1 commands=9");
    provider.wait_log("reversed session done: messages=2 sent=2 bounced=0 deferred=0");
    let plog = provider.log();
    assert!(
        plog.contains("ATRN from localhost[127.0.0.1]: domains=customer.example, sasl_username=alice: reversing the connection"),
        "{plog}"
    );
    for id in &mine {
        assert!(plog.contains(&format!("{id}: removed")), "{plog}");
        assert!(!indexed(&provider, id));
    }
    assert!(deferred(&provider, &theirs) && indexed(&provider, &theirs), "bob's mail stays queued at the provider");
    assert_eq!(sink.count(), 2, "each message once");
    // A system without the customer service says so.
    let out = provider.cli("postfix", &["odmr"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("fatal: Cannot poll the ODMR provider - public/atrn: "), "{}", text(&out.stderr));
}

/// A reload with a bad `odmr_domains` is refused with the reason and the running settings stay;
/// a good one applies to the next poll.
#[test]
fn a_reload_applies_good_settings_and_refuses_bad_ones() {
    let pki = Pki::new();
    let (_provider, _port, odmr) = tls_provider(&pki);
    let sink = Sink::start(free_port());
    let customer = customer(&pki, odmr, "alice", ALICE_PW, sink.port, "odmr_poll_interval = 0\n", "");
    let edit = |setting: &str| {
        let out = customer.cli("postconf", &["-e", setting]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let out = customer.cli("postfix", &["reload"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    edit("odmr_domains=customer.example, a..example");
    let line = customer.wait_log("reload: ");
    assert!(line.contains("odmr_domains") && line.contains("keeping the running configuration"), "{line}");
    poll_now(&customer);
    customer.wait_log("domains=customer.example: no mail");
    edit("odmr_domains=other.example");
    // The reload reaches the service after `postfix reload` returns: ask until a poll has it.
    wait_for("a poll with the reloaded domains", || {
        poll_now(&customer);
        std::thread::sleep(std::time::Duration::from_millis(100));
        customer.log().contains("domains=other.example: refused (host 127.0.0.1[127.0.0.1] said: 450 4.7.1").then_some(())
    });
}

#[test]
fn polls_on_schedule_and_logs_refusals_and_failed_logins() {
    let pki = Pki::new();
    let (provider, port, odmr) = tls_provider(&pki);
    let sink = Sink::start(free_port());
    // Three customer services polling every second: alice for her domain (nothing yet), alice
    // for bob's domain (450), and a wrong password (535 at AUTH).
    let wrong = tempfile::tempdir().unwrap();
    let wrong_table = wrong.path().join("wrong");
    std::fs::write(&wrong_table, format!("[127.0.0.1]:{odmr} alice:not-her-password\n")).unwrap();
    let master_extra = format!(
        "odmr-theirs unix n - n - 1 odmr -o odmr_domains=other.example\n\
         odmr-wrong unix n - n - 1 odmr -o odmr_sasl_password_maps=texthash:{}\n",
        wrong_table.display()
    );
    let customer = customer(&pki, odmr, "alice", ALICE_PW, sink.port, "odmr_poll_interval = 1s\n", &master_extra);
    let relay = format!("127.0.0.1[127.0.0.1]:{odmr}");
    customer.wait_log(&format!(
        "ATRN to {relay}: domains=customer.example: no mail (host 127.0.0.1[127.0.0.1] said: 453 4.2.0 You have no mail)"
    ));
    customer.wait_log(&format!(
        "ATRN to {relay}: domains=other.example: refused (host 127.0.0.1[127.0.0.1] said: 450 4.7.1 ATRN request refused); trying again at the next poll"
    ));
    let line = customer.wait_log(&format!(
        "ATRN to {relay}: domains=customer.example: poll failed (SASL authentication failed; server 127.0.0.1[127.0.0.1] said: 535 5.7.8"
    ));
    assert!(!line.contains("not-her-password"), "{line}");
    // Mail that arrives later is taken at one of the next scheduled polls.
    let id = deferred_for(&provider, port, "u@customer.example", "later");
    wait_for("the message at the customer's sink", || (sink.count() == 1).then_some(()));
    provider.wait_log(&format!("{id}: removed"));
    assert_eq!(sink.count_containing("Subject: later"), 1);
    // The refused and failed services went on polling (and failing).
    wait_for("more refusals", || (customer.log_count("domains=other.example: refused") >= 2).then_some(()));
}

#[test]
fn a_customer_killed_mid_session_loses_nothing_and_gets_the_rest_once() {
    let pki = Pki::new();
    let (provider, port, odmr) = tls_provider(&pki);
    let ids = [deferred_for(&provider, port, "u@customer.example", "first"), deferred_for(&provider, port, "v@customer.example", "second")];
    let sink = Sink::start(free_port());
    // Each DATA waits 3 s at the customer: the window in which it is killed.
    let customer = customer(&pki, odmr, "alice", ALICE_PW, sink.port, "odmr_poll_interval = 0\nsmtpd_data_restrictions = sleep 3\n", "");
    poll_now(&customer);
    let sent = provider.wait_log("status=sent");
    let (first, second) = if sent.contains(&format!("{}: to=", ids[0])) { (&ids[0], &ids[1]) } else { (&ids[1], &ids[0]) };
    let pid = customer.child_pid("atrn").expect("the odmr process");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    // The provider was either sending the second message (deferred=1) or about to (its RSET
    // found the connection gone: messages=1); either way one was sent.
    let done = provider.wait_log("reversed session done: ");
    assert!(done.contains(" sent=1 bounced=0 "), "{done}");
    // Acknowledged: removed at the provider, delivered by the customer. Not acknowledged:
    // still deferred and indexed at the provider.
    provider.wait_log(&format!("{first}: removed"));
    // The kill can come between the 250 and the incoming-scan trigger's write (it is posted,
    // not awaited): the message is safe in the customer's incoming queue, and the queue
    // manager's next wakeup (300 s here) sends it; `postqueue -f` stands in for that wakeup.
    let out = customer.cli("postqueue", &["-f"]);
    assert!(out.status.success(), "{}", crate::harness::text(&out.stderr));
    wait_for("the acknowledged message at the sink", || (sink.count() == 1).then_some(()));
    assert!(deferred(&provider, second) && indexed(&provider, second), "{}", provider.log());
    let sent_second = |l: &&str| l.contains(&format!("{second}: to=<")) && l.contains("status=sent");
    assert_eq!(provider.log().lines().filter(sent_second).count(), 0, "{}", provider.log());
    assert_eq!(provider.log_count(&format!("{second}: removed")), 0);
    // The restarted service takes the rest at its next poll, once.
    wait_for("a new odmr process", || customer.child_pid("atrn").filter(|p| *p != pid));
    poll_now(&customer);
    provider.wait_log(&format!("{second}: removed"));
    wait_for("the second message at the sink", || (sink.count() == 2).then_some(()));
    assert_eq!(sink.count_containing("Subject: first"), 1);
    assert_eq!(sink.count_containing("Subject: second"), 1);
}
