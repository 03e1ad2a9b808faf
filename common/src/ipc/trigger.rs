//! Triggers to a trigger service (the queue manager, pickup), sent in order from one thread over
//! one persistent connection, so that a busy sender (smtpd under load, the flush service) costs
//! the receiver one connection instead of one per trigger.
//!
//! `send(.., wait = true)` returns once the receiver acknowledged the triggers (the flush service
//! needs `ForgetDeadSites` to arrive before it moves files: Postfix's 2.4 race fix); with
//! `wait = false` nobody waits, but the triggers still arrive after every earlier one.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use crate::ipc::Protocol;
use crate::ipc::frame::{MAX_FRAME, read_frame_blocking, write_frame_blocking};
use crate::ipc::qmgr::{QmgrProtocol, QmgrTrigger, TriggerReply};
use crate::log_warning;

struct Job {
    triggers: Vec<QmgrTrigger>,
    done: Option<mpsc::Sender<()>>,
}

/// The sending side; cheap to clone.
#[derive(Clone)]
pub struct TriggerSender {
    tx: mpsc::Sender<Job>,
    timeout: Duration,
}

impl std::fmt::Debug for TriggerSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TriggerSender")
    }
}

fn connect(socket: &PathBuf, timeout: Duration) -> std::io::Result<UnixStream> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    match read_frame_blocking::<crate::ipc::Hello, _>(&mut s, MAX_FRAME) {
        Ok(Some(h)) if h == QmgrProtocol::hello() => Ok(s),
        _ => Err(std::io::Error::other("unexpected hello")),
    }
}

fn deliver(conn: &mut Option<UnixStream>, socket: &PathBuf, timeout: Duration, triggers: &Vec<QmgrTrigger>) -> Result<(), String> {
    // One retry on a fresh connection: the receiver may have restarted since the last use.
    for _ in 0..2 {
        if conn.is_none() {
            *conn = Some(connect(socket, timeout).map_err(|e| e.to_string())?);
        }
        let Some(s) = conn.as_mut() else { continue };
        let ok = write_frame_blocking(s, triggers).is_ok() && matches!(read_frame_blocking::<TriggerReply, _>(s, MAX_FRAME), Ok(Some(_)));
        if ok {
            return Ok(());
        }
        *conn = None;
    }
    Err("no acknowledgement".into())
}

impl TriggerSender {
    /// Start the sender thread for the service at `socket`; `shown` names it in warnings
    /// (`public/qmgr`).
    pub fn start(socket: PathBuf, timeout: Duration, shown: String) -> TriggerSender {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::spawn(move || {
            let mut conn: Option<UnixStream> = None;
            for job in rx {
                if let Err(e) = deliver(&mut conn, &socket, timeout, &job.triggers) {
                    log_warning!("trigger {shown}: {e}");
                }
                if let Some(done) = job.done {
                    let _ = done.send(());
                }
            }
        });
        TriggerSender { tx, timeout }
    }

    /// Queue `triggers`; with `wait`, return once they were acknowledged (or failed).
    pub fn send(&self, triggers: &[QmgrTrigger], wait: bool) {
        let (done, ack) = if wait {
            let (d, a) = mpsc::channel();
            (Some(d), Some(a))
        } else {
            (None, None)
        };
        if self.tx.send(Job { triggers: triggers.to_vec(), done }).is_ok()
            && let Some(a) = ack
        {
            let _ = a.recv_timeout(self.timeout);
        }
    }
}
