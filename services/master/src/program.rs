//! The `master` program's entry: arguments, pid lock, signals; the work is in `supervisor`.

use std::fs::File;
use std::os::fd::FromRawFd;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::error::MasterError;
use crate::spawn::Identity;
use crate::supervisor::{Msg, Supervisor};
use common::config::{self, Params};
use common::queue::Spool;
use common::{log_fatal, log_info, maillog, pidfile};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM};

/// Environment variable naming a pipe on which `postfix start` waits for "ready".
const READY_FD_ENV: &str = "POSTERN_READY_FD";

fn usage() -> ExitCode {
    eprintln!("usage: master [-c config_dir] [-t]");
    ExitCode::from(64)
}

/// The `master` program: parse the arguments, load the configuration and supervise.
pub fn main() -> ExitCode {
    let mut config_arg = None;
    let mut test_only = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-c" => match args.next() {
                Some(d) => config_arg = Some(PathBuf::from(d)),
                None => return usage(),
            },
            "-t" => test_only = true,
            _ => return usage(),
        }
    }
    let config_dir = config::config_dir(config_arg);
    let params = match Params::load(&config_dir, &[]) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("master: fatal: {e}");
            return ExitCode::from(1);
        }
    };
    maillog::init_from_params(&params, "master", false);
    if let Err(e) = params.check_values() {
        log_fatal!("{e}");
        return ExitCode::from(1);
    }
    match run(config_dir, &params, test_only) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            log_fatal!("{e}");
            ExitCode::from(1)
        }
    }
}

/// Give `path` to mail_owner without following a symbolic link: root must not be made to
/// hand over whatever a link points to.
fn chown_nofollow(path: &std::path::Path, id: Identity) -> Result<(), MasterError> {
    nix::unistd::fchownat(nix::fcntl::AT_FDCWD, path, Some(id.uid.into()), Some(id.gid.into()), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|source| MasterError::Chown { path: path.to_path_buf(), source })
}

/// Who unprivileged services run as: `mail_owner` when the master is root and that is another
/// user; otherwise nobody changes identity.
fn service_identity(params: &Params) -> Result<Option<Identity>, MasterError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    match common::config::users::MailOwner::from_params(params)? {
        Some(owner) => Ok(Some(Identity { uid: owner.uid, gid: owner.gid })),
        None => {
            // A development or test setup run by root: keep working, but say so loudly
            // (unless mail_owner is root itself, which is said by choosing it).
            let name = params.get("mail_owner")?;
            if nix::unistd::User::from_name(&name).ok().flatten().is_none() {
                common::log_warning!("mail_owner user \"{name}\" does not exist -- running all services as root");
            }
            Ok(None)
        }
    }
}

fn run(config_dir: PathBuf, params: &Params, test_only: bool) -> Result<u8, MasterError> {
    let spool = Spool::from_params(params)?;
    let pid_path = common::queue::master_pid_file(&spool.root);
    if test_only {
        return Ok(u8::from(pidfile::running_pid(&pid_path).is_some()));
    }
    spool.create_dirs().map_err(|source| MasterError::CreateSpool { path: spool.root.clone(), source })?;
    let identity = service_identity(params)?;
    if let Some(id) = identity {
        // Daemons that run as mail_owner must be able to write the queues.
        for q in common::queue::QueueName::ALL.iter().map(|q| q.as_str()).chain(["flush", "public", "private"]) {
            let dir = spool.root.join(q);
            chown_nofollow(&dir, id)?;
        }
        // Daemons running as mail_owner append to the mail log that root programs created.
        if let Some(log) = common::maillog::maillog_path(params).filter(|p| p.is_file()) {
            chown_nofollow(&log, id)?;
        }
    }
    let _lock = pidfile::acquire(&pid_path)?;
    let ready_pipe = std::env::var(READY_FD_ENV).ok().and_then(|fd| fd.parse().ok()).map(|fd| {
        // SAFETY: `postfix start` passes the write end of a pipe it created for this purpose.
        let f = unsafe { File::from_raw_fd(fd) };
        // Our children must not hold it, or `postfix start` would never see it close.
        let _ = nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
        f
    });
    // SAFETY: still single-threaded; our own children must not see the variable.
    unsafe { std::env::remove_var(READY_FD_ENV) };

    let sup = Supervisor::new(config_dir.clone(), identity, ready_pipe)?;
    let tx = sup.sender();
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGCHLD]).map_err(MasterError::Signals)?;
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if tx.send(Msg::Signal(sig)).is_err() {
                break;
            }
        }
    });
    log_info!("daemon started -- version {}, configuration {}", env!("CARGO_PKG_VERSION"), config_dir.display());
    let code = sup.run();
    Ok(u8::try_from(code).unwrap_or(1))
}
