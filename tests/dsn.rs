//! Delivery status notifications (RFC 3461, 3464): smtpd takes RET, ENVID, NOTIFY and ORCPT
//! and the queue file keeps them (as `sendmail -N -R -V` does through pickup); the smtp client
//! passes them to a next hop that offers DSN; failure, success and delay notices honour them. Each notice the
//! sender gets is parsed with Python's `email` package, as a mail client would.

use crate::harness::smtp::{Client, Received, Sink, free_port, queued_id};
use crate::harness::{Install, run_env, text, wait_for};

/// What Python's `email` package makes of a notice: the report's subtype and content types of
/// its parts, then the `message/delivery-status` part's field groups (the per-message fields
/// first, then one group per recipient), each as (name, value) pairs.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Parsed {
    pub(crate) report_type: String,
    pub(crate) parts: Vec<String>,
    pub(crate) status: Vec<Vec<(String, String)>>,
    /// The text of the returned headers or message (the third part).
    pub(crate) returned: String,
}

pub(crate) fn parse_notice(data: &str) -> Parsed {
    let script = r#"
import email, json, sys
from email import policy
m = email.message_from_bytes(sys.stdin.buffer.read(), policy=policy.compat32)
assert m.get_content_type() == "multipart/report", m.get_content_type()
parts = m.get_payload()
ds = [p for p in parts if p.get_content_type() == "message/delivery-status"][0]
status = [list(block.items()) for block in ds.get_payload()]
third = parts[2]
returned = third.get_payload(decode=False)
if isinstance(returned, list):
    returned = returned[0].as_string()
print(json.dumps({"report_type": m.get_param("report-type"), "parts": [p.get_content_type() for p in parts], "status": status, "returned": returned}))
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), data.as_bytes()).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python3: {}\n{data}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The value of field `name` in a group of delivery-status fields.
pub(crate) fn field<'a>(group: &'a [(String, String)], name: &str) -> Option<&'a str> {
    group.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// The notice about message `id` that the sink got for `subject` (its Subject: line).
pub(crate) fn notice(sink: &Sink, id: &str, subject: &str) -> Received {
    wait_for(subject, || {
        sink.messages()
            .into_iter()
            .find(|m| m.data.contains(&format!("X-Postern-Queue-ID: {id}")) && m.data.contains(&format!("Subject: {subject}\r\n")))
    })
}

/// The envelope lines `postcat -e` shows for queue ID `id`.
fn envelope_lines(inst: &Install, id: &str) -> Vec<String> {
    let out = inst.cli("postcat", &["-eq", id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn dsn_requests_from_smtp_and_sendmail_are_kept_in_the_queue_file() {
    // No next hop listens: the mail stays queued for postcat to show.
    let (inst, port) = Install::mail_system("", free_port());
    let mut c = Client::connect(port);
    assert!(c.cmd("EHLO client.test").ends_with("250-8BITMIME\n250-DSN\n250 SMTPUTF8"));
    assert_eq!(c.cmd("MAIL FROM:<s@sender.test> RET=HDRS ENVID=QQ+2B314159"), "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<a@customer.example> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;A+2Bx@customer.example"), "250 2.1.5 Ok");
    assert_eq!(c.cmd("RCPT TO:<b@customer.example> NOTIFY=NEVER"), "250 2.1.5 Ok");
    assert_eq!(c.cmd("RCPT TO:<c@customer.example> NOTIFY=NEVER,DELAY"), "501 5.5.4 Error: Bad NOTIFY parameter syntax");
    assert_eq!(c.cmd("RCPT TO:<c@customer.example> X-DSN=1"), "555 5.5.4 Unsupported option: X-DSN=1");
    assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>");
    let id = queued_id(&c.cmd("Subject: dsn\r\n\r\nbody\r\n."));
    c.cmd("QUIT");
    inst.wait_log(&format!("{id}: to=<b@customer.example>, relay=none"));
    let lines = envelope_lines(&inst, &id);
    let sender = lines.iter().position(|l| l == "sender: s@sender.test").unwrap();
    // Postfix's record names and numbers: RET=HDRS is 2; SUCCESS,DELAY is 2|8, NEVER 1.
    let want = [
        "dsn_return_flags: 2",
        "dsn_envelope_id: QQ+314159",
        "sender: s@sender.test",
        "dsn_notify_flags: 10",
        "dsn_original_recipient: rfc822;A+x@customer.example",
        "recipient: a@customer.example",
        "dsn_notify_flags: 1",
        "dsn_original_recipient: rfc822;b@customer.example",
        "recipient: b@customer.example",
    ];
    assert_eq!(lines[sender - 2..sender + 7], want, "{lines:#?}");

    let out = run_env(
        "sendmail",
        &inst.etc,
        &["-N", "failure", "-R", "full", "-V", "env-7", "-f", "me@sender.test", "u@customer.example"],
        b"Subject: x\n\nx\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line = inst.wait_log("uid=");
    let id = line.split(": uid=").next().and_then(|l| l.rsplit(' ').next()).unwrap().to_string();
    wait_for("the picked-up message in a queue", || {
        let lines = envelope_lines(&inst, &id);
        lines.iter().any(|l| l == "recipient: u@customer.example").then_some(lines)
    });
    let lines = envelope_lines(&inst, &id);
    for want in ["dsn_return_flags: 1", "dsn_envelope_id: env-7", "dsn_notify_flags: 4"] {
        assert!(lines.iter().any(|l| l == want), "no {want:?} in {lines:#?}");
    }
    // A bad value is warned about and ignored, as in Postfix.
    let out = run_env("sendmail", &inst.etc, &["-N", "sometimes", "-f", "me@sender.test", "u@customer.example"], b"Subject: y\n\ny\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "sendmail: warning: bad -N option value: 'sometimes' -- ignored\n");
}

/// The MAIL and RCPT command lines the sink got, in order.
fn commands_of(sink: &Sink) -> Vec<String> {
    sink.commands
        .lock()
        .unwrap()
        .iter()
        .map(|l| String::from_utf8_lossy(l).trim_end().to_string())
        .filter(|l| l.starts_with("MAIL FROM:") || l.starts_with("RCPT TO:"))
        .collect()
}

fn send_with_dsn(port: u16, subject: &str) -> String {
    let mut c = Client::connect(port);
    c.cmd("EHLO client.test");
    assert_eq!(c.cmd("MAIL FROM:<s@sender.test> RET=HDRS ENVID=QQ+2B314159"), "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<a@customer.example> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;A+2Bx@customer.example"), "250 2.1.5 Ok");
    // RFC 6533's utf-8 type, in lowercase hex: passed on in Postfix's form.
    assert_eq!(c.cmd("RCPT TO:<b@customer.example> ORCPT=utf-8;B\\x{e9}b@customer.example"), "250 2.1.5 Ok");
    c.cmd("DATA");
    let id = queued_id(&c.cmd(&format!("Subject: {subject}\r\n\r\nbody\r\n.")));
    c.cmd("QUIT");
    id
}

#[test]
fn a_next_hop_that_offers_dsn_gets_the_requests_and_one_that_does_not_gets_none() {
    let sink = Sink::start(free_port());
    sink.extensions.lock().unwrap().push("DSN".into());
    let (inst, port) = Install::mail_system("", sink.port);
    let id = send_with_dsn(port, "to a DSN hop");
    inst.wait_log(&format!("{id}: removed"));
    assert_eq!(
        commands_of(&sink),
        [
            "MAIL FROM:<s@sender.test> ENVID=QQ+2B314159 RET=HDRS",
            "RCPT TO:<a@customer.example> ORCPT=rfc822;A+2Bx@customer.example NOTIFY=SUCCESS,DELAY",
            "RCPT TO:<b@customer.example> ORCPT=utf-8;B\\x{E9}b@customer.example",
        ]
    );
    let m = &sink.messages()[0];
    assert_eq!(
        (m.sender.as_str(), m.recipients.clone()),
        ("s@sender.test", vec!["a@customer.example".to_string(), "b@customer.example".to_string()])
    );
    // That hop reports success itself: none from here.
    assert_eq!(inst.log_count(&format!("{id}: sender delivery status notification")), 0);
    assert_eq!(sink.count(), 1);

    let plain = Sink::start(free_port());
    let (inst, port) = Install::mail_system("", plain.port);
    let id = send_with_dsn(port, "to a plain hop");
    inst.wait_log(&format!("{id}: to=<b@customer.example>"));
    // That hop cannot report success: a asked for it (b did not), so the sender hears it here.
    let n = notice(&plain, &id, "Successful Mail Delivery Report");
    assert_eq!(commands_of(&plain)[..3], ["MAIL FROM:<s@sender.test>", "RCPT TO:<a@customer.example>", "RCPT TO:<b@customer.example>"]);
    assert_eq!((n.sender.as_str(), n.recipients.clone()), ("", vec!["s@sender.test".to_string()]));
    let p = parse_notice(&n.data);
    assert_eq!(p.parts, ["text/plain", "message/delivery-status", "text/rfc822-headers"]);
    assert_eq!(field(&p.status[0], "Original-Envelope-Id"), Some("QQ+314159"));
    assert_eq!(p.status.len(), 2, "one recipient: {:?}", p.status);
    let a = &p.status[1];
    assert_eq!(
        (field(a, "Final-Recipient"), field(a, "Original-Recipient"), field(a, "Action"), field(a, "Status")),
        (Some("rfc822; a@customer.example"), Some("rfc822;A+x@customer.example"), Some("relayed"), Some("2.0.0"))
    );
    let via = format!("delivery via 127.0.0.1[127.0.0.1]:{}: 250 2.0.0 Ok: queued", plain.port);
    assert!(field(a, "Diagnostic-Code").is_some_and(|d| d.contains(&via)), "{a:?}");
    assert!(p.returned.contains("Subject: to a plain hop") && !n.data.contains("\r\nbody\r\n"), "{}", n.data);
    inst.wait_log(&format!("{id}: sender delivery status notification: "));
}

#[test]
fn a_failure_notice_honours_notify_ret_envid_and_orcpt() {
    let sink = Sink::start(free_port());
    let (inst, port) = Install::mail_system("", sink.port);
    let mut c = Client::connect(port);
    c.cmd("EHLO client.test");
    assert_eq!(c.cmd("MAIL FROM:<s@sender.test> RET=HDRS ENVID=QQ+2B314159"), "250 2.1.0 Ok");
    for rcpt in [
        "RCPT TO:<reject-a@customer.example> NOTIFY=FAILURE ORCPT=rfc822;Alias+2Ba@customer.example",
        "RCPT TO:<reject-b@customer.example> NOTIFY=NEVER",
        "RCPT TO:<reject-c@customer.example>",
        "RCPT TO:<reject-d@customer.example> NOTIFY=SUCCESS,DELAY",
        "RCPT TO:<reject-f@customer.example> ORCPT=utf-8;R\\x{e9}f@customer.example",
    ] {
        assert_eq!(c.cmd(rcpt), "250 2.1.5 Ok", "{rcpt}");
    }
    c.cmd("DATA");
    let id = queued_id(&c.cmd("Subject: returned\r\n\r\nsecret body\r\n."));
    // And one whose only recipient wants no notice at all.
    assert_eq!(c.cmd("MAIL FROM:<s@sender.test>"), "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<reject-e@customer.example> NOTIFY=NEVER"), "250 2.1.5 Ok");
    c.cmd("DATA");
    let never = queued_id(&c.cmd("Subject: never\r\n\r\nbody\r\n."));
    c.cmd("QUIT");

    let n = notice(&sink, &id, "Undelivered Mail Returned to Sender");
    assert_eq!((n.sender.as_str(), n.recipients.clone()), ("", vec!["s@sender.test".to_string()]));
    let p = parse_notice(&n.data);
    assert_eq!(p.report_type, "delivery-status");
    assert_eq!(p.parts, ["text/plain", "message/delivery-status", "text/rfc822-headers"]);
    let message = &p.status[0];
    assert!(field(message, "Reporting-MTA").is_some_and(|v| v.starts_with("dns; ")), "{message:?}");
    assert_eq!(field(message, "Original-Envelope-Id"), Some("QQ+314159"));
    let rcpts: Vec<(Option<&str>, Option<&str>, Option<&str>)> =
        p.status[1..].iter().map(|g| (field(g, "Final-Recipient"), field(g, "Original-Recipient"), field(g, "Action"))).collect();
    assert_eq!(
        rcpts,
        [
            (Some("rfc822; reject-a@customer.example"), Some("rfc822;Alias+a@customer.example"), Some("failed")),
            (Some("rfc822; reject-c@customer.example"), Some("rfc822;reject-c@customer.example"), Some("failed")),
            // A 7-bit report: the utf-8 address in its 7-bit form.
            (Some("rfc822; reject-f@customer.example"), Some("utf-8;R\\x{E9}f@customer.example"), Some("failed")),
        ],
        "NEVER and a NOTIFY without FAILURE get no notice"
    );
    assert!(p.status[1..].iter().all(|g| field(g, "Status") == Some("5.1.1")), "{:?}", p.status);
    // RET=HDRS: the headers come back, the body does not.
    assert!(p.returned.contains("Subject: returned"), "{}", p.returned);
    assert!(!n.data.contains("secret body"), "{}", n.data);

    inst.wait_log(&format!("{never}: removed"));
    inst.wait_log(&format!("{id}: removed"));
    assert_eq!(sink.count_containing(&format!("X-Postern-Queue-ID: {never}")), 0, "NOTIFY=NEVER: no notice");
    assert_eq!(inst.log_count(&format!("{never}: sender non-delivery notification")), 0);
}

#[test]
fn one_delay_notice_per_message_after_delay_warning_time_with_a_copy_for_notify_classes_delay() {
    let sink = Sink::start(free_port());
    let fast =
        "delay_warning_time = 1s\nminimal_backoff_time = 1s\nmaximal_backoff_time = 1s\nqueue_run_delay = 1s\nnotify_classes = delay\n";
    let (inst, port) = Install::mail_system(fast, sink.port);
    let mut c = Client::connect(port);
    c.cmd("EHLO client.test");
    assert_eq!(c.cmd("MAIL FROM:<s@sender.test> ENVID=slow-1"), "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<defer-a@customer.example> NOTIFY=DELAY ORCPT=rfc822;A@customer.example"), "250 2.1.5 Ok");
    assert_eq!(c.cmd("RCPT TO:<defer-b@customer.example> NOTIFY=FAILURE"), "250 2.1.5 Ok");
    assert_eq!(c.cmd("RCPT TO:<defer-c@customer.example>"), "250 2.1.5 Ok");
    c.cmd("DATA");
    let id = queued_id(&c.cmd("Subject: slow\r\n\r\nslow body\r\n."));
    c.cmd("QUIT");

    let n = notice(&sink, &id, "Delayed Mail (still being retried)");
    assert_eq!((n.sender.as_str(), n.recipients.clone()), ("", vec!["s@sender.test".to_string()]));
    assert!(n.data.contains("Your message could not be delivered for more than 0 hour(s)."), "{}", n.data);
    let p = parse_notice(&n.data);
    assert_eq!(p.parts, ["text/plain", "message/delivery-status", "text/rfc822-headers"]);
    assert_eq!(field(&p.status[0], "Original-Envelope-Id"), Some("slow-1"));
    let rcpts: Vec<[Option<&str>; 4]> = p.status[1..]
        .iter()
        .map(|g| [field(g, "Final-Recipient"), field(g, "Original-Recipient"), field(g, "Action"), field(g, "Status")])
        .collect();
    assert_eq!(
        rcpts,
        [
            [Some("rfc822; defer-a@customer.example"), Some("rfc822;A@customer.example"), Some("delayed"), Some("4.3.0")],
            [Some("rfc822; defer-c@customer.example"), Some("rfc822;defer-c@customer.example"), Some("delayed"), Some("4.3.0")],
        ],
        "NOTIFY=FAILURE alone gets no delay notice"
    );
    assert!(p.status[1..].iter().all(|g| field(g, "Will-Retry-Until").is_some()), "{:?}", p.status);
    assert!(!n.data.contains("slow body"), "headers only");
    // notify_classes = delay: a copy for the postmaster, about every delayed recipient.
    let copy = notice(&sink, &id, "Postmaster Warning: Delayed Mail");
    let myorigin = text(&inst.cli("postconf", &["-x", "-h", "myorigin"]).stdout).trim().to_string();
    assert_eq!(copy.recipients, [format!("postmaster@{myorigin}")]);
    assert_eq!(parse_notice(&copy.data).status.len(), 4);

    // Later attempts send no second notice, and neither does a restart.
    let tries = |inst: &Install| inst.log_count(&format!("{id}: to=<defer-a@customer.example>"));
    let seen = tries(&inst);
    wait_for("two more attempts", || (tries(&inst) >= seen + 2).then_some(()));
    let mut inst = inst;
    inst.stop();
    inst.start();
    let seen = tries(&inst);
    wait_for("two more attempts after the restart", || (tries(&inst) >= seen + 2).then_some(()));
    assert_eq!(sink.count_containing(&format!("X-Postern-Queue-ID: {id}")), 2, "one notice and one copy");
    assert_eq!(inst.log_count(&format!("{id}: sender delay notification: ")), 1);
}
