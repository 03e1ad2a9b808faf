//! Test fixtures shared by the modules' unit tests: a spool in a temporary directory and
//! real queue files in it.

use std::path::Path;

use common::config::{MainCf, Params};
use common::queue::file::{ClientInfo, Envelope, Recipient, now_us, write_new};
use common::queue::{QueueId, QueueName, Spool};

use crate::config::QmgrConfig;

/// The configuration of a queue manager whose spool is `dir` (created), plus `extra` main.cf lines.
pub fn config(dir: &Path, extra: &str) -> QmgrConfig {
    let text = format!("queue_directory = {}\n{extra}", dir.display());
    let main = MainCf::parse(&text, Path::new("main.cf")).unwrap();
    let cfg = QmgrConfig::from_params(&Params::from_parts(Path::new("/tmp"), main, &[])).unwrap();
    cfg.spool.create_dirs().unwrap();
    cfg
}

/// Queue a small message from `sender` to `rcpts` in `queue`.
pub fn queue_message(spool: &Spool, queue: QueueName, sender: &str, rcpts: &[&str]) -> QueueId {
    queue_file(spool, queue, sender, rcpts, false)
}

/// Queue an address verification probe of `rcpt` in `incoming`, as the verify service does.
pub fn queue_probe(spool: &Spool, rcpt: &str) -> QueueId {
    queue_file(spool, QueueName::Incoming, "double-bounce@mx.example", &[rcpt], true)
}

fn queue_file(spool: &Spool, queue: QueueName, sender: &str, rcpts: &[&str], verify_probe: bool) -> QueueId {
    let env = Envelope {
        sender: sender.into(),
        recipients: rcpts.iter().map(|r| Recipient { address: r.to_string(), ..Default::default() }).collect(),
        arrival_us: now_us(),
        client: ClientInfo { name: "localhost".into(), addr: "127.0.0.1".into(), helo: String::new(), protocol: "local".into() },
        verify_probe,
        ..Default::default()
    };
    write_new(spool, queue, &env, b"Subject: t\r\n\r\nbody\r\n").unwrap()
}
