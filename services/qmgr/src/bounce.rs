//! Non-delivery notifications (RFC 3464 multipart/report) to the sender of a message whose
//! recipients bounced or expired. A notification is itself queued mail with the null sender,
//! so it is never bounced again.

use std::time::SystemTime;

use common::datetime::{from_us, rfc5322};
use common::queue::file::{ClientInfo, Envelope, QueueError, Recipient, now_us, write_new};
use common::queue::{QueueId, QueueName, Spool};

/// One failed recipient.
#[derive(Debug, Clone)]
pub struct Failed {
    pub address: String,
    pub dsn: String,
    pub text: String,
}

/// The headers of the original message (up to the first empty line).
fn headers_of(message: &[u8]) -> &[u8] {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
        .or_else(|| message.windows(2).position(|w| w == b"\n\n").map(|p| p + 1));
    &message[..end.unwrap_or(message.len())]
}

/// Build the notification text.
pub fn build(myhostname: &str, queue_id: &QueueId, original_sender: &str, arrival_us: u64, failed: &[Failed], message: &[u8]) -> Vec<u8> {
    let boundary = format!("{queue_id}.{}/{myhostname}", now_us() / 1_000_000);
    let mut out = String::new();
    out.push_str(&format!("From: MAILER-DAEMON@{myhostname} (Mail Delivery System)\r\n"));
    out.push_str(&format!("To: {original_sender}\r\n"));
    out.push_str("Subject: Undelivered Mail Returned to Sender\r\n");
    out.push_str(&format!("Date: {}\r\n", rfc5322(SystemTime::now())));
    out.push_str("Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n");
    out.push_str(&format!("Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\r\n"));
    out.push_str("This is a MIME-encapsulated message.\r\n\r\n");
    out.push_str(&format!("--{boundary}\r\nContent-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"));
    out.push_str(&format!("This is the mail system at host {myhostname}.\r\n\r\n"));
    out.push_str("I'm sorry to have to inform you that your message could not\r\nbe delivered to one or more recipients.\r\n\r\n");
    for f in failed {
        out.push_str(&format!("<{}>: {}\r\n", f.address, f.text));
    }
    out.push_str(&format!("\r\n--{boundary}\r\nContent-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n"));
    out.push_str(&format!(
        "Reporting-MTA: dns; {myhostname}\r\nX-Postern-Queue-ID: {queue_id}\r\nArrival-Date: {}\r\n",
        rfc5322(from_us(arrival_us))
    ));
    for f in failed {
        out.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: failed\r\nStatus: {}\r\nDiagnostic-Code: X-Postern; {}\r\n",
            f.address, f.dsn, f.text
        ));
    }
    out.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Description: Undelivered Message Headers\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    ));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(headers_of(message));
    bytes.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    bytes
}

/// Queue a notification to `sender` in `incoming`; returns its queue ID.
pub fn queue_notification(
    spool: &Spool,
    myhostname: &str,
    queue_id: &QueueId,
    sender: &str,
    arrival_us: u64,
    failed: &[Failed],
    message: &[u8],
) -> Result<QueueId, QueueError> {
    let body = build(myhostname, queue_id, sender, arrival_us, failed, message);
    let env = Envelope {
        sender: String::new(),
        recipients: vec![Recipient { address: sender.to_string(), orig: None }],
        arrival_us: now_us(),
        client: ClientInfo { name: "localhost".into(), addr: "127.0.0.1".into(), helo: String::new(), protocol: "local".into() },
    };
    write_new(spool, QueueName::Incoming, &env, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_shape() {
        let id = QueueId::parse("ABC123").unwrap();
        let failed = [Failed { address: "u@example.net".into(), dsn: "5.1.1".into(), text: "host said: 550 no such user".into() }];
        let msg = b"Subject: hi\r\nFrom: s@example.org\r\n\r\nsecret body\r\n";
        let text = String::from_utf8(build("mx.example", &id, "s@example.org", 0, &failed, msg)).unwrap();
        assert!(text.contains("Content-Type: multipart/report; report-type=delivery-status;"));
        assert!(text.contains("Final-Recipient: rfc822; u@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n"));
        assert!(text.contains("Subject: hi\r\n"));
        assert!(!text.contains("secret body"), "only the headers are returned");
    }
}
