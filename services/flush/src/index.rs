//! The in-memory index: site → queue IDs listed in its logfile. Keys are the site's labels in
//! reverse order (`net.example.sub`), so that a site and all its subdomains are one contiguous
//! range: `ETRN @example.net` costs O(log sites + that domain's mail), not a scan.

use std::collections::{BTreeMap, HashSet};

use common::domain::Site;
use common::queue::QueueId;

#[derive(Debug, Default)]
pub struct Index {
    sites: BTreeMap<String, (Site, HashSet<QueueId>)>,
}

fn reversed(site: &Site) -> String {
    let labels: Vec<&str> = site.as_str().rsplit('.').collect();
    labels.join(".")
}

impl Index {
    /// Record `id` for `site`; false when it was already there (nothing to append).
    pub fn insert(&mut self, site: &Site, id: QueueId) -> bool {
        self.sites.entry(reversed(site)).or_insert_with(|| (site.clone(), HashSet::new())).1.insert(id)
    }

    pub fn contains(&self, site: &Site, id: &QueueId) -> bool {
        self.sites.get(&reversed(site)).is_some_and(|(_, ids)| ids.contains(id))
    }

    pub fn remove(&mut self, site: &Site, id: &QueueId) {
        let key = reversed(site);
        if let Some((_, ids)) = self.sites.get_mut(&key) {
            ids.remove(id);
            if ids.is_empty() {
                self.sites.remove(&key);
            }
        }
    }

    /// Forget everything listed for `site` (its logfile was just sent).
    pub fn clear(&mut self, site: &Site) {
        self.sites.remove(&reversed(site));
    }

    /// How many IDs are listed for `site`.
    pub fn count(&self, site: &Site) -> usize {
        self.sites.get(&reversed(site)).map_or(0, |(_, ids)| ids.len())
    }

    /// `site` and every indexed site below it.
    pub fn site_and_subdomains(&self, site: &Site) -> Vec<Site> {
        let key = reversed(site);
        let mut out: Vec<Site> = Vec::new();
        if let Some((s, _)) = self.sites.get(&key) {
            out.push(s.clone());
        }
        let prefix = format!("{key}.");
        out.extend(self.sites.range(prefix.clone()..).take_while(|(k, _)| k.starts_with(&prefix)).map(|(_, (s, _))| s.clone()));
        out
    }

    /// Every (site, id) pair (reconciliation).
    /// Every (site, ID) listed, borrowed: at a million entries a copy would cost as much
    /// memory as the index.
    pub fn pairs(&self) -> impl Iterator<Item = (&Site, &QueueId)> {
        self.sites.values().flat_map(|(s, ids)| ids.iter().map(move |id| (s, id)))
    }

    pub fn ids(&self, site: &Site) -> Vec<QueueId> {
        self.sites.get(&reversed(site)).map(|(_, ids)| ids.iter().cloned().collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(s: &str) -> Site {
        Site::parse(s).unwrap()
    }

    #[test]
    fn subdomain_ranges() {
        let mut ix = Index::default();
        for (s, id) in
            [("example.net", "A"), ("sub.example.net", "B"), ("a.sub.example.net", "C"), ("badexample.net", "D"), ("example.network", "E")]
        {
            assert!(ix.insert(&site(s), QueueId::parse(id).unwrap()));
        }
        assert!(!ix.insert(&site("example.net"), QueueId::parse("A").unwrap()));
        let mut got: Vec<String> = ix.site_and_subdomains(&site("example.net")).iter().map(|s| s.to_string()).collect();
        got.sort();
        assert_eq!(got, vec!["a.sub.example.net", "example.net", "sub.example.net"]);
        assert_eq!(ix.site_and_subdomains(&site("nothing.example")), Vec::<Site>::new());
        ix.clear(&site("sub.example.net"));
        assert_eq!(ix.count(&site("sub.example.net")), 0);
        assert_eq!(ix.pairs().count(), 4);
    }
}
