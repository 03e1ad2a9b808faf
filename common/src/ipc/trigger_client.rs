//! The two clients of the trigger protocol: [`TriggerClient`] for the daemons (smtpd, flush and
//! pickup), and [`trigger_blocking`] for the command-line programs, which have no runtime.
//!
//! A daemon's triggers go through one task that owns a kept connection and sends them in the
//! order they were asked for. What queued up while the last send was on its way goes as one
//! frame: the receiver acts on a burst of triggers once anyway, so a busy sender (smtpd under
//! load) costs the receiver one request instead of one per message. [`TriggerClient::post`]
//! does not wait; [`TriggerClient::send`] waits for the acknowledgement, which the flush
//! service needs before it moves files (`ForgetDeadSites` first, Postfix's 2.4 race fix).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::client::{Persistent, call_blocking};
use super::trigger::{Trigger, TriggerProtocol, TriggerReply};
use crate::log_warning;

/// Why a trigger was not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TriggerError {
    /// The service could not be reached or did not answer in time.
    #[error("{0}")]
    Unreachable(String),
    /// The service refused the triggers (a user who may not flush the queue).
    #[error("{0}")]
    Denied(String),
    /// The client's task is gone (the runtime is shutting down).
    #[error("trigger client stopped")]
    Stopped,
}

fn acknowledged(reply: TriggerReply) -> Result<(), TriggerError> {
    match reply {
        TriggerReply::Accepted => Ok(()),
        TriggerReply::Denied { reason } => Err(TriggerError::Denied(reason)),
    }
}

/// Send `triggers` to the service at `socket` and wait for its acknowledgement.
pub fn trigger_blocking(socket: &Path, triggers: &[Trigger], timeout: Duration) -> Result<(), TriggerError> {
    let reply = call_blocking::<TriggerProtocol>(socket, &triggers.to_vec(), timeout);
    acknowledged(reply.map_err(|e| TriggerError::Unreachable(e.to_string()))?)
}

/// Triggers asked for, and who waits for their acknowledgement.
struct Job {
    triggers: Vec<Trigger>,
    ack: Option<oneshot::Sender<Result<(), TriggerError>>>,
}

/// The daemons' trigger client; cheap to clone, all clones share one task and connection.
#[derive(Clone)]
pub struct TriggerClient(Arc<Inner>);

struct Inner {
    socket: PathBuf,
    timeout: Duration,
    shown: String,
    /// The task's queue, made by the first caller: the task runs on that caller's runtime, so
    /// a client can be made where there is none (a configuration read in a unit test).
    jobs: OnceLock<mpsc::UnboundedSender<Job>>,
}

impl std::fmt::Debug for TriggerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TriggerClient({})", self.0.socket.display())
    }
}

impl TriggerClient {
    /// A client of the service at `socket`. `shown` names the service in warnings
    /// (`public/qmgr`); `timeout` bounds each send (`trigger_timeout`).
    pub fn new(socket: PathBuf, timeout: Duration, shown: String) -> TriggerClient {
        TriggerClient(Arc::new(Inner { socket, timeout, shown, jobs: OnceLock::new() }))
    }

    /// True when `other` talks to the same service with the same time limit, so that a reload
    /// can keep this client and its connection.
    pub fn same_as(&self, other: &TriggerClient) -> bool {
        self.0.socket == other.0.socket && self.0.timeout == other.0.timeout
    }

    /// How warnings name the service (`public/qmgr`).
    pub fn shown(&self) -> &str {
        &self.0.shown
    }

    fn queue(&self, job: Job) -> Result<(), TriggerError> {
        let jobs = self.0.jobs.get_or_init(|| {
            let (jobs, rx) = mpsc::unbounded_channel();
            let inner = &self.0;
            tokio::spawn(run(Persistent::new(inner.socket.clone()), rx, inner.timeout, inner.shown.clone()));
            jobs
        });
        jobs.send(job).map_err(|_| TriggerError::Stopped)
    }

    /// Queue `triggers` behind every earlier one; nobody waits. A failure is logged.
    pub fn post(&self, triggers: &[Trigger]) {
        if let Err(e) = self.queue(Job { triggers: triggers.to_vec(), ack: None }) {
            log_warning!("trigger {}: {e}", self.0.shown);
        }
    }

    /// Queue `triggers` behind every earlier one and wait until the service acknowledged them.
    pub async fn send(&self, triggers: &[Trigger]) -> Result<(), TriggerError> {
        let (tx, rx) = oneshot::channel();
        self.queue(Job { triggers: triggers.to_vec(), ack: Some(tx) })?;
        rx.await.unwrap_or(Err(TriggerError::Stopped))
    }
}

/// Merge `more` into `triggers`, each trigger once.
fn merge(triggers: &mut Vec<Trigger>, more: Vec<Trigger>) {
    for t in more {
        if !triggers.contains(&t) {
            triggers.push(t);
        }
    }
}

async fn run(conn: Persistent<TriggerProtocol>, mut jobs: mpsc::UnboundedReceiver<Job>, timeout: Duration, shown: String) {
    while let Some(first) = jobs.recv().await {
        let mut triggers = first.triggers;
        let mut acks: Vec<_> = first.ack.into_iter().collect();
        let mut posted = acks.is_empty();
        while let Ok(more) = jobs.try_recv() {
            merge(&mut triggers, more.triggers);
            posted |= more.ack.is_none();
            acks.extend(more.ack);
        }
        let result = match conn.call(&triggers, timeout).await {
            Ok(reply) => acknowledged(reply),
            Err(e) => Err(TriggerError::Unreachable(e.to_string())),
        };
        // Those who wait hear of a failure and say what it means to them; nobody else would.
        if let (true, Err(e)) = (posted, &result) {
            log_warning!("trigger {shown}: {e}");
        }
        for ack in acks {
            let _ = ack.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::server::serve;
    use std::sync::Mutex;

    /// A trigger service that records each request it accepts, after `delay`.
    async fn recorder(path: &Path, delay: Duration, deny: bool) -> Arc<Mutex<Vec<Vec<Trigger>>>> {
        let listener = tokio::net::UnixListener::bind(path).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(serve::<TriggerProtocol, _, _>(stream, "test", Duration::from_secs(5), None, None, move |t, _| {
                    let log = log.clone();
                    async move {
                        tokio::time::sleep(delay).await;
                        log.lock().unwrap().push(t);
                        if deny { TriggerReply::Denied { reason: "no".into() } } else { TriggerReply::Accepted }
                    }
                }));
            }
        });
        seen
    }

    #[test]
    fn posts_queued_behind_a_send_in_flight_go_as_one_frame_and_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("qmgr");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let seen = recorder(&path, Duration::from_millis(50), false).await;
            let client = TriggerClient::new(path.clone(), Duration::from_secs(5), "public/qmgr".into());
            client.post(&[Trigger::ScanIncoming]);
            // Queued while the first frame is on its way: merged, each trigger once.
            tokio::task::yield_now().await;
            client.post(&[Trigger::ScanIncoming]);
            client.post(&[Trigger::ScanDeferred]);
            assert_eq!(client.send(&[Trigger::ForgetDeadSites]).await, Ok(()));
            let frames = seen.lock().unwrap().clone();
            assert_eq!(
                frames,
                vec![vec![Trigger::ScanIncoming], vec![Trigger::ScanIncoming, Trigger::ScanDeferred, Trigger::ForgetDeadSites]]
            );
        });
    }

    #[test]
    fn a_send_hears_of_a_refusal_and_of_a_service_that_is_not_there() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("qmgr");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let gone = TriggerClient::new(tmp.path().join("nothing"), Duration::from_secs(1), "public/qmgr".into());
            assert!(matches!(gone.send(&[Trigger::ScanIncoming]).await, Err(TriggerError::Unreachable(_))));
            recorder(&path, Duration::ZERO, true).await;
            let client = TriggerClient::new(path.clone(), Duration::from_secs(5), "public/qmgr".into());
            assert_eq!(client.send(&[Trigger::ScanDeferred]).await, Err(TriggerError::Denied("no".into())));
        });
        // The blocking client says the same, with no runtime.
        let gone = trigger_blocking(&tmp.path().join("nothing"), &[Trigger::ScanIncoming], Duration::from_secs(1));
        assert!(matches!(gone, Err(TriggerError::Unreachable(_))));
    }
}
