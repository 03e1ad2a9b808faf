//! Queue scans (Postfix's `qmgr_scan` and the feeding part of `qmgr_active_feed`): which files
//! of `incoming` and `deferred` go into `active`, and when.
//!
//! A scan lists its queue once and works through the listing; a scan asked for meanwhile
//! starts when this one is through, so a full active queue never makes us list a large
//! deferred queue again and again. The listing and the look at each file (its retry time, the
//! move into `active`, its envelope) are disk work: the scheduler hands them to the worker as
//! one [`FeedJob`] for both queues, at most [`FEED_SLICE`] files per queue, and carries on
//! with triggers and delivery results until the [`Fed`] report comes back (Postfix's queue
//! manager interleaves them likewise).

use std::collections::VecDeque;
use std::fs;
use std::time::{Duration, Instant, SystemTime};

use common::log_warning;
use common::queue::{QueueId, QueueName, Spool};

use crate::active::{Activated, activate_file};

/// Files a scan looks at per feed job before events are handled again.
pub const FEED_SLICE: usize = 500;

/// Files named by flush sends ([`Scans::named`]) kept at most until a job takes them; more
/// are not kept, an incoming scan is asked for instead (it finds them too, only slower).
pub const NAMED_LIMIT: usize = 100_000;

/// At most this much of a feed job goes to the deferred queue's files (a `stat` each, and a
/// move for those due): a large deferred queue is scanned in many short jobs, so that mail
/// in `incoming` (an ETRN's, a new message's) never waits behind a long slice of it. With a
/// million deferred files and a cold inode cache, 500 `stat`s took milliseconds.
pub const DEFERRED_BUDGET: Duration = Duration::from_millis(1);

/// A scan of one queue (Postfix's scan context): the listing being worked through, and whether
/// another scan was asked for meanwhile.
#[derive(Debug)]
struct ScanCtx {
    pending: VecDeque<QueueId>,
    again: bool,
}

impl ScanCtx {
    fn new() -> ScanCtx {
        ScanCtx { pending: VecDeque::new(), again: true }
    }

    fn idle(&self) -> bool {
        self.pending.is_empty() && !self.again
    }
}

/// One queue's part of a feed job: list it first (a new scan), then work through `pending`.
#[derive(Debug)]
pub struct ScanPart {
    pub queue: QueueName,
    pub list: bool,
    pub pending: VecDeque<QueueId>,
}

/// Disk work for the worker: feed up to `room` messages into `active`.
#[derive(Debug)]
pub struct FeedJob {
    pub spool: Spool,
    /// Incoming first.
    pub parts: Vec<ScanPart>,
    pub room: usize,
    pub ignore_timestamps: bool,
    /// [`DEFERRED_BUDGET`], but for tests.
    pub deferred_budget: Duration,
}

/// What a feed job did: the listings left to work through, the messages now in `active`, and
/// whether a slice ran out (there is more to look at right away: the scheduler runs again
/// after every report anyway, so this only says why).
#[derive(Debug)]
pub struct Fed {
    pub parts: Vec<ScanPart>,
    pub activated: Vec<Activated>,
    pub more: bool,
}

/// Worker side: run a feed job.
pub fn feed(job: FeedJob) -> Fed {
    let FeedJob { spool, mut parts, mut room, ignore_timestamps, deferred_budget } = job;
    let now = SystemTime::now();
    let mut activated = Vec::new();
    let mut more = false;
    for part in &mut parts {
        let budget = (part.queue == QueueName::Deferred).then(|| Instant::now() + deferred_budget);
        more |= feed_part(&spool, part, &mut room, ignore_timestamps, now, budget, &mut activated);
    }
    Fed { parts, activated, more }
}

/// Admit files from one queue's scan while there is room, at most [`FEED_SLICE`] of them
/// looked at, until `budget` if there is one (`deferred`'s: [`DEFERRED_BUDGET`]); true when
/// the slice or the budget ran out first.
fn feed_part(
    spool: &Spool,
    part: &mut ScanPart,
    room: &mut usize,
    ignore: bool,
    now: SystemTime,
    budget: Option<Instant>,
    out: &mut Vec<Activated>,
) -> bool {
    let mut slice = FEED_SLICE;
    loop {
        if part.pending.is_empty() {
            if !part.list {
                return false;
            }
            part.list = false;
            match spool.list(part.queue) {
                Ok(ids) => part.pending = ids.into(),
                Err(e) => log_warning!("scan {}: {e}", spool.queue_dir(part.queue).display()),
            }
            continue;
        }
        if *room == 0 {
            return false;
        }
        // At least one file per job, however short the budget.
        if slice == 0 || (slice < FEED_SLICE && budget.is_some_and(|b| Instant::now() >= b)) {
            return true;
        }
        slice -= 1;
        let Some(id) = part.pending.pop_front() else { continue };
        // A message already active has its file in `active`: it cannot be moved again from
        // this queue, so a stale listing needs no check against the active set.
        if !ignore {
            let future =
                fs::metadata(spool.path(part.queue, &id)).and_then(|m| m.modified()).is_ok_and(|m| m > now + Duration::from_secs(1));
            if future {
                continue;
            }
        }
        if let Some(a) = activate_file(spool, part.queue, id) {
            *room -= 1;
            out.push(a);
        }
    }
}

/// Both scans, the feed job on the worker, and the `A` modifier that applies to them.
#[derive(Debug)]
pub struct Scans {
    incoming: ScanCtx,
    deferred: ScanCtx,
    /// A feed job is on the worker (at most one: it holds the listings meanwhile).
    feeding: bool,
    /// Files of `incoming` that a flush send named: the next job takes them first, unlisted.
    named: VecDeque<QueueId>,
    /// `IgnoreTimestamps`: deferred files are taken whatever their retry time.
    pub ignore_timestamps: bool,
}

impl Scans {
    /// At start each queue is scanned once.
    pub fn new() -> Scans {
        Scans { incoming: ScanCtx::new(), deferred: ScanCtx::new(), feeding: false, named: VecDeque::new(), ignore_timestamps: false }
    }

    fn ctx(&mut self, queue: QueueName) -> &mut ScanCtx {
        if queue == QueueName::Incoming { &mut self.incoming } else { &mut self.deferred }
    }

    /// Ask for a scan of `queue` (after the one in progress, if any).
    pub fn ask(&mut self, queue: QueueName) {
        self.ctx(queue).again = true;
    }

    /// Files of `incoming` that a flush send moved there: the next feed job looks at them
    /// first, without listing `incoming` (a name that is no longer there costs a failed
    /// `stat`). Refused whole for a name that is not a queue ID; past [`NAMED_LIMIT`] an
    /// incoming scan is asked for instead.
    pub fn named(&mut self, queue_ids: &[String]) -> Result<(), String> {
        let ids = queue_ids
            .iter()
            .map(|id| {
                QueueId::parse(id).map_err(|_| format!("incoming request: invalid queue ID \"{}\"", common::text::printable(id, '?')))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.named.len() + ids.len() > NAMED_LIMIT {
            self.ask(QueueName::Incoming);
        } else {
            self.named.extend(ids);
        }
        Ok(())
    }

    /// No scan in progress or asked for: the modifiers have applied to the scans they came with.
    pub fn idle(&self) -> bool {
        !self.feeding && self.named.is_empty() && self.incoming.idle() && self.deferred.idle()
    }

    /// The scans' next slice for the worker, with `room` places in the active queue; none
    /// when one is on the worker already or there is nothing to do. A listing is taken even
    /// when the active queue is full, the files only when there is room.
    pub fn next_job(&mut self, spool: &Spool, room: usize) -> Option<FeedJob> {
        if self.feeding {
            return None;
        }
        let mut parts = Vec::new();
        for queue in [QueueName::Incoming, QueueName::Deferred] {
            // The files a flush send named come first.
            let mut pending = if queue == QueueName::Incoming { std::mem::take(&mut self.named) } else { VecDeque::new() };
            let ctx = self.ctx(queue);
            let list = ctx.pending.is_empty() && ctx.again;
            pending.append(&mut ctx.pending);
            if list || (room > 0 && !pending.is_empty()) {
                ctx.again &= !list;
                parts.push(ScanPart { queue, list, pending });
            } else {
                ctx.pending = pending;
            }
        }
        if parts.is_empty() {
            return None;
        }
        self.feeding = true;
        Some(FeedJob { spool: spool.clone(), parts, room, ignore_timestamps: self.ignore_timestamps, deferred_budget: DEFERRED_BUDGET })
    }

    /// The worker's report on the feed job: the listings come back; returns the messages now
    /// in `active`.
    pub fn returned(&mut self, fed: Fed) -> Vec<Activated> {
        self.feeding = false;
        for part in fed.parts {
            let ctx = self.ctx(part.queue);
            ctx.pending = part.pending;
            ctx.again |= part.list;
        }
        fed.activated
    }
}

impl Default for Scans {
    fn default() -> Scans {
        Scans::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::config;

    #[test]
    fn a_large_scan_is_worked_through_in_slices() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path(), "");
        // Deferred files whose retry time has not come: each is looked at, none is activated.
        let later = SystemTime::now() + Duration::from_secs(3600);
        let files = FEED_SLICE * 2 + FEED_SLICE / 2;
        for inode in 0..files as u64 {
            let id = QueueId::generate(SystemTime::now(), inode + 1);
            let path = cfg.spool.path(QueueName::Deferred, &id);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            let f = fs::File::create(&path).unwrap();
            f.set_times(fs::FileTimes::new().set_accessed(later).set_modified(later)).unwrap();
        }
        let mut scans = Scans::new();
        scans.incoming.again = false;
        scans.ask(QueueName::Deferred);
        let (mut slices, mut more) = (0, true);
        while let Some(job) = scans.next_job(&cfg.spool, 100) {
            assert!(more, "a job after the one that said it was the last");
            slices += 1;
            assert!(slices <= files, "the scan does not end");
            assert!(scans.next_job(&cfg.spool, 100).is_none(), "one feed job at a time");
            let fed = feed(job);
            more = fed.more;
            assert!(scans.returned(fed).is_empty());
        }
        assert!(!more && slices >= 3, "{files} files in {slices} slices of at most {FEED_SLICE}");
        assert!(scans.idle());
    }

    #[test]
    fn the_deferred_part_of_a_job_stops_at_its_budget() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path(), "");
        let later = SystemTime::now() + Duration::from_secs(3600);
        for inode in 0..3u64 {
            let path = cfg.spool.path(QueueName::Deferred, &QueueId::generate(SystemTime::now(), inode + 1));
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            let f = fs::File::create(&path).unwrap();
            f.set_times(fs::FileTimes::new().set_accessed(later).set_modified(later)).unwrap();
        }
        let mut part = ScanPart { queue: QueueName::Deferred, list: true, pending: VecDeque::new() };
        for left in [2, 1, 0] {
            let job = FeedJob {
                spool: cfg.spool.clone(),
                parts: vec![part],
                room: 10,
                ignore_timestamps: false,
                deferred_budget: Duration::ZERO,
            };
            let mut fed = feed(job);
            part = fed.parts.remove(0);
            assert_eq!(part.pending.len(), left, "one file looked at per job");
            assert_eq!(fed.more, left > 0);
        }
    }

    #[test]
    fn named_files_are_fed_without_a_listing() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path(), "");
        let (named, unnamed) = (QueueId::generate(SystemTime::now(), 1), QueueId::generate(SystemTime::now(), 2));
        for id in [&named, &unnamed] {
            let path = cfg.spool.path(QueueName::Incoming, id);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, b"").unwrap();
        }
        let mut scans = Scans::new();
        scans.incoming.again = false;
        scans.deferred.again = false;
        assert!(scans.named(&["../x".to_string()]).is_err(), "not a queue ID");
        scans.named(&[named.to_string()]).unwrap();
        assert!(!scans.idle());
        let job = scans.next_job(&cfg.spool, 10).unwrap();
        assert_eq!(job.parts.len(), 1);
        assert!(!job.parts[0].list, "no listing of incoming");
        assert_eq!(job.parts[0].pending, std::slice::from_ref(&named));
        // The file is empty, so it is not activated; it was looked at and taken out of incoming.
        scans.returned(feed(job));
        assert!(scans.idle());
        assert!(cfg.spool.path(QueueName::Incoming, &unnamed).exists(), "only what was named");
        // Past the limit the names are not kept: a scan is asked for.
        scans.named(&vec![named.to_string(); NAMED_LIMIT + 1]).unwrap();
        assert!(scans.named.is_empty() && scans.incoming.again);
    }

    #[test]
    fn a_full_active_queue_lists_but_takes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path(), "");
        let spool = cfg.spool.clone();
        let id = QueueId::generate(SystemTime::now(), 7);
        let path = spool.path(QueueName::Incoming, &id);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, b"").unwrap();
        let part = ScanPart { queue: QueueName::Incoming, list: true, pending: VecDeque::new() };
        let fed = feed(FeedJob { spool, parts: vec![part], room: 0, ignore_timestamps: false, deferred_budget: DEFERRED_BUDGET });
        assert!(fed.activated.is_empty() && !fed.more);
        assert_eq!(fed.parts[0].pending, [id]);
        assert!(path.exists());
    }
}
