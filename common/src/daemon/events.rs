//! Accepted clients, master commands and signals as one stream of [`Event`]s.

use std::os::fd::{AsRawFd, FromRawFd, RawFd};

use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::limit::{SessionLimit, take_slot};
use super::{DaemonError, Listener};
use crate::ipc::control::{CONTROL_FD_ENV, ChildEvent, MasterCommand};
use crate::ipc::frame::{MAX_FRAME, read_frame, write_frame};
use crate::log_warning;

/// What the daemon's main loop reacts to.
#[derive(Debug)]
pub enum Event {
    Client(Client),
    Command(MasterCommand),
    /// The master went away (control channel closed): finish up and exit.
    MasterGone,
    /// SIGTERM.
    Terminate,
}

impl Event {
    /// Note a stop event (drain, SIGTERM, master gone) in the log the way Postfix does:
    /// `master disconnect -- exiting` when the master went away.
    pub fn log_stop(&self) {
        if matches!(self, Event::MasterGone) {
            crate::log_warning!("master disconnect -- exiting");
        }
    }
}

/// An accepted client.
#[derive(Debug)]
pub enum Client {
    Unix(tokio::net::UnixStream),
    /// A TCP client, with its session slot when the service has a [`SessionLimit`].
    Tcp {
        stream: tokio::net::TcpStream,
        peer: std::net::SocketAddr,
        slot: Option<OwnedSemaphorePermit>,
    },
}

impl Client {
    /// The client of a `unix` service; a TCP client (a master.cf mistake) is logged and dropped.
    pub fn into_unix(self, program: &str) -> Option<tokio::net::UnixStream> {
        match self {
            Client::Unix(stream) => Some(stream),
            Client::Tcp { .. } => {
                log_warning!("{program}: ignoring a TCP connection; this is a unix service");
                None
            }
        }
    }
}

/// The daemon's connection to the world: accepted clients and master commands.
pub struct Daemon {
    events: mpsc::Receiver<Event>,
    /// The accepting tasks, ended by [`Daemon::stop_accepting`].
    acceptors: Vec<tokio::task::JoinHandle<()>>,
    control_tx: Option<mpsc::UnboundedSender<ChildEvent>>,
    used: bool,
}

impl Daemon {
    /// Start accepting on `listeners` (TCP clients only while `limit` has a free slot) and
    /// reading the control channel. Must run inside a tokio runtime.
    pub fn with_session_limit(service: &str, listeners: Vec<Listener>, limit: Option<SessionLimit>) -> Result<Daemon, DaemonError> {
        let (tx, rx) = mpsc::channel(1024);
        let mut acceptors = Vec::new();
        for l in listeners {
            acceptors.push(
                spawn_acceptor(l, tx.clone(), limit.clone(), service.to_string()).map_err(|e| DaemonError::Descriptors(e.to_string()))?,
            );
        }
        let control_tx = spawn_control(tx.clone())?;
        spawn_signal_watch(tx);
        Ok(Daemon { events: rx, acceptors, control_tx, used: false })
    }

    /// Accept no more clients: this process's copies of the listening sockets close, and the
    /// master's copies stay open, so new clients go to whichever process takes over.
    pub fn stop_accepting(&mut self) {
        for a in self.acceptors.drain(..) {
            a.abort();
        }
    }

    /// Tell the master that initialization is done.
    pub fn ready(&self) {
        self.notify(ChildEvent::Ready);
    }

    /// Tell the master how many clients this process serves now.
    pub fn report_load(&self, clients: usize) {
        self.notify(ChildEvent::Load { clients: u32::try_from(clients).unwrap_or(u32::MAX) });
    }

    fn notify(&self, ev: ChildEvent) {
        if let Some(tx) = &self.control_tx {
            let _ = tx.send(ev);
        }
    }

    /// The next event. After the first accepted client the master is told (`?` wakeups).
    pub async fn next(&mut self) -> Event {
        let ev = self.events.recv().await.unwrap_or(Event::MasterGone);
        self.note_use(&ev);
        ev
    }

    /// The next event if one is already queued (a client accepted before
    /// [`Daemon::stop_accepting`] waits there for its banner).
    pub fn try_next(&mut self) -> Option<Event> {
        let ev = self.events.try_recv().ok()?;
        self.note_use(&ev);
        Some(ev)
    }

    fn note_use(&mut self, ev: &Event) {
        if matches!(ev, Event::Client(_)) && !self.used {
            self.used = true;
            self.notify(ChildEvent::FirstUse);
        }
    }
}

fn spawn_acceptor(
    l: Listener,
    tx: mpsc::Sender<Event>,
    limit: Option<SessionLimit>,
    service: String,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    Ok(match l {
        Listener::Unix(l) => {
            l.set_nonblocking(true)?;
            let l = tokio::net::UnixListener::from_std(l)?;
            tokio::spawn(async move {
                loop {
                    match l.accept().await {
                        Ok((s, _)) => {
                            if tx.send(Event::Client(Client::Unix(s))).await.is_err() {
                                break;
                            }
                        }
                        Err(e) => accept_trouble(e).await,
                    }
                }
            })
        }
        Listener::Tcp(l) => {
            l.set_nonblocking(true)?;
            let l = tokio::net::TcpListener::from_std(l)?;
            tokio::spawn(async move {
                let fd = l.as_raw_fd();
                let mut last_warning = None;
                loop {
                    let slot = match &limit {
                        Some(limit) => Some(take_slot(limit, fd, &service, &mut last_warning).await),
                        None => None,
                    };
                    match l.accept().await {
                        Ok((s, a)) => {
                            if tx.send(Event::Client(Client::Tcp { stream: s, peer: a, slot })).await.is_err() {
                                break;
                            }
                        }
                        Err(e) => accept_trouble(e).await,
                    }
                }
            })
        }
    })
}

/// Accept errors (EMFILE, ECONNABORTED) are transient: log, pause briefly, go on.
async fn accept_trouble(e: std::io::Error) {
    crate::log_warning!("accept: {e}");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
}

fn spawn_control(tx: mpsc::Sender<Event>) -> Result<Option<mpsc::UnboundedSender<ChildEvent>>, DaemonError> {
    let Some(fd) = std::env::var(CONTROL_FD_ENV).ok() else {
        return Ok(None);
    };
    let fd: RawFd = fd.parse().map_err(|_| DaemonError::Descriptors(format!("{CONTROL_FD_ENV}={fd}")))?;
    // SAFETY: the master handed us this end of the control socketpair; nothing else owns it.
    let std_stream = unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) };
    std_stream.set_nonblocking(true).map_err(|e| DaemonError::Descriptors(e.to_string()))?;
    let stream = tokio::net::UnixStream::from_std(std_stream).map_err(|e| DaemonError::Descriptors(e.to_string()))?;
    let (mut rd, mut wr) = stream.into_split();
    let (ctx, mut crx) = mpsc::unbounded_channel::<ChildEvent>();
    tokio::spawn(async move {
        while let Some(ev) = crx.recv().await {
            if write_frame(&mut wr, &ev).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        loop {
            match read_frame::<MasterCommand, _>(&mut rd, MAX_FRAME).await {
                Ok(Some(cmd)) => {
                    if tx.send(Event::Command(cmd)).await.is_err() {
                        break;
                    }
                }
                Ok(None) | Err(_) => {
                    let _ = tx.send(Event::MasterGone).await;
                    break;
                }
            }
        }
    });
    Ok(Some(ctx))
}

fn spawn_signal_watch(tx: mpsc::Sender<Event>) {
    tokio::spawn(async move {
        if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            term.recv().await;
            let _ = tx.send(Event::Terminate).await;
        }
    });
}
