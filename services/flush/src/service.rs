//! The fast flush service logic: what each request does to the logfiles, the queue and the
//! index. A plain struct, owned by the flush actor, so that it can be tested without a runtime.

use std::collections::HashSet;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use common::config::{ConfigError, DomainList, Params};
use common::domain::{Site, valid_address_literal};
use common::ipc::endpoint::{Class, service_path};
use common::ipc::flush::{FlushReply, FlushRequest};
use common::ipc::qmgr::{QmgrCommand, QmgrRequest};
use common::ipc::trigger::Trigger;
use common::queue::ages::Ages;
use common::queue::{QueueId, QueueName, Spool};
use common::{log_info, log_warning};

use crate::index::Index;
use crate::logfile::{FlushDir, exists};
use crate::reconcile::Scan;
use crate::send::{FlushOne, SendJob, Sent, flush_one};
use crate::shape::ShapeJob;

/// The settings the flush service uses, re-read on reload.
#[derive(Debug, Clone)]
pub struct FlushConfig {
    pub spool: Spool,
    /// `fast_flush_domains`; empty turns the service off.
    pub eligible: DomainList,
    pub refresh_time: Duration,
    pub purge_time: Duration,
    pub qmgr_socket: PathBuf,
    pub trigger_timeout: Duration,
}

impl FlushConfig {
    pub fn from_params(p: &Params) -> Result<FlushConfig, ConfigError> {
        let spool = Spool::from_params(p)?;
        let qmgr_socket = service_path(&spool.root, Class::Public, &p.get("queue_service_name")?);
        Ok(FlushConfig {
            eligible: p.domain_list("fast_flush_domains")?,
            refresh_time: p.time("fast_flush_refresh_time")?,
            purge_time: p.time("fast_flush_purge_time")?,
            trigger_timeout: p.time("trigger_timeout")?,
            qmgr_socket,
            spool,
        })
    }
}

/// Where to post what the queue manager is told and nobody waits for (a scan of `incoming`, or
/// which files a send moved there), to the queue manager in the daemon, to a recorder in tests.
pub type Notify = Box<dyn FnMut(QmgrRequest) + Send>;

/// What a request needs next.
#[derive(Debug)]
pub enum Step {
    /// It is done: the answer.
    Reply(FlushReply),
    /// The queue manager must acknowledge `ForgetDeadSites` before this send moves any file, so
    /// that it cannot skip the mail about to be handed to it (Postfix's 2.4 race fix); then
    /// [`FlushState::send_job`] and [`FlushState::sent`] do the rest. Nothing else may happen to
    /// the state between.
    ForgetDeadSitesFirst(PendingSend),
}

/// A send whose sites were checked and are waiting for the queue manager's acknowledgement.
#[derive(Debug)]
pub struct PendingSend {
    targets: Vec<Site>,
    /// A handover (fast flush cluster): the next hop where the moved mail is to go instead of
    /// its usual route, which the queue manager must have been told before anything moves.
    pub relay: Option<String>,
}

/// Give the scan's freed memory back to the system: glibc's allocator keeps it otherwise, and a
/// large queue's start-up would leave the flush process several times the index's size.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

pub struct FlushState {
    cfg: FlushConfig,
    logs: FlushDir,
    index: Index,
    notify: Notify,
}

fn bad(reason: impl Into<String>) -> FlushReply {
    FlushReply::Bad { reason: reason.into() }
}

/// The answer for a site that cannot have a logfile: address literals are syntactically fine
/// but never eligible (Deny, as in Postfix's EAI builds); anything else is Bad.
fn site_refusal(text: &str) -> FlushReply {
    if valid_address_literal(text) {
        FlushReply::Deny
    } else {
        let shown: String = text.chars().take(100).collect();
        bad(format!("invalid destination: \"{shown}\""))
    }
}

impl FlushState {
    /// Load the index from the logfiles on disk.
    pub fn load(cfg: FlushConfig, notify: Notify) -> std::io::Result<FlushState> {
        let logs = FlushDir::new(common::queue::flush_dir(&cfg.spool.root));
        fs::create_dir_all(&logs.dir)?;
        let mut index = Index::default();
        for site in logs.sites()? {
            for id in logs.read(&site)?.ids {
                index.insert(&site, id);
            }
        }
        Ok(FlushState { cfg, logs, index, notify })
    }

    pub fn config(&self) -> &FlushConfig {
        &self.cfg
    }

    pub fn set_config(&mut self, cfg: FlushConfig) {
        self.cfg = cfg;
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Whether `fast_flush_domains` lists `site`: `Err(Deny)` when it does not, `Err(Fail)`
    /// when a table lookup failed (a temporary error for the client, as in Postfix, never
    /// taken for "not eligible").
    fn eligibility(&self, site: &Site) -> Result<(), FlushReply> {
        if self.cfg.eligible.is_empty() {
            return Err(FlushReply::Deny);
        }
        match self.cfg.eligible.matches(site.as_str()) {
            Ok(true) => Ok(()),
            Ok(false) => Err(FlushReply::Deny),
            Err(e) => {
                log_warning!("{e}");
                Err(FlushReply::Fail { reason: e.to_string() })
            }
        }
    }

    fn eligible(&self, site: &Site) -> bool {
        self.eligibility(site).is_ok()
    }

    pub fn handle(&mut self, req: FlushRequest) -> Step {
        let reply = match req {
            FlushRequest::Add { site, queue_id } => self.add(&site, &queue_id),
            FlushRequest::SendSite { site, subdomains } => return self.send_site(&site, subdomains),
            FlushRequest::SendFile { queue_id } => self.send_file(&queue_id),
            FlushRequest::Refresh => self.housekeeping(self.cfg.refresh_time),
            FlushRequest::Purge => self.housekeeping(Duration::ZERO),
            FlushRequest::List { site } => self.list(&site),
            FlushRequest::CountSite { site } => self.count(&site),
            // The actor's handle takes the job off the actor's thread instead (see there).
            FlushRequest::ShapeSite { site, ages } => match self.shape_job(&site, ages) {
                Ok(job) => job.run(SystemTime::now()),
                Err(refusal) => refusal,
            },
            FlushRequest::Forget { site, queue_ids } => self.forget(&site, &queue_ids),
            // The other nodes' part (see the cluster); this node hands over nothing to itself.
            FlushRequest::HandOver { site } => self.checked(&site).map_or_else(|refusal| refusal, |_| FlushReply::ok(0)),
        };
        Step::Reply(reply)
    }

    fn add(&mut self, site: &str, queue_id: &str) -> FlushReply {
        let Ok(id) = QueueId::parse(queue_id) else {
            return bad(format!("invalid queue id: \"{queue_id}\""));
        };
        let Ok(site) = Site::parse(site) else { return site_refusal(site) };
        if let Err(refusal) = self.eligibility(&site) {
            return refusal;
        }
        // Duplicates are not appended: the index already lists the ID for this site.
        if self.index.contains(&site, &id) {
            return FlushReply::ok(0);
        }
        if let Err(e) = self.logs.append(&site, &id) {
            log_warning!("write fast flush logfile {}: {e}", self.logs.path(&site).display());
            return FlushReply::Fail { reason: e.to_string() };
        }
        self.index.insert(&site, id);
        FlushReply::ok(0)
    }

    /// The IDs listed for one site, in no order; O(that site's mail). Stale IDs (mail that
    /// has gone meanwhile) are the caller's to skip, as a send skips them.
    fn list(&self, site: &str) -> FlushReply {
        let site = match self.checked(site) {
            Ok(site) => site,
            Err(refusal) => return refusal,
        };
        FlushReply::Listed { ids: self.index.ids(&site).iter().map(|id| id.as_str().to_string()).collect() }
    }

    /// How many of the IDs listed for `site` are still in a queue (the index may list mail
    /// that was delivered since, until the next send empties it).
    fn count(&self, site: &str) -> FlushReply {
        let site = match self.checked(site) {
            Ok(site) => site,
            Err(refusal) => return refusal,
        };
        FlushReply::ok(self.index.ids(&site).iter().filter(|id| queued(&self.cfg.spool, id)).count() as u64)
    }

    /// The messages listed for `site` (exactly that site), to be shaped by their ages: the
    /// same checks as a count.
    pub fn shape_job(&self, site: &str, ages: Ages) -> Result<ShapeJob, FlushReply> {
        let Ok(site) = Site::parse(site) else { return Err(site_refusal(site)) };
        self.eligibility(&site)?;
        Ok(ShapeJob { spool: self.cfg.spool.clone(), ids: self.index.ids(&site), ages })
    }

    /// Drop delivered IDs from one site's index and logfile (one rewrite). An ID still in a
    /// queue stays listed, whoever asks.
    fn forget(&mut self, site: &str, queue_ids: &[String]) -> FlushReply {
        let Ok(site) = Site::parse(site) else { return site_refusal(site) };
        let mut changed = false;
        for id in queue_ids.iter().filter_map(|id| QueueId::parse(id).ok()) {
            if self.index.contains(&site, &id) && !queued(&self.cfg.spool, &id) {
                self.index.remove(&site, &id);
                changed = true;
            }
        }
        if changed && let Err(e) = self.logs.rewrite(&site, &self.index.ids(&site)) {
            log_warning!("rewrite fast flush logfile {}: {e}", self.logs.path(&site).display());
            return FlushReply::Fail { reason: e.to_string() };
        }
        FlushReply::ok(0)
    }

    /// A valid, eligible site, or the refusal.
    fn checked(&self, site: &str) -> Result<Site, FlushReply> {
        let Ok(site) = Site::parse(site) else { return Err(site_refusal(site)) };
        self.eligibility(&site)?;
        Ok(site)
    }

    fn send_site(&mut self, site: &str, subdomains: bool) -> Step {
        let site = match self.checked(site) {
            Ok(site) => site,
            Err(refusal) => return Step::Reply(refusal),
        };
        let mut targets = vec![site.clone()];
        if subdomains {
            targets.extend(self.index.site_and_subdomains(&site).into_iter().filter(|s| *s != site && self.eligible(s)));
        }
        Step::ForgetDeadSitesFirst(PendingSend { targets, relay: None })
    }

    /// Another node's handover request: a send of exactly `site` whose mail goes to `nexthop`
    /// (the asking node, as this node's `fast_flush_cluster_relay_maps` says).
    pub fn hand_over(&self, site: &str, nexthop: String) -> Step {
        match self.checked(site) {
            Ok(site) => Step::ForgetDeadSitesFirst(PendingSend { targets: vec![site], relay: Some(nexthop) }),
            Err(refusal) => Step::Reply(refusal),
        }
    }

    /// The listed messages of a send that wait in `deferred` (one `stat` each): what the send
    /// then moves. A message that an ODMR session holds is among them (it is on its way), and
    /// an ID listed for mail that has left the queue is not.
    pub fn waiting(&self, pending: &PendingSend) -> Vec<QueueId> {
        let spool = &self.cfg.spool;
        pending.targets.iter().flat_map(|t| self.index.ids(t)).filter(|id| spool.path(QueueName::Deferred, id).exists()).collect()
    }

    /// What the queue manager must be told before a handover moves anything: the messages
    /// that will move, and where their recipients in the site go. `None` for a plain send,
    /// or when nothing waits.
    pub fn relay_request(&self, pending: &PendingSend) -> Option<QmgrCommand> {
        let (nexthop, site) = (pending.relay.clone()?, pending.targets.first()?);
        let queue_ids: Vec<String> = self.waiting(pending).iter().map(|id| id.as_str().to_string()).collect();
        (!queue_ids.is_empty()).then(|| QmgrCommand::Relay { site: site.as_str().to_string(), nexthop, queue_ids })
    }

    /// The reply to a send before it moves anything: how many messages [`FlushState::waiting`]
    /// finds.
    pub fn pending(&self, pending: &PendingSend) -> FlushReply {
        FlushReply::ok(self.waiting(pending).len() as u64)
    }

    /// The file work of a send, once the queue manager has forgotten its dead sites; the
    /// caller runs it and hands what it did to [`FlushState::sent`].
    pub fn send_job(&self, pending: PendingSend) -> SendJob {
        SendJob { spool: self.cfg.spool.clone(), logs: self.logs.clone(), targets: pending.targets }
    }

    /// A send's file work done where it is (housekeeping; the actor runs a client's off its
    /// thread).
    pub fn send_sites(&mut self, pending: PendingSend) -> FlushReply {
        let (sent, held) = self.send_job(pending).run();
        let reply = self.sent(sent);
        held.finish();
        reply
    }

    /// The end of a send: the sent sites' index entries go, the queue manager hears about
    /// what moved (even when some logfiles failed), and the client about the failures.
    pub fn sent(&mut self, sent: Sent) -> FlushReply {
        for site in &sent.sites {
            self.index.clear(site);
        }
        // The moved files are named, so that the queue manager need not list `incoming` for
        // them; lines whose files were already there (another flush's) get a scan.
        let moved = sent.moved.len();
        if moved > 0 {
            (self.notify)(QmgrRequest::Command(QmgrCommand::Incoming { queue_ids: sent.moved.iter().map(|id| id.to_string()).collect() }));
        } else if sent.lines > 0 {
            (self.notify)(QmgrRequest::Triggers(vec![Trigger::ScanIncoming]));
        }
        match sent.first_failure {
            None => FlushReply::ok(moved as u64),
            Some(reason) => FlushReply::Fail {
                reason: format!("{} of {} logfiles could not be sent ({reason}); {moved} messages moved", sent.failed, sent.total),
            },
        }
    }

    fn send_file(&mut self, queue_id: &str) -> FlushReply {
        let Ok(id) = QueueId::parse(queue_id) else {
            return bad(format!("invalid queue id: \"{queue_id}\""));
        };
        match flush_one(&self.cfg.spool, &id, SystemTime::now()) {
            FlushOne::Missing => FlushReply::ok(0),
            found => {
                // The queue manager unthrottles this message's destinations as it takes it
                // (Postfix's UNTHROTTLE_AFTER), so a dead-route cache cannot hold it back.
                let incoming = self.cfg.spool.path(QueueName::Incoming, &id);
                if let Err(e) = common::queue::unthrottle::mark(&incoming) {
                    log_warning!("{}: mark for unthrottling: {e}", incoming.display());
                }
                (self.notify)(QmgrRequest::Triggers(vec![Trigger::ScanIncoming]));
                FlushReply::ok(u64::from(found == FlushOne::Moved))
            }
        }
    }

    /// Refresh (`max_age` = `fast_flush_refresh_time`) or purge (`max_age` = 0): send logfiles
    /// not flushed for `max_age`, remove empty ones untouched for `fast_flush_purge_time`. No
    /// ForgetDeadSites here: housekeeping respects the dead-site cache and `defer_transports`.
    fn housekeeping(&mut self, max_age: Duration) -> FlushReply {
        if self.cfg.eligible.is_empty() {
            return FlushReply::Deny;
        }
        let sites = match self.logs.sites() {
            Ok(s) => s,
            Err(e) => {
                return FlushReply::Fail { reason: format!("scan {}: {e}", self.logs.dir.display()) };
            }
        };
        let now = SystemTime::now();
        let mut due = Vec::new();
        for site in sites {
            let Ok(t) = self.logs.times(&site) else {
                continue;
            };
            if t.size == 0 {
                if t.modified + self.cfg.purge_time < now {
                    match self.logs.remove(&site) {
                        Ok(()) => self.index.clear(&site),
                        Err(e) => {
                            log_warning!("remove logfile {}: {e}", self.logs.path(&site).display())
                        }
                    }
                }
            } else if max_age.is_zero() || t.accessed + max_age < now {
                due.push(site);
            }
        }
        self.send_sites(PendingSend { targets: due, relay: None })
    }

    /// Bring the index and logfiles in line with the deferred queue as scanned at start-up:
    /// add what is missing (a fresh install, a lost logfile), drop IDs of mail that is gone.
    /// Logged every time, with what the scan read and how long that and this took (issue 15:
    /// start-up at a million queued messages is stated, not guessed).
    pub fn reconcile(&mut self, scan: Scan) {
        let started = std::time::Instant::now();
        let Scan { mut found, messages, took } = scan;
        // Sorted for lookups instead of a set of copies: at a million messages every copy of
        // the scan costs about 100 MB.
        found.sort_unstable();
        found.dedup();
        let mut added = 0;
        for (site, id) in &found {
            if self.eligible(site) && !self.index.contains(site, id) && self.logs.append(site, id).is_ok() {
                self.index.insert(site, id.clone());
                added += 1;
            }
        }
        let spool = &self.cfg.spool;
        let gone: Vec<(Site, QueueId)> = self
            .index
            .pairs()
            .filter(|&(site, id)| found.binary_search_by(|(s, i)| (s, i).cmp(&(site, id))).is_err() && !queued(spool, id))
            .map(|(site, id)| (site.clone(), id.clone()))
            .collect();
        drop(found);
        let mut dirty: HashSet<Site> = HashSet::new();
        for (site, id) in gone {
            self.index.remove(&site, &id);
            dirty.insert(site);
        }
        for site in &dirty {
            if let Err(e) = self.logs.rewrite(site, &self.index.ids(site)) {
                log_warning!("rewrite fast flush logfile {}: {e}", self.logs.path(site).display());
            }
        }
        log_info!(
            "fast flush index reconciled with the deferred queue: {added} added, {} logfiles cleaned ({messages} messages read in {:.1}s, merged in {:.1}s)",
            dirty.len(),
            took.as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
        release_freed_memory();
    }
}

/// Is the message still somewhere it can be delivered from?
fn queued(spool: &Spool, id: &QueueId) -> bool {
    [QueueName::Deferred, QueueName::Incoming, QueueName::Active].iter().any(|q| exists(&spool.path(*q, id)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use common::queue::file::{Envelope, Recipient, write_new};
    use std::sync::{Arc, Mutex};

    struct Fixture {
        _tmp: tempfile::TempDir,
        spool: Spool,
        /// What the queue manager was told, triggers and named files apart.
        triggers: Arc<Mutex<Vec<Trigger>>>,
        named: Arc<Mutex<Vec<String>>>,
        state: FlushState,
    }

    /// A configuration with a fresh spool in `dir` (the queue manager's socket not there).
    pub(crate) fn test_config(dir: &std::path::Path, fast_flush_domains: &str) -> FlushConfig {
        let spool = Spool::new(dir.to_path_buf(), &["deferred".into()], 1);
        spool.create_dirs().unwrap();
        FlushConfig {
            spool,
            eligible: DomainList::parse("fast_flush_domains", fast_flush_domains, &["fast_flush_domains".into()], dir).unwrap(),
            refresh_time: Duration::from_secs(12 * 3600),
            purge_time: Duration::from_secs(7 * 86400),
            qmgr_socket: dir.join("public/qmgr"),
            trigger_timeout: Duration::from_secs(1),
        }
    }

    fn fixture(fast_flush_domains: &str) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = test_config(tmp.path(), fast_flush_domains);
        let spool = cfg.spool.clone();
        let (triggers, named) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
        let (t, n) = (triggers.clone(), named.clone());
        let state = FlushState::load(
            cfg,
            Box::new(move |req| match req {
                QmgrRequest::Triggers(x) => t.lock().unwrap().extend(x),
                QmgrRequest::Command(QmgrCommand::Incoming { queue_ids }) => n.lock().unwrap().extend(queue_ids),
                QmgrRequest::Command(other) => panic!("not posted: {other:?}"),
            }),
        )
        .unwrap();
        Fixture { _tmp: tmp, spool, triggers, named, state }
    }

    pub(crate) fn deferred_message(spool: &Spool, rcpts: &[&str]) -> QueueId {
        let env = Envelope {
            sender: "s@example.org".into(),
            recipients: rcpts.iter().map(|r| Recipient { address: r.to_string(), ..Default::default() }).collect(),
            arrival_us: 0,
            client: Default::default(),
            ..Default::default()
        };
        let id = write_new(spool, QueueName::Incoming, &env, b"Subject: t\r\n\r\nbody\r\n").unwrap();
        spool.move_file(&id, QueueName::Incoming, QueueName::Deferred).unwrap();
        id
    }

    /// A request as the actor runs it, with the queue manager's acknowledgement recorded.
    fn request(f: &mut Fixture, req: FlushRequest) -> FlushReply {
        match f.state.handle(req) {
            Step::Reply(reply) => reply,
            Step::ForgetDeadSitesFirst(pending) => {
                // The client hears this count before anything moves (see the actor): it must
                // be what the send then moves.
                let early = f.state.pending(&pending);
                f.triggers.lock().unwrap().push(Trigger::ForgetDeadSites);
                let done = f.state.send_sites(pending);
                if let FlushReply::Ok { moved, .. } = &done {
                    assert_eq!(early, FlushReply::ok(*moved), "the early reply counts what moves");
                }
                done
            }
        }
    }

    fn add(f: &mut Fixture, site: &str, id: &str) -> FlushReply {
        request(f, FlushRequest::Add { site: site.into(), queue_id: id.into() })
    }

    fn send(f: &mut Fixture, site: &str, subdomains: bool) -> FlushReply {
        request(f, FlushRequest::SendSite { site: site.into(), subdomains })
    }

    #[test]
    fn a_table_that_cannot_be_read_is_a_temporary_failure_not_a_denial() {
        let dir = tempfile::tempdir().unwrap();
        let table = dir.path().join("flush_domains");
        std::fs::write(&table, "example.net x\n").unwrap();
        let mut f = fixture(&format!("texthash:{}", table.display()));
        assert_eq!(add(&mut f, "example.net", "ABC"), FlushReply::ok(0));
        assert_eq!(add(&mut f, "other.example", "ABC"), FlushReply::Deny);
        std::fs::remove_file(&table).unwrap();
        for reply in [add(&mut f, "example.net", "DEF"), send(&mut f, "example.net", false)] {
            assert!(matches!(reply, FlushReply::Fail { .. }), "{reply:?}");
        }
    }

    #[test]
    fn add_validates_and_deduplicates() {
        let mut f = fixture("example.net");
        assert_eq!(add(&mut f, "Example.NET", "ABC"), FlushReply::ok(0));
        assert_eq!(add(&mut f, "example.net", "ABC"), FlushReply::ok(0));
        assert_eq!(std::fs::read_to_string(f.spool.root.join("flush/example.net")).unwrap(), "ABC\n");
        assert_eq!(add(&mut f, "sub.example.net", "DEF"), FlushReply::ok(0));
        assert_eq!(add(&mut f, "other.example", "ABC"), FlushReply::Deny);
        assert_eq!(add(&mut f, "[127.0.0.1]", "ABC"), FlushReply::Deny);
        // A UTF-8 site is its A-label form (xn--caf-dma.example): a site, not under example.net.
        assert_eq!(add(&mut f, "caf\u{e9}.example", "ABC"), FlushReply::Deny);
        for site in ["../../etc", "a..b", "[127.0.0.1", "", "a/b", &"x".repeat(300), "caf\u{fffd}.example", "a\0b"] {
            assert!(matches!(add(&mut f, site, "ABC"), FlushReply::Bad { .. }), "{site:?}");
        }
        for id in ["bad/id", "../x", "", "a b"] {
            assert!(matches!(add(&mut f, "example.net", id), FlushReply::Bad { .. }), "{id:?}");
        }
        let names: Vec<_> = std::fs::read_dir(f.spool.root.join("flush")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    /// Another node's handover is a send of exactly the site whose queue manager request
    /// names what moves; the local HandOver (the cluster's business) moves nothing.
    #[test]
    fn a_handover_names_what_it_moves() {
        let mut f = fixture("example.net");
        let a = deferred_message(&f.spool, &["u@example.net", "v@other.example"]);
        let b = deferred_message(&f.spool, &["u@sub.example.net"]);
        add(&mut f, "example.net", a.as_str());
        add(&mut f, "example.net", "GONE123");
        add(&mut f, "sub.example.net", b.as_str());
        assert_eq!(request(&mut f, FlushRequest::HandOver { site: "example.net".into() }), FlushReply::ok(0));
        assert_eq!(request(&mut f, FlushRequest::HandOver { site: "example.org".into() }), FlushReply::Deny);
        assert!(f.spool.path(QueueName::Deferred, &a).exists());
        let Step::ForgetDeadSitesFirst(pending) = f.state.hand_over("example.net", "[192.0.2.1]:25".into()) else {
            panic!("a handover is a send")
        };
        let want = QmgrCommand::Relay { site: "example.net".into(), nexthop: "[192.0.2.1]:25".into(), queue_ids: vec![a.to_string()] };
        assert_eq!(f.state.relay_request(&pending), Some(want));
        assert_eq!(f.state.pending(&pending), FlushReply::ok(1));
        assert_eq!(f.state.send_sites(pending), FlushReply::ok(1));
        assert!(f.spool.path(QueueName::Incoming, &a).exists());
        assert!(f.spool.path(QueueName::Deferred, &b).exists(), "exactly the site");
        // Nothing waits any more: nothing to tell the queue manager.
        let Step::ForgetDeadSitesFirst(pending) = f.state.hand_over("example.net", "[192.0.2.1]:25".into()) else { panic!() };
        assert_eq!(f.state.relay_request(&pending), None);
        assert!(matches!(f.state.hand_over("../x", "[192.0.2.1]:25".into()), Step::Reply(FlushReply::Bad { .. })));
        assert!(matches!(f.state.hand_over("example.org", "[192.0.2.1]:25".into()), Step::Reply(FlushReply::Deny)));
    }

    #[test]
    fn send_site_moves_only_that_site() {
        let mut f = fixture("example.net");
        let a = deferred_message(&f.spool, &["u@example.net"]);
        let b = deferred_message(&f.spool, &["u@sub.example.net"]);
        add(&mut f, "example.net", a.as_str());
        add(&mut f, "example.net", "GONE123");
        add(&mut f, "sub.example.net", b.as_str());
        // A count moves nothing and counts only what is still queued.
        assert_eq!(request(&mut f, FlushRequest::CountSite { site: "example.net".into() }), FlushReply::ok(1));
        assert!(f.spool.path(QueueName::Deferred, &a).exists());
        assert_eq!(request(&mut f, FlushRequest::CountSite { site: "example.org".into() }), FlushReply::Deny);
        // A shape counts the same messages, by age: arrival 0 is far in the last bucket.
        let ages = Ages::new(3, 5, false).unwrap();
        let shaped = FlushReply::Shaped { buckets: vec![0, 0, 1], nodes: Vec::new(), missing: Vec::new() };
        assert_eq!(request(&mut f, FlushRequest::ShapeSite { site: "example.net".into(), ages }), shaped);
        assert_eq!(request(&mut f, FlushRequest::ShapeSite { site: "example.org".into(), ages }), FlushReply::Deny);
        assert!(matches!(request(&mut f, FlushRequest::ShapeSite { site: "../x".into(), ages }), FlushReply::Bad { .. }));
        assert!(f.spool.path(QueueName::Deferred, &a).exists());
        assert_eq!(send(&mut f, "example.net", false), FlushReply::ok(1));
        assert!(f.spool.path(QueueName::Incoming, &a).exists());
        assert!(f.spool.path(QueueName::Deferred, &b).exists());
        assert_eq!(*f.triggers.lock().unwrap(), vec![Trigger::ForgetDeadSites]);
        assert_eq!(*f.named.lock().unwrap(), vec![a.to_string()], "the moved file is named, no listing needed");
        // The logfile is emptied by the send, so the re-deferral appended by the next request
        // survives.
        assert_eq!(std::fs::read_to_string(f.spool.root.join("flush/example.net")).unwrap(), "");
        f.spool.move_file(&a, QueueName::Incoming, QueueName::Deferred).unwrap();
        assert_eq!(add(&mut f, "example.net", a.as_str()), FlushReply::ok(0));
        assert_eq!(std::fs::read_to_string(f.spool.root.join("flush/example.net")).unwrap(), format!("{a}\n"));
    }

    #[test]
    fn empty_or_missing_logfile_triggers_no_scan() {
        let mut f = fixture("example.net");
        assert_eq!(send(&mut f, "example.net", false), FlushReply::ok(0));
        assert_eq!(*f.triggers.lock().unwrap(), vec![Trigger::ForgetDeadSites]);
        assert!(f.named.lock().unwrap().is_empty());
        assert_eq!(send(&mut f, "other.example", false), FlushReply::Deny);
    }

    #[test]
    fn subdomains_with_at_form() {
        let mut f = fixture("example.net, !no.example.net");
        let a = deferred_message(&f.spool, &["u@example.net"]);
        let b = deferred_message(&f.spool, &["u@a.example.net"]);
        let c = deferred_message(&f.spool, &["u@b.a.example.net"]);
        let d = deferred_message(&f.spool, &["u@badexample.net"]);
        for (s, id) in [("example.net", &a), ("a.example.net", &b), ("b.a.example.net", &c)] {
            add(&mut f, s, id.as_str());
        }
        assert_eq!(add(&mut f, "badexample.net", d.as_str()), FlushReply::Deny);
        assert_eq!(send(&mut f, "a.example.net", true), FlushReply::ok(2));
        assert!(f.spool.path(QueueName::Deferred, &a).exists());
        assert_eq!(send(&mut f, "example.net", true), FlushReply::ok(1));
        assert!(f.spool.path(QueueName::Deferred, &d).exists());
    }

    #[test]
    fn a_logfile_that_cannot_be_sent_does_not_hide_what_moved() {
        let mut f = fixture("example.net");
        let a = deferred_message(&f.spool, &["u@a.example.net"]);
        add(&mut f, "a.example.net", a.as_str());
        // The site's own logfile cannot be read (a directory in its place).
        std::fs::create_dir(f.spool.root.join("flush/example.net")).unwrap();
        let reply = send(&mut f, "example.net", true);
        let FlushReply::Fail { reason } = reply else { panic!("{reply:?}") };
        assert!(reason.starts_with("1 of 2 logfiles could not be sent (") && reason.ends_with("); 1 messages moved"), "{reason}");
        assert!(f.spool.path(QueueName::Incoming, &a).exists());
        assert_eq!(*f.triggers.lock().unwrap(), vec![Trigger::ForgetDeadSites]);
        assert_eq!(*f.named.lock().unwrap(), vec![a.to_string()], "the moved mail is announced");
    }

    #[test]
    fn send_file_ignores_eligibility() {
        let mut f = fixture("");
        let a = deferred_message(&f.spool, &["u@nowhere.example"]);
        assert_eq!(request(&mut f, FlushRequest::SendFile { queue_id: a.to_string() }), FlushReply::ok(1));
        assert_eq!(request(&mut f, FlushRequest::SendFile { queue_id: a.to_string() }), FlushReply::ok(0));
        assert_eq!(request(&mut f, FlushRequest::SendFile { queue_id: "NOSUCH".into() }), FlushReply::ok(0));
        assert!(matches!(request(&mut f, FlushRequest::SendFile { queue_id: "../x".into() }), FlushReply::Bad { .. }));
        assert_eq!(add(&mut f, "example.net", "A"), FlushReply::Deny);
        assert_eq!(request(&mut f, FlushRequest::Refresh), FlushReply::Deny);
    }

    fn set_times(path: &std::path::Path, accessed_ago: Duration, modified_ago: Duration) {
        let now = SystemTime::now();
        fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_times(fs::FileTimes::new().set_accessed(now - accessed_ago).set_modified(now - modified_ago))
            .unwrap();
    }

    #[test]
    fn refresh_sends_stale_and_purges_old_empty() {
        let mut f = fixture("example.net");
        let day = Duration::from_secs(86400);
        let a = deferred_message(&f.spool, &["u@stale.example.net"]);
        let b = deferred_message(&f.spool, &["u@fresh.example.net"]);
        add(&mut f, "stale.example.net", a.as_str());
        add(&mut f, "stale.example.net", a.as_str());
        add(&mut f, "fresh.example.net", b.as_str());
        let flush = f.spool.root.join("flush");
        std::fs::write(flush.join("old.example.net"), "").unwrap();
        std::fs::write(flush.join("young.example.net"), "").unwrap();
        set_times(&flush.join("stale.example.net"), Duration::from_secs(13 * 3600), Duration::from_secs(13 * 3600));
        set_times(&flush.join("old.example.net"), 10 * day, 10 * day);
        set_times(&flush.join("young.example.net"), 2 * day, 2 * day);
        assert_eq!(request(&mut f, FlushRequest::Refresh), FlushReply::ok(1));
        assert!(f.spool.path(QueueName::Incoming, &a).exists());
        assert!(f.spool.path(QueueName::Deferred, &b).exists());
        assert!(!flush.join("old.example.net").exists());
        assert!(flush.join("young.example.net").exists());
        // Housekeeping respects the dead-site cache: no ForgetDeadSites.
        assert!(f.triggers.lock().unwrap().is_empty());
        assert_eq!(*f.named.lock().unwrap(), vec![a.to_string()]);
        assert_eq!(request(&mut f, FlushRequest::Purge), FlushReply::ok(1));
        assert!(f.spool.path(QueueName::Incoming, &b).exists());
    }

    #[test]
    fn reconcile_rebuilds_and_cleans() {
        let mut f = fixture("example.net");
        let a = deferred_message(&f.spool, &["u@example.net", "v@x.example.net", "w@other.example"]);
        add(&mut f, "example.net", "GONE1");
        let scan = crate::reconcile::scan_deferred(&f.spool);
        assert_eq!((scan.found.len(), scan.messages), (3, 1));
        f.state.reconcile(scan);
        assert_eq!(std::fs::read_to_string(f.spool.root.join("flush/example.net")).unwrap(), format!("{a}\n"));
        assert_eq!(std::fs::read_to_string(f.spool.root.join("flush/x.example.net")).unwrap(), format!("{a}\n"));
        assert!(!f.spool.root.join("flush/other.example").exists());
        // A restart with the flush directory deleted rebuilds it the same way.
        std::fs::remove_dir_all(f.spool.root.join("flush")).unwrap();
        let cfg = f.state.cfg.clone();
        let mut again = FlushState::load(cfg, Box::new(|_: QmgrRequest| ())).unwrap();
        again.reconcile(crate::reconcile::scan_deferred(&f.spool));
        assert_eq!(again.index().count(&Site::parse("example.net").unwrap()), 1);
        let Step::ForgetDeadSitesFirst(pending) = again.handle(FlushRequest::SendSite { site: "example.net".into(), subdomains: false })
        else {
            panic!("a send waits for the queue manager first")
        };
        assert_eq!(again.send_sites(pending), FlushReply::ok(1));
    }

    /// One step of the property test below.
    #[derive(Debug, Clone)]
    enum Op {
        Add(usize),
        SendSite(usize, bool),
        SendFile(usize),
        /// The message was tried again and deferred again.
        Redefer(usize),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (0..12usize).prop_map(Op::Add),
            ((0..4usize), any::<bool>()).prop_map(|(s, sub)| Op::SendSite(s, sub)),
            (0..12usize).prop_map(Op::SendFile),
            (0..12usize).prop_map(Op::Redefer),
        ]
    }

    const SITES: [&str; 4] = ["example.net", "a.example.net", "b.a.example.net", "other.example.net"];

    proptest::proptest! {
        /// Whatever the order of adds, sends and re-deferrals, a deferred message that was
        /// added is never lost: a final send of every site moves every deferred message.
        #[test]
        fn no_queue_id_is_lost(ops in proptest::collection::vec(op(), 1..60)) {
            let mut f = fixture("example.net");
            let ids: Vec<(QueueId, usize)> = (0..12).map(|i| {
                let site = SITES[i % SITES.len()];
                (deferred_message(&f.spool, &[&format!("u{i}@{site}")]), i % SITES.len())
            }).collect();
            for (id, s) in &ids {
                proptest::prop_assert_eq!(add(&mut f, SITES[*s], id.as_str()), FlushReply::ok(0));
            }
            for op in ops {
                match op {
                    Op::Add(i) => {
                        let (id, s) = &ids[i];
                        if f.spool.path(QueueName::Deferred, id).exists() {
                            add(&mut f, SITES[*s], id.as_str());
                        }
                    }
                    Op::SendSite(s, sub) => {
                        send(&mut f, SITES[s], sub);
                    }
                    Op::SendFile(i) => {
                        request(&mut f, FlushRequest::SendFile { queue_id: ids[i].0.to_string() });
                    }
                    Op::Redefer(i) => {
                        let (id, s) = &ids[i];
                        if f.spool.move_file(id, QueueName::Incoming, QueueName::Deferred).unwrap() {
                            add(&mut f, SITES[*s], id.as_str());
                        }
                    }
                }
            }
            for site in SITES {
                send(&mut f, site, false);
            }
            for (id, _) in &ids {
                proptest::prop_assert!(f.spool.path(QueueName::Incoming, id).exists(), "{} was lost", id);
            }
        }
    }
}
