//! Probe messages: a queue file in `incoming` from `address_verify_sender` to the address,
//! marked as a probe and with no content (it is never sent), written durably like any other
//! message; the queue manager routes it as it would route mail to that address. The caller
//! then asks the queue manager for an incoming scan.

use common::config::{ConfigError, Params};
use common::queue::file::{ClientInfo, Envelope, QueueError, Recipient, now_us, write_new};
use common::queue::{QueueId, QueueName, Spool};

#[derive(Debug, Clone)]
pub struct ProbeConfig {
    pub spool: Spool,
    /// `address_verify_sender`, qualified with `$myorigin` ("" for `<>` or empty).
    pub sender: String,
}

impl ProbeConfig {
    pub fn from_params(p: &Params) -> Result<ProbeConfig, ConfigError> {
        Ok(ProbeConfig { spool: Spool::from_params(p)?, sender: probe_sender(&p.get("address_verify_sender")?, &p.get("myorigin")?)? })
    }
}

/// Postfix's `make_verify_sender_addr`: `<>` or nothing is the null sender, a bare local part
/// gets `@$myorigin`; a value that starts or ends with `@` is a configuration error.
fn probe_sender(value: &str, myorigin: &str) -> Result<String, ConfigError> {
    let value = value.trim();
    if value.is_empty() || value == "<>" {
        return Ok(String::new());
    }
    if value.starts_with('@') {
        return Err(ConfigError::value("address_verify_sender", format!("value \"{value}\" must not start with '@'")));
    }
    if value.ends_with('@') {
        return Err(ConfigError::value("address_verify_sender", format!("value \"{value}\" must not end with '@'")));
    }
    Ok(if value.contains('@') { value.to_string() } else { format!("{value}@{myorigin}") })
}

/// Queue a probe of `address`; when this returns `Ok`, the file is on disk.
pub fn queue_probe(cfg: &ProbeConfig, address: &str) -> Result<QueueId, QueueError> {
    let envelope = Envelope {
        sender: cfg.sender.clone(),
        recipients: vec![Recipient { address: address.to_string(), ..Default::default() }],
        arrival_us: now_us(),
        client: ClientInfo { name: "localhost".into(), addr: "127.0.0.1".into(), helo: String::new(), protocol: "local".into() },
        verify_probe: true,
        // A UTF-8 address can only be probed at a next hop that offers SMTPUTF8.
        smtputf8: !address.is_ascii(),
        ..Default::default()
    };
    write_new(&cfg.spool, QueueName::Incoming, &envelope, b"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_senders_as_postfix_makes_them() {
        assert_eq!(probe_sender("double-bounce", "mx.example").unwrap(), "double-bounce@mx.example");
        assert_eq!(probe_sender("<>", "mx.example").unwrap(), "");
        assert_eq!(probe_sender("", "mx.example").unwrap(), "");
        assert_eq!(probe_sender("probe@other.example", "mx.example").unwrap(), "probe@other.example");
        assert!(probe_sender("@x", "mx.example").is_err());
        assert!(probe_sender("x@", "mx.example").is_err());
    }

    #[test]
    fn a_probe_is_a_marked_queue_file_without_content() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::new(tmp.path().to_path_buf(), &[], 1);
        spool.create_dirs().unwrap();
        let cfg = ProbeConfig { spool: spool.clone(), sender: "double-bounce@mx.example".into() };
        let id = queue_probe(&cfg, "u@customer.example").unwrap();
        let qf = common::queue::file::read(&spool.path(QueueName::Incoming, &id)).unwrap();
        assert!(qf.envelope.verify_probe);
        assert_eq!(qf.envelope.sender, "double-bounce@mx.example");
        assert_eq!(qf.envelope.recipients[0].address, "u@customer.example");
        assert!(qf.message.is_empty());
    }
}
