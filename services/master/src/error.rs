//! Why the master cannot start, or cannot take a new configuration: each says what failed and
//! where, as its `fatal:` (start) or `warning:` (reload) log line.

use std::path::PathBuf;

use common::config::master_cf::MasterCfError;
use common::config::{ConfigError, ParamError};
use common::pidfile::PidFileError;

use crate::listen::ListenError;

#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error(transparent)]
    Param(#[from] ParamError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    MasterCf(#[from] MasterCfError),
    #[error(transparent)]
    PidFile(#[from] PidFileError),
    /// The spool's directories cannot be made.
    #[error("create {}: {source}", path.display())]
    CreateSpool { path: PathBuf, source: std::io::Error },
    /// A spool directory or the mail log cannot be given to `mail_owner`.
    #[error("chown {}: {source}", path.display())]
    Chown { path: PathBuf, source: nix::Error },
    /// A service's sockets cannot be made.
    #[error("service {service}: {source}")]
    Listen { service: String, source: ListenError },
    /// Without `daemon_directory`, the daemons are beside the master, which cannot find itself.
    #[error("cannot find the master program: {0}")]
    OwnPath(std::io::Error),
    #[error("signals: {0}")]
    Signals(std::io::Error),
}
