//! The daemon skeleton (Postfix `mail_server` / `single_server_main`): generic arguments,
//! configuration and logging set-up, listening sockets inherited from the master in the systemd
//! `LISTEN_FDS` convention, the control channel to the master, and the loop. A daemon says what
//! it does with a client, a reload and a wakeup ([`Service`]) and hands itself to [`serve`],
//! which owns everything else: accepting, the session limit ([`SessionLimit`]), reloads,
//! wakeups, graceful drain and shutdown. No daemon builds a server loop of its own.
//!
//! Arguments the master passes: `-n service -t type [-o name=value]...` followed by the
//! master.cf arguments; the configuration directory comes in `MAIL_CONFIG`.

mod events;
mod limit;
mod serve;

pub use limit::{IdleSession, SessionLimit};
pub use serve::{Client, Service, Session, serve};

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use crate::config::{self, Params};
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
    /// This process replaces one that still drains (`POSTERN_SLOTS_RESERVED`): it starts with
    /// every session slot reserved until the master says how many the old one still holds.
    pub slots_reserved: bool,
}

/// Environment variable carrying the master.cf process limit to the child.
pub const PROCESS_LIMIT_ENV: &str = "POSTERN_PROCESS_LIMIT";

/// Environment variable set for a process that replaces one still draining.
pub const SLOTS_RESERVED_ENV: &str = "POSTERN_SLOTS_RESERVED";

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
            slots_reserved: std::env::var_os(SLOTS_RESERVED_ENV).is_some(),
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
