//! The supervisor: one process per master.cf service, restarted when it exits, throttled when
//! it fails to start or restarts too often, woken up on its wakeup timer, reconfigured on
//! SIGHUP and stopped on SIGTERM. Signals, child control messages and timers all arrive on
//! one crossbeam channel, handled by a single thread that owns every piece of state.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use common::config::{ConfigError, MasterCf, MasterEntry, Params};
use common::ipc::control::{ChildEvent, MasterCommand};
use common::ipc::frame::{MAX_FRAME, read_frame_blocking, write_frame_blocking};
use common::{log_info, log_warning};

use crate::error::MasterError;
use crate::listen::open_listeners;
use crate::notify::sd_notify;
use crate::spawn::{Identity, command_path, relay_stderr, spawn_child};

/// Restarts of one service within `service_throttle_time` that count as a crash loop.
const CRASH_LOOP_RESTARTS: usize = 10;
/// How long `terminate` waits for children before SIGKILL (Postfix's suicide alarm).
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long start-up waits for every child's `Ready` before reporting anyway.
const READY_WAIT: Duration = Duration::from_secs(10);

/// Everything the supervisor thread reacts to.
#[derive(Debug)]
pub enum Msg {
    Signal(i32),
    Child { pid: i32, event: ChildEvent },
}

#[derive(Debug)]
struct Child {
    pid: i32,
    control: UnixStream,
    ready: bool,
    /// Started with every session slot held back (it replaced a draining process): it must
    /// hear how many to keep once it is ready, even if the predecessor is gone by then.
    slots_reserved: bool,
}

#[derive(Debug)]
struct Service {
    entry: MasterEntry,
    path: PathBuf,
    listeners: Vec<OwnedFd>,
    child: Option<Child>,
    throttled_until: Option<Instant>,
    next_wakeup: Option<Instant>,
    used: bool,
    restarts: VecDeque<Instant>,
}

/// A child told to drain: it finishes its sessions and exits; at `stop_at` it gets SIGTERM.
#[derive(Debug)]
struct Retired {
    path: PathBuf,
    stop_at: Option<Instant>,
    /// The master.cf service it served (`MasterEntry::key`).
    key: String,
    /// The sessions it last said it still serves.
    clients: u32,
}

/// Configuration read at start and at every reload.
struct Loaded {
    params: Params,
    settings: Settings,
    entries: Vec<MasterEntry>,
}

/// The master's own parameters, checked when the configuration is loaded: a bad value stops a
/// start and fails a reload instead of being replaced by a default.
struct Settings {
    throttle_time: Duration,
    default_process_limit: u32,
    inet_interfaces: Vec<String>,
    drain_timeout: Duration,
}

impl Settings {
    fn from_params(p: &Params) -> Result<Settings, MasterError> {
        let limit = p.int("default_process_limit")?;
        let default_process_limit =
            u32::try_from(limit).map_err(|_| ConfigError::value("default_process_limit", format!("bad value: \"{limit}\"")))?;
        Ok(Settings {
            throttle_time: p.time("service_throttle_time")?,
            default_process_limit,
            inet_interfaces: p.list("inet_interfaces")?,
            drain_timeout: p.time("drain_timeout")?,
        })
    }
}

pub struct Supervisor {
    config_dir: PathBuf,
    params: Params,
    settings: Settings,
    queue_dir: PathBuf,
    daemon_dir: PathBuf,
    identity: Option<Identity>,
    services: Vec<Service>,
    /// Children of removed or replaced services, draining; never restarted.
    retired: HashMap<i32, Retired>,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    ready_pipe: Option<File>,
    started: Instant,
}

/// A configuration that cannot be loaded, formatted for the log.
/// At a reload (`warn_unused`), parameters Postern does not use are logged and every table is
/// opened, as `postfix reload` does on the terminal (at start, `postfix start` has done it).
fn load(config_dir: &Path, warn_unused: bool) -> Result<Loaded, MasterError> {
    let params = Params::load(config_dir, &[])?;
    let master = MasterCf::load(&config_dir.join("master.cf"))?;
    for w in &params.main.warnings {
        log_warning!("{w}");
    }
    for w in &master.warnings {
        log_warning!("{w}");
    }
    if warn_unused {
        for w in common::config::check::unused_parameters(&params, Some(&master)) {
            log_warning!("{w}");
        }
        // A reload by SIGHUP alone (systemctl reload) gets the table check of `postfix reload`.
        common::config::check::open_tables(&params, Some(&master))?;
    }
    let disabled = params.list("master_service_disable")?;
    let entries = master.entries.into_iter().filter(|e| !disabled.iter().any(|d| *d == e.key() || d == e.kind.as_str())).collect();
    Ok(Loaded { settings: Settings::from_params(&params)?, params, entries })
}

/// The directory of daemon programs: `daemon_directory`, or the master's own directory.
fn daemon_dir(params: &Params) -> Result<PathBuf, MasterError> {
    let configured = params.get("daemon_directory")?;
    if !configured.is_empty() {
        return Ok(params.dir("daemon_directory")?);
    }
    let exe = std::env::current_exe().map_err(MasterError::OwnPath)?;
    Ok(exe.parent().map(Path::to_path_buf).unwrap_or_default())
}

fn describe_exit(status: WaitStatus) -> Option<String> {
    match status {
        WaitStatus::Exited(_, 0) => None,
        WaitStatus::Exited(_, code) => Some(format!("exit status {code}")),
        WaitStatus::Signaled(_, sig, _) => Some(format!("killed by signal {}", sig as i32)),
        _ => None,
    }
}

impl Supervisor {
    /// Load the configuration; the caller has already locked the pid file.
    pub fn new(config_dir: PathBuf, identity: Option<Identity>, ready_pipe: Option<File>) -> Result<Supervisor, MasterError> {
        let loaded = load(&config_dir, false)?;
        let queue_dir = loaded.params.dir("queue_directory")?;
        let daemon_dir = daemon_dir(&loaded.params)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut sup = Supervisor {
            config_dir,
            params: loaded.params,
            settings: loaded.settings,
            queue_dir,
            daemon_dir,
            identity,
            services: Vec::new(),
            retired: HashMap::new(),
            tx,
            rx,
            ready_pipe,
            started: Instant::now(),
        };
        for entry in loaded.entries {
            sup.add_service(entry)?;
        }
        Ok(sup)
    }

    pub fn sender(&self) -> Sender<Msg> {
        self.tx.clone()
    }

    /// Create a service's sockets; a socket that cannot be created is fatal at start-up and a
    /// warning at reload (the rest of the mail system keeps running).
    fn add_service(&mut self, entry: MasterEntry) -> Result<(), MasterError> {
        let listeners = open_listeners(&entry, &self.queue_dir, &self.settings.inet_interfaces)
            .map_err(|source| MasterError::Listen { service: entry.key(), source })?;
        let path = command_path(&self.daemon_dir, &entry.command);
        self.services.push(Service {
            entry,
            path,
            listeners,
            child: None,
            throttled_until: None,
            next_wakeup: None,
            used: false,
            restarts: VecDeque::new(),
        });
        Ok(())
    }

    /// Start every service, then serve events until SIGTERM.
    pub fn run(mut self) -> i32 {
        for i in 0..self.services.len() {
            self.start_child(i);
        }
        loop {
            self.report_ready_if_done();
            let timeout = self.next_deadline().map_or(Duration::from_secs(3600), |d| d.saturating_duration_since(Instant::now()));
            let rx = self.rx.clone();
            select! {
                recv(rx) -> msg => match msg {
                    Ok(Msg::Signal(sig)) => {
                        if let Some(code) = self.on_signal(sig) {
                            return code;
                        }
                    }
                    Ok(Msg::Child { pid, event }) => self.on_child_event(pid, event),
                    Err(_) => return 1,
                },
                default(timeout) => {}
            }
            self.on_timers();
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut deadlines: Vec<Instant> = self.services.iter().flat_map(|s| [s.throttled_until, s.next_wakeup]).flatten().collect();
        deadlines.extend(self.retired.values().filter_map(|r| r.stop_at));
        if self.ready_pipe.is_some() {
            deadlines.push(self.started + READY_WAIT);
        }
        deadlines.into_iter().min()
    }

    fn report_ready_if_done(&mut self) {
        if self.ready_pipe.is_none() {
            return;
        }
        let all_ready = self.services.iter().all(|s| s.throttled_until.is_some() || s.child.as_ref().is_some_and(|c| c.ready));
        if all_ready || self.started.elapsed() >= READY_WAIT {
            if let Some(mut pipe) = self.ready_pipe.take() {
                let _ = pipe.write_all(b"ready\n");
            }
            sd_notify(&format!("READY=1\nMAINPID={}", std::process::id()));
        }
    }

    fn start_child(&mut self, i: usize) {
        let limit = self.services[i].entry.process_limit(self.settings.default_process_limit);
        let svc = &mut self.services[i];
        let key = svc.entry.key();
        let reserved = self.retired.values().any(|r| r.key == key);
        match spawn_child(&svc.entry, &svc.path, &self.config_dir, &svc.listeners, limit, self.identity, reserved) {
            Ok(mut spawned) => {
                if let Some(stderr) = spawned.stderr.take() {
                    let program = Path::new(&svc.entry.command)
                        .file_name()
                        .map_or_else(|| svc.entry.command.clone(), |n| n.to_string_lossy().into_owned());
                    relay_stderr(program, spawned.pid, stderr);
                }
                let reader = match spawned.control.try_clone() {
                    Ok(r) => r,
                    Err(e) => {
                        log_warning!("{}: control channel: {e}", svc.path.display());
                        let _ = kill(Pid::from_raw(spawned.pid), Signal::SIGKILL);
                        return;
                    }
                };
                spawn_control_reader(spawned.pid, reader, self.tx.clone());
                svc.child = Some(Child { pid: spawned.pid, control: spawned.control, ready: false, slots_reserved: reserved });
            }
            Err(e) => {
                log_warning!("master_spawn: exec {}: {e}", svc.path.display());
                self.throttle(i, "bad command startup");
            }
        }
    }

    fn throttle(&mut self, i: usize, why: &str) {
        let until = Instant::now() + self.settings.throttle_time;
        let svc = &mut self.services[i];
        log_warning!("{}: {why} -- throttling", svc.path.display());
        svc.throttled_until = Some(until);
        svc.next_wakeup = None;
    }

    fn on_signal(&mut self, sig: i32) -> Option<i32> {
        match Signal::try_from(sig) {
            Ok(Signal::SIGCHLD) => {
                self.reap();
                None
            }
            Ok(Signal::SIGHUP) => {
                self.reload();
                None
            }
            Ok(Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT) => {
                self.terminate(sig);
                Some(0)
            }
            _ => None,
        }
    }

    fn reap(&mut self) {
        loop {
            let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(s) => s,
            };
            let Some(pid) = status.pid().map(Pid::as_raw) else {
                continue;
            };
            if let Some(r) = self.retired.remove(&pid) {
                if let Some(why) = describe_exit(status).filter(|_| !matches!(status, WaitStatus::Signaled(_, Signal::SIGTERM, _))) {
                    log_warning!("process {} pid {pid} {why}", r.path.display());
                }
                self.send_reserve(&r.key);
                continue;
            }
            if let Some(i) = self.services.iter().position(|s| s.child.as_ref().is_some_and(|c| c.pid == pid)) {
                self.on_child_exit(i, pid, status);
            }
        }
    }

    fn on_child_exit(&mut self, i: usize, pid: i32, status: WaitStatus) {
        let was_ready = self.services[i].child.take().is_some_and(|c| c.ready);
        if let Some(why) = describe_exit(status) {
            log_warning!("process {} pid {pid} {why}", self.services[i].path.display());
        }
        if !was_ready {
            self.throttle(i, "bad command startup");
            return;
        }
        let now = Instant::now();
        let window = self.settings.throttle_time;
        let svc = &mut self.services[i];
        svc.restarts.push_back(now);
        while svc.restarts.front().is_some_and(|t| now.duration_since(*t) > window) {
            svc.restarts.pop_front();
        }
        if svc.restarts.len() > CRASH_LOOP_RESTARTS {
            svc.restarts.clear();
            self.throttle(i, "too many restarts");
            return;
        }
        self.start_child(i);
    }

    /// Tell a service's process how many of its session slots draining predecessors hold.
    fn send_reserve(&mut self, key: &str) {
        let sessions = self.retired.values().filter(|r| r.key == key).map(|r| r.clients).sum();
        if let Some(c) = self.services.iter_mut().find(|s| s.entry.key() == key).and_then(|s| s.child.as_mut()).filter(|c| c.ready) {
            let _ = send_command(&mut c.control, &MasterCommand::Reserve { sessions });
        }
    }

    fn on_child_event(&mut self, pid: i32, event: ChildEvent) {
        if let (Some(r), ChildEvent::Load { clients }) = (self.retired.get_mut(&pid), &event) {
            r.clients = *clients;
            let key = r.key.clone();
            return self.send_reserve(&key);
        }
        let ready_key = match (&event, self.services.iter().find(|s| s.child.as_ref().is_some_and(|c| c.pid == pid && c.slots_reserved))) {
            (ChildEvent::Ready, Some(s)) => Some(s.entry.key()),
            _ => None,
        };
        let Some(svc) = self.services.iter_mut().find(|s| s.child.as_ref().is_some_and(|c| c.pid == pid)) else {
            return;
        };
        let now = Instant::now();
        match event {
            ChildEvent::Ready => {
                if let Some(c) = svc.child.as_mut() {
                    c.ready = true;
                }
                if let Some(w) = svc.entry.wakeup
                    && (!w.conditional || svc.used)
                    && svc.next_wakeup.is_none()
                {
                    svc.next_wakeup = Some(now + Duration::from_secs(w.seconds));
                }
            }
            ChildEvent::FirstUse => {
                svc.used = true;
                if let Some(w) = svc.entry.wakeup
                    && svc.next_wakeup.is_none()
                {
                    svc.next_wakeup = Some(now + Duration::from_secs(w.seconds));
                }
            }
            ChildEvent::Load { .. } => {}
        }
        // A process that replaced a draining one started with every slot held back.
        if let Some(key) = ready_key {
            self.send_reserve(&key);
        }
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        for (pid, r) in &mut self.retired {
            if r.stop_at.is_some_and(|t| t <= now) {
                log_warning!("process {} pid {pid} still draining after drain_timeout: stopping it", r.path.display());
                let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
                r.stop_at = None;
            }
        }
        for i in 0..self.services.len() {
            if self.services[i].throttled_until.is_some_and(|t| t <= now) {
                self.services[i].throttled_until = None;
                self.start_child(i);
            }
            let svc = &mut self.services[i];
            if let (Some(t), Some(w)) = (svc.next_wakeup, svc.entry.wakeup)
                && t <= now
            {
                svc.next_wakeup = Some(now + Duration::from_secs(w.seconds));
                if let Some(c) = svc.child.as_mut().filter(|c| c.ready)
                    && let Err(e) = send_command(&mut c.control, &MasterCommand::Wakeup)
                {
                    log_warning!("master_wakeup_timer_event: service {}({}): {e}", svc.entry.kind.as_str(), svc.entry.service);
                }
            }
        }
    }

    /// SIGHUP: re-read both files. New services start, removed ones stop, changed ones are
    /// replaced (their sockets kept when the address is the same), unchanged ones re-read
    /// main.cf in place.
    fn reload(&mut self) {
        log_info!("reload -- version {}, configuration {}", env!("CARGO_PKG_VERSION"), self.config_dir.display());
        sd_notify("RELOADING=1");
        let loaded = match load(&self.config_dir, true) {
            Ok(l) => l,
            Err(e) => {
                log_warning!("reload failed, keeping the running configuration: {e}");
                sd_notify("READY=1");
                return;
            }
        };
        if loaded.params.dir("queue_directory").ok().as_deref() != Some(self.queue_dir.as_path()) {
            log_warning!("queue_directory changes need a stop and start; keeping {}", self.queue_dir.display());
        }
        self.params = loaded.params;
        self.settings = loaded.settings;
        if let Ok(d) = daemon_dir(&self.params) {
            self.daemon_dir = d;
        }
        let mut old: Vec<Service> = std::mem::take(&mut self.services);
        for entry in loaded.entries {
            match old.iter().position(|s| s.entry.key() == entry.key()) {
                Some(pos) => {
                    let mut svc = old.remove(pos);
                    if svc.entry.tokens == entry.tokens {
                        if let Some(c) = svc.child.as_mut().filter(|c| c.ready) {
                            let _ = send_command(&mut c.control, &MasterCommand::Reload);
                        }
                        self.services.push(svc);
                    } else {
                        // Same name and type means the same address: keep the sockets, so no
                        // client is refused while the new process starts.
                        self.retire(&mut svc);
                        svc.path = command_path(&self.daemon_dir, &entry.command);
                        svc.entry = entry;
                        svc.throttled_until = None;
                        svc.next_wakeup = None;
                        svc.used = false;
                        self.services.push(svc);
                        let i = self.services.len() - 1;
                        self.start_child(i);
                    }
                }
                None => match self.add_service(entry) {
                    Ok(()) => {
                        let i = self.services.len() - 1;
                        self.start_child(i);
                    }
                    Err(e) => log_warning!("{e}"),
                },
            }
        }
        for mut svc in old {
            self.retire(&mut svc);
        }
        sd_notify("READY=1");
    }

    /// Stop a service's child without restarting it: it stops accepting at once (its clients
    /// go to the process that takes over: the master keeps the sockets) and finishes its
    /// sessions, or gets SIGTERM after `drain_timeout`.
    fn retire(&mut self, svc: &mut Service) {
        if let Some(mut c) = svc.child.take() {
            let stop_at = match send_command(&mut c.control, &MasterCommand::Drain) {
                Ok(()) => Some(Instant::now() + self.settings.drain_timeout),
                // A child that cannot hear us (not ready, stuck) is stopped now.
                Err(_) => {
                    let _ = kill(Pid::from_raw(c.pid), Signal::SIGTERM);
                    None
                }
            };
            self.retired.insert(c.pid, Retired { path: svc.path.clone(), stop_at, key: svc.entry.key(), clients: 0 });
        }
    }

    /// SIGTERM: stop every child, wait for them a little, then kill what is left.
    fn terminate(&mut self, sig: i32) {
        log_info!("terminating on signal {sig}");
        sd_notify("STOPPING=1");
        let mut pids: Vec<i32> = self.retired.keys().copied().collect();
        pids.extend(self.services.iter().filter_map(|s| s.child.as_ref().map(|c| c.pid)));
        for pid in &pids {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while !pids.is_empty() && Instant::now() < deadline {
            pids.retain(|pid| matches!(waitpid(Pid::from_raw(*pid), Some(WaitPidFlag::WNOHANG)), Ok(WaitStatus::StillAlive)));
            std::thread::sleep(Duration::from_millis(20));
        }
        for pid in pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid), None);
        }
    }
}

fn send_command(control: &mut UnixStream, cmd: &MasterCommand) -> Result<(), common::ipc::FrameError> {
    control.set_write_timeout(Some(Duration::from_secs(1)))?;
    write_frame_blocking(control, cmd)
}

/// Forward a child's control messages to the supervisor thread until the child closes it.
fn spawn_control_reader(pid: i32, mut stream: UnixStream, tx: Sender<Msg>) {
    std::thread::spawn(move || {
        while let Ok(Some(event)) = read_frame_blocking::<ChildEvent, _>(&mut stream, MAX_FRAME) {
            if tx.send(Msg::Child { pid, event }).is_err() {
                break;
            }
        }
    });
}
