//! Per-destination logfiles `$queue_directory/flush/<site>`: one queue ID per line, appended
//! under an exclusive flock, read and truncated under the same lock (held from the read to the
//! truncation) when the site is sent.
//! The files are the truth; the in-memory index is a cache of them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use common::domain::Site;
use common::queue::QueueId;

/// The flush directory.
#[derive(Debug, Clone)]
pub struct FlushDir {
    pub dir: PathBuf,
}

/// Stat results the housekeeping needs.
#[derive(Debug, Clone, Copy)]
pub struct LogfileTimes {
    pub size: u64,
    pub accessed: SystemTime,
    pub modified: SystemTime,
}

/// What reading a logfile found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LogfileContents {
    /// Distinct valid queue IDs, in first-seen order.
    pub ids: Vec<QueueId>,
    /// Lines that are not queue IDs (logged and skipped).
    pub bad_lines: Vec<String>,
    /// Lines read, valid or not.
    pub lines: usize,
}

fn parse_lines<R: BufRead>(r: R) -> io::Result<LogfileContents> {
    let mut out = LogfileContents::default();
    let mut seen = std::collections::HashSet::new();
    for line in r.split(b'\n') {
        let line = line?;
        out.lines += 1;
        match std::str::from_utf8(&line).ok().and_then(|s| QueueId::parse(s).ok()) {
            Some(id) => {
                if seen.insert(id.clone()) {
                    out.ids.push(id);
                }
            }
            None => out.bad_lines.push(String::from_utf8_lossy(&line).chars().take(30).collect()),
        }
    }
    Ok(out)
}

impl FlushDir {
    pub fn new(dir: PathBuf) -> FlushDir {
        FlushDir { dir }
    }

    /// The logfile of `site`. `Site` guarantees a plain file name inside `flush/`.
    pub fn path(&self, site: &Site) -> PathBuf {
        self.dir.join(site.file_name())
    }

    /// Append `id` to the site's logfile, creating it (mode 0600) if needed.
    pub fn append(&self, site: &Site, id: &QueueId) -> io::Result<()> {
        let f = OpenOptions::new().create(true).append(true).mode(0o600).open(self.path(site))?;
        f.lock()?;
        (&f).write_all(format!("{id}\n").as_bytes())?;
        f.unlock()
    }

    /// Read every ID without changing the file (start-up index load).
    pub fn read(&self, site: &Site) -> io::Result<LogfileContents> {
        match File::open(self.path(site)) {
            Ok(f) => {
                f.lock_shared()?;
                parse_lines(BufReader::new(&f))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(LogfileContents::default()),
            Err(e) => Err(e),
        }
    }

    /// Open the site's logfile, take its exclusive lock and read the IDs; the lock is held until
    /// the returned [`Taken`] is finished or dropped. `Ok(None)` when the site has no logfile.
    pub fn take(&self, site: &Site) -> io::Result<Option<Taken>> {
        let file = match OpenOptions::new().read(true).write(true).open(self.path(site)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        file.lock()?;
        let contents = parse_lines(BufReader::new(&file))?;
        Ok(Some(Taken { file, contents }))
    }

    /// Rewrite the logfile with exactly `ids` (start-up reconciliation dropping stale entries).
    pub fn rewrite(&self, site: &Site, ids: &[QueueId]) -> io::Result<()> {
        let mut f = OpenOptions::new().create(true).write(true).truncate(false).mode(0o600).open(self.path(site))?;
        f.lock()?;
        f.set_len(0)?;
        let body: String = ids.iter().map(|id| format!("{id}\n")).collect();
        f.write_all(body.as_bytes())?;
        f.unlock()
    }

    pub fn remove(&self, site: &Site) -> io::Result<()> {
        fs::remove_file(self.path(site))
    }

    pub fn times(&self, site: &Site) -> io::Result<LogfileTimes> {
        let md = fs::metadata(self.path(site))?;
        Ok(LogfileTimes { size: md.len(), accessed: md.accessed()?, modified: md.modified()? })
    }

    /// Every logfile's site. Names that are not valid sites are not ours and are left alone.
    pub fn sites(&self) -> io::Result<Vec<Site>> {
        let mut out = Vec::new();
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for entry in rd {
            let entry = entry?;
            if let Some(name) = entry.file_name().to_str()
                && let Ok(site) = Site::parse(name)
                && site.file_name() == name
                && entry.file_type()?.is_file()
            {
                out.push(site);
            }
        }
        Ok(out)
    }
}

/// A logfile read under its exclusive lock, waiting to be emptied.
#[derive(Debug)]
pub struct Taken {
    file: File,
    pub contents: LogfileContents,
}

impl Taken {
    /// Truncate the file if it had lines, stamp its times with `now` (so refresh sees it as
    /// just flushed, also on noatime mounts) and release the lock. Truncating frees the file's
    /// blocks, which costs a discard on some disks: the caller may answer its client first.
    pub fn finish(mut self, now: SystemTime) -> io::Result<()> {
        if self.contents.lines > 0 {
            self.file.set_len(0)?;
            self.file.seek(SeekFrom::Start(0))?;
        }
        self.file.set_times(fs::FileTimes::new().set_accessed(now).set_modified(now))?;
        self.file.unlock()
    }
}

/// True when `path` names an existing file (errors other than "not found" count as existing,
/// so that a transient problem never makes us forget mail).
pub fn exists(path: &Path) -> bool {
    !matches!(fs::symlink_metadata(path), Err(e) if e.kind() == io::ErrorKind::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(s: &str) -> Site {
        Site::parse(s).unwrap()
    }

    fn id(s: &str) -> QueueId {
        QueueId::parse(s).unwrap()
    }

    #[test]
    fn append_drain_and_bad_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let fd = FlushDir::new(tmp.path().to_path_buf());
        let s = site("Example.NET");
        fd.append(&s, &id("A1")).unwrap();
        fd.append(&s, &id("B2")).unwrap();
        fd.append(&s, &id("A1")).unwrap();
        assert!(tmp.path().join("example.net").exists());
        let mut f = OpenOptions::new().append(true).open(fd.path(&s)).unwrap();
        f.write_all(b"../evil\n").unwrap();
        let read = fd.read(&s).unwrap();
        assert_eq!(read.ids, vec![id("A1"), id("B2")]);
        let mut seen = Vec::new();
        let old = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        let taken = fd.take(&s).unwrap().unwrap();
        seen.extend(taken.contents.ids.iter().cloned());
        assert_eq!(seen, vec![id("A1"), id("B2")]);
        assert_eq!(taken.contents.lines, 4);
        assert_eq!(taken.contents.bad_lines, vec!["../evil".to_string()]);
        // The lock is held until the logfile is finished.
        let other = File::open(fd.path(&s)).unwrap();
        assert!(other.try_lock().is_err());
        taken.finish(old).unwrap();
        assert!(other.try_lock().is_ok());
        let t = fd.times(&s).unwrap();
        assert_eq!((t.size, t.modified), (0, old));
        assert!(fd.take(&site("none.example")).unwrap().is_none());
        assert_eq!(fd.sites().unwrap(), vec![s]);
    }
}
