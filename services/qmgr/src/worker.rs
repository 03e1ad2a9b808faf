//! The disk worker: one thread that does the scheduler's blocking work (listing queues,
//! moving, reading, appending to, syncing and removing queue files, writing notifications)
//! so that the scheduler's thread only ever waits for events. Jobs run one at a time in the
//! order they were given, which is what keeps each message's files consistent: its results
//! are appended before it is finished, and a scan slice given after a finish sees the file
//! where the finish left it. Reports go back through a callback (a message to the actor).
//!
//! One thread, not a pool: the queue manager's disk work was sequential before and the order
//! matters; a queue of jobs also batches them: a busy worker takes the next without a wake-up.

use std::path::PathBuf;
use std::sync::mpsc;

use common::daemon::fatal;
use common::queue::QueueId;
use common::queue::file::RecipientResult;

use crate::active::append_results;
use crate::finish::{FinishJob, Finished, finish};
use crate::scan::{Fed, FeedJob, feed};

/// At most this many reports go in one message.
const REPORT_BATCH: usize = 64;

/// Blocking work, in the order given.
#[derive(Debug)]
pub enum DiskJob {
    /// Feed the active queue from the scans; reports [`Report::Fed`].
    Feed(FeedJob),
    /// Append results to an active message's queue file.
    Append { path: PathBuf, id: QueueId, results: Vec<RecipientResult> },
    /// Finish a message; reports [`Report::Finished`] when there is something to do.
    Finish(Box<FinishJob>),
    /// Answer once every job given before it is done (stopping).
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// What the worker tells the scheduler.
#[derive(Debug)]
pub enum Report {
    Fed(Fed),
    Finished(Finished),
}

/// The handle of the worker thread; dropping it ends the thread after the queued jobs.
#[derive(Debug)]
pub struct Worker {
    jobs: mpsc::Sender<DiskJob>,
}

impl Worker {
    /// Start the thread; `report` is called on it with the reports of a run of jobs.
    pub fn start(report: impl Fn(Vec<Report>) + Send + 'static) -> Worker {
        let (jobs, rx) = mpsc::channel::<DiskJob>();
        let spawned = std::thread::Builder::new().name("qmgr-disk".into()).spawn(move || {
            let _exit = ExitOnPanic;
            // Reports of jobs queued back to back go together: one wake-up of the scheduler's
            // thread per burst, not per message. A feed report goes at once (the scheduler
            // dispatches what it brings), and a batch never waits for more than
            // REPORT_BATCH jobs.
            while let Ok(first) = rx.recv() {
                let mut reports = Vec::new();
                let mut job = Some(first);
                while let Some(j) = job.take() {
                    match run(j) {
                        Some(r @ Report::Fed(_)) => {
                            reports.push(r);
                            break;
                        }
                        Some(r) => reports.push(r),
                        None => {}
                    }
                    if reports.len() >= REPORT_BATCH {
                        break;
                    }
                    job = rx.try_recv().ok();
                }
                if !reports.is_empty() {
                    report(reports);
                }
            }
        });
        if let Err(e) = spawned {
            fatal(&format!("start the disk worker thread: {e}"));
        }
        Worker { jobs }
    }

    pub fn submit(&self, job: DiskJob) {
        // The thread ends only when this handle is dropped, or by a panic: without it no
        // message can move any more, so the queue manager stops and the master restarts it.
        if self.jobs.send(job).is_err() {
            fatal("the disk worker thread has stopped");
        }
    }
}

/// A worker that panicked can report nothing, and a scheduler waiting for its report would
/// stop scanning without a word: the queue manager exits instead, and the master restarts it.
struct ExitOnPanic;

impl Drop for ExitOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            fatal("the disk worker thread panicked");
        }
    }
}

pub(crate) fn run(job: DiskJob) -> Option<Report> {
    match job {
        DiskJob::Feed(job) => Some(Report::Fed(feed(job))),
        DiskJob::Append { path, id, results } => {
            append_results(&path, &id, &results);
            None
        }
        DiskJob::Finish(job) => finish(*job).map(Report::Finished),
        DiskJob::Barrier(done) => {
            let _ = done.send(());
            None
        }
    }
}
