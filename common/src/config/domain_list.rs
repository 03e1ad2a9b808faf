//! Domain lists (`relay_domains`, `fast_flush_domains`, ...) with Postfix `match_list` semantics:
//! patterns separated by commas/whitespace, `!` negation, `/file` includes, `type:table` lookups,
//! first match decides, case-insensitive, and parent-domain matching for the lists named in
//! `parent_domain_matches_subdomains`.

use std::path::Path;

use super::table::search::{ParentStyle, domain_keys, find};
use super::table::{Table, TableError, is_table_spec, split_braced_list};

/// A list that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainListError {
    #[error("{param}: {source}")]
    Table { param: String, source: TableError },
    #[error("{param}: open {path}: {what}")]
    File { param: String, path: String, what: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Matcher {
    Name(String),
    Table(Table),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    negated: bool,
    matcher: Matcher,
}

/// A compiled domain list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainList {
    param: String,
    parent_matches: bool,
    patterns: Vec<Pattern>,
}

impl DomainList {
    /// Compile `value` (the expanded parameter value) for parameter `param`.
    /// `parent_style` lists the parameter names of `parent_domain_matches_subdomains`.
    pub fn parse(param: &str, value: &str, parent_style: &[String], config_dir: &Path) -> Result<DomainList, DomainListError> {
        let mut list =
            DomainList { param: param.to_string(), parent_matches: parent_style.iter().any(|p| p == param), patterns: Vec::new() };
        list.add_items(value, false, config_dir)?;
        Ok(list)
    }

    fn add_items(&mut self, value: &str, negate_all: bool, config_dir: &Path) -> Result<(), DomainListError> {
        for item in split_braced_list(value) {
            let bangs = item.len() - item.trim_start_matches('!').len();
            let negated = negate_all ^ (bangs % 2 == 1);
            let item = &item[bangs..];
            if item.starts_with('/') {
                let text = std::fs::read_to_string(item).map_err(|e| DomainListError::File {
                    param: self.param.clone(),
                    path: item.to_string(),
                    what: e.to_string(),
                })?;
                for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
                    self.add_items(line, negated, config_dir)?;
                }
            } else if is_table_spec(item) {
                let table = Table::open(item, config_dir).map_err(|source| DomainListError::Table { param: self.param.clone(), source })?;
                self.patterns.push(Pattern { negated, matcher: Matcher::Table(table) });
            } else if !item.is_empty() {
                self.patterns.push(Pattern { negated, matcher: Matcher::Name(item.to_ascii_lowercase()) });
            }
        }
        Ok(())
    }

    /// True when the list has no patterns (for `fast_flush_domains =`, the service is off).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Does `name` match? First matching pattern decides; a negated match means "no". A table
    /// that cannot be read is an error (Postfix answers such a lookup with a temporary failure).
    pub fn matches(&self, name: &str) -> Result<bool, TableError> {
        let name = name.to_ascii_lowercase();
        let name = name.strip_suffix('.').unwrap_or(&name);
        for p in &self.patterns {
            let hit = match &p.matcher {
                Matcher::Name(pat) => self.name_matches(pat, name),
                Matcher::Table(t) => self.table_matches(t, name)?,
            };
            if hit {
                return Ok(!p.negated);
            }
        }
        Ok(false)
    }

    fn name_matches(&self, pat: &str, name: &str) -> bool {
        if pat == name {
            return true;
        }
        if let Some(suffix) = pat.strip_prefix('.') {
            return name.len() > suffix.len() && name.ends_with(pat);
        }
        self.parent_matches && name.len() > pat.len() && name.ends_with(pat) && name.as_bytes()[name.len() - pat.len() - 1] == b'.'
    }

    /// The name, then its parent domains (partial keys: fixed-key tables only), as Postfix's
    /// match_list does for `type:table` entries.
    fn table_matches(&self, table: &Table, name: &str) -> Result<bool, TableError> {
        let style = if self.parent_matches { ParentStyle::Parent } else { ParentStyle::DotParent };
        Ok(find(std::slice::from_ref(table), &domain_keys(name, style))?.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(param: &str, value: &str) -> DomainList {
        let parent = vec!["relay_domains".to_string(), "fast_flush_domains".to_string()];
        DomainList::parse(param, value, &parent, Path::new("/")).unwrap()
    }

    #[test]
    fn parent_style_and_negation() {
        let l = list("fast_flush_domains", "!bad.example.net, example.net, .dot.example");
        let cases = [
            ("example.net", true),
            ("EXAMPLE.NET", true),
            ("sub.example.net", true),
            ("badexample.net", false),
            ("bad.example.net", false),
            ("x.bad.example.net", false),
            ("a.dot.example", true),
            ("dot.example", false),
            ("other.example", false),
        ];
        for (name, want) in cases {
            assert_eq!(l.matches(name).unwrap(), want, "{name}");
        }
    }

    #[test]
    fn non_parent_style_needs_dot() {
        let l = list("other_list", "example.net .dot.example");
        assert!(l.matches("example.net").unwrap());
        assert!(!l.matches("sub.example.net").unwrap());
        assert!(l.matches("a.dot.example").unwrap());
    }

    #[test]
    fn tables_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("domains");
        std::fs::write(&f, "# customers\nfile.example\n!no.file.example\n").unwrap();
        let l = list("fast_flush_domains", &format!("inline:{{t.example=1}}, {}", f.display()));
        assert!(l.matches("t.example").unwrap());
        assert!(l.matches("a.t.example").unwrap());
        assert!(l.matches("file.example").unwrap());
        // First match decides: `file.example` (parent style) comes before `!no.file.example`.
        assert!(l.matches("no.file.example").unwrap());
        assert!(!l.matches("x.example").unwrap());
        let neg = list("fast_flush_domains", &format!("!{}", f.display()));
        assert!(!neg.matches("file.example").unwrap());
        assert!(list("fast_flush_domains", "").is_empty());
        let e = DomainList::parse("relay_domains", "/nonexistent/file", &[], Path::new("/")).unwrap_err();
        assert!(e.to_string().starts_with("relay_domains: open /nonexistent/file"));
    }
}
