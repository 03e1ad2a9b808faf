//! The file work of a send: take each logfile under its lock, move the messages it lists from
//! `deferred` to `incoming`, empty it. A plain job without the flush state, so that the actor
//! can run it off its thread (it waits for the job, so nothing else touches the logfiles
//! meanwhile): the renames then hold up neither a reply to another client nor, in the fast
//! flush cluster, this node's reading of the other nodes' answers (issue 15: with three nodes
//! on two cores, the answers waited 1.5-2 ms behind this node's own four renames).

use std::time::SystemTime;

use common::domain::Site;
use common::log_warning;
use common::queue::{QueueId, QueueName, Spool};

use crate::logfile::{FlushDir, Taken};

/// Logfiles a send keeps locked (open) at most before it empties and releases them: a send
/// that covers thousands of logfiles (`ETRN @domain` over many subdomains, refresh, purge)
/// works through them in groups of this size, so it never runs out of descriptors.
pub const SEND_GROUP: usize = 64;

/// The logfiles of one request to send, in order.
#[derive(Debug)]
pub struct SendJob {
    pub spool: Spool,
    pub logs: FlushDir,
    pub targets: Vec<Site>,
}

/// What a send did: the state's part (the index, the queue manager) is done with it on the
/// actor's thread.
#[derive(Debug, Default)]
pub struct Sent {
    /// The logfiles taken and emptied, whose index entries go.
    pub sites: Vec<Site>,
    /// Logfiles the request covered.
    pub total: usize,
    pub moved: Vec<QueueId>,
    /// Lines read from the logfiles (IDs of mail already in incoming among them).
    pub lines: usize,
    pub failed: usize,
    pub first_failure: Option<String>,
}

/// The last group's logfiles, still locked: emptied once the queue manager has heard of the
/// moves (truncating costs a block discard, 0.15-0.3 ms on the benchmark's disk, which is not
/// to delay the delivery), and before the flush server takes its next request, so that nothing
/// appended later is truncated away. Dropped instead, they are released unemptied: harmless, a
/// later send finds the listed mail gone from `deferred`.
#[derive(Debug)]
pub struct Held {
    logs: FlushDir,
    files: Vec<(Site, Taken)>,
    now: SystemTime,
}

impl Held {
    pub fn finish(mut self) {
        self.finish_group();
    }

    fn finish_group(&mut self) {
        for (site, taken) in self.files.drain(..) {
            if let Err(e) = taken.finish(self.now) {
                log_warning!("fast flush logfile {}: {e}", self.logs.path(&site).display());
            }
        }
    }
}

impl SendJob {
    pub fn run(self) -> (Sent, Held) {
        let mut sent = Sent { total: self.targets.len(), ..Sent::default() };
        let mut held = Held { logs: self.logs, files: Vec::new(), now: SystemTime::now() };
        let now = held.now;
        for site in self.targets {
            if held.files.len() >= SEND_GROUP {
                held.finish_group();
            }
            match held.logs.take(&site) {
                Ok(Some(taken)) => {
                    sent.moved.extend(taken.contents.ids.iter().filter(|id| flush_one(&self.spool, id, now) == FlushOne::Moved).cloned());
                    for line in &taken.contents.bad_lines {
                        log_warning!("bad queue id \"{line}...\" in fast flush logfile {}", held.logs.path(&site).display());
                    }
                    sent.lines += taken.contents.lines;
                    sent.sites.push(site.clone());
                    held.files.push((site, taken));
                }
                Ok(None) => {}
                Err(e) => {
                    log_warning!("fast flush logfile {}: {e}", held.logs.path(&site).display());
                    sent.failed += 1;
                    sent.first_failure.get_or_insert(e.to_string());
                }
            }
        }
        (sent, held)
    }
}

/// What happened to one queue ID during a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushOne {
    /// Moved from deferred to incoming.
    Moved,
    /// Already in incoming (another flush got there first).
    AlreadyIncoming,
    /// In neither queue: delivered, bounced, held or removed meanwhile.
    Missing,
}

/// Set both times of `path` with one `utimensat` (no open/close per file on the ETRN path).
fn touch(path: &std::path::Path, now: SystemTime) -> std::io::Result<()> {
    let d = now.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let t = nix::sys::time::TimeSpec::from(d);
    nix::sys::stat::utimensat(nix::fcntl::AT_FDCWD, path, &t, &t, nix::sys::stat::UtimensatFlags::NoFollowSymlink)
        .map_err(std::io::Error::from)
}

/// Postfix `flush_one_file`: stamp the file with `now` (so the queue manager does not skip it
/// as future-dated) and move it from deferred to incoming.
pub fn flush_one(spool: &Spool, id: &QueueId, now: SystemTime) -> FlushOne {
    let deferred = spool.path(QueueName::Deferred, id);
    match touch(&deferred, now) {
        Ok(()) => match spool.move_file(id, QueueName::Deferred, QueueName::Incoming) {
            Ok(true) => return FlushOne::Moved,
            Ok(false) => {}
            Err(e) => {
                log_warning!("{}: rename from deferred to incoming: {e}", deferred.display());
                return FlushOne::Moved;
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => log_warning!("flush_one_file: update {} time stamps: {e}", deferred.display()),
    }
    let incoming = spool.path(QueueName::Incoming, id);
    match touch(&incoming, now) {
        Ok(()) => FlushOne::AlreadyIncoming,
        Err(_) => FlushOne::Missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::tests::{deferred_message, test_config};

    #[test]
    fn many_logfiles_are_sent_in_groups_and_emptied() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = test_config(tmp.path(), "example.net");
        let logs = FlushDir::new(common::queue::flush_dir(&cfg.spool.root));
        std::fs::create_dir_all(&logs.dir).unwrap();
        let sites: Vec<Site> = (0..SEND_GROUP * 3 + 5).map(|n| Site::parse(&format!("s{n}.example.net")).unwrap()).collect();
        let mut ids = Vec::new();
        for site in &sites {
            let id = deferred_message(&cfg.spool, &[&format!("u@{site}")]);
            logs.append(site, &id).unwrap();
            ids.push(id);
        }
        let (sent, held) = SendJob { spool: cfg.spool.clone(), logs: logs.clone(), targets: sites.clone() }.run();
        assert_eq!(sent.moved, ids);
        assert_eq!((sent.sites.len(), sent.total, sent.lines, sent.failed), (sites.len(), sites.len(), sites.len(), 0));
        assert!(held.files.len() <= SEND_GROUP, "{} logfiles held at once", held.files.len());
        assert!(ids.iter().all(|id| cfg.spool.path(QueueName::Incoming, id).exists()));
        // The last group is emptied only when it is finished: the earlier ones already are.
        let lines = |site: &Site| std::fs::read_to_string(logs.path(site)).unwrap().lines().count();
        assert_eq!(lines(&sites[0]), 0);
        assert_eq!(lines(sites.last().unwrap()), 1);
        held.finish();
        assert!(sites.iter().all(|s| lines(s) == 0));
    }
}
