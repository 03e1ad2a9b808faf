//! qshape - print Postern queue domain and age distribution
//!
//! # Synopsis
//! `qshape [-s] [-p] [-l] [-m min_subdomains] [-b bucket_count] [-t bucket_time]
//! [-w terminal_width] [-c config_dir] [queue_name...]`
//!
//! `qshape [-l] [-b bucket_count] [-t bucket_time] [-w terminal_width] [-c config_dir] -f site`
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
//! `-f site` (a Postern option; Postfix's qshape has no `-f`) shapes one site across the
//! fast flush cluster (`fast_flush_cluster_servers`, see flush(8)): one row per node, this
//! node first, then the others by name, under the `TOTAL` row, with the usual buckets (`-b`,
//! `-t`, `-l`, `-w` apply). It counts what `postqueue -n site` counts: the site's messages
//! (not recipients) that each node's fast flush index lists and that are still queued
//! (deferred, incoming or active), each in the bucket of its age since it arrived, as its
//! queue file's envelope says. The flush service asks the other nodes as it does for
//! `postqueue -n`, and waits for them as long: nodes that did not answer within
//! `fast_flush_cluster_timeout` (or refused, or answered without ages: an older version) are
//! named below the table, one line each, `missing: mx3 (no answer within 1s)`; without
//! `fast_flush_cluster_members` flush cannot know who is missing and waits out the deadline.
//! Without the cluster the table has this node's row alone, named `fast_flush_cluster_node`.
//! Nothing moves. `-s`, `-p` and queue names do not go with `-f`.
//!
//! # Security
//! `-f` asks the flush service, which allows it to `authorized_flush_users` (as `postqueue
//! -n`); the queue directories are read with the caller's own rights.
//!
//! # Diagnostics
//! Exit status 0; 1 with the usage text for a bad option, and with `qshape: fatal: ...` for
//! a configuration that cannot be read, or when the flush service refuses `-f` (in
//! postqueue's words: `Flush service is not configured for destination "site"`, `Cannot
//! flush mail queue - mail system is down`, ...). Files that vanish or cannot be read are
//! skipped.
//!
//! # Configuration parameters
//! `queue_directory`; for `-f` also `flush_service_name`, `trigger_timeout` (how long qshape
//! waits for the flush service), `fast_flush_cluster_node`.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use common::config::{self, Params};
use common::queue::file::{self, Outcome};
use common::queue::{QueueId, maildrop};

use common::ipc::flush::{FlushReply, FlushRequest, NodeShape};
use common::queue::ages::{Ages, MAX_BUCKETS};

use crate::getopt::{Arg, getopt};
use crate::{Fatal, postqueue};

const USAGE: &str = "Usage: qshape [ -s ] [ -p ] [ -m <min_subdomains> ] [ -l ]\n\t[ -b <bucket_count> ] [ -t <bucket_time> ] [ -w <terminal_width> ]\n\t[ -N <batch_msg_count> ] [ -n <batch_top_domains> ]\n\t[ -c <config_directory> ] [ <queue_name> ... ]\n       qshape [ -l ] [ -b <bucket_count> ] [ -t <bucket_time> ] [ -w <terminal_width> ]\n\t[ -c <config_directory> ] -f <site>";

/// The domain column is never narrower than this (Postfix's `$dwidth`).
const MIN_DOMAIN_WIDTH: usize = 18;

/// qshape's options, with Postfix's defaults.
#[derive(Debug, Clone)]
pub struct Shape {
    pub senders: bool,
    pub parents: bool,
    pub min_subdomains: u64,
    pub ages: Ages,
    pub width: usize,
}

impl Default for Shape {
    fn default() -> Shape {
        Shape { senders: false, parents: false, min_subdomains: 5, ages: Ages::default(), width: 80 }
    }
}

/// The counts: per domain, the total then one count per bucket (index 1..=buckets).
#[derive(Debug, Default)]
pub struct Table {
    counts: HashMap<String, Vec<u64>>,
    subdomains: HashMap<String, u64>,
}

impl Shape {
    /// Count one message of the given arrival (seconds) for these addresses.
    pub fn add(&self, table: &mut Table, now: u64, arrival: u64, addresses: &[&str]) {
        // Column 0 is the total.
        let b = 1 + self.ages.bucket(now.saturating_sub(arrival));
        let width = self.ages.buckets() + 1;
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
        let total = table.counts.get("TOTAL").cloned().unwrap_or_else(|| vec![0; self.ages.buckets() + 1]);
        // Postfix's table always has its TOTAL row, zeros for an empty queue.
        let zeros = ("TOTAL".to_string(), total.clone());
        let mut names: Vec<&String> = table.counts.keys().collect();
        if !table.counts.contains_key("TOTAL") {
            names.push(&zeros.0);
        }
        // Postfix sorts by count, then by length; its ties fall in hash order, ours by name.
        let count = |n: &String| table.counts.get(n).map_or(0, |c| c[0]);
        names.sort_by(|a, b| count(b).cmp(&count(a)).then(a.len().cmp(&b.len())).then(a.cmp(b)));
        let rows = names
            .into_iter()
            .filter(|name| !name.starts_with('.') || table.subdomains.get(*name).copied().unwrap_or(0) >= self.min_subdomains)
            .map(|name| (name.as_str(), table.counts.get(name).unwrap_or(&zeros.1).as_slice()));
        self.layout(&total, rows)
    }

    /// `qshape -f`: the TOTAL row, then one row per node (in the order given) of its
    /// buckets' counts.
    pub fn render_nodes(&self, nodes: &[NodeShape]) -> String {
        let mut total = vec![0u64; self.ages.buckets() + 1];
        let rows: Vec<(&str, Vec<u64>)> = nodes
            .iter()
            .map(|n| {
                let mut row = vec![0u64; self.ages.buckets() + 1];
                // The flush service answers as many buckets as asked for; the row is cut or
                // padded to them whatever it says.
                for (cell, n) in row[1..].iter_mut().zip(&n.buckets) {
                    *cell = *n;
                }
                row[0] = row[1..].iter().fold(0, |s, n| s.saturating_add(*n));
                for (t, n) in total.iter_mut().zip(&row) {
                    *t = t.saturating_add(*n);
                }
                (n.node.as_str(), row)
            })
            .collect();
        let all = std::iter::once(("TOTAL", total.as_slice())).chain(rows.iter().map(|(n, r)| (*n, r.as_slice())));
        self.layout(&total, all)
    }

    /// The rows, each a name and its counts (the total first), in Postfix's layout: the
    /// column widths follow the TOTAL row's counts.
    fn layout<'a>(&self, total: &[u64], rows: impl Iterator<Item = (&'a str, &'a [u64])>) -> String {
        let heads: Vec<String> = std::iter::once("T".to_string()).chain(self.ages.headings()).collect();
        let mut widths = Vec::new();
        let mut dw = self.width as i64;
        for (count, head) in total.iter().zip(&heads) {
            let l = count.to_string().len().max(head.len());
            let l = if l > 2 { l + 1 } else { 3 };
            dw -= l as i64;
            widths.push(l);
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
        for (name, counts) in rows {
            let cells: Vec<String> = counts.iter().map(u64::to_string).collect();
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

/// `qshape -f site`: the site's mail on each node of the fast flush cluster (this node alone
/// without one), as the flush service counts it, then the nodes not in the table.
fn shape_fleet(shape: &Shape, p: &Params, site: &str, w: &mut dyn Write) -> Result<u8, Fatal> {
    let request = FlushRequest::ShapeSite { site: site.to_string(), ages: shape.ages };
    // The flush service's refusals in postqueue's words; qshape's exit status.
    let answer = postqueue::site_request(p, site, request).map_err(|f| Fatal::new(1, f.text))?;
    let FlushReply::Shaped { buckets, mut nodes, missing } = answer else {
        return Err(Fatal::new(1, "unexpected answer from the flush service"));
    };
    if nodes.is_empty() {
        let node = p.get("fast_flush_cluster_node").map_err(|e| Fatal::new(1, e.to_string()))?;
        nodes.push(NodeShape { node, buckets });
    }
    let mut out = shape.render_nodes(&nodes);
    for m in &missing {
        out.push_str(&format!("missing: {} ({})\n", m.node, m.reason));
    }
    w.write_all(out.as_bytes()).map_err(|e| Fatal::new(1, format!("write: {e}")))?;
    Ok(0)
}

fn number(v: &str) -> Result<u64, Fatal> {
    v.parse().map_err(|_| Fatal::new(1, USAGE))
}

/// Run qshape.
pub fn run(args: &[String], w: &mut dyn Write) -> Result<u8, Fatal> {
    let parsed = getopt(args, "lhps", "cwbtmnNf").map_err(|e| Fatal::new(1, format!("{e}\n{USAGE}")))?;
    let mut shape = Shape::default();
    let (mut config_dir, mut queues, mut fleet) = (None, Vec::new(), None);
    let (mut buckets, mut tick_minutes, mut linear) = (10, 5, false);
    for a in parsed {
        match a {
            Arg::Flag('s') => shape.senders = true,
            Arg::Flag('p') => shape.parents = true,
            Arg::Flag('l') => linear = true,
            Arg::Flag('h') => return Err(Fatal::new(1, USAGE)),
            Arg::Opt('c', d) => config_dir = Some(PathBuf::from(d)),
            // As Postfix: out-of-range values keep the default.
            Arg::Opt('w', v) => shape.width = usize::try_from(number(&v)?).unwrap_or(80).max(80),
            Arg::Opt('b', v) => buckets = usize::try_from(number(&v)?).ok().filter(|&b| b > 0).unwrap_or(10).min(MAX_BUCKETS),
            Arg::Opt('t', v) => tick_minutes = Some(number(&v)?).filter(|&t| t > 0).unwrap_or(5),
            Arg::Opt('m', v) => shape.min_subdomains = Some(number(&v)?).filter(|&m| m > 0).unwrap_or(5),
            Arg::Opt('n' | 'N', v) => {
                number(&v)?;
            }
            Arg::Opt('f', site) => fleet = Some(site),
            Arg::Operand(q) => queues.push(q),
            _ => return Err(Fatal::new(1, USAGE)),
        }
    }
    shape.ages = Ages::new(buckets, tick_minutes, linear).map_err(|e| Fatal::new(1, format!("{e}\n{USAGE}")))?;
    if let Some(site) = fleet {
        // The flush index knows recipient sites of the queued mail, nothing else.
        if shape.senders || shape.parents || !queues.is_empty() {
            return Err(Fatal::new(1, format!("-f takes no -s, -p or queue names\n{USAGE}")));
        }
        let p = Params::load(&config::config_dir(config_dir), &[]).map_err(|e| Fatal::new(1, e.to_string()))?;
        return shape_fleet(&shape, &p, &site, w);
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
    }

    #[test]
    fn nodes_in_the_given_order_under_their_total() {
        let shape = Shape { ages: Ages::new(3, 5, false).unwrap(), ..Shape::default() };
        let nodes = [
            NodeShape { node: "mx2".into(), buckets: vec![3, 0, 1] },
            NodeShape { node: "mx1".into(), buckets: vec![2, 0, 0] },
            // Cut to the buckets asked for.
            NodeShape { node: "mx3".into(), buckets: vec![4, 1, 0, 7] },
        ];
        let want = [
            "                                                                     T  5 10 10+",
            "                                                              TOTAL 11  9  1   1",
            "                                                                mx2  4  3  0   1",
            "                                                                mx1  2  2  0   0",
            "                                                                mx3  5  4  1   0",
        ];
        assert_eq!(shape.render_nodes(&nodes), want.join("\n") + "\n");
    }
}
