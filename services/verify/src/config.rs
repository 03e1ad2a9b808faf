//! What the verify service reads from main.cf.

use std::time::Duration;

use common::config::{ConfigError, Params};
use common::ipc::endpoint::{Class, display_path, service_path};
use common::ipc::trigger_client::TriggerClient;

use crate::cache::CacheRules;
use crate::probe::ProbeConfig;

/// A relative file in `type:file` is relative to the configuration directory, like a
/// relative `data_directory` (the embedded default configuration works from any checkout).
fn absolute_map(spec: &str, config_dir: &std::path::Path) -> String {
    match spec.split_once(':') {
        Some((kind, file)) if !file.is_empty() && std::path::Path::new(file).is_relative() => {
            format!("{kind}:{}", config_dir.join(file).display())
        }
        _ => spec.to_string(),
    }
}

#[derive(Debug, Clone)]
pub struct VerifyConfig {
    /// `address_verify_map` (expanded).
    pub map: String,
    pub rules: CacheRules,
    pub probes: ProbeConfig,
    /// The queue manager, told to scan `incoming` after each probe.
    pub qmgr: TriggerClient,
    /// `address_verify_cache_cleanup_interval` (0: never).
    pub cleanup: Duration,
}

impl VerifyConfig {
    pub fn from_params(p: &Params) -> Result<VerifyConfig, ConfigError> {
        let probes = ProbeConfig::from_params(p)?;
        let qmgr_name = p.get("queue_service_name")?;
        let qmgr = TriggerClient::new(
            service_path(&probes.spool.root, Class::Public, &qmgr_name),
            p.time("trigger_timeout")?,
            display_path(Class::Public, &qmgr_name),
        );
        Ok(VerifyConfig {
            map: absolute_map(&p.get("address_verify_map")?, &p.config_dir),
            rules: CacheRules::from_params(p)?,
            probes,
            qmgr,
            cleanup: p.time("address_verify_cache_cleanup_interval")?,
        })
    }
}
