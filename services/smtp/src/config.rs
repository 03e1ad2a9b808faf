//! The agent's settings, read from the parameters at start and on every reload.

use std::time::Duration;

use common::config::{ConfigError, Params};
use common::queue::Spool;

use crate::myself::Myself;
use crate::resolve::Dns;
use common::smtp_client::open::ClientSettings;

/// The agent's settings.
pub struct AgentConfig {
    pub dns: Dns,
    pub spool: Spool,
    /// What opening a connection and each SMTP conversation need (`smtp_*`).
    pub client: ClientSettings,
    /// `smtp_connection_cache_time_limit`: how long an idle connection is kept for reuse.
    pub cache_time: Duration,
    /// `ipc_timeout`: how long a connection from the queue manager may wait for its next request.
    pub ipc_timeout: Duration,
    /// `smtp_mx_address_limit`: addresses tried per delivery (0: no limit).
    pub mx_address_limit: usize,
    /// `smtp_mx_session_limit`: sessions (past the handshake) per delivery (0: no limit).
    pub mx_session_limit: usize,
    /// This system's addresses (`inet_interfaces`, `proxy_interfaces`), for loop detection.
    pub myself: Myself,
}

/// A count parameter: zero or more.
fn count(p: &Params, name: &str) -> Result<usize, ConfigError> {
    usize::try_from(p.int(name)?).map_err(|_| ConfigError::value(name, "must be zero or more"))
}

impl AgentConfig {
    pub fn from_params(p: &Params) -> Result<AgentConfig, ConfigError> {
        let dns = Dns::new(&p.list("smtp_dns_nameservers")?).map_err(|what| ConfigError::value("smtp_dns_nameservers", what))?;
        let spool = Spool::from_params(p)?;
        Ok(AgentConfig {
            dns,
            spool,
            client: ClientSettings::from_params(p, "smtp", p.bool("smtp_sasl_auth_enable")?, p.bool("smtp_sasl_auth_soft_bounce")?)?,
            cache_time: p.time("smtp_connection_cache_time_limit")?,
            ipc_timeout: p.time("ipc_timeout")?,
            mx_address_limit: count(p, "smtp_mx_address_limit")?,
            mx_session_limit: count(p, "smtp_mx_session_limit")?,
            myself: Myself::from_params(p)?,
        })
    }
}
