//! Lookup tables named `type:name` (Postfix `dict_open`): `inline:{k=v, ...}`, `texthash:/file`
//! and `static:value`. Keys are case-insensitive, as in Postfix's fixed-key tables.

use std::collections::HashMap;
use std::path::Path;

/// A table that cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// The `type:` part names a table type Postern does not have.
    #[error("unsupported dictionary type: {0}")]
    UnsupportedType(String),
    /// The table text does not parse.
    #[error("{spec}: {what}")]
    Syntax { spec: String, what: String },
    /// A file-backed table that cannot be read.
    #[error("open {path}: {what}")]
    Io { path: String, what: String },
}

/// An opened table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Table {
    /// `inline:` and `texthash:`: a fixed set of keys.
    Map { spec: String, map: HashMap<String, String> },
    /// `static:value`: every key maps to the value.
    Static { spec: String, value: String },
}

/// True when a list item is a `type:table` reference (contains `:` and does not start with `[`).
pub fn is_table_spec(item: &str) -> bool {
    item.contains(':') && !item.starts_with('[') && !item.starts_with('/')
}

/// Split `text` on commas and whitespace, keeping `{ ... }` groups whole.
pub fn split_braced_list(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '{' => {
                depth += 1;
                cur.push(c);
            }
            '}' => {
                depth = depth.saturating_sub(1);
                cur.push(c);
            }
            c if depth == 0 && (c == ',' || c.is_whitespace()) => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

impl Table {
    /// Open `spec`; relative `texthash:` paths are taken relative to `config_dir`.
    pub fn open(spec: &str, config_dir: &Path) -> Result<Table, TableError> {
        let (kind, name) = spec.split_once(':').ok_or_else(|| TableError::UnsupportedType(spec.to_string()))?;
        let syntax = |what: &str| TableError::Syntax { spec: spec.to_string(), what: what.to_string() };
        match kind {
            "static" => {
                let value = name.strip_prefix('{').and_then(|n| n.strip_suffix('}')).map_or(name, str::trim);
                Ok(Table::Static { spec: spec.to_string(), value: value.to_string() })
            }
            "inline" => {
                let inner = name.strip_prefix('{').and_then(|n| n.strip_suffix('}')).ok_or_else(|| syntax("missing '{' or '}'"))?;
                let mut map = HashMap::new();
                for item in split_inline_items(inner) {
                    let item = item.trim();
                    let item = item.strip_prefix('{').and_then(|i| i.strip_suffix('}')).map_or(item, str::trim);
                    let (k, v) = item.split_once('=').ok_or_else(|| syntax(&format!("missing '=' in \"{item}\"")))?;
                    map.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
                Ok(Table::Map { spec: spec.to_string(), map })
            }
            "texthash" => {
                let path = config_dir.join(name);
                let text =
                    std::fs::read_to_string(&path).map_err(|e| TableError::Io { path: path.display().to_string(), what: e.to_string() })?;
                let mut map = HashMap::new();
                for line in text.lines() {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    let (k, v) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
                    map.insert(k.to_ascii_lowercase(), v.trim().to_string());
                }
                Ok(Table::Map { spec: spec.to_string(), map })
            }
            other => Err(TableError::UnsupportedType(other.to_string())),
        }
    }

    /// Look up one key (case-insensitive).
    pub fn lookup(&self, key: &str) -> Option<&str> {
        match self {
            Table::Map { map, .. } => map.get(&key.to_ascii_lowercase()).map(String::as_str),
            Table::Static { value, .. } => Some(value),
        }
    }

    pub fn spec(&self) -> &str {
        match self {
            Table::Map { spec, .. } | Table::Static { spec, .. } => spec,
        }
    }
}

/// Items of an inline table: separated by commas or whitespace, `{ ... }` groups kept whole,
/// and `key = value` with spaces around `=` joined back into one item.
fn split_inline_items(inner: &str) -> Vec<String> {
    let raw = split_braced_list(inner);
    let mut items: Vec<String> = Vec::new();
    for tok in raw {
        let joins = items.last().is_some_and(|l| l.ends_with('=')) || tok.starts_with('=');
        match items.last_mut() {
            Some(last) if joins && !last.starts_with('{') => last.push_str(&tok),
            _ => items.push(tok),
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_static() {
        let t = Table::open("inline:{ok.example.net=OK, { b.example = REJECT go away }, c = d}", Path::new("/")).unwrap();
        assert_eq!(t.lookup("OK.example.net"), Some("OK"));
        assert_eq!(t.lookup("b.example"), Some("REJECT go away"));
        assert_eq!(t.lookup("c"), Some("d"));
        assert_eq!(t.lookup("x"), None);
        let s = Table::open("static:anyone", Path::new("/")).unwrap();
        assert_eq!(s.lookup("whoever"), Some("anyone"));
    }

    #[test]
    fn texthash_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t"), "# c\nExample.COM  OK\nfoo\n").unwrap();
        let t = Table::open("texthash:t", dir.path()).unwrap();
        assert_eq!(t.lookup("example.com"), Some("OK"));
        assert_eq!(t.lookup("foo"), Some(""));
        assert!(matches!(Table::open("texthash:missing", dir.path()), Err(TableError::Io { .. })));
        assert!(matches!(Table::open("hash:/etc/x", dir.path()), Err(TableError::UnsupportedType(_))));
        assert!(matches!(Table::open("inline:{a}", dir.path()), Err(TableError::Syntax { .. })));
        assert!(matches!(Table::open("inline:a=b", dir.path()), Err(TableError::Syntax { .. })));
    }
}
