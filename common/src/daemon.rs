//! The daemon skeleton (Postfix `mail_server`): generic arguments, configuration and logging
//! set-up, listening sockets inherited from the master in the systemd `LISTEN_FDS` convention,
//! and the control channel to the master. A daemon turns all of it into one stream of
//! [`Event`]s and never builds a server loop of its own.
//!
//! Arguments the master passes: `-n service -t type [-o name=value]...` followed by the
//! master.cf arguments; the configuration directory comes in `MAIL_CONFIG`.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::config::{self, Params};
use crate::ipc::control::{CONTROL_FD_ENV, ChildEvent, MasterCommand};
use crate::ipc::frame::{MAX_FRAME, read_frame, write_frame};
use crate::maillog;

/// First inherited descriptor in the `LISTEN_FDS` convention.
pub const LISTEN_FDS_START: RawFd = 3;

/// What the daemon was started with.
#[derive(Debug, Clone, Default)]
pub struct DaemonArgs {
    /// master.cf service name (`-n`), defaults to the program name.
    pub service: String,
    /// master.cf type (`-t`).
    pub kind: String,
    pub overrides: Vec<(String, String)>,
    pub config_dir: PathBuf,
    /// Arguments after the generic options.
    pub args: Vec<String>,
    /// The master.cf process limit (`POSTERN_PROCESS_LIMIT`): concurrent clients of this
    /// service; `Some(0)` is unlimited; `None` when not started by the master.
    pub process_limit: Option<u32>,
}

/// Environment variable carrying the master.cf process limit to the child.
pub const PROCESS_LIMIT_ENV: &str = "POSTERN_PROCESS_LIMIT";

/// A command line the skeleton does not understand.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("usage: {0}")]
    Usage(String),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Param(#[from] config::ParamError),
    #[error("inherited descriptors: {0}")]
    Descriptors(String),
}

impl DaemonArgs {
    /// Parse the generic daemon options; `program` is the default service name.
    pub fn parse(program: &str, argv: &[String]) -> Result<DaemonArgs, DaemonError> {
        let mut a = DaemonArgs {
            service: program.to_string(),
            config_dir: config::config_dir(None),
            process_limit: std::env::var(PROCESS_LIMIT_ENV).ok().and_then(|v| v.parse().ok()),
            ..DaemonArgs::default()
        };
        let mut it = argv.iter();
        while let Some(arg) = it.next() {
            let mut value = |opt: &str| it.next().cloned().ok_or_else(|| DaemonError::Usage(format!("option {opt} requires an argument")));
            match arg.as_str() {
                "-n" => a.service = value("-n")?,
                "-t" => a.kind = value("-t")?,
                "-c" => a.config_dir = PathBuf::from(value("-c")?),
                "-o" => {
                    let pair = value("-o")?;
                    let (n, v) =
                        config::main_cf::split_name_value(&pair).ok_or_else(|| DaemonError::Usage(format!("-o {pair}: missing '='")))?;
                    a.overrides.push((n.to_string(), v.to_string()));
                }
                _ => a.args.push(arg.clone()),
            }
        }
        Ok(a)
    }

    /// Load main.cf with this service's overrides, plus the read-only `service_name` and
    /// `process_name` parameters, and check the values every program relies on.
    pub fn load_params(&self, program: &str) -> Result<Params, DaemonError> {
        let mut overrides = self.overrides.clone();
        overrides.push(("service_name".into(), self.service.clone()));
        overrides.push(("process_name".into(), program.to_string()));
        let params = Params::load(&self.config_dir, &overrides)?;
        // At start and at every reload: a value no program can use is refused before use.
        params.check_values()?;
        Ok(params)
    }
}

/// The standard start of every daemon: arguments, configuration, mail log. Errors are logged
/// as `fatal:` and end the process with status 1 (the master throttles such a service).
pub fn start(program: &str) -> (DaemonArgs, Params) {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = DaemonArgs::parse(program, &argv).unwrap_or_else(|e| fatal(&e.to_string()));
    let params = args.load_params(program).unwrap_or_else(|e| fatal(&e.to_string()));
    // Postfix tags lines with the program name (postfix/smtpd), not the master.cf service name;
    // `-o syslog_name=...` in master.cf changes the first part.
    maillog::init_from_params(&params, program, false);
    (args, params)
}

/// Log `fatal: text` and exit with status 1.
pub fn fatal(text: &str) -> ! {
    crate::log_fatal!("{text}");
    std::process::exit(1)
}

/// The tokio runtime of a daemon: `workers` threads (0: the current thread only). Failing to
/// build one is fatal.
pub fn runtime(workers: usize) -> tokio::runtime::Runtime {
    let built = if workers == 0 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build()
    };
    built.unwrap_or_else(|e| fatal(&format!("runtime: {e}")))
}

/// A listening socket handed down by the master (or by systemd socket activation).
#[derive(Debug)]
pub enum Listener {
    Unix(std::os::unix::net::UnixListener),
    Tcp(std::net::TcpListener),
}

/// Take the inherited listening sockets (`LISTEN_FDS`; `LISTEN_PID`, when set, must be ours).
pub fn inherited_listeners() -> Result<Vec<Listener>, DaemonError> {
    let Some(count) = std::env::var("LISTEN_FDS").ok() else {
        return Ok(Vec::new());
    };
    if let Ok(pid) = std::env::var("LISTEN_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return Ok(Vec::new());
    }
    let count: RawFd = count.parse().map_err(|_| DaemonError::Descriptors(format!("LISTEN_FDS={count}")))?;
    let mut out = Vec::new();
    for fd in LISTEN_FDS_START..LISTEN_FDS_START + count {
        let addr: nix::sys::socket::SockaddrStorage =
            nix::sys::socket::getsockname(fd).map_err(|e| DaemonError::Descriptors(format!("fd {fd}: {e}")))?;
        // SAFETY: the descriptor was handed to us by our parent for exactly this purpose and
        // nothing else in this process owns it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        if addr.as_unix_addr().is_some() {
            out.push(Listener::Unix(owned.into()));
        } else {
            out.push(Listener::Tcp(owned.into()));
        }
    }
    // SAFETY: single-threaded at this point of start-up; children must not inherit these.
    unsafe {
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_PID");
    }
    Ok(out)
}

/// How many sessions a service holds at once (its master.cf `maxproc`). The acceptor takes a
/// slot before it accepts, so a client beyond the limit waits in the listen backlog, as it
/// would for a busy Postfix service, instead of being refused. While a client waits the
/// service is under stress (Postfix's `stress` parameter), which sessions watch through
/// [`SessionLimit::stress`]. A reload may change the limit; sessions running across it keep
/// their slots, so old and new sessions together never exceed the new limit.
///
/// Beyond Postfix: a session costs kilobytes here, not a process, so a service can afford to
/// know which of its sessions sit idle. Under stress, for each client waiting in the backlog,
/// the session that has waited longest for a command (at least the eviction time) is told to
/// give up its slot ([`IdleSession::evicted`]): a thousand idle connections delay a
/// legitimate client by seconds, not by minutes.
#[derive(Clone)]
pub struct SessionLimit {
    slots: Arc<Semaphore>,
    limit: Arc<AtomicUsize>,
    stress: Arc<watch::Sender<bool>>,
    idle: Arc<Mutex<IdleBoard>>,
    /// Milliseconds a session must have been idle before it may be evicted; 0: never.
    eviction_ms: Arc<AtomicU64>,
}

/// The sessions waiting for their client's next command, oldest first.
#[derive(Default)]
struct IdleBoard {
    next_id: u64,
    sessions: BTreeMap<(Instant, u64), Arc<Notify>>,
}

/// A session waiting for a command, registered until dropped.
pub struct IdleSession {
    board: Arc<Mutex<IdleBoard>>,
    key: (Instant, u64),
    evict: Arc<Notify>,
}

impl IdleSession {
    /// Resolves when the service wants this session's slot for a waiting client.
    pub async fn evicted(&self) {
        self.evict.notified().await
    }
}

impl Drop for IdleSession {
    fn drop(&mut self) {
        lock_board(&self.board).sessions.remove(&self.key);
    }
}

fn lock_board(board: &Mutex<IdleBoard>) -> std::sync::MutexGuard<'_, IdleBoard> {
    // A list of waiting sessions stays usable whatever a panicking holder was doing.
    board.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Slots beyond this are "unlimited" (maxproc 0).
const UNLIMITED_SESSIONS: usize = Semaphore::MAX_PERMITS >> 1;

/// How often a service at its limit looks for clients waiting in the backlog.
const BACKLOG_CHECK: Duration = Duration::from_millis(100);

/// Postfix's master warns about a busy service at most this often.
const BUSY_WARNING_INTERVAL: Duration = Duration::from_secs(1000);

impl SessionLimit {
    /// `limit` sessions at once (0 means no limit); idle sessions may be evicted under stress
    /// after `eviction` (zero: never).
    pub fn new(limit: usize, eviction: Duration) -> SessionLimit {
        let limit = if limit == 0 { UNLIMITED_SESSIONS } else { limit.min(UNLIMITED_SESSIONS) };
        SessionLimit {
            slots: Arc::new(Semaphore::new(limit)),
            limit: Arc::new(AtomicUsize::new(limit)),
            stress: Arc::new(watch::Sender::new(false)),
            idle: Arc::default(),
            eviction_ms: Arc::new(AtomicU64::new(eviction.as_millis() as u64)),
        }
    }

    /// The limit in force.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Change the limits (reload). Slots taken by running sessions stay taken: a lower limit
    /// takes effect as those sessions end.
    pub fn set(&self, limit: usize, eviction: Duration) {
        self.eviction_ms.store(eviction.as_millis() as u64, Ordering::Relaxed);
        let limit = if limit == 0 { UNLIMITED_SESSIONS } else { limit.min(UNLIMITED_SESSIONS) };
        let old = self.limit.swap(limit, Ordering::Relaxed);
        if limit > old {
            self.slots.add_permits(limit - old);
        } else if limit < old {
            let excess = old - limit;
            let rest = excess - self.slots.forget_permits(excess);
            if rest > 0 {
                let slots = self.slots.clone();
                tokio::spawn(async move {
                    if let Ok(p) = slots.acquire_many_owned(u32::try_from(rest).unwrap_or(u32::MAX)).await {
                        p.forget();
                    }
                });
            }
        }
    }

    /// Whether clients are waiting for a session slot, and when that changes.
    pub fn stress(&self) -> watch::Receiver<bool> {
        self.stress.subscribe()
    }

    /// Sessions running now.
    pub fn in_use(&self) -> usize {
        self.limit().saturating_sub(self.slots.available_permits())
    }

    /// Say that a session waits for its client's next command, until the guard is dropped.
    pub fn idle(&self) -> IdleSession {
        let mut board = lock_board(&self.idle);
        board.next_id += 1;
        let key = (Instant::now(), board.next_id);
        let evict = Arc::new(Notify::new());
        board.sessions.insert(key, evict.clone());
        IdleSession { board: self.idle.clone(), key, evict }
    }

    /// Ask up to `waiting` sessions idle for at least the eviction time, oldest first, to give
    /// up their slots. Returns how many were asked.
    fn evict_idle(&self, waiting: usize) -> usize {
        let ms = self.eviction_ms.load(Ordering::Relaxed);
        if ms == 0 || waiting == 0 {
            return 0;
        }
        let Some(cutoff) = Instant::now().checked_sub(Duration::from_millis(ms)) else { return 0 };
        let mut board = lock_board(&self.idle);
        let chosen: Vec<(Instant, u64)> = board.sessions.keys().take_while(|(since, _)| *since <= cutoff).take(waiting).copied().collect();
        for key in &chosen {
            if let Some(n) = board.sessions.remove(key) {
                n.notify_one();
            }
        }
        chosen.len()
    }
}

/// How many clients wait in a TCP listening socket's backlog: Linux reports the accept queue
/// of a listener in `tcpi_unacked`. `None` where that cannot be read.
fn backlog_len(fd: RawFd) -> Option<usize> {
    // SAFETY: tcp_info is plain data; getsockopt writes at most `len` bytes into it.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: valid descriptor number, pointer and length for this option.
    let rc = unsafe { libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, (&raw mut info).cast(), &mut len) };
    (rc == 0).then_some(info.tcpi_unacked as usize)
}

/// Whether a listening socket has a client waiting to be accepted (no waiting, no accepting).
fn backlog_waiting(fd: RawFd) -> bool {
    if let Some(n) = backlog_len(fd) {
        return n > 0;
    }
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd, a zero timeout: poll only reports readiness.
    unsafe { libc::poll(&mut pfd, 1, 0) > 0 && pfd.revents & libc::POLLIN != 0 }
}

/// Take a session slot; while none is free and a client waits, the service is under stress.
async fn take_slot(limit: &SessionLimit, fd: RawFd, service: &str, last_warning: &mut Option<Instant>) -> OwnedSemaphorePermit {
    if let Ok(p) = limit.slots.clone().try_acquire_owned() {
        return p;
    }
    let acquire = limit.slots.clone().acquire_owned();
    tokio::pin!(acquire);
    loop {
        tokio::select! {
            p = &mut acquire => match p {
                Ok(p) => {
                    if !backlog_waiting(fd) {
                        limit.stress.send_replace(false);
                    }
                    return p;
                }
                // The semaphore is never closed; should it be, stop taking clients.
                Err(_) => std::future::pending::<()>().await,
            },
            _ = tokio::time::sleep(BACKLOG_CHECK) => {
                if !backlog_waiting(fd) {
                    continue;
                }
                limit.evict_idle(backlog_len(fd).unwrap_or(1));
                if !*limit.stress.borrow() {
                    limit.stress.send_replace(true);
                    if last_warning.is_none_or(|t| t.elapsed() >= BUSY_WARNING_INTERVAL) {
                        *last_warning = Some(Instant::now());
                        crate::log_warning!(
                            "service \"{service}\" has reached its process limit \"{}\": new clients may experience noticeable delays",
                            limit.limit()
                        );
                    }
                }
            }
        }
    }
}

/// What the daemon's main loop reacts to.
#[derive(Debug)]
pub enum Event {
    Unix(tokio::net::UnixStream),
    /// A TCP client, with its session slot when the service has a [`SessionLimit`].
    Tcp(tokio::net::TcpStream, std::net::SocketAddr, Option<OwnedSemaphorePermit>),
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

/// The daemon's connection to the world: accepted clients and master commands.
pub struct Daemon {
    pub service: String,
    events: mpsc::Receiver<Event>,
    control_tx: Option<mpsc::UnboundedSender<ChildEvent>>,
    used: bool,
}

impl Daemon {
    /// Start accepting on `listeners` and reading the control channel. Must run inside a tokio
    /// runtime.
    pub fn new(service: &str, listeners: Vec<Listener>) -> Result<Daemon, DaemonError> {
        Daemon::with_session_limit(service, listeners, None)
    }

    /// As [`Daemon::new`], with TCP clients accepted only while `limit` has a free slot.
    pub fn with_session_limit(service: &str, listeners: Vec<Listener>, limit: Option<SessionLimit>) -> Result<Daemon, DaemonError> {
        let (tx, rx) = mpsc::channel(1024);
        for l in listeners {
            spawn_acceptor(l, tx.clone(), limit.clone(), service.to_string()).map_err(|e| DaemonError::Descriptors(e.to_string()))?;
        }
        let control_tx = spawn_control(tx.clone())?;
        spawn_signal_watch(tx);
        Ok(Daemon { service: service.to_string(), events: rx, control_tx, used: false })
    }

    /// Tell the master that initialization is done.
    pub fn ready(&self) {
        self.notify(ChildEvent::Ready);
    }

    fn notify(&self, ev: ChildEvent) {
        if let Some(tx) = &self.control_tx {
            let _ = tx.send(ev);
        }
    }

    /// The next event. After the first accepted client the master is told (`?` wakeups).
    pub async fn next(&mut self) -> Event {
        let ev = self.events.recv().await.unwrap_or(Event::MasterGone);
        if matches!(ev, Event::Unix(_) | Event::Tcp(..)) && !self.used {
            self.used = true;
            self.notify(ChildEvent::FirstUse);
        }
        ev
    }
}

fn spawn_acceptor(l: Listener, tx: mpsc::Sender<Event>, limit: Option<SessionLimit>, service: String) -> std::io::Result<()> {
    match l {
        Listener::Unix(l) => {
            l.set_nonblocking(true)?;
            let l = tokio::net::UnixListener::from_std(l)?;
            tokio::spawn(async move {
                loop {
                    match l.accept().await {
                        Ok((s, _)) => {
                            if tx.send(Event::Unix(s)).await.is_err() {
                                break;
                            }
                        }
                        Err(e) => accept_trouble(e).await,
                    }
                }
            });
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
                            if tx.send(Event::Tcp(s, a, slot)).await.is_err() {
                                break;
                            }
                        }
                        Err(e) => accept_trouble(e).await,
                    }
                }
            });
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generic_args() {
        let argv: Vec<String> = ["-n", "flush2", "-t", "unix", "-o", "a = b", "-x", "extra"].iter().map(|s| s.to_string()).collect();
        let a = DaemonArgs::parse("flush", &argv).unwrap();
        assert_eq!(a.service, "flush2");
        assert_eq!(a.kind, "unix");
        assert_eq!(a.overrides, vec![("a".to_string(), "b".to_string())]);
        assert_eq!(a.args, vec!["-x".to_string(), "extra".to_string()]);
        assert!(DaemonArgs::parse("flush", &["-n".to_string()]).is_err());
        assert!(DaemonArgs::parse("flush", &["-o".to_string(), "noequals".to_string()]).is_err());
    }
}
