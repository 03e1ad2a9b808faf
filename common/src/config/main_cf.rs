//! main.cf reader: `name = value` logical lines, last one wins with a warning (Postfix `dict_load`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::lines::{LineError, logical_lines};

/// A main.cf that cannot be used. Every variant names the file and the line.
#[derive(Debug, thiserror::Error)]
pub enum MainCfError {
    /// The file exists but cannot be read.
    #[error("open {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A logical line without `=`.
    #[error("{path}, line {line}: missing '=' after attribute name: \"{text}\"")]
    MissingEquals { path: PathBuf, line: usize, text: String },
    /// A parameter name with characters other than letters, digits and `_`.
    #[error("{path}, line {line}: bad parameter name: \"{name}\"")]
    BadName { path: PathBuf, line: usize, name: String },
    /// Continuation-line trouble.
    #[error("{path}, {source}")]
    Lines { path: PathBuf, source: LineError },
}

/// One `name = value` setting and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub name: String,
    pub value: String,
    pub line: usize,
}

/// The settings of one main.cf file.
#[derive(Debug, Clone, Default)]
pub struct MainCf {
    pub path: PathBuf,
    settings: HashMap<String, Setting>,
    /// Non-fatal findings, already formatted as Postfix does (`file, line N: ...`).
    pub warnings: Vec<String>,
}

/// True when `name` is a valid parameter name (`[A-Za-z0-9_]+`).
pub fn valid_param_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Split a logical line into name and value, the way `split_nameval` does.
pub fn split_name_value(text: &str) -> Option<(&str, &str)> {
    let (name, value) = text.split_once('=')?;
    Some((name.trim(), value.trim()))
}

impl MainCf {
    /// Read `path`; a missing file is an empty configuration, as in Postfix.
    pub fn load(path: &Path) -> Result<MainCf, MainCfError> {
        match std::fs::read_to_string(path) {
            Ok(text) => MainCf::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(MainCf { path: path.to_path_buf(), ..MainCf::default() }),
            Err(source) => Err(MainCfError::Io { path: path.to_path_buf(), source }),
        }
    }

    /// Parse main.cf text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<MainCf, MainCfError> {
        let lines = logical_lines(text).map_err(|source| MainCfError::Lines { path: path.to_path_buf(), source })?;
        let mut cf = MainCf { path: path.to_path_buf(), ..MainCf::default() };
        for l in lines {
            let Some((name, value)) = split_name_value(&l.text) else {
                return Err(MainCfError::MissingEquals { path: cf.path, line: l.line, text: l.text });
            };
            if !valid_param_name(name) {
                return Err(MainCfError::BadName { path: cf.path, line: l.line, name: name.to_string() });
            }
            let setting = Setting { name: name.to_string(), value: value.to_string(), line: l.line };
            if let Some(old) = cf.settings.insert(name.to_string(), setting) {
                cf.warnings.push(format!("{}, line {}: overriding earlier entry: {}={}", cf.path.display(), l.line, old.name, old.value));
            }
        }
        Ok(cf)
    }

    /// The raw (unexpanded) value of `name`, if main.cf sets it.
    pub fn get(&self, name: &str) -> Option<&Setting> {
        self.settings.get(name)
    }

    /// All settings, sorted by name (what `postconf -n` prints).
    pub fn sorted(&self) -> Vec<&Setting> {
        let mut v: Vec<&Setting> = self.settings.values().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<MainCf, MainCfError> {
        MainCf::parse(text, Path::new("main.cf"))
    }

    #[test]
    fn last_wins_with_warning() {
        let cf = parse("a = 1\nb=2\na = 3\n").unwrap();
        assert_eq!(cf.get("a").unwrap().value, "3");
        assert_eq!(cf.get("b").unwrap().value, "2");
        assert_eq!(cf.warnings, vec!["main.cf, line 3: overriding earlier entry: a=1".to_string()]);
    }

    #[test]
    fn continuation_values() {
        let cf = parse("relay_domains = a.example,\n    b.example\n").unwrap();
        assert_eq!(cf.get("relay_domains").unwrap().value, "a.example,    b.example");
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("a = 1\n\nnot a setting\n").unwrap_err().to_string();
        assert_eq!(e, "main.cf, line 3: missing '=' after attribute name: \"not a setting\"");
        let e = parse("a b = 1\n").unwrap_err().to_string();
        assert_eq!(e, "main.cf, line 1: bad parameter name: \"a b\"");
        let e = parse(" a = 1\n").unwrap_err().to_string();
        assert_eq!(e, "main.cf, line 1: continuation line without a preceding line");
    }
}
