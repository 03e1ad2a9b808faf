//! Where the cache lives: `address_verify_map`, an LMDB file that only this service opens
//! (read-write, with LMDB's own lock file beside it), every change committed with an fsync
//! before the request that made it is answered; or, with an empty `address_verify_map`,
//! memory only (Postfix's `internal:verify`), lost at restart.
//!
//! LMDB for the reasons `common::config::table::indexed` gives for `hash:` and `lmdb:` tables
//! (the same crate and C library): a B-tree in one memory-mapped file, whose commits are
//! atomic, so a crash leaves the last committed cache, never half an update.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use heed::types::Bytes;
use heed::{Database, Env, EnvFlags, EnvOpenOptions};

/// A cache that cannot be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `address_verify_map` names a table type that Postern cannot keep a cache in.
    #[error("unsupported dictionary type for address_verify_map: {0} (use lmdb: or hash:, both LMDB files in Postern)")]
    Type(String),
    /// `address_verify_map` has no `type:` prefix.
    #[error("address_verify_map: need type:name, got \"{0}\"")]
    Syntax(String),
    #[error("open database {path}: {what}")]
    Open { path: PathBuf, what: String },
    #[error("{path}: {what}")]
    Access { path: PathBuf, what: String },
}

/// How large the cache file may grow (LMDB maps it at once; only used pages take disk):
/// 1 GiB is several million entries.
const MAP_SIZE: usize = 1 << 30;

pub enum Store {
    Lmdb { env: Env, db: Database<Bytes, Bytes>, path: PathBuf },
    Memory(BTreeMap<String, String>),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Store::Lmdb { path, .. } => write!(f, "Store({})", path.display()),
            Store::Memory(m) => write!(f, "Store(memory, {} entries)", m.len()),
        }
    }
}

impl Store {
    /// Open (creating it and its directory when missing) the cache `spec`, `type:path`; an
    /// empty spec is a memory-only cache.
    pub fn open(spec: &str) -> Result<Store, StoreError> {
        if spec.trim().is_empty() {
            return Ok(Store::Memory(BTreeMap::new()));
        }
        let (kind, name) = spec.split_once(':').ok_or_else(|| StoreError::Syntax(spec.to_string()))?;
        if !matches!(kind, "lmdb" | "hash") {
            return Err(StoreError::Type(kind.to_string()));
        }
        let path = common::config::table::indexed::db_path(kind, Path::new(name));
        let open_error = |what: String| StoreError::Open { path: path.clone(), what };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| open_error(e.to_string()))?;
        }
        let mut options = EnvOpenOptions::new();
        options.max_dbs(1).map_size(MAP_SIZE);
        // SAFETY: the mapping is undefined only if the file is changed other than through
        // LMDB; this service is its only writer, and LMDB's lock file serializes it with any
        // reader.
        let env = unsafe {
            options.flags(EnvFlags::NO_SUB_DIR);
            options.open(&path)
        }
        .map_err(|e| open_error(e.to_string()))?;
        let mut wtxn = env.write_txn().map_err(|e| open_error(e.to_string()))?;
        let db = env.create_database::<Bytes, Bytes>(&mut wtxn, None).map_err(|e| open_error(e.to_string()))?;
        wtxn.commit().map_err(|e| open_error(e.to_string()))?;
        Ok(Store::Lmdb { env, db, path })
    }

    /// The longest key the store takes.
    pub fn max_key(&self) -> usize {
        match self {
            Store::Lmdb { env, .. } => env.max_key_size(),
            Store::Memory(_) => usize::MAX,
        }
    }

    fn access(path: &Path, e: heed::Error) -> StoreError {
        StoreError::Access { path: path.to_path_buf(), what: e.to_string() }
    }

    pub fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.get(key).cloned()),
            Store::Lmdb { env, db, path } => {
                let rtxn = env.read_txn().map_err(|e| Self::access(path, e))?;
                let found = db.get(&rtxn, key.as_bytes()).map_err(|e| Self::access(path, e))?;
                Ok(found.map(|v| String::from_utf8_lossy(v).into_owned()))
            }
        }
    }

    /// Store `value` under `key`, durably when this returns.
    pub fn put(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        match self {
            Store::Memory(m) => {
                m.insert(key.to_string(), value.to_string());
                Ok(())
            }
            Store::Lmdb { env, db, path } => {
                let mut wtxn = env.write_txn().map_err(|e| Self::access(path, e))?;
                db.put(&mut wtxn, key.as_bytes(), value.as_bytes()).map_err(|e| Self::access(path, e))?;
                wtxn.commit().map_err(|e| Self::access(path, e))
            }
        }
    }

    /// Remove every key `doomed` says to, in one commit; returns how many went.
    pub fn remove_where(&mut self, mut doomed: impl FnMut(&str, &str) -> bool) -> Result<usize, StoreError> {
        match self {
            Store::Memory(m) => {
                let before = m.len();
                m.retain(|k, v| !doomed(k, v));
                Ok(before - m.len())
            }
            Store::Lmdb { env, db, path } => {
                let mut wtxn = env.write_txn().map_err(|e| Self::access(path, e))?;
                let mut removed = 0;
                let mut iter = db.iter_mut(&mut wtxn).map_err(|e| Self::access(path, e))?;
                while let Some(item) = iter.next() {
                    let (k, v) = item.map_err(|e| Self::access(path, e))?;
                    if doomed(&String::from_utf8_lossy(k), &String::from_utf8_lossy(v)) {
                        // SAFETY: neither the key nor the value borrowed from the database is
                        // used after the deletion.
                        unsafe { iter.del_current() }.map_err(|e| Self::access(path, e))?;
                        removed += 1;
                    }
                }
                drop(iter);
                wtxn.commit().map_err(|e| Self::access(path, e))?;
                Ok(removed)
            }
        }
    }

    pub fn delete(&mut self, key: &str) -> Result<(), StoreError> {
        match self {
            Store::Memory(m) => {
                m.remove(key);
                Ok(())
            }
            Store::Lmdb { env, db, path } => {
                let mut wtxn = env.write_txn().map_err(|e| Self::access(path, e))?;
                db.delete(&mut wtxn, key.as_bytes()).map_err(|e| Self::access(path, e))?;
                wtxn.commit().map_err(|e| Self::access(path, e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_lmdb_cache_keeps_its_entries_across_opens() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = format!("lmdb:{}/data/verify_cache", tmp.path().display());
        {
            let mut s = Store::open(&spec).unwrap();
            s.put("a@x", "0:0:1:ok").unwrap();
            s.put("b@x", "2:0:1:no").unwrap();
            s.put("c@x", "3:5:0:in progress").unwrap();
            s.delete("c@x").unwrap();
        }
        let mut s = Store::open(&spec).unwrap();
        assert!(tmp.path().join("data/verify_cache.lmdb").is_file());
        assert_eq!(s.get("a@x").unwrap().as_deref(), Some("0:0:1:ok"));
        assert_eq!(s.get("c@x").unwrap(), None);
        assert_eq!(s.remove_where(|k, _| k == "b@x").unwrap(), 1);
        assert_eq!(s.get("b@x").unwrap(), None);
        assert_eq!(s.get("a@x").unwrap().as_deref(), Some("0:0:1:ok"));
    }

    #[test]
    fn bad_specs_are_refused_and_empty_is_memory() {
        assert!(matches!(Store::open("btree:/tmp/x"), Err(StoreError::Type(t)) if t == "btree"));
        assert!(matches!(Store::open("/tmp/x"), Err(StoreError::Syntax(_))));
        let mut m = Store::open("").unwrap();
        m.put("a", "b").unwrap();
        assert_eq!(m.get("a").unwrap().as_deref(), Some("b"));
    }
}
