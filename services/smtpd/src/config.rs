//! What smtpd reads from main.cf (with its master.cf `-o` overrides).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::config::table::{Table, split_braced_list};
use common::config::{ConfigError, DomainList, Params};
use common::ipc::client::Persistent;
use common::ipc::endpoint::{Class, service_path};
use common::ipc::flush::FlushProtocol;
use common::ipc::trigger_client::TriggerClient;
use common::net::NetworkList;
use common::queue::Spool;

use crate::anvil::Anvil;
use crate::restrict::RestrictConfig;
use crate::rewrite::RewriteClients;
use crate::sasl::SaslConfig;
use crate::tls::TlsSettings;

/// ETRN for a site without fast flush service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtrnFallback {
    /// Deliver all queued mail (the seed README's "slow ETRN").
    Slow,
    /// `459 <site>: service unavailable` (Postfix today).
    Reject,
}

/// What `smtpd_forbid_bare_newline` does with a line that ends in a bare LF. In every mode the
/// end of data is `<CR><LF>.<CR><LF>` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareNewline {
    /// Store the line with CRLF (`normalize`, `yes`, and `no`, which Postern takes as `normalize`).
    Normalize,
    /// As `Normalize`, and say `notes=bare_lf` in the disconnect line.
    Note,
    /// Refuse the command (and disconnect) or the message.
    Reject,
}

/// The limits that Postfix's `stress` parameter changes (`smtpd_timeout =
/// ${stress?{10}:{300}}s` and the like): one set for normal times, one for a service whose
/// clients wait for a session slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StressLimits {
    pub timeout: Duration,
    /// `smtpd_starttls_timeout`: the TLS handshake.
    pub starttls_timeout: Duration,
    pub hard_error_limit: u32,
    pub junk_command_limit: u32,
}

impl StressLimits {
    fn from_params(p: &Params) -> Result<StressLimits, ConfigError> {
        Ok(StressLimits {
            timeout: p.time("smtpd_timeout")?,
            starttls_timeout: p.time("smtpd_starttls_timeout")?,
            hard_error_limit: limit(p.int("smtpd_hard_error_limit")?),
            junk_command_limit: limit(p.int("smtpd_junk_command_limit")?),
        })
    }
}

/// Per-client limits (Postfix's anvil); 0 is no limit.
#[derive(Debug, Clone)]
pub struct ClientLimits {
    pub connection_count: u32,
    pub connection_rate: u32,
    pub message_rate: u32,
    pub rate_time_unit: Duration,
    pub exceptions: NetworkList,
}

#[derive(Debug, Clone)]
pub struct SmtpdConfig {
    /// The master.cf service name, for log lines.
    pub service: String,
    pub spool: Spool,
    pub myhostname: String,
    pub banner: String,
    pub mynetworks: NetworkList,
    pub fast_flush_domains: DomainList,
    /// The restriction lists and what they read.
    pub restrict: RestrictConfig,
    /// `smtpd_etrn_login_maps`: site → the SASL logins that own it.
    pub etrn_login_maps: Vec<Table>,
    pub helo_required: bool,
    /// `message_size_limit`; `None` for 0, no limit.
    pub message_size_limit: Option<u64>,
    pub queue_minfree: u64,
    pub hopcount_limit: u32,
    pub bare_newline: BareNewline,
    pub bare_newline_exclusions: NetworkList,
    pub bare_newline_reject_code: u16,
    pub line_length_limit: usize,
    /// The limits in normal times.
    pub normal: StressLimits,
    /// The limits while clients wait for a session slot.
    pub stressed: StressLimits,
    pub soft_error_limit: u32,
    pub client_limits: ClientLimits,
    pub error_sleep: Duration,
    pub etrn_fallback: EtrnFallback,
    pub etrn_rfc1985: bool,
    pub queue_run_delay: Duration,
    /// The fast flush service, over one kept connection shared by all sessions.
    pub flush: Arc<Persistent<FlushProtocol>>,
    /// `ipc_timeout`: how long an ETRN waits for the fast flush service.
    pub ipc_timeout: Duration,
    /// Concurrent sessions (master.cf maxproc); 0 is no limit.
    pub session_limit: usize,
    /// `smtpd_idle_eviction_time` (zero: never).
    pub idle_eviction: Duration,
    /// Per-client counts.
    pub anvil: Arc<Anvil>,
    /// Triggers to the queue manager (incoming scans, slow ETRN runs), over one kept connection.
    pub qmgr_trigger: TriggerClient,
    /// When the last whole-queue run for a slow ETRN was asked for (shared by all sessions).
    pub last_slow_etrn: Arc<Mutex<Option<Instant>>>,
    /// STARTTLS and wrapper mode; the certificate is read again on each reload.
    pub tls: TlsSettings,
    /// SASL AUTH (`smtpd_sasl_*`).
    pub sasl: SaslConfig,
    /// An ODMR provider (`smtpd_odmr_enable`), with its client-side settings.
    pub odmr: Option<Arc<crate::odmr::OdmrConfig>>,
    /// `mail_name`, in our `Received:` header.
    pub mail_name: String,
    /// SMTPUTF8 (`smtputf8_enable`, `strict_smtputf8`, `smtputf8_autodetect_classes`).
    pub smtputf8: crate::smtputf8::Utf8Config,
    /// What cleanup adds to a message that lacks headers (`local_header_rewrite_clients`,
    /// `always_add_missing_headers`, `undisclosed_recipients_header`).
    pub headers: HeaderConfig,
}

/// The missing headers a message gets, and for whom.
#[derive(Debug, Clone)]
pub struct HeaderConfig {
    pub rewrite_clients: RewriteClients,
    /// Add them for every client, not only the local ones.
    pub always_add: bool,
    /// A whole header (`To: undisclosed-recipients:;`), or empty.
    pub undisclosed_recipients: String,
}

impl HeaderConfig {
    pub fn from_params(p: &Params) -> Result<HeaderConfig, ConfigError> {
        Ok(HeaderConfig {
            rewrite_clients: RewriteClients::from_params(p)?,
            always_add: p.bool("always_add_missing_headers")?,
            undisclosed_recipients: common::cleanup::undisclosed_recipients_header(p)?,
        })
    }
}

impl SmtpdConfig {
    /// Take over the state that must outlive a reload from the configuration it replaces:
    /// per-client counts, the slow-ETRN clock and the kept connections.
    pub fn keep_state_of(&mut self, old: &SmtpdConfig) {
        self.anvil = old.anvil.clone();
        self.last_slow_etrn = old.last_slow_etrn.clone();
        if self.flush.path() == old.flush.path() {
            self.flush = old.flush.clone();
        }
        if self.qmgr_trigger.same_as(&old.qmgr_trigger) {
            self.qmgr_trigger = old.qmgr_trigger.clone();
        }
    }
}

fn limit(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX).max(1)
}

impl SmtpdConfig {
    pub fn from_params(p: &Params, process_limit: Option<u32>) -> Result<SmtpdConfig, ConfigError> {
        let spool = Spool::from_params(p)?;
        let bad = |name: &str, v: &str| ConfigError::value(name, format!("bad value: \"{v}\""));
        let fallback = match p.get("etrn_fallback")?.as_str() {
            "slow" => EtrnFallback::Slow,
            "reject" => EtrnFallback::Reject,
            v => return Err(bad("etrn_fallback", v)),
        };
        let rfc1985 = match p.get("etrn_reply_style")?.as_str() {
            "rfc1985" => true,
            "postfix" => false,
            v => return Err(bad("etrn_reply_style", v)),
        };
        let networks = |name: &str| -> Result<NetworkList, ConfigError> {
            NetworkList::from_value(&p.get(name)?, &p.config_dir).map_err(|e| ConfigError::value(name, e.to_string()))
        };
        let mynetworks = networks("mynetworks")?;
        let bare_newline = match p.get("smtpd_forbid_bare_newline")?.to_ascii_lowercase().as_str() {
            "normalize" | "yes" | "no" => BareNewline::Normalize,
            "note" => BareNewline::Note,
            "reject" => BareNewline::Reject,
            v => return Err(bad("smtpd_forbid_bare_newline", v)),
        };
        let exclusions = "smtpd_forbid_bare_newline_exclusions";
        let bare_newline_exclusions = networks(exclusions)?;
        let reject_code = p.int("smtpd_forbid_bare_newline_reject_code")?;
        let bare_newline_reject_code = u16::try_from(reject_code)
            .ok()
            .filter(|c| (500..=599).contains(c))
            .ok_or_else(|| bad("smtpd_forbid_bare_newline_reject_code", &reject_code.to_string()))?;
        let nonnegative = |name: &str| -> Result<u64, ConfigError> {
            let v = p.int(name)?;
            u64::try_from(v).map_err(|_| bad(name, &v.to_string()))
        };
        let count = |name: &str| -> Result<u32, ConfigError> { Ok(u32::try_from(nonnegative(name)?).unwrap_or(u32::MAX)) };
        let default_limit = u32::try_from(p.int("default_process_limit")?).unwrap_or(100);
        let qmgr_name = p.get("queue_service_name")?;
        let qmgr_trigger = TriggerClient::new(
            service_path(&spool.root, Class::Public, &qmgr_name),
            p.time("trigger_timeout")?,
            common::ipc::endpoint::display_path(Class::Public, &qmgr_name),
        );
        let sasl = SaslConfig::from_params(p, &spool.root, &p.get("myhostname")?)?;
        Ok(SmtpdConfig {
            service: p.get("service_name")?,
            qmgr_trigger,
            flush: Arc::new(Persistent::new(service_path(&spool.root, Class::Public, &p.get("flush_service_name")?))),
            ipc_timeout: p.time("ipc_timeout")?,
            spool,
            myhostname: p.get("myhostname")?,
            banner: p.get("smtpd_banner")?,
            mynetworks,
            fast_flush_domains: p.domain_list("fast_flush_domains")?,
            restrict: RestrictConfig::from_params(p)?,
            etrn_login_maps: split_braced_list(&p.get("smtpd_etrn_login_maps")?)
                .iter()
                .map(|spec| Table::open(spec, &p.config_dir))
                .collect::<Result<_, _>>()?,
            helo_required: p.bool("smtpd_helo_required")?,
            message_size_limit: Some(nonnegative("message_size_limit")?).filter(|&n| n > 0),
            queue_minfree: nonnegative("queue_minfree")?,
            hopcount_limit: limit(p.int("hopcount_limit")?),
            bare_newline,
            bare_newline_exclusions,
            bare_newline_reject_code,
            line_length_limit: usize::try_from(p.int("line_length_limit")?).unwrap_or(2048).max(512),
            normal: StressLimits::from_params(p)?,
            stressed: {
                let mut under_stress = p.clone();
                under_stress.set_override("stress", "yes");
                StressLimits::from_params(&under_stress)?
            },
            soft_error_limit: limit(p.int("smtpd_soft_error_limit")?),
            client_limits: ClientLimits {
                connection_count: count("smtpd_client_connection_count_limit")?,
                connection_rate: count("smtpd_client_connection_rate_limit")?,
                message_rate: count("smtpd_client_message_rate_limit")?,
                rate_time_unit: p.time("anvil_rate_time_unit")?,
                exceptions: networks("smtpd_client_event_limit_exceptions")?,
            },
            error_sleep: p.time("smtpd_error_sleep_time")?,
            etrn_fallback: fallback,
            etrn_rfc1985: rfc1985,
            queue_run_delay: p.time("queue_run_delay")?,
            session_limit: process_limit.unwrap_or(default_limit) as usize,
            idle_eviction: p.time("smtpd_idle_eviction_time")?,
            last_slow_etrn: Arc::new(Mutex::new(None)),
            anvil: Arc::new(Anvil::default()),
            tls: TlsSettings::from_params(p)?,
            sasl,
            odmr: crate::odmr::OdmrConfig::from_params(p)?,
            mail_name: p.get("mail_name")?,
            smtputf8: crate::smtputf8::Utf8Config::from_params(p)?,
            headers: HeaderConfig::from_params(p)?,
        })
    }
}
