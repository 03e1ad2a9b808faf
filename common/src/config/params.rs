//! Typed access to configuration parameters: `-o` overrides, then main.cf, then the built-in
//! defaults of `params.toml`, with lazy `$name` expansion at the time a value is used.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;

use super::expand::{ExpandError, expand};
use super::main_cf::{MainCf, MainCfError};
use super::time::{TimeError, default_unit, parse_time};

/// A parameter of the built-in table.
#[derive(Debug, Clone, Deserialize)]
pub struct ParamDef {
    pub default: String,
    #[serde(rename = "type")]
    pub kind: ParamKind,
    pub doc: String,
}

/// How a parameter's value is interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamKind {
    String,
    List,
    Time,
    Int,
    Bool,
}

/// The known parameters, sorted by name (parsed once from the compiled-in TOML).
pub fn param_table() -> &'static BTreeMap<String, ParamDef> {
    static TABLE: OnceLock<BTreeMap<String, ParamDef>> = OnceLock::new();
    TABLE.get_or_init(|| match toml::from_str(include_str!("../../params.toml")) {
        Ok(t) => t,
        // The table is part of the binary and checked by a unit test: failing here is a build defect.
        Err(e) => panic!("built-in params.toml is invalid: {e}"),
    })
}

/// A parameter value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ParamError {
    /// Expansion failed (loop or syntax).
    #[error("parameter {name}: {source}")]
    Expand { name: String, source: ExpandError },
    /// A time parameter with a bad value.
    #[error("parameter {name}: {source}")]
    Time { name: String, source: TimeError },
    /// An integer parameter with a bad value.
    #[error("bad numerical configuration: {name} = {value}")]
    Int { name: String, value: String },
    /// A boolean parameter that is not yes/no/true/false.
    #[error("bad boolean configuration: {name} = {value}")]
    Bool { name: String, value: String },
    /// main.cf itself is bad.
    #[error(transparent)]
    MainCf(#[from] MainCfError),
}

/// The configuration one process sees.
#[derive(Debug, Clone)]
pub struct Params {
    pub config_dir: PathBuf,
    pub main: MainCf,
    overrides: HashMap<String, String>,
}

impl Params {
    /// Read `config_dir/main.cf` and apply `overrides` (master.cf `-o`, command-line `-o`).
    pub fn load(config_dir: &Path, overrides: &[(String, String)]) -> Result<Params, ParamError> {
        let main = MainCf::load(&config_dir.join("main.cf"))?;
        Ok(Params::from_parts(config_dir, main, overrides))
    }

    /// Build from an already-parsed main.cf (tests, postconf).
    pub fn from_parts(config_dir: &Path, main: MainCf, overrides: &[(String, String)]) -> Params {
        let mut map: HashMap<String, String> = overrides.iter().cloned().collect();
        map.entry("config_directory".into()).or_insert_with(|| config_dir.display().to_string());
        Params { config_dir: config_dir.to_path_buf(), main, overrides: map }
    }

    /// Set a value for this process only (like `-o name=value`).
    pub fn set_override(&mut self, name: &str, value: &str) {
        self.overrides.insert(name.to_string(), value.to_string());
    }

    /// The unexpanded value: override, main.cf, built-in default, or the runtime default.
    pub fn raw(&self, name: &str) -> Option<String> {
        if let Some(v) = self.overrides.get(name) {
            return Some(v.clone());
        }
        if let Some(s) = self.main.get(name) {
            return Some(s.value.clone());
        }
        if name == "myhostname" {
            return Some(system_hostname());
        }
        param_table().get(name).map(|d| d.default.clone())
    }

    /// The expanded value (empty when nothing defines it).
    pub fn get(&self, name: &str) -> Result<String, ParamError> {
        let lookup = |n: &str| self.raw(n);
        let raw = self.raw(name).unwrap_or_default();
        expand(&raw, &lookup).map_err(|source| ParamError::Expand { name: name.to_string(), source })
    }

    /// Expand an arbitrary text against this configuration (`postconf -x`, banners).
    pub fn expand_text(&self, name: &str, text: &str) -> Result<String, ParamError> {
        expand(text, &|n: &str| self.raw(n)).map_err(|source| ParamError::Expand { name: name.to_string(), source })
    }

    /// A time parameter; a bare number takes the unit of the built-in default.
    pub fn time(&self, name: &str) -> Result<Duration, ParamError> {
        let value = self.get(name)?;
        let unit = param_table().get(name).map_or('s', |d| default_unit(&d.default));
        parse_time(&value, unit).map_err(|source| ParamError::Time { name: name.to_string(), source })
    }

    /// An integer parameter.
    pub fn int(&self, name: &str) -> Result<i64, ParamError> {
        let value = self.get(name)?;
        value.trim().parse().map_err(|_| ParamError::Int { name: name.to_string(), value })
    }

    /// A boolean parameter (`yes`/`no`, also `true`/`false`, any case).
    pub fn bool(&self, name: &str) -> Result<bool, ParamError> {
        let value = self.get(name)?;
        parse_bool(&value).ok_or(ParamError::Bool { name: name.to_string(), value })
    }

    /// A list parameter split on commas and whitespace.
    pub fn list(&self, name: &str) -> Result<Vec<String>, ParamError> {
        Ok(split_list(&self.get(name)?))
    }

    /// A directory parameter; a relative value is relative to the configuration directory, so
    /// the embedded default configuration works from any checkout without absolute paths.
    pub fn dir(&self, name: &str) -> Result<PathBuf, ParamError> {
        let v = PathBuf::from(self.get(name)?);
        Ok(if v.is_relative() { self.config_dir.join(v) } else { v })
    }
}

/// Postfix booleans.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" | "1" => Some(true),
        "no" | "false" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// Split a list value on commas and whitespace, dropping empty items.
pub fn split_list(value: &str) -> Vec<String> {
    value.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// The system host name, as Postfix's `myhostname` default.
pub fn system_hostname() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).filter(|h| !h.is_empty()).unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(text: &str) -> Params {
        let main = MainCf::parse(text, Path::new("main.cf")).unwrap();
        Params::from_parts(Path::new("/cfg"), main, &[])
    }

    #[test]
    fn table_parses_and_defaults_are_consistent() {
        let p = params("");
        for (name, def) in param_table() {
            let ok = match def.kind {
                ParamKind::Time => p.time(name).is_ok(),
                ParamKind::Int => p.int(name).is_ok(),
                ParamKind::Bool => p.bool(name).is_ok(),
                ParamKind::String | ParamKind::List => p.get(name).is_ok(),
            };
            assert!(ok, "default of {name} does not parse as {:?}", def.kind);
        }
    }

    #[test]
    fn layered_lookup_and_expansion() {
        let mut p = params("relay_domains = example.net\nqueue_directory = ../spool\nfast_flush_refresh_time = 6\n");
        assert_eq!(p.get("fast_flush_domains").unwrap(), "example.net");
        assert_eq!(p.time("fast_flush_refresh_time").unwrap(), Duration::from_secs(6 * 3600));
        assert_eq!(p.time("fast_flush_purge_time").unwrap(), Duration::from_secs(7 * 86400));
        assert_eq!(p.dir("queue_directory").unwrap(), PathBuf::from("/cfg/../spool"));
        assert_eq!(p.int("smtpd_hard_error_limit").unwrap(), 20);
        p.set_override("stress", "yes");
        assert_eq!(p.int("smtpd_hard_error_limit").unwrap(), 1);
        assert_eq!(p.get("config_directory").unwrap(), "/cfg");
    }

    #[test]
    fn relay_domains_follows_compatibility_level() {
        assert_eq!(params("").get("relay_domains").unwrap(), "");
        let p = params("compatibility_level = 0\nmydestination = localhost\n");
        assert_eq!(p.get("relay_domains").unwrap(), "localhost");
    }

    #[test]
    fn bad_values_are_errors_not_panics() {
        let p = params("smtpd_helo_required = maybe\nmax_use = lots\nqueue_run_delay = 5x\na = $b\nb = $a\n");
        assert_eq!(p.bool("smtpd_helo_required").unwrap_err().to_string(), "bad boolean configuration: smtpd_helo_required = maybe");
        assert!(p.int("max_use").is_err());
        assert!(p.time("queue_run_delay").is_err());
        assert!(matches!(p.get("a"), Err(ParamError::Expand { .. })));
    }
}
