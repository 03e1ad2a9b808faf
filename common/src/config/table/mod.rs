//! Lookup tables named `type:name` (Postfix `dict_open`): the fixed-key tables `hash:` and
//! `lmdb:` (indexed files built by `postmap`), `texthash:` (the source file itself),
//! `inline:{k=v, ...}` and `static:value`, and the pattern tables `cidr:`, `regexp:` and
//! `pcre:` (from a file, or inline as `cidr:{ {rule}, {rule} }`). `proxy:type:name` opens
//! `type:name` directly (Postern has no proxymap; the table is read by each daemon).
//!
//! Keys of fixed-key tables are case-insensitive (folded to lowercase when stored and when
//! looked up); pattern tables see the key as it is and decide with their own flags.
//!
//! A table backed by a file notices when the file changes: every lookup first compares the
//! file's inode, size and modification time with those it was read from, and reopens it when
//! they differ (`table NAME has changed -- reopening`). That is how a table rebuilt with
//! `postmap`, or an edited `cidr:`/`regexp:`/`texthash:` file, is used without a restart;
//! Postfix's daemons instead exit and are restarted when they notice a changed table. A table
//! that cannot be reopened makes its lookups fail (the caller answers "try again later") until
//! the file changes again.
//!
//! One process opens each file once: tables with the same type and file share one handle (an
//! LMDB file may be opened only once per process).

pub mod cidr;
pub mod indexed;
pub mod regexp;
pub mod rules;
pub mod search;
pub mod source;

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};

/// A table that cannot be opened or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// The `type:` part names a table type Postern does not have.
    #[error("unsupported dictionary type: {0}")]
    UnsupportedType(String),
    /// The table text does not parse.
    #[error("{spec}: {what}")]
    Syntax { spec: String, what: String },
    /// A file-backed table that cannot be read (`what` is the whole message).
    #[error("{0}")]
    Open(String),
    /// An open table whose lookup failed (its file changed and cannot be reopened).
    #[error("table {spec}: lookup error: {what}")]
    Lookup { spec: String, what: String },
    /// An operation the table type does not have (`postmap -s` on a cidr: table).
    #[error("table {spec}: {what} operation is not supported")]
    Unsupported { spec: String, what: &'static str },
}

/// The table types of Postfix that Postern does not have: named so that `postfix check`
/// says "unsupported dictionary type" instead of taking them for something else.
const POSTFIX_ONLY_TYPES: &[&str] = &[
    "btree",
    "cdb",
    "dbm",
    "sdbm",
    "environ",
    "fail",
    "internal",
    "ldap",
    "memcache",
    "mongodb",
    "mysql",
    "netinfo",
    "nis",
    "nisplus",
    "pgsql",
    "pipemap",
    "randmap",
    "socketmap",
    "sqlite",
    "tcp",
    "unionmap",
];

/// The table types Postern has, sorted (what `postconf -m` prints; `proxy:` is a prefix).
pub const TYPES: &[&str] = &["cidr", "hash", "inline", "lmdb", "pcre", "regexp", "static", "texthash"];

/// True when a list item is a `type:table` reference (contains `:` and does not start with `[`).
pub fn is_table_spec(item: &str) -> bool {
    item.contains(':') && !item.starts_with('[') && !item.starts_with('/')
}

/// True when `item` starts with the `type:` of a Postfix table type (Postern's or not; `unix:`
/// and `inet:` are left out, they are usually service endpoints), so that `2001:db8::1` or
/// `smtp:[host]` are not taken for tables.
pub fn is_table_type_spec(item: &str) -> bool {
    let kind = item.split_once(':').map_or("", |(k, _)| k);
    let kind = if kind == "proxy" { item.split(':').nth(1).unwrap_or("") } else { kind };
    TYPES.contains(&kind) || POSTFIX_ONLY_TYPES.contains(&kind)
}

/// The table references in a parameter value (see [`is_table_type_spec`]).
pub fn specs_in(value: &str) -> Vec<String> {
    split_braced_list(value).into_iter().filter(|item| is_table_type_spec(item)).collect()
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

/// What a file looked like when it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp { dev: m.dev(), ino: m.ino(), size: m.size(), mtime: m.mtime(), mtime_nsec: m.mtime_nsec() })
}

/// The compiled content of a table.
#[derive(Debug)]
enum Data {
    Fixed(HashMap<String, String>),
    Static(String),
    Cidr(cidr::CidrTable),
    Regexp(regexp::RegexpTable),
    Indexed(indexed::Indexed),
}

/// One opened table, shared by every [`Table`] with the same type and file.
#[derive(Debug)]
struct Shared {
    /// `type:name` with the name resolved (what messages show).
    spec: String,
    kind: String,
    /// The table's text after `type:` (a path, or inline text).
    name: String,
    /// The file whose changes make the table reopen (none for inline tables).
    watched: Option<PathBuf>,
    state: RwLock<State>,
}

#[derive(Debug)]
struct State {
    stamp: Option<Stamp>,
    data: Result<Data, TableError>,
}

/// An opened table. Cloning is cheap: clones share the table.
#[derive(Debug, Clone)]
pub struct Table {
    /// The spec as the configuration wrote it.
    spec: String,
    shared: Arc<Shared>,
}

impl PartialEq for Table {
    fn eq(&self, other: &Table) -> bool {
        self.spec == other.spec
    }
}

impl Eq for Table {}

/// Open tables by `type:path`, so that each file is opened once per process.
fn registry() -> &'static Mutex<HashMap<String, Weak<Shared>>> {
    static REGISTRY: std::sync::OnceLock<Mutex<HashMap<String, Weak<Shared>>>> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}

/// `{ a }`, `{a}` → `a`.
fn unbrace(text: &str) -> Option<&str> {
    text.strip_prefix('{').and_then(|t| t.strip_suffix('}')).map(str::trim)
}

/// The rules of an inline pattern table, one per `{ rule }` item, as lines of a file.
fn inline_rules(inner: &str) -> String {
    split_braced_list(inner).iter().map(|i| format!("{}\n", unbrace(i).unwrap_or(i))).collect()
}

impl Table {
    /// Open `spec`; relative file names are taken relative to `config_dir`. Problems with single
    /// lines of the table are logged as warnings naming the file and line; a table that cannot
    /// be opened at all is an error.
    pub fn open(spec: &str, config_dir: &Path) -> Result<Table, TableError> {
        let (kind, name) = spec.split_once(':').ok_or_else(|| TableError::UnsupportedType(spec.to_string()))?;
        if kind == "proxy" {
            return Table::open(name, config_dir).map(|t| Table { spec: spec.to_string(), shared: t.shared });
        }
        if !TYPES.contains(&kind) {
            return Err(TableError::UnsupportedType(kind.to_string()));
        }
        let inline = name.starts_with('{') || matches!(kind, "inline" | "static");
        let name = if inline { name.to_string() } else { config_dir.join(name).display().to_string() };
        let watched = match kind {
            _ if inline => None,
            "hash" | "lmdb" => Some(indexed::db_path(kind, Path::new(&name))),
            _ => Some(PathBuf::from(&name)),
        };
        // One handle per file: the same file reached by another path (`..`, a link) shares it,
        // which LMDB requires (a file may be open once per process).
        let key = match watched.as_deref().and_then(|w| std::fs::canonicalize(w).ok()) {
            Some(c) => format!("{kind}:{}", c.display()),
            None => format!("{kind}:{name}"),
        };
        let mut reg = registry().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(shared) = reg.get(&key).and_then(Weak::upgrade) {
            return Ok(Table { spec: spec.to_string(), shared });
        }
        let st = watched.as_deref().and_then(stamp);
        let data = load(kind, &name, spec)?;
        let shared = Arc::new(Shared {
            spec: key.clone(),
            kind: kind.to_string(),
            name,
            watched,
            state: RwLock::new(State { stamp: st, data: Ok(data) }),
        });
        if !inline {
            reg.retain(|_, w| w.strong_count() > 0);
            reg.insert(key, Arc::downgrade(&shared));
        }
        Ok(Table { spec: spec.to_string(), shared })
    }

    /// The spec as written in the configuration.
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// The table type (`hash`, `cidr`, ...).
    pub fn kind(&self) -> &str {
        &self.shared.kind
    }

    /// Pattern tables (`cidr:`, `regexp:`, `pcre:`) match whole keys only: search orders skip
    /// partial keys for them (see [`search`]).
    pub fn is_pattern(&self) -> bool {
        matches!(self.shared.kind.as_str(), "cidr" | "regexp" | "pcre")
    }

    /// Look one key up: `Ok(None)` when the table has no entry for it, `Err` when the table
    /// cannot be read.
    pub fn lookup(&self, key: &str) -> Result<Option<String>, TableError> {
        self.shared.refresh();
        let state = self.shared.state.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let data = state.data.as_ref().map_err(Clone::clone)?;
        let fold = || key.to_lowercase();
        Ok(match data {
            Data::Fixed(map) => map.get(&fold()).cloned(),
            Data::Static(v) => Some(v.clone()),
            Data::Cidr(t) => t.lookup(key).map(str::to_string),
            Data::Regexp(t) => t.lookup(key),
            Data::Indexed(t) => t.get(&fold()).map_err(|e| TableError::Lookup { spec: self.shared.spec.clone(), what: e.to_string() })?,
        })
    }

    /// Every entry, for `postmap -s`; pattern and static tables have none to list.
    pub fn entries(&self) -> Result<Vec<(String, String)>, TableError> {
        self.shared.refresh();
        let state = self.shared.state.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let unsupported = || TableError::Unsupported { spec: self.shared.spec.clone(), what: "sequence" };
        match state.data.as_ref().map_err(Clone::clone)? {
            Data::Fixed(map) => {
                let mut v: Vec<(String, String)> = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                v.sort();
                Ok(v)
            }
            Data::Indexed(t) => t.entries().map_err(|e| TableError::Lookup { spec: self.shared.spec.clone(), what: e.to_string() }),
            _ => Err(unsupported()),
        }
    }
}

impl Shared {
    /// Reopen the table when its file changed since it was read.
    fn refresh(&self) {
        let Some(path) = &self.watched else { return };
        let now = stamp(path);
        {
            let state = self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            if state.stamp == now {
                return;
            }
        }
        let mut state = self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.stamp == now {
            return; // another thread reopened it meanwhile
        }
        crate::log_info!("table {} has changed -- reopening", path.display());
        // An LMDB file may be open only once per process: close the old one first.
        state.data = Err(TableError::Lookup { spec: self.spec.clone(), what: "reopening".into() });
        state.stamp = now;
        state.data = match load(&self.kind, &self.name, &self.spec) {
            Ok(d) => Ok(d),
            Err(e) => {
                crate::log_warning!("{e}");
                Err(TableError::Lookup { spec: self.spec.clone(), what: e.to_string() })
            }
        };
    }
}

/// Read a file-backed table's text; errors are Postfix's `open NAME: ...` texts.
fn read_file(path: &str) -> Result<String, TableError> {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| TableError::Open(format!("open {path}: {}", io_text(&e))))
}

/// An I/O error without Rust's ` (os error N)` suffix, as Postfix's `%m` prints it.
pub fn io_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    s.find(" (os error").map_or(s.clone(), |i| s[..i].to_string())
}

/// Compile a table; per-line problems are logged as warnings.
fn load(kind: &str, name: &str, spec: &str) -> Result<Data, TableError> {
    let syntax = |what: &str| TableError::Syntax { spec: spec.to_string(), what: what.to_string() };
    let mut warnings = Vec::new();
    let text_of = |name: &str| -> Result<String, TableError> {
        match unbrace(name) {
            Some(inner) if name.starts_with('{') => Ok(inline_rules(inner)),
            _ => read_file(name),
        }
    };
    let data = match kind {
        "static" => Data::Static(unbrace(name).unwrap_or(name).to_string()),
        "inline" => {
            let inner = unbrace(name).ok_or_else(|| syntax("missing '{' or '}'"))?;
            let mut map = HashMap::new();
            for item in split_inline_items(inner) {
                let item = item.trim();
                let item = unbrace(item).unwrap_or(item);
                let (k, v) = item.split_once('=').ok_or_else(|| syntax(&format!("missing '=' in \"{item}\"")))?;
                map.entry(k.trim().to_lowercase()).or_insert_with(|| v.trim().to_string());
            }
            Data::Fixed(map)
        }
        "texthash" => {
            let src = source::parse(&read_file(name)?, name, true);
            warnings = src.warnings;
            let mut map = HashMap::new();
            for e in src.entries {
                let key = e.key.to_lowercase();
                match map.entry(key) {
                    std::collections::hash_map::Entry::Occupied(o) => {
                        warnings.push(format!("{name}, line {}: duplicate entry: \"{}\"", e.line, o.key()));
                    }
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(e.value);
                    }
                }
            }
            Data::Fixed(map)
        }
        "cidr" => Data::Cidr(cidr::CidrTable::parse(&text_of(name)?, name, &mut warnings)),
        "regexp" => Data::Regexp(regexp::RegexpTable::parse(&text_of(name)?, name, regexp::Dialect::Posix, &mut warnings)),
        "pcre" => Data::Regexp(regexp::RegexpTable::parse(&text_of(name)?, name, regexp::Dialect::Pcre, &mut warnings)),
        "hash" | "lmdb" => {
            let file = indexed::db_path(kind, Path::new(name));
            let t = indexed::Indexed::open(&file).map_err(|e| TableError::Open(e.to_string()))?;
            warn_if_stale(&file, Path::new(name));
            Data::Indexed(t)
        }
        other => return Err(TableError::UnsupportedType(other.to_string())),
    };
    for w in warnings {
        crate::log_warning!("{w}");
    }
    Ok(data)
}

/// Postfix's warning when the source file was changed after the indexed file was built
/// (and not in the last 100 seconds, when a rebuild may be under way).
fn warn_if_stale(db: &Path, source: &Path) {
    let (Ok(d), Ok(s)) = (std::fs::metadata(db), std::fs::metadata(source)) else { return };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    if s.mtime() > d.mtime() && s.mtime() < now - 100 {
        crate::log_warning!("database {} is older than source file {}", db.display(), source.display());
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
    use proptest::prelude::*;

    proptest! {
        /// Hostile table text and keys: warnings, never a panic.
        #[test]
        fn hostile_table_text_never_panics(text in "([ !/#\\\\$(){}\\[\\]:.0-9a-fA-Fif\n\t]|endif|if|/[a-z(|)*+?]*/[imsxAEUX]*){0,40}",
                                           key in "[ -~]{0,40}") {
            let mut w = Vec::new();
            let c = cidr::CidrTable::parse(&text, "c", &mut w);
            let _ = c.lookup(&key);
            for d in [regexp::Dialect::Posix, regexp::Dialect::Pcre] {
                let r = regexp::RegexpTable::parse(&text, "r", d, &mut w);
                let _ = r.lookup(&key);
            }
            let _ = source::parse(&text, "s", true);
        }
    }

    #[test]
    fn inline_and_static() {
        let t = Table::open("inline:{ok.example.net=OK, { b.example = REJECT go away }, c = d}", Path::new("/")).unwrap();
        assert_eq!(t.lookup("OK.example.net").unwrap().as_deref(), Some("OK"));
        assert_eq!(t.lookup("b.example").unwrap().as_deref(), Some("REJECT go away"));
        assert_eq!(t.lookup("c").unwrap().as_deref(), Some("d"));
        assert_eq!(t.lookup("x").unwrap(), None);
        let s = Table::open("static:anyone", Path::new("/")).unwrap();
        assert_eq!(s.lookup("whoever").unwrap().as_deref(), Some("anyone"));
        let c = Table::open("cidr:{ {10.0.0.0/8 inside}, {0.0.0.0/0 outside} }", Path::new("/")).unwrap();
        assert_eq!(c.lookup("10.1.2.3").unwrap().as_deref(), Some("inside"));
        assert_eq!(c.lookup("192.0.2.1").unwrap().as_deref(), Some("outside"));
        assert!(c.is_pattern() && !t.is_pattern());
    }

    #[test]
    fn texthash_types_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t"), "# c\nExample.COM  OK\nexample.com second\nfoo\n").unwrap();
        let t = Table::open("texthash:t", dir.path()).unwrap();
        assert_eq!(t.lookup("example.com").unwrap().as_deref(), Some("OK"));
        assert_eq!(t.lookup("foo").unwrap(), None);
        assert!(matches!(Table::open("texthash:missing", dir.path()), Err(TableError::Open(_))));
        let e = Table::open("hash:/nonexistent/x", dir.path()).unwrap_err();
        assert_eq!(e.to_string(), "open database /nonexistent/x.db: No such file or directory");
        assert_eq!(Table::open("btree:/etc/x", dir.path()).unwrap_err().to_string(), "unsupported dictionary type: btree");
        assert!(matches!(Table::open("inline:{a}", dir.path()), Err(TableError::Syntax { .. })));
        assert!(matches!(Table::open("inline:a=b", dir.path()), Err(TableError::Syntax { .. })));
        assert_eq!(
            specs_in("check_client_access hash:/x, permit proxy:btree:/y smtp:[h]:25 unix:/s inet:h:1"),
            ["hash:/x", "proxy:btree:/y"]
        );
    }

    #[test]
    fn rebuilt_files_are_seen_and_shared() {
        let dir = tempfile::tempdir().unwrap();
        let db = indexed::db_path("hash", &dir.path().join("m"));
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        indexed::write(&db, &[("a".into(), "1".into())], 0o644).unwrap();
        let t = Table::open("hash:m", dir.path()).unwrap();
        let again = Table::open("hash:../m", &dir.path().join("sub")).unwrap_or_else(|e| panic!("{e}"));
        assert!(Arc::ptr_eq(&t.shared, &again.shared));
        assert_eq!(t.lookup("A").unwrap().as_deref(), Some("1"));
        indexed::write(&db, &[("a".into(), "2".into()), ("b".into(), "3".into())], 0o644).unwrap();
        assert_eq!(again.lookup("a").unwrap().as_deref(), Some("2"));
        assert_eq!(t.entries().unwrap(), vec![("a".to_string(), "2".to_string()), ("b".to_string(), "3".to_string())]);
        std::fs::remove_file(&db).unwrap();
        assert!(matches!(t.lookup("a"), Err(TableError::Lookup { .. })));
        indexed::write(&db, &[("a".into(), "4".into())], 0o644).unwrap();
        assert_eq!(t.lookup("a").unwrap().as_deref(), Some("4"));
        let cidr = dir.path().join("c");
        std::fs::write(&cidr, "10.0.0.0/8 A\n").unwrap();
        let c = Table::open("cidr:c", dir.path()).unwrap();
        assert_eq!(c.lookup("10.0.0.1").unwrap().as_deref(), Some("A"));
        std::fs::write(&cidr, "10.0.0.0/8 Bee\n").unwrap();
        assert_eq!(c.lookup("10.0.0.1").unwrap().as_deref(), Some("Bee"));
    }
}
