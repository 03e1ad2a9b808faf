//! postmap - Postern lookup table management
//!
//! # Synopsis
//! `postmap [-fiorvw] [-c config_dir] [-d key] [-q key] [-s] [type:]file...`
//!
//! # Description
//! Without `-d`, `-q` or `-s`, builds the indexed form of each source file: `hash:file` becomes
//! `file.db`, `lmdb:file` becomes `file.lmdb` (both LMDB files, see common's
//! `config::table::indexed`; a file named without `type:` takes `default_database_type`, `hash`).
//! The source format is Postfix's (`key whitespace value`, `#` comments, continuation lines,
//! double-quoted keys); keys are folded to lowercase unless `-f` (lookups always fold them). Duplicate keys keep the first
//! entry with a warning (`-r` replaces, `-w` ignores quietly). The new file is written under a
//! temporary name and renamed over the old one: a daemon never sees half a table, and notices
//! the new one at its next lookup.
//!
//! `-i` adds the entries read from standard input to the existing table; `-d key` (`-d -`: keys
//! from standard input) removes entries; both rebuild the file the same atomic way. `-q key`
//! prints the value of `key` in the first table that has it (any table type, `cidr:`,
//! `regexp:`, `pcre:`, `texthash:` ... included), `-q -` prints `key<TAB>value` for each key
//! read from standard input that is found, `-s` prints every entry of a fixed-key table. The
//! exit status of `-q` and `-d` is 0 when something was found, 1 when not, as in Postfix.
//!
//! # Diagnostics
//! Postfix's: `postmap: warning: FILE, line N: expected format: key whitespace value`,
//! `... duplicate entry: "key"`, `postmap: fatal: open database FILE.db: No such file or
//! directory`, `unsupported dictionary type: cidr does not support bulk-mode creation.`
//!
//! # Bugs
//! The `.db` files are not Berkeley DB: Postfix's `hash:` files are refused with a message to
//! rebuild them. `-b`, `-h`, `-m` (message header and body queries), `-F`, `-j`, `-N`, `-n`,
//! `-p`, `-u`, `-U` are not supported. Building runs as the invoking user (Postfix switches to
//! the source file's owner when run as root); the new file keeps the source file's group and
//! other read permission.

use std::io::{BufRead, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::config::table::indexed::IndexedError;
use common::config::table::{Table, TableError, indexed, io_text, source};
use common::config::{self, ConfigError, ParamError, Params};
use common::{log_fatal, log_warning, maillog};

use crate::getopt::{Arg, getopt};

const USAGE: &str = "usage: postmap [-fiorsvw] [-c config_dir] [-d key] [-q key] [map_type:]file...";

/// Why postmap stops (printed as `postmap: fatal: ...`, exit status 1); the texts are Postfix's.
#[derive(Debug, thiserror::Error)]
enum PostmapError {
    #[error("{0}\n{USAGE}")]
    BadOption(String),
    #[error("{USAGE}")]
    NoMaps,
    #[error("specify only one of -d -i -q or -s")]
    OnlyOne,
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Parameter(#[from] ParamError),
    #[error(transparent)]
    Table(#[from] TableError),
    #[error(transparent)]
    Indexed(#[from] IndexedError),
    #[error("open {name}: {what}")]
    Source { name: String, what: String },
    #[error("read stdin: {0}")]
    Stdin(std::io::Error),
    #[error("unsupported dictionary type: {0} does not support bulk-mode creation.")]
    NotBuildable(String),
    #[error("{0} map requires O_RDONLY access mode")]
    ReadOnly(String),
}

/// What to do with duplicate keys while building.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dups {
    Warn,
    Replace,
    Ignore,
}

#[derive(Debug)]
enum Mode {
    Build,
    Incremental,
    Query(String),
    Delete(String),
    Sequence,
}

struct Options {
    config_dir: Option<PathBuf>,
    mode: Mode,
    fold: bool,
    dups: Dups,
    maps: Vec<String>,
}

fn parse(args: &[String]) -> Result<Options, PostmapError> {
    let mut o = Options { config_dir: None, mode: Mode::Build, fold: true, dups: Dups::Warn, maps: Vec::new() };
    for a in getopt(args, "fiorsvw", "cdq").map_err(|e| PostmapError::BadOption(e.to_string()))? {
        let exclusive = |o: &Options| if matches!(o.mode, Mode::Build) { Ok(()) } else { Err(PostmapError::OnlyOne) };
        match a {
            Arg::Opt('c', d) => o.config_dir = Some(PathBuf::from(d)),
            Arg::Opt('d', k) => {
                exclusive(&o)?;
                o.mode = Mode::Delete(k);
            }
            Arg::Opt(_, k) => {
                exclusive(&o)?;
                o.mode = Mode::Query(k);
            }
            Arg::Flag('i') => {
                exclusive(&o)?;
                o.mode = Mode::Incremental;
            }
            Arg::Flag('s') => {
                exclusive(&o)?;
                o.mode = Mode::Sequence;
            }
            Arg::Flag('f') => o.fold = false,
            Arg::Flag('r') => o.dups = Dups::Replace,
            Arg::Flag('w') => o.dups = Dups::Ignore,
            Arg::Flag(_) => {} // -o, -v
            Arg::Operand(m) => o.maps.push(m),
        }
    }
    if o.maps.is_empty() {
        return Err(PostmapError::NoMaps);
    }
    Ok(o)
}

/// Run postmap; returns the exit status.
pub fn run(args: &[String]) -> u8 {
    let (o, params) = match parse(args).and_then(|o| {
        let dir = config::config_dir(o.config_dir.clone());
        Ok((o, Params::load(&dir, &[])?))
    }) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("postmap: fatal: {e}");
            return 1;
        }
    };
    maillog::init_from_params(&params, "postmap", true);
    let result = params.get("default_database_type").map_err(PostmapError::from).and_then(|t| execute(&o, &t));
    match result {
        Ok(code) => code,
        Err(e) => {
            log_fatal!("{e}");
            1
        }
    }
}

/// `type:name` with the default type filled in.
fn with_type(map: &str, default_type: &str) -> (String, String) {
    match map.split_once(':') {
        Some((t, n)) => (t.to_string(), n.to_string()),
        None => (default_type.to_string(), map.to_string()),
    }
}

fn open(map: &str, default_type: &str) -> Result<Table, PostmapError> {
    let (t, n) = with_type(map, default_type);
    // Table names on the command line are taken as given (relative to the current directory).
    Ok(Table::open(&format!("{t}:{n}"), Path::new(""))?)
}

fn execute(o: &Options, default_type: &str) -> Result<u8, PostmapError> {
    let stdin_keys = || -> Vec<String> { std::io::stdin().lock().lines().map_while(Result::ok).collect() };
    let mut out = std::io::stdout().lock();
    let mut print = |text: String| {
        // A closed pipe (postmap -s | head) is not an error.
        let _ = out.write_all(text.as_bytes());
    };
    match &o.mode {
        Mode::Query(key) if key == "-" => {
            let tables = o.maps.iter().map(|m| open(m, default_type)).collect::<Result<Vec<_>, _>>()?;
            let mut found = false;
            for key in stdin_keys() {
                for t in &tables {
                    if let Some(v) = t.lookup(&key)? {
                        print(format!("{key}\t{v}\n"));
                        found = true;
                        break;
                    }
                }
            }
            Ok(u8::from(!found))
        }
        Mode::Query(key) => {
            for m in &o.maps {
                if let Some(v) = open(m, default_type)?.lookup(key)? {
                    print(format!("{v}\n"));
                    return Ok(0);
                }
            }
            Ok(1)
        }
        Mode::Sequence => {
            let t = open(&o.maps[0], default_type)?;
            for (k, v) in t.entries()? {
                print(format!("{k}\t{v}\n"));
            }
            Ok(0)
        }
        Mode::Delete(key) => {
            let keys = if key == "-" { stdin_keys() } else { vec![key.clone()] };
            let mut found = false;
            for m in &o.maps {
                found |= delete(m, default_type, &keys, o.fold)?;
            }
            Ok(u8::from(!found))
        }
        Mode::Incremental => {
            let mut text = String::new();
            for line in std::io::stdin().lock().lines() {
                text.push_str(&line.map_err(PostmapError::Stdin)?);
                text.push('\n');
            }
            build(&o.maps[0], default_type, &text, "stdin", true, o)?;
            Ok(0)
        }
        Mode::Build => {
            for m in &o.maps {
                let (_, name) = with_type(m, default_type);
                let text = std::fs::read(&name).map_err(|e| PostmapError::Source { name: name.clone(), what: io_text(&e) })?;
                build(m, default_type, &String::from_utf8_lossy(&text), &name, false, o)?;
            }
            Ok(0)
        }
    }
}

/// The indexed file of a buildable table, or Postfix's refusal.
fn indexed_file(map: &str, default_type: &str, what: &str) -> Result<PathBuf, PostmapError> {
    let (t, n) = with_type(map, default_type);
    match t.as_str() {
        "hash" | "lmdb" => Ok(indexed::db_path(&t, Path::new(&n))),
        "btree" | "cdb" | "dbm" | "sdbm" => Err(TableError::UnsupportedType(t).into()),
        _ if what == "create" => Err(PostmapError::NotBuildable(t)),
        _ => Err(PostmapError::ReadOnly(format!("{t}:{n}"))),
    }
}

/// The existing entries of an indexed table (none when it does not exist yet).
fn existing(file: &Path) -> Result<Vec<(String, String)>, IndexedError> {
    if !file.exists() {
        return Ok(Vec::new());
    }
    indexed::Indexed::open(file)?.entries()
}

/// Build (or with `incremental`, extend) a table from source text.
fn build(map: &str, default_type: &str, text: &str, shown: &str, incremental: bool, o: &Options) -> Result<(), PostmapError> {
    let file = indexed_file(map, default_type, "create")?;
    let src = source::parse(text, shown, false);
    for w in &src.warnings {
        log_warning!("{w}");
    }
    let mut entries: Vec<(String, String)> = if incremental { existing(&file)? } else { Vec::new() };
    let mut index: std::collections::HashMap<String, usize> = entries.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect();
    for e in src.entries {
        let key = if o.fold { e.key.to_lowercase() } else { e.key };
        match index.get(&key) {
            Some(&i) => match o.dups {
                Dups::Replace => entries[i].1 = e.value,
                Dups::Ignore => {}
                Dups::Warn => log_warning!("{}: duplicate entry: \"{key}\"", file.display()),
            },
            None => {
                index.insert(key.clone(), entries.len());
                entries.push((key, e.value));
            }
        }
    }
    let (_, name) = with_type(map, default_type);
    Ok(write_indexed(&file, &name, &entries)?)
}

/// Write the indexed file with the source file's read permissions for group and others.
fn write_indexed(file: &Path, source: &str, entries: &[(String, String)]) -> Result<(), IndexedError> {
    let mode = std::fs::metadata(source).map_or(0o644, |m| 0o600 | (m.mode() & 0o044));
    for s in indexed::write(file, entries, mode)? {
        log_warning!("{}: key \"{}\": {}: skipping this entry", file.display(), s.key, s.why);
    }
    Ok(())
}

/// Remove `keys`; true when any was there.
fn delete(map: &str, default_type: &str, keys: &[String], fold: bool) -> Result<bool, PostmapError> {
    let file = indexed_file(map, default_type, "delete")?;
    // Postfix opens the table for writing, which fails when it does not exist.
    let mut entries = indexed::Indexed::open(&file)?.entries()?;
    let before = entries.len();
    let gone: std::collections::HashSet<String> = keys.iter().map(|k| if fold { k.to_lowercase() } else { k.clone() }).collect();
    entries.retain(|(k, _)| !gone.contains(k));
    if entries.len() == before {
        return Ok(false);
    }
    let (_, name) = with_type(map, default_type);
    write_indexed(&file, &name, &entries)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(a: &[&str]) -> Vec<String> {
        a.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn options() {
        assert!(matches!(parse(&s(&["-q", "k", "hash:/x"])).unwrap().mode, Mode::Query(ref k) if k == "k"));
        assert_eq!(parse(&s(&["-q", "k", "-s", "x"])).err().unwrap().to_string(), "specify only one of -d -i -q or -s");
        assert_eq!(parse(&s(&[])).err().unwrap().to_string(), USAGE);
        assert!(parse(&s(&["-b", "x"])).is_err());
        assert_eq!(with_type("f", "hash"), ("hash".into(), "f".into()));
        assert_eq!(
            indexed_file("cidr:/x", "hash", "create").unwrap_err().to_string(),
            "unsupported dictionary type: cidr does not support bulk-mode creation."
        );
    }
}
