//! postfix - Postern control program
//!
//! # Synopsis
//! `postfix [-Dv] [-c config_dir] command`
//!
//! # Description
//! The control program of the mail system: it checks the configuration and starts, stops and
//! signals the master. `-c` (or `MAIL_CONFIG`) selects the configuration directory; `-D` and
//! `-v` are accepted for Postfix compatibility and do nothing. Messages go to the mail log and
//! to standard error, as `postfix-script`'s do. Commands:
//!
//! * `check`: validate `main.cf` (every parameter value) and `master.cf`, create missing queue
//!   directories and, when run as root, check that `mail_owner` can read the configuration
//!   and reach the queue. It opens every lookup table named in a main.cf setting, a default
//!   or a master.cf `-o` override, and stops with exit status 1 naming the file, line and
//!   parameter of a table that cannot be opened (`main.cf, line 7: parameter transport_maps:
//!   open database /etc/postern/transport.db: No such file or directory`, `unsupported
//!   dictionary type: btree`). It warns about parameters Postern does not use: Postfix's
//!   `/etc/postern/main.cf: unused parameter: foo=bar`, and `... line N: Postfix parameter not
//!   implemented by Postern: name=value`.
//! * `start`: run `check`, then start the master in the background and return once it
//!   reports that its services are ready.
//! * `start-fg`: the same with the master in the foreground (systemd `Type=notify`, containers).
//! * `stop`: send SIGTERM to the master, wait, and finally SIGKILL its process group.
//! * `abort`: send SIGTERM to the master without waiting.
//! * `reload`: run `check`'s table check, then send SIGHUP: the master and its services re-read
//!   `main.cf` and `master.cf`.
//! * `status`: say whether the mail system is running (with the master's pid); exit status 1
//!   when it is not.
//! * `flush`: the same as `postqueue -f`.
//! * `odmr` (Postern): ask the ODMR customer service (odmr(8), socket
//!   `public/$odmr_service_name`) to poll its provider now; it returns once the service has
//!   the request, not after the poll (the poll's result is in the mail log).
//! * `logrotate`: when the log is a file (`maillog_file`), rename it to
//!   `<maillog_file>.<suffix>` (`maillog_file_rotate_suffix`, a date(1) format), then compress
//!   that with `maillog_file_compressor`. Every process reopens the log on its next line. A
//!   `maillog_file` under `/dev/` is not rotated.
//!
//! # Diagnostics
//! Exit status 0 on success, 1 on an error (`postfix/postfix-script: fatal: ...`), including a
//! bad option (the usage line) or an unknown command (`unknown command: 'strat'. Usage: postfix
//! start (or stop, reload, ...)`). logrotate: `empty 'maillog_file' parameter value - logfile
//! rotation failed`, `not rotating '/dev/stdout'`, `logfile '...' rotation failed: ...`.
//!
//! # Files
//! `$config_directory/main.cf`, `$config_directory/master.cf`,
//! `$queue_directory/pid/master.pid`.
//!
//! # Configuration parameters
//! `config_directory`, `daemon_directory` (where `master` is; empty: beside this program),
//! `queue_directory`, `mail_owner`, `maillog_file`, `maillog_file_compressor`,
//! `maillog_file_rotate_suffix`.

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use common::config::users::MailOwner;
use common::config::{self, MasterCf, Params, params::ParamKind, params::param_table};
use common::ipc::endpoint::{Class, display_path, service_path};
use common::ipc::trigger::Trigger;
use common::ipc::trigger_client::{TriggerError, trigger_blocking};
use common::queue::Spool;
use common::{log_fatal, log_info, log_warning, maillog, pidfile};

use crate::postfix_error::PostfixError;

const USAGE: &str = "usage: postfix [-c config_dir] [-Dv] command";
/// How long `start` waits for the master to report ready.
const START_WAIT: Duration = Duration::from_secs(30);
/// How long `stop` waits before SIGKILL (the master itself allows its children 5 seconds).
const STOP_WAIT: Duration = Duration::from_secs(10);

struct Ctx {
    dir: PathBuf,
    params: Params,
}

impl Ctx {
    fn pid_path(&self) -> Result<PathBuf, PostfixError> {
        Ok(common::queue::master_pid_file(&self.params.dir("queue_directory")?))
    }

    fn running(&self) -> Result<Option<u32>, PostfixError> {
        Ok(pidfile::running_pid(&self.pid_path()?))
    }

    /// The master program: in `daemon_directory`, or beside this program.
    fn master_path(&self) -> Result<PathBuf, PostfixError> {
        let configured = self.params.get("daemon_directory")?;
        let dir = if configured.is_empty() {
            std::env::current_exe()
                .map_err(|e| PostfixError::Program("current_exe", e))?
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
        } else {
            self.params.dir("daemon_directory")?
        };
        Ok(dir.join("master"))
    }
}

/// Validate both files (values, tables, unused parameters) and create missing queue
/// directories. Problems that stop the mail system are errors; the rest are warnings. `start`
/// runs this first; `reload` runs its table check, so a table that cannot be opened stops
/// either (exit 1).
pub fn check(dir: &Path, params: &Params) -> Result<(), PostfixError> {
    for w in &params.main.warnings {
        log_warning!("{w}");
    }
    for (name, def) in param_table() {
        if params.main.get(name).is_none() {
            continue;
        }
        let bad = match def.kind {
            ParamKind::Time => params.time(name).err(),
            ParamKind::Int => params.int(name).err(),
            ParamKind::Bool => params.bool(name).err(),
            ParamKind::String | ParamKind::List => params.get(name).err(),
        };
        if let Some(e) = bad {
            let line = params.main.get(name).map_or(0, |s| s.line);
            return Err(PostfixError::BadValue { path: dir.join("main.cf").display().to_string(), line, error: e });
        }
    }
    params.check_values()?;
    // Notification settings (notify_classes, bounce_template_file) that the queue manager would
    // refuse at start.
    common::bounce::BounceConfig::from_params(params)?;
    for list in ["relay_domains", "fast_flush_domains"] {
        params.domain_list(list)?;
    }
    let master = MasterCf::load(&dir.join("master.cf"))?;
    for w in &master.warnings {
        log_warning!("{w}");
    }
    check_tables_and_names(params, &master)?;
    let spool = Spool::from_params(params)?;
    spool.create_dirs().map_err(|source| PostfixError::CreateQueue { path: spool.root.display().to_string(), source })?;
    check_mail_owner_access(dir, params, &spool)
}

/// Warn about parameters Postern does not use, and open every table: one that cannot be
/// opened would stop a daemon at its first lookup, so it is an error now.
fn check_tables_and_names(params: &Params, master: &MasterCf) -> Result<(), PostfixError> {
    for w in config::check::unused_parameters(params, Some(master)) {
        log_warning!("{w}");
    }
    Ok(config::check::open_tables(params, Some(master))?)
}

/// `reload`: the warnings and the table check, then SIGHUP. Other problems are left to the
/// master, which keeps its running configuration when the new one does not load.
fn reload(ctx: &Ctx) -> Result<u8, PostfixError> {
    if let Ok(master) = MasterCf::load(&ctx.dir.join("master.cf")) {
        check_tables_and_names(&ctx.params, &master)?;
    }
    signal_master(ctx, Signal::SIGHUP, "refreshing the Postern mail system")
}

/// Running as root, the daemons run as `mail_owner`: that user must be able to read the
/// configuration and reach the queue, or every daemon would die at start (and say so only
/// in the mail log).
fn check_mail_owner_access(dir: &Path, params: &Params, spool: &Spool) -> Result<(), PostfixError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let Some(owner) = MailOwner::from_params(params)? else {
        return Ok(()); // the master warns and runs the services as root
    };
    let (name, uid, groups) = (&owner.name, owner.uid, owner.groups());
    for (path, want, what) in
        [(dir.join("main.cf"), READ, "read"), (dir.join("master.cf"), READ, "read"), (spool.root.clone(), SEARCH, "search")]
    {
        if !may_access(&path, uid, &groups, want) {
            return Err(PostfixError::OwnerAccess { path: path.display().to_string(), name: name.clone(), uid, what });
        }
    }
    Ok(())
}

/// Permission bits: read, and search (execute) for a directory.
const READ: u32 = 4;
const SEARCH: u32 = 1;

/// Whether `uid` with `groups` may `want` on `path` and search every directory above it, by
/// the mode bits, as the kernel decides without ACLs.
fn may_access(path: &Path, uid: u32, groups: &[u32], want: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let allowed = |p: &Path, want: u32| {
        std::fs::metadata(p).is_ok_and(|m| {
            let bits = if m.uid() == uid {
                m.mode() >> 6
            } else if groups.contains(&m.gid()) {
                m.mode() >> 3
            } else {
                m.mode()
            };
            bits & want == want
        })
    };
    let Ok(path) = std::fs::canonicalize(path) else { return false };
    path.ancestors().skip(1).all(|d| allowed(d, SEARCH)) && allowed(&path, want)
}

fn start(ctx: &Ctx, foreground: bool) -> Result<u8, PostfixError> {
    if let Some(pid) = ctx.running()? {
        return Err(PostfixError::AlreadyRunning(pid));
    }
    check(&ctx.dir, &ctx.params)?;
    let master = ctx.master_path()?;
    let mut cmd = Command::new(&master);
    cmd.arg("-c").arg(&ctx.dir);
    if foreground {
        log_info!("starting the Postern mail system");
        let source = cmd.exec();
        return Err(PostfixError::Exec { path: master.display().to_string(), source });
    }
    let (rd, wr) = nix::unistd::pipe().map_err(|e| PostfixError::System("pipe", e))?;
    nix::fcntl::fcntl(&rd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC)).map_err(|e| PostfixError::System("fcntl", e))?;
    cmd.env("POSTERN_READY_FD", wr.as_raw_fd().to_string());
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe; the master leads its own session and process
    // group, so `stop` can kill the group and no terminal signal reaches it.
    unsafe {
        cmd.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from));
    }
    log_info!("starting the Postern mail system");
    let mut child = cmd.spawn().map_err(|source| PostfixError::Exec { path: master.display().to_string(), source })?;
    drop(wr);
    let mut pipe = std::fs::File::from(rd);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // One line, "ready", or end of file when the master dies first.
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(&mut pipe), &mut line);
        let _ = tx.send(line);
    });
    match rx.recv_timeout(START_WAIT) {
        Ok(s) if s.starts_with("ready") => Ok(0),
        Ok(_) => {
            let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
            Err(PostfixError::StartupFailed(status))
        }
        Err(_) => Err(PostfixError::StartupTimedOut),
    }
}

fn stop(ctx: &Ctx) -> Result<u8, PostfixError> {
    let Some(pid) = ctx.running()? else { return Err(PostfixError::NotRunning) };
    log_info!("stopping the Postern mail system");
    let master = Pid::from_raw(pid as i32);
    kill(master, Signal::SIGTERM).map_err(|source| PostfixError::Kill { pid, source })?;
    let deadline = Instant::now() + STOP_WAIT;
    let mut said = Instant::now();
    while ctx.running()?.is_some() {
        if Instant::now() >= deadline {
            log_info!("stopping the Postern mail system with force");
            if nix::unistd::getpgid(Some(master)).ok() == Some(master) {
                let _ = killpg(master, Signal::SIGKILL);
            } else {
                let _ = kill(master, Signal::SIGKILL);
            }
            break;
        }
        if said.elapsed() >= Duration::from_secs(1) {
            log_info!("waiting for the Postern mail system to terminate");
            said = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(0)
}

/// `postfix odmr`: a trigger to the ODMR customer, which polls once for any number of them.
fn odmr_poll(p: &Params) -> Result<(), PostfixError> {
    let root = p.dir("queue_directory")?;
    let name = p.get("odmr_service_name")?;
    trigger_blocking(&service_path(&root, Class::Public, &name), &[Trigger::Wakeup], p.time("trigger_timeout")?).map_err(|e| match e {
        TriggerError::Unreachable(why) => PostfixError::Odmr(format!("{}: {why}", display_path(Class::Public, &name))),
        other => PostfixError::Odmr(other.to_string()),
    })
}

fn signal_master(ctx: &Ctx, sig: Signal, what: &str) -> Result<u8, PostfixError> {
    let Some(pid) = ctx.running()? else { return Err(PostfixError::NotRunning) };
    log_info!("{what}");
    kill(Pid::from_raw(pid as i32), sig).map_err(|source| PostfixError::Kill { pid, source })?;
    Ok(0)
}

fn status(ctx: &Ctx) -> Result<u8, PostfixError> {
    match ctx.running()? {
        Some(pid) => {
            log_info!("the Postern mail system is running: PID: {pid}");
            Ok(0)
        }
        None => {
            log_info!("the Postern mail system is not running");
            Ok(1)
        }
    }
}

/// Run `postfix` with its arguments; returns the exit status.
pub fn run(args: &[String]) -> u8 {
    let mut config_dir = None;
    let mut command = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-c" => config_dir = it.next().map(PathBuf::from),
            "-v" | "-D" => {}
            _ if command.is_none() && !a.starts_with('-') => command = Some(a.clone()),
            _ => {
                eprintln!("postfix: fatal: {USAGE}");
                return 1;
            }
        }
    }
    let Some(command) = command else {
        eprintln!("postfix: fatal: {USAGE}");
        return 1;
    };
    let dir = config::config_dir(config_dir);
    let params = match Params::load(&dir, &[]) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("postfix: fatal: {e}");
            return 1;
        }
    };
    maillog::init_from_params(&params, "postfix-script", true);
    let ctx = Ctx { dir, params };
    let result = match command.as_str() {
        "check" => check(&ctx.dir, &ctx.params).map(|()| 0),
        "start" => start(&ctx, false),
        "start-fg" => start(&ctx, true),
        "stop" => stop(&ctx),
        "abort" => signal_master(&ctx, Signal::SIGTERM, "aborting the Postern mail system"),
        "reload" => reload(&ctx),
        "status" => status(&ctx),
        "flush" => crate::postqueue::flush_queue(&ctx.params).map(|()| 0).map_err(|f| PostfixError::Flush(f.text)),
        "odmr" => odmr_poll(&ctx.params).map(|()| 0),
        "logrotate" => crate::logrotate::logrotate(&ctx.params).map_err(PostfixError::from),
        other => Err(PostfixError::UnknownCommand(other.to_string())),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            log_fatal!("{e}");
            1
        }
    }
}
