//! qshape - print Postern queue domain and age distribution
//!
//! # Synopsis
//! `qshape [-s] [-p] [-l] [-m min_subdomains] [-b bucket_count] [-t bucket_time]
//! [-w terminal_width] [-c config_dir] [queue_name...]`
//!
//! # Description
//! Postfix's qshape for Postern's queue: a table of recipient domains (sender domains with
//! `-s`) and how many of their addresses have waited in each age bucket. The first column `T`
//! is the total; the buckets are `[0, t)`, `[t, 2t)`, `[2t, 4t)`, ... minutes (`-t`, default
//! 5), `-b` buckets in all (default 10), the last one open-ended (`1280+`); `-l` makes them
//! linear. The `TOTAL` row comes first, then the domains by count. `-p` adds parent domains
//! (`.example.com`) that have at least `-m` (default 5) subdomains in the table. `-w` widens
//! the table beyond 80 columns. The layout is Postfix's, column by column.
//!
//! The queues default to `incoming` and `active`; names are taken relative to
//! `queue_directory`, absolute paths as they are. Only the envelope of each queue file is
//! read (the message is skipped over), so a large deferred queue is shaped without reading
//! its mail. `-N` and `-n` (interim results on a terminal) are accepted and ignored.
//!
//! # Diagnostics
//! Exit status 0; 1 with the usage text for a bad option, and with `qshape: fatal: ...` for
//! a configuration that cannot be read. Files that vanish or cannot be read are skipped.
//!
//! # Configuration parameters
//! `queue_directory`.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use common::config::{self, Params};
use common::queue::file::{self, Outcome};
use common::queue::{QueueId, maildrop};

use crate::Fatal;
use crate::getopt::{Arg, getopt};

const USAGE: &str = "Usage: qshape [ -s ] [ -p ] [ -m <min_subdomains> ] [ -l ]\n\t[ -b <bucket_count> ] [ -t <bucket_time> ] [ -w <terminal_width> ]\n\t[ -N <batch_msg_count> ] [ -n <batch_top_domains> ]\n\t[ -c <config_directory> ] [ <queue_name> ... ]";

/// The domain column is never narrower than this (Postfix's `$dwidth`).
const MIN_DOMAIN_WIDTH: usize = 18;

/// qshape's options, with Postfix's defaults.
#[derive(Debug, Clone)]
pub struct Shape {
    pub senders: bool,
    pub parents: bool,
    pub linear: bool,
    pub min_subdomains: u64,
    pub buckets: usize,
    pub tick_minutes: u64,
    pub width: usize,
}

impl Default for Shape {
    fn default() -> Shape {
        Shape { senders: false, parents: false, linear: false, min_subdomains: 5, buckets: 10, tick_minutes: 5, width: 80 }
    }
}

/// The counts: per domain, the total then one count per bucket (index 1..=buckets).
#[derive(Debug, Default)]
pub struct Table {
    counts: HashMap<String, Vec<u64>>,
    subdomains: HashMap<String, u64>,
}

impl Shape {
    fn bucket(&self, age_secs: u64) -> usize {
        let m = age_secs as f64 / (60 * self.tick_minutes) as f64;
        if m < 1.0 {
            return 1;
        }
        let b = if self.linear { (m + 1.0) as usize } else { 2 + m.log2() as usize };
        b.min(self.buckets)
    }

    /// Count one message of the given arrival (seconds) for these addresses.
    pub fn add(&self, table: &mut Table, now: u64, arrival: u64, addresses: &[&str]) {
        let b = self.bucket(now.saturating_sub(arrival));
        let width = self.buckets + 1;
        for a in addresses {
            let mut bump = |key: &str| {
                let row = table.counts.entry(key.to_string()).or_insert_with(|| vec![0; width]);
                row[0] += 1;
                row[b] += 1;
                row[0]
            };
            bump("TOTAL");
            let mut d = domain_of(&a.to_lowercase());
            let mut new = false;
            loop {
                let old = bump(&d) > 1;
                if new {
                    *table.subdomains.entry(d.clone()).or_default() += 1;
                }
                new = !old;
                match self.parents.then(|| parent(&d)).flatten() {
                    Some(p) => d = p,
                    None => break,
                }
            }
        }
    }

    /// The table in Postfix's layout.
    pub fn render(&self, table: &Table) -> String {
        let total = table.counts.get("TOTAL").cloned().unwrap_or_else(|| vec![0; self.buckets + 1]);
        let mut heads = Vec::new();
        let mut widths = Vec::new();
        let mut dw = self.width as i64;
        let mut t: u64 = 0;
        for (i, count) in total.iter().enumerate() {
            let head = if i == 0 {
                "T".to_string()
            } else if i == self.buckets {
                format!("{t}+")
            } else {
                t.to_string()
            };
            let l = count.to_string().len().max(head.len());
            let l = if l > 2 { l + 1 } else { 3 };
            dw -= l as i64;
            heads.push(head);
            widths.push(l);
            if i + 1 < self.buckets {
                t += if t > 0 && !self.linear { t } else { self.tick_minutes };
            }
        }
        let dw = usize::try_from(dw).unwrap_or(0).max(MIN_DOMAIN_WIDTH);
        let mut out = String::new();
        let row = |out: &mut String, name: &str, cells: &[String]| {
            let len = name.chars().count();
            if len > dw {
                let tail: String = name.chars().skip(len - (dw - if name.starts_with('.') { 2 } else { 1 })).collect();
                out.push_str(if name.starts_with('.') { ".+" } else { "+" });
                out.push_str(&tail);
            } else {
                out.push_str(&" ".repeat(dw - len));
                out.push_str(name);
            }
            for (c, w) in cells.iter().zip(&widths) {
                out.push_str(&format!("{c:>w$}"));
            }
            out.push('\n');
        };
        row(&mut out, "", &heads);
        // Postfix's table always has its TOTAL row, zeros for an empty queue.
        let zeros = ("TOTAL".to_string(), total.clone());
        let mut names: Vec<&String> = table.counts.keys().collect();
        if !table.counts.contains_key("TOTAL") {
            names.push(&zeros.0);
        }
        // Postfix sorts by count, then by length; its ties fall in hash order, ours by name.
        let count = |n: &String| table.counts.get(n).map_or(0, |c| c[0]);
        names.sort_by(|a, b| count(b).cmp(&count(a)).then(a.len().cmp(&b.len())).then(a.cmp(b)));
        for name in names {
            if name.starts_with('.') && table.subdomains.get(name).copied().unwrap_or(0) < self.min_subdomains {
                continue;
            }
            let cells: Vec<String> = table.counts.get(name).unwrap_or(&zeros.1).iter().map(u64::to_string).collect();
            row(&mut out, name, &cells);
        }
        out
    }
}

/// The domain qshape files an address under: after the last `@`, `..` made `.`, one leading
/// and one trailing dot dropped; the null sender is `MAILER-DAEMON`.
fn domain_of(address: &str) -> String {
    if address.is_empty() {
        return "MAILER-DAEMON".into();
    }
    let d = address.rsplit_once('@').map_or(address, |(_, d)| d).replace("..", ".");
    let d = d.strip_prefix('.').filter(|x| !x.is_empty()).unwrap_or(&d);
    let d = d.strip_suffix('.').filter(|x| !x.is_empty()).unwrap_or(d);
    d.to_string()
}

/// The parent of `d` for `-p` (`a.b.example.com` → `.b.example.com`), never a top-level domain.
fn parent(d: &str) -> Option<String> {
    let body = d.strip_prefix('.').unwrap_or(d);
    let (first, rest) = body.split_once('.')?;
    (!first.is_empty() && rest.contains('.')).then(|| format!(".{rest}"))
}

/// Every queue file below `dir`, hash levels included.
fn files(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let Ok(kind) = e.file_type() else { continue };
        let path = e.path();
        if kind.is_dir() && depth < 8 {
            files(&path, depth + 1, out);
        } else if kind.is_file() && e.file_name().to_str().is_some_and(|n| QueueId::parse(n).is_ok()) {
            out.push(path);
        }
    }
}

/// Count the queue files below `dir` into `table`.
pub fn shape_dir(shape: &Shape, table: &mut Table, dir: &Path, now: u64) {
    let mut paths = Vec::new();
    files(dir, 0, &mut paths);
    let is_maildrop = dir.file_name().is_some_and(|n| n == "maildrop");
    for path in paths {
        let (arrival_us, sender, pending) = if is_maildrop {
            let Ok(m) = maildrop::read(&path, None) else { continue };
            let pending: Vec<String> = m.file.pending().map(|(_, r)| r.address.clone()).collect();
            (m.file.envelope.arrival_us, m.file.envelope.sender, pending)
        } else {
            let Ok(q) = file::read_envelope(&path) else { continue };
            let pending = q
                .envelope
                .recipients
                .iter()
                .enumerate()
                .filter(|(i, _)| q.last_result(*i).is_none_or(|r| r.outcome == Outcome::Deferred))
                .map(|(_, r)| r.address.clone())
                .collect();
            (q.envelope.arrival_us, q.envelope.sender, pending)
        };
        if pending.is_empty() {
            continue;
        }
        let addresses: Vec<&str> = if shape.senders { vec![sender.as_str()] } else { pending.iter().map(String::as_str).collect() };
        shape.add(table, now, arrival_us / 1_000_000, &addresses);
    }
}

fn number(v: &str) -> Result<u64, Fatal> {
    v.parse().map_err(|_| Fatal::new(1, USAGE))
}

/// Run qshape.
pub fn run(args: &[String], w: &mut dyn Write) -> Result<u8, Fatal> {
    let parsed = getopt(args, "lhps", "cwbtmnN").map_err(|e| Fatal::new(1, format!("{e}\n{USAGE}")))?;
    let mut shape = Shape::default();
    let (mut config_dir, mut queues) = (None, Vec::new());
    for a in parsed {
        match a {
            Arg::Flag('s') => shape.senders = true,
            Arg::Flag('p') => shape.parents = true,
            Arg::Flag('l') => shape.linear = true,
            Arg::Flag('h') => return Err(Fatal::new(1, USAGE)),
            Arg::Opt('c', d) => config_dir = Some(PathBuf::from(d)),
            // As Postfix: out-of-range values keep the default.
            Arg::Opt('w', v) => shape.width = usize::try_from(number(&v)?).unwrap_or(80).max(80),
            Arg::Opt('b', v) => shape.buckets = usize::try_from(number(&v)?).ok().filter(|&b| b > 0).unwrap_or(10).min(64),
            Arg::Opt('t', v) => shape.tick_minutes = Some(number(&v)?).filter(|&t| t > 0).unwrap_or(5),
            Arg::Opt('m', v) => shape.min_subdomains = Some(number(&v)?).filter(|&m| m > 0).unwrap_or(5),
            Arg::Opt('n' | 'N', v) => {
                number(&v)?;
            }
            Arg::Operand(q) => queues.push(q),
            _ => return Err(Fatal::new(1, USAGE)),
        }
    }
    if queues.is_empty() {
        queues = vec!["incoming".into(), "active".into()];
    }
    let root = if queues.iter().all(|q| q.starts_with('/')) {
        PathBuf::new()
    } else {
        let dir = config::config_dir(config_dir);
        let p = Params::load(&dir, &[]).map_err(|e| Fatal::new(1, e.to_string()))?;
        p.dir("queue_directory").map_err(|e| Fatal::new(1, e.to_string()))?
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut table = Table::default();
    for q in &queues {
        shape_dir(&shape, &mut table, &root.join(q), now);
    }
    w.write_all(shape.render(&table).as_bytes()).map_err(|e| Fatal::new(1, format!("write: {e}")))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_parents_and_buckets() {
        assert_eq!(domain_of("u@Sub..Example.COM.".to_lowercase().as_str()), "sub.example.com");
        assert_eq!(domain_of(""), "MAILER-DAEMON");
        assert_eq!(parent("a.b.example.com").as_deref(), Some(".b.example.com"));
        assert_eq!(parent(".b.example.com").as_deref(), Some(".example.com"));
        assert_eq!(parent(".example.com"), None);
        let s = Shape::default();
        assert_eq!([s.bucket(0), s.bucket(299), s.bucket(300), s.bucket(600), s.bucket(1199), s.bucket(1200)], [1, 1, 2, 3, 3, 4]);
        assert_eq!(s.bucket(100 * 86400), 10);
    }
}
