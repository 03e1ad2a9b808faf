//! SMTP command lines: the input split at LF is a session's commands. Checked: no panic, and
//! every reply line is a code followed by text without line breaks.
#![no_main]

use std::sync::OnceLock;

use common::config::{MainCf, Params};
use libfuzzer_sys::fuzz_target;
use smtpd::config::SmtpdConfig;
use smtpd::session::{Peer, Session, Step};

fn config() -> &'static SmtpdConfig {
    static CFG: OnceLock<(tempfile::TempDir, SmtpdConfig)> = OnceLock::new();
    &CFG.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = format!("queue_directory = {}\nmyhostname = mx.test\nrelay_domains = customer.example\n", dir.path().display());
        let main = MainCf::parse(&text, &dir.path().join("main.cf")).expect("main.cf");
        let p = Params::from_parts(dir.path(), main, &[("service_name".into(), "smtpd".into())]);
        let cfg = SmtpdConfig::from_params(&p, Some(10)).expect("config");
        (dir, cfg)
    })
    .1
}

fuzz_target!(|data: &[u8]| {
    let cfg = config();
    let mut s = Session::new(cfg, Peer { name: "client".into(), addr: "192.0.2.1".parse().expect("address") });
    for line in data.split(|&b| b == b'\n') {
        let reply = match s.command(line).1 {
            Step::Reply(r) | Step::Close(r) | Step::StartTls(r) => r.to_string(),
            Step::Data(_) | Step::Etrn { .. } | Step::Auth { .. } => continue,
        };
        for l in reply.split("\r\n") {
            assert!(l.len() >= 3 && l.as_bytes()[..3].iter().all(u8::is_ascii_digit), "{reply:?}");
            assert!(!l.contains(['\r', '\n']), "{reply:?}");
        }
    }
});
