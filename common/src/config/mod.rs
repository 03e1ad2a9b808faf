//! Configuration: main.cf and master.cf in Postfix syntax, the built-in parameter table,
//! `$name` expansion, time values, lookup tables and domain lists.

pub mod check;
pub mod domain_list;
pub mod expand;
pub mod lines;
pub mod main_cf;
pub mod master_cf;
pub mod params;
pub mod table;
pub mod time;
pub mod users;

pub use domain_list::DomainList;
pub use main_cf::MainCf;
pub use master_cf::{MasterCf, MasterEntry, ServiceType};
pub use params::{ParamError, Params};

use std::path::PathBuf;

/// The configuration directory: `-c DIR` if given, else `$MAIL_CONFIG`, else the default.
pub fn config_dir(arg: Option<PathBuf>) -> PathBuf {
    arg.or_else(|| std::env::var_os("MAIL_CONFIG").map(PathBuf::from)).unwrap_or_else(|| PathBuf::from("/etc/postern"))
}

/// Parameters whose value must be a valid host name (Postfix checks them at every start).
const HOSTNAME_PARAMS: [&str; 2] = ["myhostname", "mydomain"];

impl Params {
    /// Postfix's value checks that every program makes before it does anything: today the
    /// host name parameters, which end up in every banner, `Received:` header and EHLO (a
    /// 10,000-character `myhostname` would make a banner line no client accepts).
    pub fn check_values(&self) -> Result<(), ConfigError> {
        for name in HOSTNAME_PARAMS {
            let value = self.get(name)?;
            if !crate::domain::valid_hostname(&value) {
                let shown = crate::text::printable(crate::text::truncate(&value, 100), '?').into_owned();
                return Err(ConfigError::Value {
                    param: format!("file {}: parameter {name}", self.config_dir.join("main.cf").display()),
                    what: format!("bad parameter value: {shown}"),
                });
            }
        }
        Ok(())
    }

    /// How the feature behind parameter `name` matches parent domains: `parent` entries when
    /// `name` is listed in `parent_domain_matches_subdomains`, else `.parent` entries.
    pub fn parent_style(&self, name: &str) -> Result<table::search::ParentStyle, ParamError> {
        let listed = self.list("parent_domain_matches_subdomains")?.iter().any(|n| n == name);
        Ok(if listed { table::search::ParentStyle::Parent } else { table::search::ParentStyle::DotParent })
    }

    /// Compile the domain-list parameter `name`.
    pub fn domain_list(&self, name: &str) -> Result<DomainList, ConfigError> {
        let value = self.get(name)?;
        let parent = self.list("parent_domain_matches_subdomains")?;
        Ok(DomainList::parse(name, &value, &parent, &self.config_dir)?)
    }
}

/// Any configuration problem, for callers that do not care which file it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Param(#[from] ParamError),
    #[error(transparent)]
    MasterCf(#[from] master_cf::MasterCfError),
    #[error(transparent)]
    DomainList(#[from] domain_list::DomainListError),
    #[error(transparent)]
    Table(#[from] table::TableError),
    /// A parameter whose value a service cannot use (an unknown keyword, a bad address).
    #[error("{param}: {what}")]
    Value { param: String, what: String },
}

impl ConfigError {
    pub fn value(param: &str, what: impl Into<String>) -> ConfigError {
        ConfigError::Value { param: param.to_string(), what: what.into() }
    }
}
