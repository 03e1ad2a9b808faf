//! SASL AUTH in smtpd with clients nobody here wrote (swaks, Python's smtplib) against both
//! backends: a real Dovecot (Debian's dovecot-core) and the built-in passwd-file type. A
//! login lets a stranger relay; failures get Postfix's replies and log lines, which fail2ban's
//! stock postfix filter matches; no password or response reaches the log; a flood of failed
//! logins does not stop smtpd serving others.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use base64::Engine;

use crate::harness::dovecot::Dovecot;
use crate::harness::smtp::{Client, Sink, free_port};
use crate::harness::{Install, require_root, text, wait_for};

const ALICE_PW: &str = "wonderland-42";
const BOB_PW: &str = "bob-S3cr3t";
/// `doveadm pw -s SHA512-CRYPT -p bob-S3cr3t`.
const BOB_HASH: &str =
    "{SHA512-CRYPT}$6$z6MQtTCO.wT.aCvo$pM.qVfviJMlKiDYFqEGDeok7IN4G/gO95TZuIk9KWqeM2NR3/awkdjzNNqrxkEs8EM9PjmqJg5YQ5UHBzlSUC/";

fn users() -> String {
    format!("alice:{{PLAIN}}{ALICE_PW}\nbob:{BOB_HASH}::::::\n")
}

fn b64(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Loopback is not trusted here, so only a login lets the client relay.
fn main_cf(extra: &str) -> String {
    format!("mynetworks = 192.0.2.0/24\nsmtpd_sasl_auth_enable = yes\nsmtpd_sasl_authenticated_header = yes\n{extra}")
}

fn swaks(port: u16, mechanism: &str, user: &str, password: &str, subject: &str) -> Output {
    Command::new("swaks")
        .args(["--server", "127.0.0.1", "--port", &port.to_string(), "--ehlo", "swaks.test"])
        .args(["--from", "a@sender.test", "--to", "u@stranger.example", "--header", &format!("Subject: {subject}")])
        .args(["--auth", mechanism, "--auth-user", user, "--auth-password", password])
        .output()
        .expect("swaks is not installed (tests/run installs it)")
}

/// Python's smtplib `login()`: it picks CRAM-MD5 when offered.
fn smtplib(port: u16, user: &str, password: &str) -> Output {
    let script = "import smtplib, sys\n\
        s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]))\n\
        s.ehlo('python.test')\n\
        s.login(sys.argv[2], sys.argv[3])\n\
        s.sendmail('p@sender.test', ['u@stranger.example'], 'Subject: smtplib\\r\\n\\r\\nbody\\r\\n')\n\
        s.quit()\n";
    Command::new("python3").args(["-c", script, &port.to_string(), user, password]).output().expect("python3")
}

fn ok(out: &Output, what: &str) {
    assert!(out.status.success(), "{what}: {}{}", text(&out.stdout), text(&out.stderr));
}

/// fail2ban-regex with the stock postfix filter in auth mode, unchanged (Postern logs as
/// `postfix/` by default): the number of matched lines.
fn fail2ban_matches(inst: &Install) -> usize {
    let out = Command::new("fail2ban-regex")
        .arg(&inst.maillog)
        .arg("postfix[mode=auth]")
        .output()
        .expect("fail2ban-regex is not installed (tests/run installs fail2ban)");
    let said = text(&out.stdout);
    let line = said.lines().find(|l| l.starts_with("Lines:")).unwrap_or_else(|| panic!("fail2ban-regex said: {said}{}", text(&out.stderr)));
    // "Lines: 40 lines, 0 ignored, 3 matched, 37 missed"
    line.split(", ").find_map(|p| p.strip_suffix(" matched")).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// What both backends must do; `reason` is the backend's text for a wrong password.
fn check_backend(inst: &Install, port: u16, sink: &Sink, reason: &str) {
    // No login: a stranger may not relay.
    let mut c = Client::connect(port);
    let ehlo = c.cmd("EHLO client.test");
    assert!(ehlo.contains("250-AUTH PLAIN LOGIN CRAM-MD5\n"), "{ehlo}");
    assert!(c.cmd("MAIL FROM:<a@sender.test>").starts_with("250"));
    assert_eq!(c.cmd("RCPT TO:<u@stranger.example>"), "454 4.7.1 <u@stranger.example>: Relay access denied");
    assert_eq!(c.cmd("AUTH PLAIN"), "503 5.5.1 Error: MAIL transaction in progress");
    c.cmd("RSET");
    // Wrong password, `*`, malformed base64: Postfix's replies.
    let t = Instant::now();
    let wrong = b64(b"\0alice\0not-the-password");
    assert_eq!(c.cmd(&format!("AUTH PLAIN {wrong}")), format!("535 5.7.8 Error: authentication failed: {reason}"));
    assert!(t.elapsed() >= Duration::from_millis(900), "a failed login waits smtpd_error_sleep_time: {:?}", t.elapsed());
    assert_eq!(c.cmd("AUTH LOGIN"), "334 VXNlcm5hbWU6");
    assert_eq!(c.cmd(&b64(b"alice")), "334 UGFzc3dvcmQ6");
    assert_eq!(c.cmd("*"), "501 5.7.0 Authentication aborted");
    assert_eq!(c.cmd("AUTH PLAIN AGFs!!"), "535 5.7.8 Error: authentication failed: Invalid base64 data in initial response");
    assert_eq!(c.cmd("AUTH LOGIN"), "334 VXNlcm5hbWU6");
    assert_eq!(c.cmd("%%%"), "535 5.7.8 Error: authentication failed: Invalid base64 data in continued response");
    assert_eq!(c.cmd("AUTH NONSENSE"), "535 5.7.8 Error: authentication failed: Invalid authentication mechanism: 'NONSENSE'");
    // And then a good login in the same session.
    assert_eq!(c.cmd(&format!("AUTH PLAIN {}", b64(format!("\0alice\0{ALICE_PW}").as_bytes()))), "235 2.7.0 Authentication successful");
    assert_eq!(c.cmd("AUTH PLAIN"), "503 5.5.1 Error: already authenticated");
    c.cmd("QUIT");
    inst.wait_log("auth=1/8");

    // Real clients, each mechanism; each message relays to the sink.
    ok(&swaks(port, "PLAIN", "alice", ALICE_PW, "swaks plain"), "swaks PLAIN");
    ok(&swaks(port, "LOGIN", "bob", BOB_PW, "swaks login"), "swaks LOGIN with a SHA512-CRYPT user");
    ok(&swaks(port, "CRAM-MD5", "alice", ALICE_PW, "swaks cram"), "swaks CRAM-MD5");
    ok(&smtplib(port, "alice", ALICE_PW), "smtplib login()");
    assert!(!swaks(port, "LOGIN", "bob", "wrong", "refused").status.success(), "a wrong password is refused");
    wait_for("four relayed messages", || (sink.count() == 4).then_some(()));
    let msgs = sink.messages();
    let plain = msgs.iter().find(|m| m.data.contains("Subject: swaks plain")).unwrap();
    assert!(plain.data.contains("\t(Authenticated sender: alice)\r\n\tby "), "{}", plain.data);
    assert!(plain.data.contains(" with ESMTPA id "), "{}", plain.data);
    for (method, user) in [("PLAIN", "alice"), ("LOGIN", "bob"), ("CRAM-MD5", "alice")] {
        inst.wait_log(&format!(": client=localhost[127.0.0.1], sasl_method={method}, sasl_username={user}"));
    }
    let log = inst.log();
    let want = format!("warning: localhost[127.0.0.1]: SASL PLAIN authentication failed: {reason}, sasl_username=alice");
    assert!(log.contains(&want), "{want}\n{log}");
    assert!(log.contains("warning: localhost[127.0.0.1]: SASL LOGIN authentication aborted"), "{log}");
    // The stock filter counts the wrong passwords and the broken exchanges, not the unknown
    // mechanism (it excludes that on purpose).
    let failures = log.lines().filter(|l| l.contains("authentication failed:") && !l.contains("Invalid authentication mechanism")).count();
    assert!(failures >= 4, "{log}");
    assert_eq!(fail2ban_matches(inst), failures);
    // Nothing secret in the log: no password, no response.
    for secret in [ALICE_PW, BOB_PW, "not-the-password", &wrong, &b64(b"alice")] {
        assert!(!log.contains(secret), "{secret:?} in the log:\n{log}");
    }
}

#[test]
fn dovecot_backend_with_real_clients() {
    require_root("Dovecot runs its auth service as root");
    let sink = Sink::start(free_port());
    let (inst, port) = Install::mail_system(&main_cf("smtpd_sasl_type = dovecot\nsmtpd_sasl_path = private/auth\n"), sink.port);
    let dovecot = Dovecot::start(&inst.spool.join("private/auth"), &users());
    check_backend(&inst, port, &sink, "(reason unavailable)");
    // Dovecot saw smtpd's requests as service smtp.
    let dlog = std::fs::read_to_string(&dovecot.log).unwrap_or_default();
    assert!(!dlog.contains("Error"), "{dlog}");
}

#[test]
fn passwd_file_backend_with_real_clients_and_reload() {
    let sink = Sink::start(free_port());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sasl-users");
    std::fs::write(&file, format!("{}this line is broken\n", users())).unwrap();
    let extra = format!("smtpd_sasl_type = passwd-file\nsmtpd_sasl_path = {}\n", file.display());
    let (inst, port) = Install::mail_system(&main_cf(&extra), sink.port);
    inst.wait_log(&format!("warning: {}:3: missing ':' after the user name; line ignored", file.display()));
    check_backend(&inst, port, &sink, "authentication failure");
    // The file is read again on reload.
    let carol = format!("AUTH PLAIN {}", b64(b"\0carol\0carol-pw"));
    let mut c = Client::connect(port);
    c.cmd("EHLO client.test");
    assert!(c.cmd(&carol).starts_with("535 "));
    std::fs::write(&file, format!("{}carol:{{PLAIN}}carol-pw\n", users())).unwrap();
    let out = inst.cli("postfix", &["reload"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_for("carol after the reload", || {
        let mut c = Client::connect(port);
        c.cmd("EHLO client.test");
        (c.cmd(&carol) == "235 2.7.0 Authentication successful").then_some(())
    });
}

/// 10,000 failed logins from eight connections at a time: each gets its 535 and its log
/// line, sessions end at the hard error limit, and meanwhile another client logs in and
/// relays promptly.
#[test]
fn a_flood_of_failed_logins_does_not_stop_smtpd() {
    const ATTEMPTS: usize = 10_000;
    const THREADS: usize = 8;
    let sink = Sink::start(free_port());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sasl-users");
    std::fs::write(&file, users()).unwrap();
    // Without the per-failure wait, so that the flood is as fast as the client can make it.
    let extra = format!("smtpd_sasl_type = passwd-file\nsmtpd_sasl_path = {}\nsmtpd_error_sleep_time = 0s\n", file.display());
    let (inst, port) = Install::mail_system(&main_cf(&extra), sink.port);
    let wrong = format!("AUTH PLAIN {}", b64(b"\0alice\0guess"));
    let flood: Vec<_> = (0..THREADS)
        .map(|_| {
            let wrong = wrong.clone();
            std::thread::spawn(move || {
                let (mut refused, mut sessions) = (0, 0);
                let mut c: Option<Client> = None;
                while refused < ATTEMPTS / THREADS {
                    let client = c.get_or_insert_with(|| {
                        sessions += 1;
                        let mut c = Client::connect(port);
                        c.cmd("EHLO flood.test");
                        c
                    });
                    let reply = client.cmd(&wrong);
                    if reply.starts_with("535 5.7.8 Error: authentication failed") {
                        refused += 1;
                    } else {
                        assert!(reply.is_empty() || reply.starts_with("421 4.7.0"), "{reply}");
                        c = None;
                    }
                    assert!(sessions <= ATTEMPTS, "every session makes progress");
                }
                refused
            })
        })
        .collect();
    wait_for("the flood under way", || (inst.log_count("SASL PLAIN authentication failed") >= 200).then_some(()));
    let t = Instant::now();
    ok(&swaks(port, "PLAIN", "alice", ALICE_PW, "during the flood"), "a login during the flood");
    let took = t.elapsed();
    let refused: usize = flood.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(refused, ATTEMPTS);
    assert!(took < Duration::from_secs(10), "the other client waited {took:?}");
    wait_for("the mail sent during the flood", || (sink.count_containing("Subject: during the flood") == 1).then_some(()));
    wait_for("every failure logged", || {
        (inst.log_count("SASL PLAIN authentication failed: authentication failure, sasl_username=alice") == ATTEMPTS).then_some(())
    });
    assert!(inst.log_count("too many errors after AUTH") >= ATTEMPTS / 20 - THREADS, "the hard error limit ends the sessions");
    assert!(!inst.log().contains("guess"));
}

/// A queued message for `rcpt`, deferred (the sink is not up yet) and waiting in its site's
/// fast flush log.
fn deferred_for(inst: &Install, port: u16, rcpt: &str) -> String {
    let mut c = Client::connect(port);
    let ehlo = c.cmd("EHLO x.test");
    assert!(ehlo.starts_with("250"), "EHLO: {ehlo}\n{}", inst.log());
    let id = crate::harness::smtp::queued_id(&c.send_mail("s@sender.test", &[rcpt], "Subject: for a customer\n\nbody\n"));
    wait_for("the deferral", || {
        inst.queue_files("flush").iter().any(|p| std::fs::read_to_string(p).unwrap_or_default().contains(&id)).then_some(())
    });
    id
}

fn msmtp_rmqs(port: u16, user: &str, password: &str, site: &str) -> Output {
    Command::new("msmtp")
        .args(["--host=127.0.0.1", &format!("--port={port}"), "--tls=off", "--auth=plain", &format!("--user={user}")])
        .arg(format!("--passwordeval=echo {password}"))
        .arg(format!("--rmqs={site}"))
        .output()
        .expect("msmtp is not installed (tests/run installs it)")
}

/// smtpd_etrn_login_maps with reject_etrn_login_mismatch: a customer who logged in (msmtp
/// with AUTH and --rmqs) releases exactly their own domain's mail; another customer's domain,
/// or an owned one without a login, gets 459 and a NOQUEUE: reject: ETRN line.
#[test]
fn a_customer_may_etrn_only_their_own_domains() {
    let sink_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sasl-users");
    std::fs::write(&file, users()).unwrap();
    let extra = format!(
        "smtpd_sasl_type = passwd-file\nsmtpd_sasl_path = {}\netrn_fallback = reject\n\
         smtpd_etrn_login_maps = inline:{{customer.example=alice, other.example=bob}}\n\
         smtpd_etrn_restrictions = reject_etrn_login_mismatch, permit_sasl_authenticated, reject\n",
        file.display()
    );
    let (inst, port) = Install::mail_system(&main_cf(&extra), sink_port);
    let mine = deferred_for(&inst, port, "u@customer.example");
    let theirs = deferred_for(&inst, port, "v@other.example");
    let sink = Sink::start(sink_port);

    let out = msmtp_rmqs(port, "alice", ALICE_PW, "other.example");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("459 <other.example>: ETRN by user alice not allowed"), "{}", text(&out.stderr));
    inst.wait_log("NOQUEUE: reject: ETRN from localhost[127.0.0.1]: 459 <other.example>: ETRN by user alice not allowed;");
    assert!(inst.log().contains(" sasl_username=alice"), "{}", inst.log());
    ok(&msmtp_rmqs(port, "alice", ALICE_PW, "customer.example"), "alice's ETRN for her domain");
    inst.wait_log(&format!("{mine}: removed"));
    assert_eq!(sink.count(), 1);
    assert!(inst.queue_files("deferred").iter().any(|p| p.ends_with(&theirs)), "bob's mail stays");

    let mut c = Client::connect(port);
    c.cmd("EHLO x.test");
    assert_eq!(c.cmd("ETRN other.example"), "459 <other.example>: ETRN without login not allowed");
    assert_eq!(c.cmd("ETRN unowned.example"), "554 5.7.1 <unowned.example>: Etrn command rejected: Access denied");
    assert_eq!(c.cmd(&format!("AUTH PLAIN {}", b64(format!("\0bob\0{BOB_PW}").as_bytes()))), "235 2.7.0 Authentication successful");
    assert_eq!(c.cmd("ETRN @customer.example"), "459 <customer.example>: ETRN by user bob not allowed");
    assert!(c.cmd("ETRN @other.example").starts_with("25"));
    inst.wait_log(&format!("{theirs}: removed"));
    assert_eq!(sink.count(), 2);
}

/// Dovecot not running: AUTH is not announced, an AUTH anyway gets 454 with Postfix's text,
/// and the warning names the socket.
#[test]
fn dovecot_down_is_a_temporary_failure() {
    let (inst, port) = Install::mail_system(&main_cf("smtpd_sasl_type = dovecot\n"), free_port());
    let mut c = Client::connect(port);
    let ehlo = c.cmd("EHLO client.test");
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    // Right after a failed attempt, requests fail at once without a new one (and its warning).
    for _ in 0..5 {
        let reply = c.cmd(&format!("AUTH PLAIN {}", b64(format!("\0alice\0{ALICE_PW}").as_bytes())));
        assert_eq!(reply, "454 4.7.0 Temporary authentication failure: Can't connect to authentication server");
    }
    inst.wait_log(&format!("warning: SASL: Connect to Dovecot auth socket '{}' failed: ", inst.spool.join("private/auth").display()));
    inst.wait_log("warning: localhost[127.0.0.1]: SASL PLAIN authentication failed: Can't connect to authentication server");
    assert!(inst.log_count("Connect to Dovecot auth socket") <= 2, "{}", inst.log());
}
