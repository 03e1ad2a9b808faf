//! The session limit of a service (master.cf `maxproc`), stress, and idle-session eviction.

use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};

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
    /// Slots held back for the sessions of a process this one replaces.
    reserved: Arc<Reserve>,
}

/// Slots held for another process's sessions: `target` of them, `held` so far (a slot in use
/// here is taken over as soon as its session ends).
#[derive(Default)]
struct Reserve {
    target: AtomicUsize,
    held: Mutex<Vec<OwnedSemaphorePermit>>,
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
            reserved: Arc::default(),
        }
    }

    /// Hold back `sessions` slots (the master's [`Reserve`] command): the sessions a draining
    /// predecessor still serves count against this process's limit too.
    ///
    /// [`Reserve`]: crate::ipc::control::MasterCommand::Reserve
    pub fn reserve(&self, sessions: usize) {
        let r = &self.reserved;
        r.target.store(sessions, Ordering::Relaxed);
        let mut held = r.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        held.truncate(sessions);
        while held.len() < sessions {
            match self.slots.clone().try_acquire_owned() {
                Ok(p) => held.push(p),
                Err(_) => break,
            }
        }
        if held.len() < sessions {
            // The rest as this process's own sessions end.
            let (slots, reserved) = (self.slots.clone(), r.clone());
            tokio::spawn(async move {
                let wanted = || {
                    reserved.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len() < reserved.target.load(Ordering::Relaxed)
                };
                while wanted() {
                    let Ok(p) = slots.clone().acquire_owned().await else { return };
                    let mut held = reserved.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if held.len() < reserved.target.load(Ordering::Relaxed) {
                        held.push(p);
                    }
                }
            });
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
pub(super) async fn take_slot(limit: &SessionLimit, fd: RawFd, service: &str, last_warning: &mut Option<Instant>) -> OwnedSemaphorePermit {
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
