//! Micro-benchmarks of the flush index: adding IDs and answering a send (one site, and one
//! domain with its subdomains) with 10k, 100k and 1M IDs indexed over 1% as many sites.
//! Run with `cargo bench -p postern-flush`.

use common::domain::Site;
use common::queue::QueueId;
use divan::Bencher;
use flush::index::Index;

fn main() {
    divan::main();
}

const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];

fn site(i: usize) -> Site {
    Site::parse(&format!("d{i}.example.test")).expect("valid site")
}

fn id(i: usize) -> QueueId {
    QueueId::parse(&format!("ID{i:08}")).expect("valid id")
}

fn filled(n: usize) -> (Index, Vec<Site>) {
    let sites: Vec<Site> = (0..(n / 100).max(1)).map(site).collect();
    let mut ix = Index::default();
    for i in 0..n {
        ix.insert(&sites[i % sites.len()], id(i));
    }
    (ix, sites)
}

/// One more ID into an index of `n`.
#[divan::bench(args = SIZES)]
fn add(bencher: Bencher, n: usize) {
    let (mut ix, sites) = filled(n);
    let mut next = n;
    bencher.bench_local(|| {
        next += 1;
        ix.insert(&sites[next % sites.len()], id(next))
    });
}

/// A duplicate add (the common case when a message is deferred again).
#[divan::bench(args = SIZES)]
fn add_duplicate(bencher: Bencher, n: usize) {
    let (mut ix, sites) = filled(n);
    bencher.bench_local(|| ix.insert(&sites[7 % sites.len()], id(7)));
}

/// A send of one site (its IDs taken and forgotten) followed by their re-deferral (added back),
/// so every iteration starts from the same index.
#[divan::bench(args = SIZES)]
fn send_site_and_redefer(bencher: Bencher, n: usize) {
    let (mut ix, sites) = filled(n);
    let s = &sites[3];
    bencher.bench_local(|| {
        let ids = ix.ids(s);
        ix.clear(s);
        for i in ids {
            ix.insert(s, i);
        }
    });
}

/// `ETRN @domain`: the site and its subdomains, a range query on the reversed-label keys.
#[divan::bench(args = SIZES)]
fn subdomain_lookup(bencher: Bencher, n: usize) {
    let (ix, _) = filled(n);
    let parent = Site::parse("example.test").expect("valid");
    let one = site(42);
    bencher.bench_local(|| (ix.site_and_subdomains(&one).len(), ix.count(&parent)));
}
