//! Why a `postfix` command failed: each variant prints postfix-script's text (after
//! `postfix/postfix-script: fatal: `); every one of them exits with status 1.

use common::config::master_cf::MasterCfError;
use common::config::{ConfigError, ParamError};

use crate::logrotate::LogrotateError;

/// The commands, in postfix-script's words, for an unknown one (`postfix strat`); Postern's own
/// `odmr` is left out, so that the text stays Postfix's.
pub const COMMANDS: &str = "Usage: postfix start (or stop, reload, abort, flush, check, status, start-fg, logrotate)";

#[derive(Debug, thiserror::Error)]
pub enum PostfixError {
    #[error(transparent)]
    Parameter(#[from] ParamError),
    #[error("{path}, line {line}: {error}")]
    BadValue { path: String, line: usize, error: ParamError },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    MasterCf(#[from] MasterCfError),
    #[error("create {path}: {source}")]
    CreateQueue { path: String, source: std::io::Error },
    #[error("{path}: mail_owner {name} (uid {uid}) cannot {what} it: the mail system's daemons run as that user")]
    OwnerAccess { path: String, name: String, uid: u32, what: &'static str },
    #[error("the Postern mail system is already running: PID: {0}")]
    AlreadyRunning(u32),
    #[error("the Postern mail system is not running")]
    NotRunning,
    #[error("{0}: {1}")]
    Program(&'static str, std::io::Error),
    #[error("exec {path}: {source}")]
    Exec { path: String, source: std::io::Error },
    #[error("{0}: {1}")]
    System(&'static str, nix::Error),
    #[error("kill {pid}: {source}")]
    Kill { pid: u32, source: nix::Error },
    #[error("mail system startup failed ({0}); see the mail log")]
    StartupFailed(String),
    #[error("mail system startup timed out; see the mail log")]
    StartupTimedOut,
    #[error("unknown command: '{0}'. {COMMANDS}")]
    UnknownCommand(String),
    /// `postfix flush` fails as `postqueue -f` does, with its text.
    #[error("{0}")]
    Flush(String),
    /// `postfix odmr`: the ODMR customer service could not be asked for a poll.
    #[error("Cannot poll the ODMR provider - {0}")]
    Odmr(String),
    #[error(transparent)]
    Logrotate(#[from] LogrotateError),
}
