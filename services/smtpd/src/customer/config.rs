//! The customer's settings: the provider and the domains to ask for, the client side (TLS and
//! SASL from the `odmr_*` parameters, the conversation limits from `smtp_*`), and the smtpd
//! settings of the session that receives the mail after the roles swap.

use std::sync::Arc;
use std::time::Duration;

use common::config::{ConfigError, Params};
use common::smtp_client::nexthop::{NextHop, parse_nexthop};
use common::smtp_client::open::ClientSettings;

use crate::config::SmtpdConfig;

/// The port of the odmr service (RFC 2645) when `odmr_provider` names none.
pub const ODMR_PORT: u16 = 366;

pub struct CustomerConfig {
    /// `odmr_provider`: always an address lookup, never MX.
    pub provider: NextHop,
    /// The provider as the password and TLS policy tables are keyed: `[host]:port`.
    pub nexthop: String,
    /// `odmr_domains`, validated, lower-cased; empty for `ATRN` alone.
    pub domains: Vec<String>,
    /// `odmr_poll_interval`; zero: polls only when asked.
    pub poll_interval: Duration,
    /// The client side up to the swap (`odmr_*`, the conversation's limits `smtp_*`).
    pub client: ClientSettings,
    /// The receiving session's settings: smtpd's, from the same main.cf.
    pub smtpd: Arc<SmtpdConfig>,
}

impl CustomerConfig {
    pub fn from_params(p: &Params) -> Result<CustomerConfig, ConfigError> {
        let text = p.get("odmr_provider")?;
        if text.is_empty() {
            return Err(ConfigError::value("odmr_provider", "empty: name the ODMR provider ([host]:port)"));
        }
        let provider = match parse_nexthop(&text, ODMR_PORT) {
            // The brackets are optional: a provider is one host, never a domain's MX hosts.
            Some(hop) => NextHop { mx: false, ..hop },
            None => return Err(ConfigError::value("odmr_provider", format!("bad provider: \"{text}\""))),
        };
        let nexthop = format!("[{}]:{}", provider.host, provider.port);
        let listed = p.list("odmr_domains")?;
        let domains = crate::odmr::parse_domains(&listed.join(",")).ok_or_else(|| {
            ConfigError::value("odmr_domains", format!("bad domain list (at most 100 domains): \"{}\"", listed.join(", ")))
        })?;
        let mut smtpd = SmtpdConfig::from_params(p, Some(1))?;
        // This process is the server of one connection it opened itself: it is no provider,
        // and the connection's TLS (if any) was negotiated as its client.
        if smtpd.odmr.is_some() {
            return Err(ConfigError::value("smtpd_odmr_enable", "the ODMR customer (odmr) is no provider"));
        }
        if smtpd.tls.wrappermode {
            return Err(ConfigError::value("smtpd_tls_wrappermode", "the ODMR customer (odmr) has no TLS wrapper mode"));
        }
        smtpd.session_limit = 1;
        Ok(CustomerConfig {
            provider,
            nexthop,
            domains,
            poll_interval: p.time("odmr_poll_interval")?,
            // ATRN needs a login: without a password table there is nothing to poll with.
            client: ClientSettings::from_params(p, "odmr", true, false)?,
            smtpd: Arc::new(smtpd),
        })
    }

    /// The ATRN command line.
    pub fn atrn(&self) -> String {
        if self.domains.is_empty() { "ATRN".to_string() } else { format!("ATRN {}", self.domains.join(",")) }
    }

    /// The domains as the log lines show them.
    pub fn shown_domains(&self) -> String {
        if self.domains.is_empty() { "(all of the login's)".to_string() } else { self.domains.join(",") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(lines: &str) -> Result<CustomerConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("passwords"), "").unwrap();
        let text = format!("queue_directory = {}\nodmr_sasl_password_maps = texthash:passwords\n{lines}", dir.path().display());
        let main = common::config::MainCf::parse(&text, &dir.path().join("main.cf")).unwrap();
        CustomerConfig::from_params(&Params::from_parts(dir.path(), main, &[]))
    }

    fn refused(lines: &str) -> String {
        match cfg(lines) {
            Ok(_) => panic!("{lines:?} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn providers_domains_and_mistakes() {
        let c = cfg("odmr_provider = isp.example\nodmr_domains = B.example, a.example\n").unwrap();
        assert_eq!((c.provider.host.as_str(), c.provider.port, c.nexthop.as_str()), ("isp.example", 366, "[isp.example]:366"));
        assert_eq!(c.atrn(), "ATRN a.example,b.example");
        let c = cfg("odmr_provider = [127.0.0.1]:2366\n").unwrap();
        assert_eq!((c.nexthop.as_str(), c.atrn()), ("[127.0.0.1]:2366", "ATRN".to_string()));
        assert!(refused("").contains("odmr_provider"));
        assert!(refused("odmr_provider = [isp.example]:none\n").contains("bad provider"));
        assert!(refused("odmr_provider = isp.example\nodmr_domains = a..example\n").contains("odmr_domains"));
        assert!(refused("odmr_provider = isp.example\nodmr_tls_security_level = sometimes\n").contains("odmr_tls_security_level"));
        assert!(refused("odmr_provider = isp.example\nsmtpd_odmr_enable = yes\n").contains("no provider"));
        let dir = tempfile::tempdir().unwrap();
        let none = format!("queue_directory = {}\nodmr_provider = isp.example\n", dir.path().display());
        let main = common::config::MainCf::parse(&none, &dir.path().join("main.cf")).unwrap();
        let e = CustomerConfig::from_params(&Params::from_parts(dir.path(), main, &[])).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("odmr_sasl_password_maps"), "{e}");
    }
}
