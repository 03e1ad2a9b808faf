//! The restriction lists in memory: main.cf lines, an SMTP dialogue, Postfix's replies.

use crate::config::SmtpdConfig;
use crate::session::{Peer, Session, Step};
use common::config::{MainCf, Params};

/// A configuration for a backup MX of customer.example, with `files` in its configuration
/// directory.
fn config(extra: &str, files: &[(&str, &str)]) -> Result<(tempfile::TempDir, SmtpdConfig), String> {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let text = format!("queue_directory = {}\nmyhostname = mx.test\nrelay_domains = customer.example\n{extra}", spool.display());
    let main = MainCf::parse(&text, &dir.path().join("main.cf")).unwrap();
    let p = Params::from_parts(dir.path(), main, &[("service_name".into(), "smtpd".into())]);
    let cfg = SmtpdConfig::from_params(&p, Some(10)).map_err(|e| e.to_string())?;
    Ok((dir, cfg))
}

fn reply(s: &mut Session<'_>, line: &str) -> String {
    match s.command(line.as_bytes()).1 {
        Step::Reply(r) | Step::Close(r) => r.to_string(),
        Step::Data(_) => "354".into(),
        Step::Etrn { site, .. } => match s.check_etrn(&site) {
            Some(r) => r.to_string(),
            None => format!("ETRN {site}"),
        },
        other => format!("{other:?}"),
    }
}

/// Run `dialogue` from `addr` (a stranger unless 127.0.0.1) and compare each reply.
fn check(name: &str, cfg: &SmtpdConfig, addr: &str, dialogue: &[(&str, &str)]) {
    let mut s = Session::new(cfg, Peer { name: "client.example".into(), addr: addr.parse().unwrap() });
    if let Some(r) = s.check_connect() {
        assert_eq!(dialogue[0].0, "", "{name}: refused at connect: {r}");
    }
    for (line, want) in dialogue.iter().filter(|(l, _)| !l.is_empty()) {
        let got = reply(&mut s, line);
        assert_eq!(&got, want, "{name}: {line:?}");
    }
}

const STRANGER: &str = "192.0.2.1";

/// Command lines and their replies.
type Dialogue = &'static [(&'static str, &'static str)];

#[test]
fn backup_mx_recipients() {
    let files = [("relay_recipients", "known@customer.example x\n@open.customer.example x\n")];
    let (_d, cfg) = config(
        "relay_domains = customer.example, open.customer.example\nrelay_recipient_maps = texthash:relay_recipients\n\
         smtpd_recipient_restrictions = reject_unauth_destination\n",
        &files,
    )
    .unwrap();
    check(
        "relay recipients",
        &cfg,
        STRANGER,
        &[
            (
                "EHLO client.example",
                "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250 SMTPUTF8",
            ),
            ("MAIL FROM:<s@sender.example>", "250 2.1.0 Ok"),
            (
                "RCPT TO:<nosuchuser@customer.example>",
                "550 5.1.1 <nosuchuser@customer.example>: Recipient address rejected: User unknown in relay recipient table",
            ),
            ("RCPT TO:<known@customer.example>", "250 2.1.5 Ok"),
            ("RCPT TO:<Known@Customer.Example>", "250 2.1.5 Ok"),
            ("RCPT TO:<anyone@open.customer.example>", "250 2.1.5 Ok"),
            ("RCPT TO:<u@stranger.example>", "454 4.7.1 <u@stranger.example>: Relay access denied"),
            ("DATA", "354"),
        ],
    );
    // unknown_relay_recipient_reject_code, and the table's name left out of the reply.
    let (_d, cfg) = config(
        "relay_recipient_maps = texthash:relay_recipients\nunknown_relay_recipient_reject_code = 450\nshow_user_unknown_table_name = no\n",
        &files,
    )
    .unwrap();
    check(
        "reject code",
        &cfg,
        STRANGER,
        &[
            ("HELO client.example", "250 mx.test"),
            ("MAIL FROM:<s@sender.example>", "250 2.1.0 Ok"),
            ("RCPT TO:<x@customer.example>", "450 5.1.1 <x@customer.example>: Recipient address rejected: User unknown"),
        ],
    );
    // The implicit check can be turned off; the explicit word still works.
    let (_d, cfg) = config("relay_recipient_maps = texthash:relay_recipients\nsmtpd_reject_unlisted_recipient = no\n", &files).unwrap();
    check(
        "no implicit check",
        &cfg,
        STRANGER,
        &[("HELO c.example", "250 mx.test"), ("MAIL FROM:<>", "250 2.1.0 Ok"), ("RCPT TO:<x@customer.example>", "250 2.1.5 Ok")],
    );
    let (_d, cfg) = config(
        "relay_recipient_maps = texthash:relay_recipients\nsmtpd_reject_unlisted_recipient = no\nsmtpd_recipient_restrictions = reject_unlisted_recipient\n",
        &files,
    )
    .unwrap();
    check(
        "explicit word",
        &cfg,
        STRANGER,
        &[
            ("HELO c.example", "250 mx.test"),
            ("MAIL FROM:<>", "250 2.1.0 Ok"),
            (
                "RCPT TO:<x@customer.example>",
                "550 5.1.1 <x@customer.example>: Recipient address rejected: User unknown in relay recipient table",
            ),
        ],
    );
    // smtpd_reject_unlisted_sender: a forged sender of a relay domain.
    let (_d, cfg) = config("relay_recipient_maps = texthash:relay_recipients\nsmtpd_reject_unlisted_sender = yes\n", &files).unwrap();
    check(
        "unlisted sender",
        &cfg,
        "127.0.0.1",
        &[
            ("HELO c.example", "250 mx.test"),
            ("MAIL FROM:<forged@customer.example>", "250 2.1.0 Ok"),
            (
                "RCPT TO:<u@stranger.example>",
                "550 5.1.0 <forged@customer.example>: Sender address rejected: User unknown in relay recipient table",
            ),
            ("RSET", "250 2.0.0 Ok"),
            ("MAIL FROM:<known@customer.example>", "250 2.1.0 Ok"),
            ("RCPT TO:<u@stranger.example>", "250 2.1.5 Ok"),
        ],
    );
}

#[test]
fn every_word() {
    let files = [
        ("clients", "192.0.2.66 REJECT go away\n192.0.2.77 DEFER\n192.0.2.88 521 5.7.9 no more\n"),
        ("helos", "bad.example REJECT\n"),
        ("senders", "spammer@sender.example REJECT\nsender.example OK\n<> 550 no bounces\n"),
        (
            "recipients",
            "held@customer.example HOLD\ngone@customer.example DISCARD\nbusy@customer.example DEFER later\nfilter@customer.example FILTER smtp:x\n",
        ),
    ];
    let cases: &[(&str, &str, Dialogue)] = &[
        (
            "reject and defer",
            "smtpd_client_restrictions = reject\n",
            &[
                ("HELO c.example", "250 mx.test"),
                ("MAIL FROM:<s@sender.example>", "250 2.1.0 Ok"),
                ("RCPT TO:<u@customer.example>", "554 5.7.1 <client.example[192.0.2.1]>: Client host rejected: Access denied"),
            ],
        ),
        (
            "defer in sender restrictions",
            "smtpd_sender_restrictions = defer\n",
            &[
                ("HELO c.example", "250 mx.test"),
                ("MAIL FROM:<s@sender.example>", "250 2.1.0 Ok"),
                ("RCPT TO:<u@customer.example>", "450 4.3.2 <s@sender.example>: Sender address rejected: Try again later"),
            ],
        ),
        (
            "client access",
            "smtpd_client_restrictions = check_client_access texthash:clients\n",
            &[
                ("HELO c.example", "250 mx.test"),
                ("MAIL FROM:<s@sender.example>", "250 2.1.0 Ok"),
                ("RCPT TO:<u@customer.example>", "250 2.1.5 Ok"),
            ],
        ),
        (
            "helo words",
            "smtpd_helo_restrictions = reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname, check_helo_access texthash:helos\n",
            &[
                ("HELO bad_host!", "250 mx.test"),
                ("MAIL FROM:<s@sender.example>", "250 2.1.0 Ok"),
                ("RCPT TO:<u@customer.example>", "501 5.5.2 <bad_host!>: Helo command rejected: Invalid name"),
                ("HELO localhost", "250 mx.test"),
                ("MAIL FROM:<s@sender.example>", "250 2.1.0 Ok"),
                ("RCPT TO:<u@customer.example>", "504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname"),
                ("HELO www.bad.example", "250 mx.test"),
                ("MAIL FROM:<s@sender.example>", "250 2.1.0 Ok"),
                ("RCPT TO:<u@customer.example>", "554 5.7.1 <www.bad.example>: Helo command rejected: Access denied"),
                ("HELO [192.0.2.1]", "250 mx.test"),
                ("MAIL FROM:<s@sender.example>", "250 2.1.0 Ok"),
                ("RCPT TO:<u@customer.example>", "250 2.1.5 Ok"),
            ],
        ),
        (
            "sender words",
            "smtpd_sender_restrictions = reject_non_fqdn_sender, check_sender_access texthash:senders, reject\n",
            &[
                ("HELO c.example", "250 mx.test"),
                ("MAIL FROM:<s@localhost>", "250 2.1.0 Ok"),
                ("RCPT TO:<u@customer.example>", "504 5.5.2 <s@localhost>: Sender address rejected: need fully-qualified address"),
                ("RSET", "250 2.0.0 Ok"),
                ("MAIL FROM:<spammer@sender.example>", "250 2.1.0 Ok"),
                ("RCPT TO:<u@customer.example>", "554 5.7.1 <spammer@sender.example>: Sender address rejected: Access denied"),
                ("RSET", "250 2.0.0 Ok"),
                ("MAIL FROM:<friend@mail.sender.example>", "250 2.1.0 Ok"),
                ("RCPT TO:<u@customer.example>", "250 2.1.5 Ok"),
                ("RSET", "250 2.0.0 Ok"),
                ("MAIL FROM:<>", "250 2.1.0 Ok"),
                ("RCPT TO:<u@customer.example>", "550 5.7.1 <>: Sender address rejected: no bounces"),
                ("RSET", "250 2.0.0 Ok"),
                ("MAIL FROM:<x@other.example>", "250 2.1.0 Ok"),
                ("RCPT TO:<u@customer.example>", "554 5.7.1 <x@other.example>: Sender address rejected: Access denied"),
            ],
        ),
        (
            "recipient words",
            "smtpd_recipient_restrictions = reject_non_fqdn_recipient, check_recipient_access texthash:recipients\n",
            &[
                ("HELO c.example", "250 mx.test"),
                ("MAIL FROM:<s@sender.example>", "250 2.1.0 Ok"),
                ("RCPT TO:<u@customer>", "454 4.7.1 <u@customer>: Relay access denied"),
                ("RCPT TO:<busy@customer.example>", "450 4.7.1 <busy@customer.example>: Recipient address rejected: later"),
                ("RCPT TO:<filter@customer.example>", "451 4.3.5 Server configuration error"),
                ("RCPT TO:<held@customer.example>", "250 2.1.5 Ok"),
            ],
        ),
        (
            "non-fqdn recipient before relay",
            "smtpd_relay_restrictions = reject_non_fqdn_recipient, permit_mynetworks, reject_unauth_destination\n",
            &[
                ("HELO c.example", "250 mx.test"),
                ("MAIL FROM:<s@sender.example>", "250 2.1.0 Ok"),
                ("RCPT TO:<u@customer>", "504 5.5.2 <u@customer>: Recipient address rejected: need fully-qualified address"),
                ("RCPT TO:<u@stranger.example>", "554 5.7.1 <u@stranger.example>: Relay access denied"),
            ],
        ),
        (
            "bare table in a list",
            "smtpd_recipient_restrictions = texthash:recipients\n",
            &[
                ("HELO c.example", "250 mx.test"),
                ("MAIL FROM:<s@sender.example>", "250 2.1.0 Ok"),
                ("RCPT TO:<busy@customer.example>", "450 4.7.1 <busy@customer.example>: Recipient address rejected: later"),
            ],
        ),
        (
            "warn_if_reject",
            "smtpd_client_restrictions = warn_if_reject, reject\nsmtpd_helo_restrictions = warn_if_reject reject_non_fqdn_helo_hostname, reject\n",
            &[
                ("HELO localhost", "250 mx.test"),
                ("MAIL FROM:<s@sender.example>", "250 2.1.0 Ok"),
                ("RCPT TO:<u@customer.example>", "554 5.7.1 <localhost>: Helo command rejected: Access denied"),
            ],
        ),
        (
            "data restrictions",
            "smtpd_data_restrictions = reject\n",
            &[
                ("HELO c.example", "250 mx.test"),
                ("MAIL FROM:<s@sender.example>", "250 2.1.0 Ok"),
                ("RCPT TO:<u@customer.example>", "250 2.1.5 Ok"),
                ("DATA", "554 5.7.1 <DATA>: Data command rejected: Access denied"),
            ],
        ),
        (
            "etrn shares the words",
            "smtpd_etrn_restrictions = check_client_access texthash:clients, check_etrn_access inline:{customer.example=OK}, reject\n",
            &[
                ("HELO c.example", "250 mx.test"),
                ("ETRN customer.example", "ETRN customer.example"),
                ("ETRN other.example", "554 5.7.1 <other.example>: Etrn command rejected: Access denied"),
            ],
        ),
        (
            "codes",
            "reject_code = 550\ndefer_code = 451\nsmtpd_recipient_restrictions = reject\nsmtpd_sender_restrictions = check_sender_access texthash:senders\naccess_map_reject_code = 553\n",
            &[
                ("HELO c.example", "250 mx.test"),
                ("MAIL FROM:<spammer@sender.example>", "250 2.1.0 Ok"),
                ("RCPT TO:<u@customer.example>", "553 5.7.1 <spammer@sender.example>: Sender address rejected: Access denied"),
                ("RSET", "250 2.0.0 Ok"),
                ("MAIL FROM:<s@other.example>", "250 2.1.0 Ok"),
                ("RCPT TO:<u@customer.example>", "550 5.7.1 <u@customer.example>: Recipient address rejected: Access denied"),
            ],
        ),
    ];
    for (name, extra, dialogue) in cases {
        let (_d, cfg) = config(extra, &files).unwrap_or_else(|e| panic!("{name}: {e}"));
        check(name, &cfg, STRANGER, dialogue);
    }
    // Clients by address: the table's actions with their texts.
    let (_d, cfg) = config("smtpd_client_restrictions = check_client_access texthash:clients\n", &files).unwrap();
    for (addr, want) in [
        ("192.0.2.66", "554 5.7.1 <client.example[192.0.2.66]>: Client host rejected: go away"),
        ("192.0.2.77", "450 4.7.1 <client.example[192.0.2.77]>: Client host rejected: Access denied"),
        ("192.0.2.88", "521 5.7.9 <client.example[192.0.2.88]>: Client host rejected: no more"),
    ] {
        check(
            addr,
            &cfg,
            addr,
            &[("HELO c.example", "250 mx.test"), ("MAIL FROM:<s@sender.example>", "250 2.1.0 Ok"), ("RCPT TO:<u@customer.example>", want)],
        );
    }
}

#[test]
fn delay_reject_no_refuses_at_each_command() {
    let (_d, cfg) = config("smtpd_delay_reject = no\nsmtpd_helo_restrictions = reject_non_fqdn_helo_hostname\nsmtpd_sender_restrictions = reject_non_fqdn_sender\n", &[]).unwrap();
    check(
        "helo and mail",
        &cfg,
        STRANGER,
        &[
            ("HELO localhost", "504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname"),
            ("HELO c.example", "250 mx.test"),
            ("MAIL FROM:<s@localhost>", "504 5.5.2 <s@localhost>: Sender address rejected: need fully-qualified address"),
            ("RCPT TO:<u@customer.example>", "503 5.5.1 Error: need MAIL command"),
            ("MAIL FROM:<s@sender.example>", "250 2.1.0 Ok"),
        ],
    );
    let (_d, cfg) = config("smtpd_delay_reject = no\nsmtpd_client_restrictions = permit_mynetworks, reject\n", &[]).unwrap();
    let mut s = Session::new(&cfg, Peer { name: "client.example".into(), addr: STRANGER.parse().unwrap() });
    assert_eq!(
        s.check_connect().map(|r| r.to_string()).as_deref(),
        Some("554 5.7.1 <client.example[192.0.2.1]>: Client host rejected: Access denied")
    );
    assert_eq!(reply(&mut s, "EHLO c.example"), "503 5.7.0 Error: access denied for client.example[192.0.2.1]");
    assert_eq!(reply(&mut s, "MAIL FROM:<s@sender.example>"), "503 5.7.0 Error: access denied for client.example[192.0.2.1]");
    assert_eq!(reply(&mut s, "QUIT"), "221 2.0.0 Bye");
    let mut s = Session::new(&cfg, Peer { name: "localhost".into(), addr: "127.0.0.1".parse().unwrap() });
    assert!(s.check_connect().is_none());
}

#[test]
fn hold_discard_limits_and_pipelining() {
    let files = [("recipients", "held@customer.example HOLD\ngone@stranger.example DISCARD\n")];
    let (_d, cfg) = config(
        "smtpd_relay_restrictions = check_recipient_access texthash:recipients, reject_unauth_destination\n\
         smtpd_recipient_restrictions = reject\nsmtpd_recipient_limit = 2\nsmtpd_recipient_overshoot_limit = 1\n",
        &files,
    )
    .unwrap();
    let mut s = Session::new(&cfg, Peer { name: "client.example".into(), addr: STRANGER.parse().unwrap() });
    reply(&mut s, "EHLO c.example");
    reply(&mut s, "MAIL FROM:<s@sender.example>");
    assert_eq!(
        reply(&mut s, "RCPT TO:<held@customer.example>"),
        "554 5.7.1 <held@customer.example>: Recipient address rejected: Access denied"
    );
    assert!(!s.restrict.hold, "HOLD of a refused recipient does not stay");
    assert_eq!(reply(&mut s, "RCPT TO:<gone@stranger.example>"), "250 2.1.5 Ok", "DISCARD accepts, and skips the words after it");
    assert!(s.restrict.discard);
    assert_eq!(reply(&mut s, "RCPT TO:<anyone@stranger.example>"), "250 2.1.5 Ok", "the whole transaction is discarded");
    // Over smtpd_recipient_limit: the first refusal is forgiven (overshoot limit 1), the next counts.
    let errors = s.errors;
    for _ in 0..2 {
        let (verb, step) = s.command(b"RCPT TO:<held@customer.example>");
        let Step::Reply(r) = step else { panic!("{step:?}") };
        assert_eq!(r.to_string(), "452 4.5.3 Error: too many recipients");
        s.count(&verb, &r);
    }
    assert_eq!(s.errors, errors + 1);
    reply(&mut s, "RSET");
    assert!(!s.restrict.hold && !s.restrict.discard, "a new transaction forgets HOLD and DISCARD");
    let (_d, cfg) = config("smtpd_recipient_restrictions = check_recipient_access texthash:recipients\n", &files).unwrap();
    let mut s = Session::new(&cfg, Peer { name: "client.example".into(), addr: STRANGER.parse().unwrap() });
    reply(&mut s, "EHLO c.example");
    reply(&mut s, "MAIL FROM:<s@sender.example>");
    assert_eq!(reply(&mut s, "RCPT TO:<held@customer.example>"), "250 2.1.5 Ok");
    assert!(s.restrict.hold && !s.restrict.discard);

    // reject_unauth_pipelining: a HELO client that sends ahead.
    let (_d, cfg) = config("smtpd_data_restrictions = reject_unauth_pipelining\n", &[]).unwrap();
    let mut s = Session::new(&cfg, Peer { name: "client.example".into(), addr: STRANGER.parse().unwrap() });
    s.restrict.pending_input = b"MAIL FROM:<s@sender.example>\r\n".to_vec();
    assert_eq!(reply(&mut s, "HELO c.example"), "250 mx.test");
    s.restrict.pending_input.clear();
    reply(&mut s, "MAIL FROM:<s@sender.example>");
    reply(&mut s, "RCPT TO:<u@customer.example>");
    assert_eq!(reply(&mut s, "DATA"), "503 5.5.0 <DATA>: Data command rejected: Improper use of SMTP command pipelining");
    // With EHLO, MAIL and RCPT may be pipelined.
    let mut s = Session::new(&cfg, Peer { name: "client.example".into(), addr: STRANGER.parse().unwrap() });
    reply(&mut s, "EHLO c.example");
    s.restrict.pending_input = b"RCPT TO:<u@customer.example>\r\nDATA\r\n".to_vec();
    reply(&mut s, "MAIL FROM:<s@sender.example>");
    reply(&mut s, "RCPT TO:<u@customer.example>");
    s.restrict.pending_input.clear();
    assert_eq!(reply(&mut s, "DATA"), "354");
}

#[test]
fn configuration_errors() {
    let err = |extra: &str| config(extra, &[]).err().unwrap_or_default();
    assert!(err("smtpd_recipient_restrictions = reject_bogus\n").contains("unknown restriction: \"reject_bogus\""));
    assert!(err("smtpd_data_restrictions = inline:{a=b}\n").contains("specify a check_*_access restriction before table"));
    assert!(err("smtpd_sender_restrictions = check_sender_access\n").contains("check_sender_access requires a type:table argument"));
    assert!(err("reject_code = 250\n").contains("reject_code: bad reply code"));
    assert!(err("relay_recipient_maps = hash:/nonexistent/relay\n").contains("/nonexistent/relay"));
}

#[test]
fn dns_lists_from_the_session_cache() {
    use crate::restrict::dnsbl::Listing;
    let (_d, cfg) = config(
        "smtpd_dns_nameservers = 127.0.0.1:9\nsmtpd_client_restrictions = reject_rbl_client bl.example=127.0.0.2\n\
         smtpd_sender_restrictions = reject_rhsbl_sender rhsbl.example\n",
        &[],
    )
    .unwrap();
    assert_eq!(cfg.restrict.rbl_lists.len(), 1);
    let mut s = Session::new(&cfg, Peer { name: "unknown".into(), addr: "192.0.2.1".parse().unwrap() });
    let listed = |txt: Option<&str>, a: &str| Listing::Listed { addrs: vec![a.parse().unwrap()], txt: txt.map(str::to_string) };
    s.restrict.dns.insert("spam.example.rhsbl.example".into(), listed(None, "127.0.0.4"));
    s.restrict.dns.insert("1.2.0.192.bl.example".into(), listed(Some("see https://bl.example/"), "127.0.0.3"));
    reply(&mut s, "HELO c.example");
    reply(&mut s, "MAIL FROM:<x@spam.example>");
    assert_eq!(
        reply(&mut s, "RCPT TO:<u@customer.example>"),
        "554 5.7.1 Service unavailable; Sender address [spam.example] blocked using rhsbl.example"
    );
    reply(&mut s, "RSET");
    reply(&mut s, "MAIL FROM:<x@ok.example>");
    assert_eq!(reply(&mut s, "RCPT TO:<u@customer.example>"), "250 2.1.5 Ok", "127.0.0.3 does not match the filter");
    s.restrict.dns.insert("1.2.0.192.bl.example".into(), listed(Some("see https://bl.example/"), "127.0.0.2"));
    assert_eq!(
        reply(&mut s, "RCPT TO:<v@customer.example>"),
        "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using bl.example; see https://bl.example/"
    );
    let err = config("smtpd_client_restrictions = reject_rbl_client\n", &[]).err().unwrap_or_default();
    assert!(err.contains("reject_rbl_client requires a DNS list domain"), "{err}");
}

#[test]
fn unknown_domains_from_the_session_cache() {
    use crate::restrict::dnsbl::Mailhost;
    let (_d, cfg) = config(
        "smtpd_dns_nameservers = 127.0.0.1:9\nsmtpd_sender_restrictions = reject_unknown_sender_domain\n\
         smtpd_recipient_restrictions = reject_unknown_recipient_domain\nunknown_address_reject_code = 550\n",
        &[],
    )
    .unwrap();
    let mut s = Session::new(&cfg, Peer { name: "localhost".into(), addr: "127.0.0.1".parse().unwrap() });
    for (domain, answer) in [
        ("gone.example", Mailhost::NotFound),
        ("slow.example", Mailhost::TempFail),
        ("null.example", Mailhost::NullMx),
        ("customer.example", Mailhost::Found),
    ] {
        s.restrict.mailhosts.insert(domain.into(), answer);
    }
    reply(&mut s, "HELO c.example");
    reply(&mut s, "MAIL FROM:<x@gone.example>");
    assert_eq!(reply(&mut s, "RCPT TO:<u@customer.example>"), "550 5.1.8 <x@gone.example>: Sender address rejected: Domain not found");
    reply(&mut s, "RSET");
    reply(&mut s, "MAIL FROM:<x@slow.example>");
    assert_eq!(reply(&mut s, "RCPT TO:<u@customer.example>"), "450 4.1.8 <x@slow.example>: Sender address rejected: Domain not found");
    reply(&mut s, "RSET");
    reply(&mut s, "MAIL FROM:<x@null.example>");
    assert_eq!(
        reply(&mut s, "RCPT TO:<u@customer.example>"),
        "550 5.7.27 <x@null.example>: Sender address rejected: Domain null.example does not accept mail (nullMX)"
    );
    reply(&mut s, "RSET");
    reply(&mut s, "MAIL FROM:<>");
    assert_eq!(reply(&mut s, "RCPT TO:<u@customer.example>"), "250 2.1.5 Ok", "the null sender has no domain");
    assert_eq!(reply(&mut s, "RCPT TO:<u@[192.0.2.9]>"), "250 2.1.5 Ok", "an address literal is not looked up");
    assert_eq!(
        reply(&mut s, "RCPT TO:<u@null.example>"),
        "556 5.1.10 <u@null.example>: Recipient address rejected: Domain null.example does not accept mail (nullMX)"
    );
}

#[test]
fn sleep_asks_the_connection_to_wait() {
    let (_d, cfg) = config("smtpd_data_restrictions = sleep 2, sleep 1\n", &[]).unwrap();
    let mut s = Session::new(&cfg, Peer { name: "localhost".into(), addr: "127.0.0.1".parse().unwrap() });
    reply(&mut s, "HELO c.example");
    reply(&mut s, "MAIL FROM:<s@sender.example>");
    reply(&mut s, "RCPT TO:<u@customer.example>");
    assert_eq!(s.restrict.take_sleep(), std::time::Duration::ZERO);
    assert_eq!(reply(&mut s, "DATA"), "354");
    assert_eq!(s.restrict.take_sleep(), std::time::Duration::from_secs(3));
    assert_eq!(s.restrict.take_sleep(), std::time::Duration::ZERO, "once");
    let err = config("smtpd_data_restrictions = sleep x\n", &[]).err().unwrap_or_default();
    assert!(err.contains("restriction sleep must be followed by number"), "{err}");
}

#[test]
fn unverified_recipients_take_the_verify_services_answer() {
    use common::ipc::verify::AddressStatus;
    let lists = "smtpd_recipient_restrictions = reject_unauth_destination, reject_unverified_recipient, check_recipient_access inline:{{blocked@customer.example=REJECT}}\n";
    let (_d, cfg) = config(lists, &[]).unwrap();
    let mut s = Session::new(&cfg, Peer { name: "client.example".into(), addr: STRANGER.parse().unwrap() });
    reply(&mut s, "EHLO client.example");
    reply(&mut s, "MAIL FROM:<s@sender.example>");
    // No answer yet: the evaluation stops for one (and a stranger's relay attempt never asks).
    assert_eq!(reply(&mut s, "RCPT TO:<u@customer.example>"), "Verify { address: \"u@customer.example\" }");
    assert_eq!(reply(&mut s, "RCPT TO:<u@elsewhere.example>"), "454 4.7.1 <u@elsewhere.example>: Relay access denied");
    // (recipient, the service's answer, the reply)
    type Case = (&'static str, Option<(AddressStatus, &'static str)>, &'static str);
    let cases: &[Case] = &[
        ("ok@customer.example", Some((AddressStatus::Deliverable, "250 2.1.5 Ok")), "250 2.1.5 Ok"),
        (
            "new@customer.example",
            Some((AddressStatus::Probing, "Address verification in progress")),
            "450 4.1.1 <new@customer.example>: Recipient address rejected: unverified address: Address verification in progress",
        ),
        (
            "soft@customer.example",
            Some((AddressStatus::Deferred, "connect to h[1.2.3.4]:25: Connection refused")),
            "450 4.1.1 <soft@customer.example>: Recipient address rejected: unverified address: connect to h[1.2.3.4]:25: Connection refused",
        ),
        // unverified_recipient_reject_code is 450 by default: a refused address is deferred.
        (
            "bad@customer.example",
            Some((AddressStatus::Undeliverable, "host h said: 550 no")),
            "450 4.1.1 <bad@customer.example>: Recipient address rejected: unverified address: host h said: 550 no",
        ),
        ("down@customer.example", None, "450 4.1.1 <down@customer.example>: Recipient address rejected: address verification problem"),
        // defer_if_permit: a later rejection wins over the deferral.
        (
            "blocked@customer.example",
            Some((AddressStatus::Probing, "Address verification in progress")),
            "554 5.7.1 <blocked@customer.example>: Recipient address rejected: Access denied",
        ),
    ];
    for (addr, answer, want) in cases {
        s.restrict.verified.insert(addr.to_string(), answer.map(|(st, t)| (st, t.to_string())));
        assert_eq!(reply(&mut s, &format!("RCPT TO:<{addr}>")), *want, "{addr}");
    }

    // A 5XX reject code refuses for good; with `defer`, a deferral comes before a later REJECT;
    // a reason of our own replaces the verification result's.
    let extra = format!(
        "{lists}unverified_recipient_reject_code = 550\nunverified_recipient_tempfail_action = defer\nunverified_recipient_reject_reason = Not known here\n"
    );
    let (_d, cfg) = config(&extra, &[]).unwrap();
    let mut s = Session::new(&cfg, Peer { name: "client.example".into(), addr: STRANGER.parse().unwrap() });
    reply(&mut s, "EHLO client.example");
    reply(&mut s, "MAIL FROM:<s@sender.example>");
    s.restrict.verified.insert("bad@customer.example".into(), Some((AddressStatus::Undeliverable, "host h said: 550 no".into())));
    assert_eq!(
        reply(&mut s, "RCPT TO:<bad@customer.example>"),
        "550 5.1.1 <bad@customer.example>: Recipient address rejected: undeliverable address: Not known here"
    );
    s.restrict.verified.insert("blocked@customer.example".into(), Some((AddressStatus::Probing, "in progress".into())));
    assert_eq!(
        reply(&mut s, "RCPT TO:<blocked@customer.example>"),
        "450 4.1.1 <blocked@customer.example>: Recipient address rejected: unverified address: Not known here"
    );

    // Only where the recipient is the subject; a bad tempfail action is refused.
    assert!(
        config("smtpd_sender_restrictions = reject_unverified_recipient\n", &[]).unwrap_err().contains("smtpd_relay_restrictions only")
    );
    let bad = format!("{lists}unverified_recipient_tempfail_action = maybe\n");
    assert!(config(&bad, &[]).unwrap_err().contains("defer_if_permit or defer"));
}
