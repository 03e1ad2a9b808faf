//! Non-delivery notifications: `bounce_size_limit` caps what is returned of the original,
//! a failed null-sender message goes to the postmaster as a double bounce (never silently
//! dropped), a failed postmaster notification ends there, and remote reply text is made
//! printable before it goes into a notification.

use crate::harness::smtp::{Client, Received, Sink, free_port, queued_id};
use crate::harness::{Install, wait_for};

fn send(port: u16, from: &str, to: &str, body: &str) -> String {
    let mut c = Client::connect(port);
    c.cmd("EHLO client.test");
    let reply = c.send_mail(from, &[to], body);
    assert!(reply.starts_with("250 "), "{reply}");
    queued_id(&reply)
}

/// The notification the sink received for the original `id`.
fn notification(sink: &Sink, id: &str) -> Received {
    wait_for("the notification at the sink", || sink.messages().into_iter().find(|m| m.data.contains(&format!("X-Postern-Queue-ID: {id}"))))
}

#[test]
fn bounce_size_limit_returns_small_messages_whole_and_large_ones_as_headers() {
    let sink = Sink::start(free_port());
    let (inst, port) = Install::mail_system("bounce_size_limit = 2000\n", sink.port);
    let small = send(port, "s@sender.test", "reject-small@customer.example", &format!("Subject: small\n\n{}\n", "s".repeat(500)));
    let large = send(port, "s@sender.test", "reject-large@customer.example", &format!("Subject: large\n\n{}\n", "L".repeat(5000)));
    let n = notification(&sink, &small);
    assert_eq!(n.sender, "", "a notification has the null sender");
    assert_eq!(n.recipients, vec!["s@sender.test".to_string()]);
    assert!(n.data.contains("Content-Type: message/rfc822\r\n\r\nReturn-Path: <s@sender.test>\r\n"), "{}", n.data);
    assert!(n.data.contains(&"s".repeat(500)), "the whole original fits: {}", n.data);
    let n = notification(&sink, &large);
    assert!(n.data.contains("Content-Type: text/rfc822-headers\r\n"), "{}", n.data);
    assert!(n.data.contains("Subject: large\r\n"), "{}", n.data);
    assert!(!n.data.contains("LLLL"), "the body of a message over the limit is not returned");
    assert!(n.data.len() < 2000 + 3000, "{} bytes", n.data.len());
    inst.wait_log(&format!("{large}: removed"));
}

#[test]
fn remote_reply_text_in_a_bounce_is_made_printable() {
    let sink = Sink::start(free_port());
    *sink.reject_reply.lock().unwrap() = Some(b"550 5.1.1 no such user\x1b[2J\x07 here\x7f".to_vec());
    let (_inst, port) = Install::mail_system("", sink.port);
    let id = send(port, "s@sender.test", "reject-me@customer.example", "Subject: x\n\nbody\n");
    let n = notification(&sink, &id);
    assert!(n.data.contains("550 5.1.1 no such user?[2J? here?"), "{}", n.data);
    assert!(!n.data.contains('\x1b') && !n.data.contains('\x07') && !n.data.contains('\x7f'), "{:?}", n.data);
}

#[test]
fn a_failed_notification_goes_to_the_postmaster_and_a_failed_postmaster_copy_ends_there() {
    let sink = Sink::start(free_port());
    let (inst, port) = Install::mail_system("notify_classes = resource, software, 2bounce\nmyorigin = mx.example\n", sink.port);
    // A null-sender message (a notification from elsewhere) that bounces.
    let id = send(port, "", "reject-me@customer.example", "Subject: a bounce\n\nsorry\n");
    let line = inst.wait_log(&format!("{id}: postmaster non-delivery notification: "));
    let double = line.rsplit(' ').next().unwrap().to_string();
    let n = notification(&sink, &id);
    assert_eq!(n.sender, "double-bounce@mx.example");
    assert_eq!(n.recipients, vec!["postmaster@mx.example".to_string()]);
    assert!(n.data.contains("Subject: Postmaster Copy: Undelivered Mail\r\n"), "{}", n.data);
    assert!(n.data.contains("Subject: a bounce\r\n"), "the original is included: {}", n.data);
    inst.wait_log(&format!("{double}: removed"));
    assert_eq!(inst.log_count("sender non-delivery notification"), 0, "nothing goes back to the null sender");
    drop(inst);

    // The postmaster copy itself cannot be delivered: it is discarded with a warning.
    let (inst, port) = Install::mail_system(
        "notify_classes = 2bounce\nmyorigin = mx.example\n2bounce_notice_recipient = reject-postmaster@customer.example\n",
        sink.port,
    );
    let id = send(port, "", "reject-me@customer.example", "Subject: again\n\nsorry\n");
    let line = inst.wait_log(&format!("{id}: postmaster non-delivery notification: "));
    let double = line.rsplit(' ').next().unwrap().to_string();
    inst.wait_log(&format!("warning: {double}: undeliverable postmaster notification discarded"));
    inst.wait_log(&format!("{double}: removed"));
    drop(inst);

    // Without 2bounce in notify_classes (Postfix's default) the failure is logged, not silent.
    let (inst, port) = Install::mail_system("", sink.port);
    let id = send(port, "", "reject-me@customer.example", "Subject: third\n\nsorry\n");
    inst.wait_log(&format!("{id}: undeliverable non-delivery notification discarded"));
    inst.wait_log(&format!("{id}: removed"));
}

#[test]
fn notify_classes_bounce_copies_the_postmaster_and_bounce_template_file_replaces_the_texts() {
    let sink = Sink::start(free_port());
    let templates = tempfile::tempdir().unwrap();
    let file = templates.path().join("bounce.cf");
    std::fs::write(
        &file,
        "failure_template = <<EOF\nCharset: utf-8\nFrom: bounces (Bounce Robot)\nSubject: Nicht zustellbar\n\
         Postmaster-Subject: Kopie: nicht zustellbar\n\nHier ist $myhostname: leider nicht zugestellt, Grüße.\nEOF\n",
    )
    .unwrap();
    let (inst, port) = Install::mail_system(
        &format!(
            "notify_classes = resource, software, bounce\nmyorigin = mx.example\nbounce_notice_recipient = pm-copy@mx.example\n\
             bounce_template_file = {}\n",
            file.display()
        ),
        sink.port,
    );
    let id = send(port, "s@sender.test", "reject-me@customer.example", "Message-ID: <orig.1@sender.test>\nSubject: lost\n\nthe body\n");
    let sender_line = inst.wait_log(&format!("{id}: sender non-delivery notification: "));
    let copy_line = inst.wait_log(&format!("{id}: postmaster non-delivery notification: "));
    let (notice_id, copy_id) = (sender_line.rsplit(' ').next().unwrap(), copy_line.rsplit(' ').next().unwrap());
    let at = |to: &str| {
        wait_for("the notification at the sink", || {
            sink.messages().into_iter().find(|m| m.recipients == [to.to_string()] && m.data.contains(&format!("X-Postern-Queue-ID: {id}")))
        })
    };

    let n = at("s@sender.test");
    assert_eq!(n.sender, "");
    let head = n.data.split("\r\n\r\n").next().unwrap();
    assert!(head.starts_with("Received: by "), "{head}");
    assert!(head.contains(&format!("\tid {notice_id}; ")), "{head}");
    assert!(head.contains("\r\nFrom: bounces@mx.example (Bounce Robot)\r\nSubject: Nicht zustellbar\r\nTo: s@sender.test\r\n"), "{head}");
    assert!(
        head.contains("\r\nReferences: <orig.1@sender.test>\r\nIn-Reply-To: <orig.1@sender.test>\r\nAuto-Submitted: auto-replied\r\n"),
        "{head}"
    );
    let message_id = head.split("\r\nMessage-Id: ").nth(1).expect("a Message-Id").split("\r\n").next().unwrap();
    inst.wait_log(&format!("{notice_id}: message-id={message_id}"));
    assert!(n.data.contains("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nHier ist "), "{}", n.data);
    assert!(!n.data.contains("I'm sorry"), "the built-in text is replaced: {}", n.data);
    assert!(n.data.contains("the body"), "the sender gets the whole original");

    let copy = at("pm-copy@mx.example");
    assert_eq!(copy.sender, "double-bounce@mx.example");
    assert!(copy.data.contains("\r\nSubject: Kopie: nicht zustellbar\r\n"), "{}", copy.data);
    assert!(copy.data.contains("\r\nAuto-Submitted: auto-generated\r\n"), "{}", copy.data);
    assert!(copy.data.contains("Final-Recipient: rfc822; reject-me@customer.example\r\n"), "{}", copy.data);
    assert!(copy.data.contains("Content-Type: text/rfc822-headers\r\n") && copy.data.contains("Subject: lost\r\n"), "{}", copy.data);
    assert!(!copy.data.contains("the body") && !copy.data.contains("Hier ist"), "headers only, no boilerplate: {}", copy.data);
    inst.wait_log(&format!("{copy_id}: removed"));
}

#[test]
fn a_bad_bounce_template_file_is_refused_by_postfix_check_with_its_line() {
    let templates = tempfile::tempdir().unwrap();
    let file = templates.path().join("bounce.cf");
    std::fs::write(&file, "# templates\nfailure_templat = <<EOF\nSubject: x\n\ntext\nEOF\n").unwrap();
    let inst = Install::new(&format!("bounce_template_file = {}\n", file.display()), "");
    let out = inst.cli("postfix", &["check"]);
    let err = crate::harness::text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&format!("bounce_template_file: {}, line 2: unknown template name: failure_templat", file.display())), "{err}");
}
