//! Triggers to a trigger service (the queue manager, pickup) over a kept connection.
//!
//! [`TriggerConn`] sends and waits for the acknowledgement on the caller's thread: the flush
//! service needs `ForgetDeadSites` to arrive before it moves files (Postfix's 2.4 race fix), as
//! directly as possible. [`TriggerSender`] queues triggers to one thread that sends them in
//! order, so that a busy sender (smtpd under load) costs the receiver one connection instead
//! of one per trigger and nobody waits.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use crate::ipc::Protocol;
use crate::ipc::frame::{MAX_FRAME, read_frame_blocking, write_frame_blocking};
use crate::ipc::qmgr::{QmgrProtocol, QmgrTrigger, TriggerReply};
use crate::log_warning;

/// A kept connection to a trigger service; sending waits for the acknowledgement.
#[derive(Debug)]
pub struct TriggerConn {
    socket: PathBuf,
    timeout: Duration,
    /// How warnings name the service (`public/qmgr`).
    shown: String,
    conn: Option<UnixStream>,
}

impl TriggerConn {
    pub fn new(socket: PathBuf, timeout: Duration, shown: String) -> TriggerConn {
        TriggerConn { socket, timeout, shown, conn: None }
    }

    fn connect(&self) -> std::io::Result<UnixStream> {
        let mut s = UnixStream::connect(&self.socket)?;
        s.set_read_timeout(Some(self.timeout))?;
        s.set_write_timeout(Some(self.timeout))?;
        match read_frame_blocking::<crate::ipc::Hello, _>(&mut s, MAX_FRAME) {
            Ok(Some(h)) if h == QmgrProtocol::hello() => Ok(s),
            _ => Err(std::io::Error::other("unexpected hello")),
        }
    }

    fn deliver(&mut self, triggers: &[QmgrTrigger]) -> Result<(), String> {
        // One retry on a fresh connection: the receiver may have restarted since the last use.
        for _ in 0..2 {
            if self.conn.is_none() {
                self.conn = Some(self.connect().map_err(|e| e.to_string())?);
            }
            let Some(s) = self.conn.as_mut() else { continue };
            let ok =
                write_frame_blocking(s, &triggers).is_ok() && matches!(read_frame_blocking::<TriggerReply, _>(s, MAX_FRAME), Ok(Some(_)));
            if ok {
                return Ok(());
            }
            self.conn = None;
        }
        Err("no acknowledgement".into())
    }

    /// Send `triggers` and wait until the service acknowledged them; a failure is logged.
    pub fn send(&mut self, triggers: &[QmgrTrigger]) {
        if let Err(e) = self.deliver(triggers) {
            log_warning!("trigger {}: {e}", self.shown);
        }
    }
}

/// The queueing side; cheap to clone.
#[derive(Clone)]
pub struct TriggerSender {
    tx: mpsc::Sender<Vec<QmgrTrigger>>,
}

impl std::fmt::Debug for TriggerSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TriggerSender")
    }
}

impl TriggerSender {
    /// Start the sender thread for the service at `socket`; `shown` names it in warnings
    /// (`public/qmgr`).
    pub fn start(socket: PathBuf, timeout: Duration, shown: String) -> TriggerSender {
        let (tx, rx) = mpsc::channel::<Vec<QmgrTrigger>>();
        std::thread::spawn(move || {
            let mut conn = TriggerConn::new(socket, timeout, shown);
            for mut triggers in rx.iter() {
                // Whatever queued up while the last send was on its way goes as one frame: the
                // receiver acts on a burst of triggers once anyway.
                while let Ok(more) = rx.try_recv() {
                    for t in more {
                        if !triggers.contains(&t) {
                            triggers.push(t);
                        }
                    }
                }
                conn.send(&triggers);
            }
        });
        TriggerSender { tx }
    }

    /// Queue `triggers` behind every earlier one (a trigger already queued and not yet sent is
    /// not sent twice); nobody waits.
    pub fn send(&self, triggers: &[QmgrTrigger]) {
        let _ = self.tx.send(triggers.to_vec());
    }
}
