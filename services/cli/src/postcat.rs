//! postcat - show Postern queue file contents
//!
//! # Synopsis
//! `postcat [-bdefhqv] [-c config_dir] [files...]`
//!
//! # Description
//! Prints queue files in Postfix's postcat layout: the envelope records (`sender:`,
//! `recipient:`, `original_recipient:`, `message_arrival_time:`, the client as
//! `named_attribute: log_client_name=...`, and the DSN requests as `dsn_return_flags:`,
//! `dsn_envelope_id:`, `dsn_notify_flags:` and `dsn_original_recipient:` with Postfix's
//! numbers, and `sender_fullname:` for a local submission's full name), then the message between `*** MESSAGE CONTENTS
//! path ***` and `*** HEADER EXTRACTED path ***`, then `*** MESSAGE FILE END path ***`.
//! A recipient whose delivery is finished (sent or bounced) is shown as `done_recipient:`.
//!
//! * `-e`: the envelope; `-h`: the message header, up to the first line that is not a header
//!   line; `-b`: the message body, from that line on. Without any of them, all three (`-beh`).
//! * `-q`: the operands are queue IDs, looked up in `maildrop`, `incoming`, `active`,
//!   `deferred` and `hold` (in that order) below `queue_directory`.
//! * `-f`: prefix every line with the file name.
//! * `-v`: also show the recorded delivery results (`delivery_result: <recipient> dsn=...
//!   status=... (text)`) after the extracted header marker.
//! * `-c config_dir` (or `MAIL_CONFIG`): the configuration directory, for `-q`.
//!
//! Without operands, a queue file is read from standard input. `-d`, `-o`, `-r` and `-s`
//! describe Postfix's record encoding, which Postern's queue files do not have; they are
//! refused.
//!
//! # Diagnostics
//! Exit status 0 when every file was shown, 1 otherwise: `postcat: fatal: open queue file ID:
//! No such file or directory`, `postcat: warning: path: input is not a valid queue file: ...`,
//! and the usage line for a bad option.
//!
//! # Configuration parameters
//! `queue_directory`, `hash_queue_depth`, `hash_queue_names`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use common::config::{self, Params};
use common::queue::file::{self, Outcome, QueueError, QueueFile};
use common::queue::maildrop::{self, MaildropError};
use common::queue::{QueueId, QueueName, Spool};

use crate::Fatal;
use crate::getopt::{Arg, getopt};

const USAGE: &str = "usage: postcat [-b (body text)] [-c config_dir] [-e (envelope records)] [-f (file name)] [-h (header text)] [-q (access queue)] [-v] [file(s)...]";

/// The queues `-q` searches, in Postfix's order.
const SEARCHED: [QueueName; 5] = [QueueName::Maildrop, QueueName::Incoming, QueueName::Active, QueueName::Deferred, QueueName::Hold];

/// What to show.
#[derive(Debug, Clone, Copy, Default)]
pub struct Show {
    pub envelope: bool,
    pub header: bool,
    pub body: bool,
    pub file_names: bool,
    pub results: bool,
}

fn fatal(text: impl Into<String>) -> Fatal {
    Fatal::new(1, text)
}

fn asctime(us: u64) -> String {
    common::datetime::asctime(common::datetime::from_us(us))
}

/// Whether `line` is a header line (`Name:`), as Postfix's `is_header`.
fn is_header(line: &[u8]) -> bool {
    let name_len = line.iter().take_while(|&&b| b > b' ' && b < 0x7f && b != b':').count();
    name_len > 0 && line.get(name_len..).is_some_and(|rest| rest.iter().find(|&&b| b != b' ' && b != b'\t') == Some(&b':'))
}

/// The text of one queue file in postcat's layout.
pub fn format(qf: &QueueFile, name: &str, show: Show) -> Vec<u8> {
    let mut out = Vec::new();
    let prefix = if show.file_names { format!("{name}: ") } else { String::new() };
    let line = |out: &mut Vec<u8>, text: &[u8]| {
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(text);
        out.push(b'\n');
    };
    let env = &qf.envelope;
    if show.envelope {
        line(&mut out, format!("*** ENVELOPE RECORDS {name} ***").as_bytes());
        line(&mut out, format!("message_size: {:>16} {:>15}", qf.message.len(), env.recipients.len()).as_bytes());
        line(&mut out, format!("message_arrival_time: {}", asctime(env.arrival_us)).as_bytes());
        for (attr, value) in [
            ("log_client_name", &env.client.name),
            ("log_client_address", &env.client.addr),
            ("log_helo_name", &env.client.helo),
            ("log_protocol_name", &env.client.protocol),
        ] {
            if !value.is_empty() {
                line(&mut out, format!("named_attribute: {attr}={value}").as_bytes());
            }
        }
        if let Some(ret) = env.ret {
            line(&mut out, format!("dsn_return_flags: {}", ret.code()).as_bytes());
        }
        if let Some(envid) = &env.envid {
            line(&mut out, format!("dsn_envelope_id: {envid}").as_bytes());
        }
        if let Some(name) = &env.fullname {
            line(&mut out, format!("sender_fullname: {name}").as_bytes());
        }
        line(&mut out, format!("sender: {}", env.sender).as_bytes());
        for (i, r) in env.recipients.iter().enumerate() {
            if let Some(notify) = r.notify {
                line(&mut out, format!("dsn_notify_flags: {}", notify.bits()).as_bytes());
            }
            if let Some(orcpt) = &r.orcpt {
                line(&mut out, format!("dsn_original_recipient: {orcpt}").as_bytes());
            }
            if let Some(orig) = &r.orig {
                line(&mut out, format!("original_recipient: {orig}").as_bytes());
            }
            let done = qf.last_result(i).is_some_and(|x| x.outcome != Outcome::Deferred);
            line(&mut out, format!("{}: {}", if done { "done_recipient" } else { "recipient" }, r.address).as_bytes());
        }
        line(&mut out, format!("*** MESSAGE CONTENTS {name} ***").as_bytes());
    }
    if show.header || show.body {
        let text = qf.message.strip_suffix(b"\n").unwrap_or(&qf.message);
        let mut in_header = true;
        for l in text.split(|&b| b == b'\n') {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            if in_header && !is_header(l) && !(l.first().is_some_and(|&b| b == b' ' || b == b'\t')) {
                in_header = false;
                if !show.body {
                    break;
                }
            }
            if (in_header && show.header) || (!in_header && show.body) {
                line(&mut out, l);
            }
        }
    }
    if show.envelope {
        line(&mut out, format!("*** HEADER EXTRACTED {name} ***").as_bytes());
        if show.results {
            for r in &qf.results {
                let rcpt = env.recipients.get(r.index).map_or("?", |x| x.address.as_str());
                line(&mut out, format!("delivery_result: {rcpt} dsn={}, status={} ({})", r.dsn, r.outcome.status(), r.text).as_bytes());
            }
        }
        line(&mut out, format!("*** MESSAGE FILE END {name} ***").as_bytes());
    }
    out
}

/// Find queue file `id`: its path and the name postcat shows (`deferred/ID`).
fn find(spool: &Spool, id: &str) -> Option<(Option<QueueName>, PathBuf, String)> {
    let id = QueueId::parse(id).ok()?;
    SEARCHED.iter().find_map(|&q| {
        let path = spool.path(q, &id);
        path.is_file().then(|| (Some(q), path, format!("{}/{id}", q.as_str())))
    })
}

/// A file postcat cannot show (a warning; the other operands are still shown).
#[derive(Debug, thiserror::Error)]
enum Unreadable {
    #[error("{}: input is not a valid queue file: {source}", path.display())]
    Queue { path: PathBuf, source: QueueError },
    #[error("{}: input is not a valid queue file: {source}", path.display())]
    Maildrop { path: PathBuf, source: MaildropError },
}

fn read(queue: Option<QueueName>, path: &Path) -> Result<QueueFile, Unreadable> {
    if queue == Some(QueueName::Maildrop) {
        maildrop::read(path, None).map(|m| m.file).map_err(|source| Unreadable::Maildrop { path: path.to_path_buf(), source })
    } else {
        file::read(path).map_err(|source| Unreadable::Queue { path: path.to_path_buf(), source })
    }
}

/// Run postcat; writes to `w`, returns the exit status.
pub fn run(args: &[String], w: &mut dyn Write) -> Result<u8, Fatal> {
    let parsed = getopt(args, "befhqv", "c").map_err(|e| fatal(format!("{e}\n{USAGE}")))?;
    let (mut show, mut queue_ids, mut config_dir, mut operands) = (Show::default(), false, None, Vec::new());
    for a in parsed {
        match a {
            Arg::Flag('b') => show.body = true,
            Arg::Flag('e') => show.envelope = true,
            Arg::Flag('h') => show.header = true,
            Arg::Flag('f') => show.file_names = true,
            Arg::Flag('q') => queue_ids = true,
            Arg::Flag('v') => show.results = true,
            Arg::Opt('c', d) => config_dir = Some(PathBuf::from(d)),
            Arg::Operand(o) => operands.push(o),
            _ => return Err(fatal(USAGE)),
        }
    }
    if !(show.body || show.envelope || show.header) {
        (show.body, show.envelope, show.header) = (true, true, true);
    }
    if queue_ids && operands.is_empty() {
        return Err(fatal(USAGE));
    }
    let mut status = 0;
    let emit =
        |w: &mut dyn Write, qf: &QueueFile, name: &str| w.write_all(&format(qf, name, show)).map_err(|e| fatal(format!("write: {e}")));
    if operands.is_empty() {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes).map_err(|e| fatal(format!("read standard input: {e}")))?;
        let qf = file::decode(&bytes, Path::new("stdin")).map_err(|e| fatal(format!("stdin: input is not a valid queue file: {e}")))?;
        emit(w, &qf, "stdin")?;
        return Ok(0);
    }
    let spool = if queue_ids {
        let dir = config::config_dir(config_dir);
        let p = Params::load(&dir, &[]).map_err(|e| fatal(e.to_string()))?;
        Some(Spool::from_params(&p).map_err(|e| fatal(e.to_string()))?)
    } else {
        None
    };
    for o in &operands {
        let (queue, path, name) = match &spool {
            Some(spool) => find(spool, o).ok_or_else(|| fatal(format!("open queue file {o}: No such file or directory")))?,
            None => (None, PathBuf::from(o), o.clone()),
        };
        match read(queue, &path) {
            Ok(qf) => emit(w, &qf, &name)?,
            Err(e) => {
                eprintln!("postcat: warning: {e}");
                status = 1;
            }
        }
    }
    Ok(status)
}
