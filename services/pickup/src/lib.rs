//! pickup - Postern local mail pickup
//!
//! # Synopsis
//! `pickup unix n - n 60 1 pickup` in master.cf.
//!
//! # Description
//! Copies mail that `sendmail` wrote into `maildrop` (durably, so submission works while the mail
//! system is down) into `incoming` as a new queue file owned by the mail system, removes the
//! maildrop file, and tells the queue manager. It runs on every master wakeup
//! and whenever it is triggered (`sendmail` triggers it after each submission). A file that is
//! not a complete queue file is removed with a warning: maildrop is writable by every local
//! user, so nothing there is trusted until it parses.
//!
//! # Diagnostics
//! `<id>: uid=<uid> from=<sender>`, `warning: <id>: removing malformed maildrop file: ...`.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use common::ipc::client::call;
use common::ipc::qmgr::{QmgrProtocol, QmgrTrigger};
use common::queue::file;
use common::queue::{QueueName, Spool};
use common::{log_info, log_warning};

/// Move every complete maildrop file to incoming; returns how many were moved.
pub fn pickup_all(spool: &Spool) -> usize {
    let ids = match spool.list(QueueName::Maildrop) {
        Ok(ids) => ids,
        Err(e) => {
            log_warning!("scan {}: {e}", spool.queue_dir(QueueName::Maildrop).display());
            return 0;
        }
    };
    let mut moved = 0;
    for id in ids {
        let path = spool.path(QueueName::Maildrop, &id);
        let uid = std::fs::metadata(&path).map(|m| m.uid()).unwrap_or(u32::MAX);
        match file::read(&path) {
            // A copy, not a rename: the new file belongs to the mail system (the submitter owns
            // the maildrop file) and gets a fresh queue ID, as Postfix's cleanup does.
            Ok(qf) => match file::write_new(spool, QueueName::Incoming, &qf.envelope, &qf.message) {
                Ok(new_id) => {
                    log_info!("{new_id}: uid={uid} from=<{}>", qf.envelope.sender);
                    if let Err(e) = std::fs::remove_file(&path) {
                        log_warning!("{id}: remove maildrop file: {e}");
                    }
                    moved += 1;
                }
                Err(e) => log_warning!("{id}: copy from maildrop to incoming: {e}"),
            },
            Err(e) => {
                log_warning!("{id}: removing malformed maildrop file: {e}");
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    moved
}

/// Tell the queue manager that new mail is in incoming.
pub async fn trigger_qmgr(socket: &Path) {
    if let Err(e) = call::<QmgrProtocol>(socket, &vec![QmgrTrigger::ScanIncoming], Duration::from_secs(10)).await {
        log_warning!("unable to trigger the queue manager: {e}");
    }
}
