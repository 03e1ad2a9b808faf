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
