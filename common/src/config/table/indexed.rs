//! `hash:` and `lmdb:` tables: indexed files that `postmap` builds from a source file and the
//! daemons query without reading the whole table (Postfix `dict_db.c`, `dict_lmdb.c`).
//!
//! Both are LMDB files (`file.db` for `hash:`, `file.lmdb` for `lmdb:`), through the heed
//! crate: LMDB is a B-tree in one memory-mapped file, so a lookup costs a few page reads and a
//! table of a million entries opens at once; heed is actively maintained and wraps the C library
//! that Postfix's own `lmdb:` uses. `hash:` is therefore Postern's own format, not Berkeley DB:
//! a `.db` file made by Postfix's postmap is recognised and refused with a message that says to
//! rebuild it. An `lmdb:` file made by Postfix's postmap is LMDB already and is read as it is
//! (keys with or without the trailing null byte Postfix may store).
//!
//! A table file is never changed in place: `postmap` (also `-i` and `-d`) writes a new file
//! under a temporary name, syncs it and renames it over the old one, so a reader has either the
//! old table or the new one, never half of one. That is also why readers open the file
//! read-only without LMDB's lock file (`MDB_NOLOCK`, as Postfix does): nobody ever writes to a
//! file that a reader has open, and a daemon running as `mail_owner` need not write anything
//! beside a root-owned table.

use std::path::{Path, PathBuf};

use heed::types::Bytes;
use heed::{Database, Env, EnvFlags, EnvOpenOptions};

/// Why an indexed table could not be opened, read or written; the texts are Postfix's.
#[derive(Debug, thiserror::Error)]
pub enum IndexedError {
    /// Postfix's `open database FILE: reason`.
    #[error("open database {}: {what}", file.display())]
    Open { file: PathBuf, what: String },
    /// A Berkeley DB file where an LMDB file belongs.
    #[error("{} is a Berkeley DB file (made by Postfix's postmap?); Postern's hash: tables are LMDB files: rebuild it with Postern's postmap", file.display())]
    BerkeleyDb { file: PathBuf },
    /// A read of an open table failed.
    #[error("{0}")]
    Read(#[from] heed::Error),
    /// Writing the new file failed (it is removed; the old table stays).
    #[error("{}: {what}", file.display())]
    Write { file: PathBuf, what: String },
}

/// The indexed file of table `kind:path` (`hash` → `path.db`, `lmdb` → `path.lmdb`).
pub fn db_path(kind: &str, path: &Path) -> PathBuf {
    let suffix = if kind == "lmdb" { "lmdb" } else { "db" };
    let mut p = path.as_os_str().to_owned();
    p.push(".");
    p.push(suffix);
    PathBuf::from(p)
}

/// An open indexed table.
pub struct Indexed {
    env: Env,
    db: Database<Bytes, Bytes>,
}

impl std::fmt::Debug for Indexed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Indexed").field("path", &self.env.path()).finish()
    }
}

/// Berkeley DB's magic numbers (hash, btree), at offset 12 of the first page.
const BDB_MAGIC: [u32; 2] = [0x0006_1561, 0x0005_3162];

/// Whether `file` is a Berkeley DB file (which LMDB cannot open).
fn is_berkeley_db(file: &Path) -> bool {
    let Ok(bytes) = std::fs::read(file) else { return false };
    let Some(word) = bytes.get(12..16).and_then(|w| <[u8; 4]>::try_from(w).ok()) else { return false };
    BDB_MAGIC.iter().any(|m| u32::from_le_bytes(word) == *m || u32::from_be_bytes(word) == *m)
}

impl Indexed {
    /// Open the indexed file `file` for reading. Errors are Postfix's `open database` texts.
    pub fn open(file: &Path) -> Result<Indexed, IndexedError> {
        let open_error = |what: String| IndexedError::Open { file: file.to_path_buf(), what };
        std::fs::metadata(file).map_err(|e| open_error(io_text(&e)))?;
        let mut options = EnvOpenOptions::new();
        options.max_dbs(1);
        // SAFETY: LMDB maps the file; the mapping is only undefined if the file is changed in
        // place while mapped. Postern's postmap never does that (it renames a new file over the
        // old one, see the module header), and the file is opened read-only.
        let env = unsafe {
            options.flags(EnvFlags::NO_SUB_DIR | EnvFlags::READ_ONLY | EnvFlags::NO_LOCK | EnvFlags::NO_READ_AHEAD);
            options.open(file)
        }
        .map_err(|e| {
            if is_berkeley_db(file) { IndexedError::BerkeleyDb { file: file.to_path_buf() } } else { open_error(e.to_string()) }
        })?;
        let rtxn = env.read_txn().map_err(|e| open_error(e.to_string()))?;
        let db = env
            .open_database::<Bytes, Bytes>(&rtxn, None)
            .map_err(|e| open_error(e.to_string()))?
            .ok_or_else(|| open_error("no table in this file".into()))?;
        drop(rtxn);
        Ok(Indexed { env, db })
    }

    /// Look `key` up as stored (the caller folds case). Postfix may store keys and values with a
    /// trailing null byte, so that form is tried too and the null is not part of the result.
    pub fn get(&self, key: &str) -> Result<Option<String>, IndexedError> {
        // LMDB cannot store such a key, so it is not there (and asking would be an error that a
        // client could cause with a long address).
        if key.is_empty() || key.len() > self.env.max_key_size() {
            return Ok(None);
        }
        let rtxn = self.env.read_txn()?;
        let mut found = self.db.get(&rtxn, key.as_bytes())?;
        if found.is_none() && key.len() < self.env.max_key_size() {
            let mut with_null = key.as_bytes().to_vec();
            with_null.push(0);
            found = self.db.get(&rtxn, &with_null)?;
        }
        Ok(found.map(|v| String::from_utf8_lossy(v.strip_suffix(&[0]).unwrap_or(v)).into_owned()))
    }

    /// Every entry, in key order.
    pub fn entries(&self) -> Result<Vec<(String, String)>, IndexedError> {
        let rtxn = self.env.read_txn()?;
        let mut out = Vec::new();
        for item in self.db.iter(&rtxn)? {
            let (k, v) = item?;
            let text = |b: &[u8]| String::from_utf8_lossy(b.strip_suffix(&[0]).unwrap_or(b)).into_owned();
            out.push((text(k), text(v)));
        }
        Ok(out)
    }
}

fn io_text(e: &std::io::Error) -> String {
    // "No such file or directory", without Rust's " (os error 2)".
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// An entry that could not be stored (LMDB keys are at most 511 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub key: String,
    pub why: String,
}

/// Write `entries` (keys unique, already folded) as the indexed file `file`: a new file under a
/// temporary name in the same directory, synced, then renamed over `file`, then the directory
/// synced. `mode` is the new file's permission bits. Returns the entries that LMDB refused.
pub fn write(file: &Path, entries: &[(String, String)], mode: u32) -> Result<Vec<Skipped>, IndexedError> {
    use std::os::unix::fs::PermissionsExt;
    // heed resolves the directory of a file that does not exist yet; "" would not resolve.
    let file = &std::path::absolute(file).map_err(|e| IndexedError::Write { file: file.to_path_buf(), what: io_text(&e) })?;
    let tmp = {
        let mut t = file.as_os_str().to_owned();
        t.push(format!(".{}.tmp", std::process::id()));
        PathBuf::from(t)
    };
    let bytes: usize = entries.iter().map(|(k, v)| k.len() + v.len() + 64).sum();
    // LMDB needs its maximum size up front; twice the data plus slack, doubled again if full.
    let mut map_size = (2 * bytes + (1 << 20)).next_multiple_of(1 << 16);
    let result = loop {
        let _ = std::fs::remove_file(&tmp);
        match write_env(&tmp, entries, map_size) {
            Err(heed::Error::Mdb(heed::MdbError::MapFull)) if map_size < (1 << 40) => map_size *= 2,
            other => break other,
        }
    };
    let fail = |what: String| {
        let _ = std::fs::remove_file(&tmp);
        IndexedError::Write { file: file.clone(), what }
    };
    let skipped = result.map_err(|e| fail(e.to_string()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(|e| fail(io_text(&e)))?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| fail(io_text(&e)))?;
    std::fs::rename(&tmp, file).map_err(|e| fail(io_text(&e)))?;
    if let Some(dir) = file.parent() {
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(skipped)
}

fn write_env(tmp: &Path, entries: &[(String, String)], map_size: usize) -> Result<Vec<Skipped>, heed::Error> {
    let mut options = EnvOpenOptions::new();
    options.map_size(map_size).max_dbs(1);
    // SAFETY: a fresh file under a name only this process uses; nobody else maps it.
    let env = unsafe {
        options.flags(EnvFlags::NO_SUB_DIR | EnvFlags::NO_LOCK);
        options.open(tmp)?
    };
    let mut skipped = Vec::new();
    {
        let mut wtxn = env.write_txn()?;
        let db: Database<Bytes, Bytes> = env.create_database(&mut wtxn, None)?;
        let max_key = env.max_key_size();
        for (k, v) in entries {
            if k.len() > max_key {
                skipped.push(Skipped { key: k.clone(), why: format!("key longer than {max_key} bytes") });
                continue;
            }
            db.put(&mut wtxn, k.as_bytes(), v.as_bytes())?;
        }
        wtxn.commit()?;
    }
    env.force_sync()?;
    // Close the environment before the file is renamed and read by others.
    env.prepare_for_closing().wait();
    Ok(skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let file = db_path("hash", &dir.path().join("t"));
        assert_eq!(file, dir.path().join("t.db"));
        let e = Indexed::open(&file).unwrap_err().to_string();
        assert!(e.starts_with("open database ") && e.ends_with("t.db: No such file or directory"), "{e}");
        let entries = vec![("a".to_string(), "1".to_string()), ("b".to_string(), "two words".to_string())];
        assert!(write(&file, &entries, 0o644).unwrap().is_empty());
        let t = Indexed::open(&file).unwrap();
        assert_eq!(t.get("b").unwrap().as_deref(), Some("two words"));
        assert_eq!(t.get("c").unwrap(), None);
        // A second file renamed over the first while it is open: the open one still works.
        let long = "k".repeat(600);
        let skipped = write(&file, &[("c".into(), "3".into()), (long.clone(), "x".into())], 0o600).unwrap();
        assert_eq!(skipped.len(), 1);
        assert_eq!(t.get(&long).unwrap(), None);
        assert_eq!(t.get("").unwrap(), None);
        assert_eq!(t.get("a").unwrap().as_deref(), Some("1"));
        drop(t);
        let t = Indexed::open(&file).unwrap();
        assert_eq!(t.entries().unwrap(), vec![("c".to_string(), "3".to_string())]);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }

    #[test]
    fn berkeley_db_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.db");
        let mut page = vec![0u8; 4096];
        page[12..16].copy_from_slice(&0x0006_1561u32.to_le_bytes());
        std::fs::write(&file, &page).unwrap();
        let e = Indexed::open(&file).unwrap_err();
        assert!(matches!(e, IndexedError::BerkeleyDb { .. }), "{e}");
        assert!(e.to_string().contains("is a Berkeley DB file"), "{e}");
    }
}
