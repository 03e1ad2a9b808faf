//! Finishing a message (Postfix's `qmgr_active_done`): once no request for it is in flight, a
//! message whose recipients are all done is removed, one with bounced recipients returns a
//! notification ([`common::bounce`]), one with recipients that asked for it sends a success
//! notice, one past `maximal_queue_lifetime` (`bounce_queue_lifetime`
//! for a notification) is returned as expired, and one with deferred recipients goes to
//! `deferred` with backoff ([`crate::defer`]), with one delay notice once it is older than
//! `delay_warning_time`.
//!
//! The decisions are taken on the scheduler's thread, where the message's state is ([`plan`]);
//! the files are written, synced, moved and removed by the worker ([`finish`]), which reports
//! back only what the scheduler must act on ([`Finished`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::datetime::from_us;
use common::queue::file::{Envelope, Outcome, RecipientResult};
use common::queue::{QueueId, QueueName};
use common::{log_info, log_warning};

use crate::active::{ActiveMsg, append_results};
use crate::config::QmgrConfig;
use crate::defer::{defer_file, flush_sites, retry_delay};
use common::bounce::{Due, RecipientStatus, delay_notice_due, delayed_recipients};

/// Disk work for the worker: finish one message as decided.
#[derive(Debug)]
pub struct FinishJob {
    pub cfg: Arc<QmgrConfig>,
    pub id: QueueId,
    /// The message's envelope (the sender and the DSN requests its notices honour).
    pub envelope: Envelope,
    /// Recipients neither sent nor bounced, by index.
    pub pending: Vec<usize>,
    /// Past its queue lifetime with recipients pending: return them.
    pub expired: bool,
    /// The notices: failures, successes, and the deferred recipients due the message's one
    /// delay notice (`delay_warning_time`).
    pub due: Due,
    /// When deferred, the next attempt.
    pub retry_at: SystemTime,
    pub deferred_domains: BTreeSet<String>,
}

/// What the scheduler must do after a finish: scan `incoming` for the notification queued
/// there, list the message with the flush service for these sites.
#[derive(Debug, PartialEq, Eq)]
pub struct Finished {
    pub id: QueueId,
    pub notice_queued: bool,
    pub flush_sites: Vec<String>,
}

/// The queue lifetime of mail from `sender`: notifications (the null sender) have their own.
pub fn lifetime(cfg: &QmgrConfig, sender: &str) -> Duration {
    if sender.is_empty() { cfg.bounce_queue_lifetime } else { cfg.maximal_queue_lifetime }
}

/// A message with recipients still pending is returned once it is `lifetime` old.
pub fn expired(pending: bool, age: Duration, lifetime: Duration) -> bool {
    pending && age >= lifetime
}

/// Decide how message `id`, whose requests have all ended, is finished at `now`: expired or
/// not, due its delay notice or not, and when its next attempt would be.
pub fn plan(cfg: &Arc<QmgrConfig>, id: QueueId, msg: ActiveMsg, now: SystemTime) -> FinishJob {
    // One attempt settles a probe, whatever its outcome: it is removed, never deferred, and no
    // notice is ever sent about it.
    let probe = msg.qf.envelope.verify_probe;
    let pending: Vec<usize> = if probe { Vec::new() } else { msg.qf.pending().map(|(i, _)| i).collect() };
    let age = now.duration_since(from_us(msg.qf.envelope.arrival_us)).unwrap_or_default();
    let expired = expired(!pending.is_empty(), age, lifetime(cfg, &msg.qf.envelope.sender));
    let mut due = msg.due;
    if !expired && !probe && delay_notice_due(cfg.bounce.delay_warning_time, age, msg.qf.delay_notified) {
        due.delayed = delayed_recipients(msg.qf.pending(), |i| msg.qf.last_result(i));
    }
    FinishJob {
        expired,
        due,
        retry_at: now + retry_delay(age, cfg.minimal_backoff, cfg.maximal_backoff),
        cfg: cfg.clone(),
        id,
        envelope: msg.qf.envelope,
        pending,
        deferred_domains: msg.deferred_domains,
    }
}

/// Worker side: finish a message. `None` when the scheduler need not hear about it.
pub fn finish(job: FinishJob) -> Option<Finished> {
    let FinishJob { cfg, id, envelope, pending, expired, mut due, retry_at, deferred_domains } = job;
    let spool = &cfg.spool;
    let path = spool.path(QueueName::Active, &id);
    if expired {
        log_info!("{id}: from=<{}>, status=expired, returned to sender", envelope.sender);
        let results: Vec<RecipientResult> = pending
            .iter()
            .map(|index| RecipientResult { index: *index, outcome: Outcome::Bounced, dsn: "4.4.7".into(), text: "message expired".into() })
            .collect();
        append_results(&path, &id, &results);
        due.failed.extend(
            pending
                .iter()
                .filter_map(|i| envelope.recipients.get(*i))
                .map(|r| RecipientStatus::of(r, "4.4.7", "delivery temporarily suspended; message expired")),
        );
    }
    // A delay notice is recorded in the file, which is synced when it moves to `deferred`.
    let notice_queued = due.send(&cfg.spool, &cfg.bounce, &id, &path, &envelope);
    let report = |flush_sites: Vec<String>| {
        (notice_queued || !flush_sites.is_empty()).then(|| Finished { id: id.clone(), notice_queued, flush_sites })
    };
    if pending.is_empty() || expired {
        match std::fs::remove_file(&path) {
            Ok(()) => log_info!("{id}: removed"),
            Err(e) => log_warning!("{id}: remove {}: {e}", path.display()),
        }
        return report(Vec::new());
    }
    if !defer_file(spool, &id, &path, retry_at) {
        return report(Vec::new());
    }
    // Only now, with the file in `deferred`, tell the flush service: a send that arrived
    // earlier would not have found the file.
    report(flush_sites(&cfg, deferred_domains))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::active::{activate_file, own_result};
    use crate::testutil::{config, queue_message};

    #[test]
    fn expiry() {
        struct Case {
            name: &'static str,
            pending: bool,
            age: u64,
            want: bool,
        }
        let life = Duration::from_secs(5 * 86400);
        let cases = [
            Case { name: "young", pending: true, age: 3600, want: false },
            Case { name: "just under", pending: true, age: 5 * 86400 - 1, want: false },
            Case { name: "exactly the lifetime", pending: true, age: 5 * 86400, want: true },
            Case { name: "old", pending: true, age: 9 * 86400, want: true },
            Case { name: "old but nothing pending", pending: false, age: 9 * 86400, want: false },
        ];
        for c in &cases {
            assert_eq!(expired(c.pending, Duration::from_secs(c.age), life), c.want, "{}", c.name);
        }
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path(), "maximal_queue_lifetime = 5d\nbounce_queue_lifetime = 1d\n");
        assert_eq!(lifetime(&cfg, "s@example.org"), Duration::from_secs(5 * 86400));
        assert_eq!(lifetime(&cfg, ""), Duration::from_secs(86400));
    }

    /// A message to one recipient that got `outcome`, finished as the scheduler would.
    fn finish_one(extra: &str, arrival_age: Duration, outcome: Outcome) -> (tempfile::TempDir, Arc<QmgrConfig>, QueueId, Option<Finished>) {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = Arc::new(config(tmp.path(), extra));
        let spool = cfg.spool.clone();
        let id = queue_message(&spool, QueueName::Incoming, "s@example.org", &["u@dest.example"]);
        let mut a = activate_file(&spool, QueueName::Incoming, id.clone()).unwrap();
        a.qf.envelope.arrival_us -= arrival_age.as_micros() as u64;
        let mut msg = ActiveMsg::new(a, 0);
        let dsn = if outcome == Outcome::Deferred { "4.4.1" } else { "5.1.1" };
        let appended = msg.record(&id, vec![own_result(0, outcome, dsn, "no")], false, &cfg.probes);
        append_results(&spool.path(QueueName::Active, &id), &id, &appended);
        let report = finish(plan(&cfg, id.clone(), msg, SystemTime::now()));
        (tmp, cfg, id, report)
    }

    #[test]
    fn a_deferred_message_waits_in_deferred_until_its_retry_time() {
        let extra = "minimal_backoff_time = 300s\nmaximal_backoff_time = 4000s\nfast_flush_domains = dest.example\n";
        let (_tmp, cfg, id, report) = finish_one(extra, Duration::from_secs(3600), Outcome::Deferred);
        let path = cfg.spool.path(QueueName::Deferred, &id);
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        let wait = mtime.duration_since(SystemTime::now()).unwrap();
        // As long as it has already waited (an hour and the moments the test took), within the
        // backoff bounds.
        assert!(wait > Duration::from_secs(3590) && wait < Duration::from_secs(3610), "{wait:?}");
        assert_eq!(report, Some(Finished { id, notice_queued: false, flush_sites: vec!["dest.example".into()] }));
    }

    #[test]
    fn one_delay_notice_once_the_warning_time_has_passed_even_across_passes() {
        let incoming = |cfg: &QmgrConfig| cfg.spool.list(QueueName::Incoming).unwrap().len();
        let two_hours = Duration::from_secs(7200);
        assert!(delay_notice_due(Duration::from_secs(3600), two_hours, false));
        assert!(!delay_notice_due(Duration::from_secs(3600), two_hours, true));
        assert!(!delay_notice_due(Duration::ZERO, two_hours, false), "0 is off, as in Postfix");
        let (_t, young, _, _) = finish_one("delay_warning_time = 4h\n", two_hours, Outcome::Deferred);
        assert_eq!(incoming(&young), 0, "not old enough");
        let (_t, off, _, _) = finish_one("", two_hours, Outcome::Deferred);
        assert_eq!(incoming(&off), 0, "delay_warning_time = 0h");

        let (_tmp, cfg, id, report) = finish_one("delay_warning_time = 1h\n", two_hours, Outcome::Deferred);
        assert_eq!(report.map(|r| r.notice_queued), Some(true));
        assert_eq!(incoming(&cfg), 1, "the delay notice");
        let path = cfg.spool.path(QueueName::Deferred, &id);
        assert!(common::queue::file::read_envelope(&path).unwrap().delay_notified, "recorded in the queue file");
        // The next pass reads the record: no second notice.
        let mut a = activate_file(&cfg.spool, QueueName::Deferred, id.clone()).unwrap();
        a.qf.envelope.arrival_us -= two_hours.as_micros() as u64;
        let mut msg = ActiveMsg::new(a, 0);
        let appended = msg.record(&id, vec![own_result(0, Outcome::Deferred, "4.4.1", "still no")], false, &cfg.probes);
        append_results(&cfg.spool.path(QueueName::Active, &id), &id, &appended);
        finish(plan(&cfg, id.clone(), msg, SystemTime::now()));
        assert_eq!(incoming(&cfg), 1, "still one notice");
        assert!(cfg.spool.path(QueueName::Deferred, &id).exists());
    }

    #[test]
    fn an_expired_message_is_returned_and_removed() {
        let extra = "maximal_queue_lifetime = 1h\n";
        let (_tmp, cfg, id, report) = finish_one(extra, Duration::from_secs(7200), Outcome::Deferred);
        assert!(!cfg.spool.path(QueueName::Deferred, &id).exists());
        assert!(!cfg.spool.path(QueueName::Active, &id).exists());
        assert_eq!(report.map(|r| r.notice_queued), Some(true));
        assert_eq!(cfg.spool.list(QueueName::Incoming).unwrap().len(), 1, "the notification");
    }

    #[test]
    fn a_probe_is_removed_after_one_attempt_whatever_happened() {
        for outcome in [Outcome::Deferred, Outcome::Bounced] {
            let tmp = tempfile::tempdir().unwrap();
            let cfg = Arc::new(config(tmp.path(), "fast_flush_domains = dest.example\n"));
            let id = queue_message(&cfg.spool, QueueName::Incoming, "double-bounce@mx.example", &["u@dest.example"]);
            let mut a = activate_file(&cfg.spool, QueueName::Incoming, id.clone()).unwrap();
            a.qf.envelope.verify_probe = true;
            let mut msg = ActiveMsg::new(a, 0);
            msg.record(&id, vec![own_result(0, outcome, "4.4.1", "connect refused")], true, &cfg.probes);
            let report = finish(plan(&cfg, id.clone(), msg, SystemTime::now()));
            assert_eq!(report, None, "{outcome:?}: no notification, no flush listing");
            for q in [QueueName::Active, QueueName::Deferred, QueueName::Incoming] {
                assert!(cfg.spool.list(q).unwrap().is_empty(), "{outcome:?}: nothing left in {}", q.as_str());
            }
        }
    }

    #[test]
    fn a_bounced_message_is_returned_and_removed() {
        let (_tmp, cfg, id, report) = finish_one("", Duration::ZERO, Outcome::Bounced);
        assert!(!cfg.spool.path(QueueName::Active, &id).exists());
        assert_eq!(report.map(|r| r.notice_queued), Some(true));
        assert_eq!(cfg.spool.list(QueueName::Incoming).unwrap().len(), 1, "the notification");
    }
}
