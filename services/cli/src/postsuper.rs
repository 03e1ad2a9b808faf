//! postsuper - Postern superintendent
//!
//! # Synopsis
//! `postsuper [-v] [-c config_dir] [-d queue_id] [-h queue_id] [-H queue_id] [-r queue_id] [queue...]`
//!
//! # Description
//! Maintenance of the queue, on the queue files directly (the queue manager copes with files
//! that vanish under it). Run as root, it does the work as `mail_owner`, as Postfix's does.
//!
//! * `-d queue_id`: delete the message.
//! * `-h queue_id`: put the message on hold (into the `hold` queue): no delivery attempts.
//! * `-H queue_id`: release the message from hold.
//! * `-r queue_id`: requeue the message: move it to `incoming` with its times set to now.
//!
//! `queue_id` is a queue ID, `ALL` (every message), or `-` to read IDs from standard input, one
//! per line. Options may repeat. The named queues (`incoming`, `active`, `deferred`, `hold`,
//! `maildrop`) limit the search; without them the usual queues are searched. Each action is
//! logged, and a count is printed as Postfix does (`postsuper: Deleted: 1 message`).
//!
//! # Diagnostics
//! Exit status 0 on success, 1 on a fatal error (bad option, bad queue ID, unreadable queue).
//!
//! # Configuration parameters
//! `queue_directory`, `mail_owner`.

use std::io::BufRead;
use std::time::SystemTime;

use common::config::users::MailOwner;
use common::config::{self, Params};
use common::ipc::endpoint::{Class, service_path};
use common::ipc::trigger::Trigger;
use common::ipc::trigger_client::trigger_blocking;
use common::queue::{QueueId, QueueName, Spool};
use common::{log_info, maillog};

use crate::Fatal;
use crate::getopt::{Arg, getopt};

const USAGE: &str = "usage: postsuper [-c config_dir] [-d queue_id] [-h queue_id] [-H queue_id] [-r queue_id] [queue...]";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Delete,
    Hold,
    Release,
    Requeue,
}

impl Op {
    /// Where each operation looks by default, and what it says.
    fn queues(self) -> &'static [QueueName] {
        match self {
            Op::Delete => &[QueueName::Hold, QueueName::Incoming, QueueName::Active, QueueName::Deferred, QueueName::Maildrop],
            Op::Hold => &[QueueName::Incoming, QueueName::Active, QueueName::Deferred],
            Op::Release => &[QueueName::Hold],
            Op::Requeue => &[QueueName::Incoming, QueueName::Active, QueueName::Deferred, QueueName::Hold],
        }
    }

    fn words(self) -> (&'static str, &'static str) {
        match self {
            Op::Delete => ("removed", "Deleted"),
            Op::Hold => ("placed on hold", "Placed on hold"),
            Op::Release => ("released from hold", "Released from hold"),
            Op::Requeue => ("requeued", "Requeued"),
        }
    }
}

fn touch_now(path: &std::path::Path) {
    let now = SystemTime::now();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.set_times(std::fs::FileTimes::new().set_accessed(now).set_modified(now));
    }
}

/// Apply `op` to `id` in the first of `queues` that has it; true when done.
fn apply(spool: &Spool, op: Op, id: &QueueId, queues: &[QueueName]) -> bool {
    for &q in queues {
        let path = spool.path(q, id);
        if !path.exists() {
            continue;
        }
        let ok = match op {
            Op::Delete => std::fs::remove_file(&path).is_ok(),
            Op::Hold => q == QueueName::Hold || spool.move_file(id, q, QueueName::Hold).unwrap_or(false),
            Op::Release => {
                let ok = spool.move_file(id, QueueName::Hold, QueueName::Deferred).unwrap_or(false);
                touch_now(&spool.path(QueueName::Deferred, id));
                ok
            }
            Op::Requeue => {
                let ok = q == QueueName::Incoming || spool.move_file(id, q, QueueName::Incoming).unwrap_or(false);
                touch_now(&spool.path(QueueName::Incoming, id));
                ok
            }
        };
        if ok {
            log_info!("{id}: {}", op.words().0);
            return true;
        }
    }
    false
}

/// Run postsuper; returns the exit status.
pub fn run(args: &[String], stdin: &mut dyn BufRead) -> Result<u8, Fatal> {
    let parsed = getopt(args, "v", "cdhHr").map_err(|e| Fatal::new(1, format!("{e}\n{USAGE}")))?;
    let mut config_dir = None;
    let mut requests: Vec<(Op, String)> = Vec::new();
    let mut queue_args = Vec::new();
    for a in parsed {
        match a {
            Arg::Opt('c', d) => config_dir = Some(d.into()),
            Arg::Opt('d', id) => requests.push((Op::Delete, id)),
            Arg::Opt('h', id) => requests.push((Op::Hold, id)),
            Arg::Opt('H', id) => requests.push((Op::Release, id)),
            Arg::Opt('r', id) => requests.push((Op::Requeue, id)),
            Arg::Operand(q) => queue_args.push(QueueName::parse(&q).ok_or_else(|| Fatal::new(1, format!("invalid directory name: {q}")))?),
            _ => {}
        }
    }
    if requests.is_empty() {
        return Err(Fatal::new(1, USAGE));
    }
    let dir = config::config_dir(config_dir);
    let p = Params::load(&dir, &[]).map_err(|e| Fatal::new(1, e.to_string()))?;
    maillog::init_from_params(&p, "postsuper", true);
    let spool = Spool::from_params(&p).map_err(|e| Fatal::new(1, e.to_string()))?;
    // Root never acts on paths that mail_owner controls: the queue is mail_owner's, so the
    // work is done as mail_owner, as Postfix's postsuper does.
    if nix::unistd::geteuid().is_root()
        && let Some(owner) = MailOwner::from_params(&p).map_err(|e| Fatal::new(1, e.to_string()))?
    {
        owner.become_user().map_err(|e| Fatal::new(1, format!("cannot become mail_owner {}: {e}", owner.name)))?;
    }
    let mut stdin_ids: Option<Vec<String>> = None;
    let mut requeued = 0;
    for (op, id) in requests {
        let queues: Vec<QueueName> = if queue_args.is_empty() { op.queues().to_vec() } else { queue_args.clone() };
        let ids: Vec<QueueId> = match id.as_str() {
            "ALL" => queues.iter().flat_map(|q| spool.list(*q).unwrap_or_default()).collect(),
            "-" => {
                let lines = stdin_ids.get_or_insert_with(|| stdin.lines().map_while(Result::ok).collect());
                lines.iter().filter_map(|l| QueueId::parse(l.trim()).ok()).collect()
            }
            one => vec![QueueId::parse(one).map_err(|_| Fatal::new(1, format!("invalid queue id: {one}")))?],
        };
        let done = ids.iter().filter(|id| apply(&spool, op, id, &queues)).count();
        if done > 0 {
            log_info!("{}: {done} message{}", op.words().1, if done == 1 { "" } else { "s" });
        }
        if op == Op::Requeue {
            requeued += done;
        }
    }
    if requeued > 0 {
        // Requeued mail is in incoming: a running queue manager takes it now, not at the next
        // start; a system that is down takes it when it starts.
        let qmgr = service_path(&spool.root, Class::Public, &p.get("queue_service_name").map_err(|e| Fatal::new(1, e.to_string()))?);
        let wait = p.time("trigger_timeout").map_err(|e| Fatal::new(1, e.to_string()))?;
        let _ = trigger_blocking(&qmgr, &[Trigger::ScanIncoming], wait);
    }
    Ok(0)
}
