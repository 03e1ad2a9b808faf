//! Triggers to the queue manager, sent in order from one thread over one connection.
//!
//! `ForgetDeadSites` must reach the queue manager before a send moves any file (else a scan in
//! between could defer the mail again at once: Postfix's 2.4 race fix), so the caller waits for
//! its acknowledgement. `ScanIncoming` need not delay the ETRN reply: it is queued behind the
//! earlier triggers on the same connection, so it still arrives after them, and nobody waits.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use common::ipc::Protocol;
use common::ipc::frame::{MAX_FRAME, read_frame_blocking, write_frame_blocking};
use common::ipc::qmgr::{QmgrProtocol, QmgrTrigger, TriggerReply};
use common::log_warning;

use crate::service::Notify;

struct Job {
    triggers: Vec<QmgrTrigger>,
    done: Option<mpsc::Sender<()>>,
}

fn connect(socket: &PathBuf, timeout: Duration) -> std::io::Result<UnixStream> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    match read_frame_blocking::<common::ipc::Hello, _>(&mut s, MAX_FRAME) {
        Ok(Some(h)) if h == QmgrProtocol::hello() => Ok(s),
        _ => Err(std::io::Error::other("unexpected hello")),
    }
}

fn send(conn: &mut Option<UnixStream>, socket: &PathBuf, timeout: Duration, triggers: &Vec<QmgrTrigger>) -> Result<(), String> {
    // One retry on a fresh connection: the queue manager may have restarted since the last use.
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

/// Start the sender thread; returns the notifier the flush service uses.
pub fn qmgr_notifier(socket: PathBuf, timeout: Duration, shown: String) -> Notify {
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::spawn(move || {
        let mut conn: Option<UnixStream> = None;
        for job in rx {
            if let Err(e) = send(&mut conn, &socket, timeout, &job.triggers) {
                log_warning!("trigger {shown}: {e}");
            }
            if let Some(done) = job.done {
                let _ = done.send(());
            }
        }
    });
    Box::new(move |triggers: &[QmgrTrigger]| {
        let must_arrive_first = triggers.contains(&QmgrTrigger::ForgetDeadSites);
        let (done, wait) = if must_arrive_first {
            let (d, w) = mpsc::channel();
            (Some(d), Some(w))
        } else {
            (None, None)
        };
        if tx.send(Job { triggers: triggers.to_vec(), done }).is_ok()
            && let Some(w) = wait
        {
            let _ = w.recv_timeout(timeout);
        }
    })
}
