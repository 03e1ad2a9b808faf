//! The provider side of On-Demand Mail Relay (RFC 2645), when `smtpd_odmr_enable = yes`: the
//! session speaks EHLO, STARTTLS, AUTH, ATRN and QUIT and nothing else; after `250 OK now
//! reversing the connection` this process is the SMTP client on the customer's connection and
//! delivers the customer's deferred mail itself, straight from `deferred`.
//!
//! Design (see the manual page in lib.rs): the flush service's index says which queue IDs
//! wait for each domain (`List`, nothing is moved); each message is *claimed* (an exclusive
//! lock on its deferred file, [`common::queue::claim`]) for as long as it is delivered, and
//! every move out of `deferred` (queue manager, flush service, postsuper) leaves a claimed file
//! alone. So a message is never delivered by the queue manager and this session at once, nor
//! by two sessions for one domain. Results are appended to the queue file before the claim
//! ends; refused recipients, ones that asked for a success notice from a customer whose
//! server does not offer DSN, and a message left deferred past `delay_warning_time` get the
//! queue manager's notices (the delay notice once per message, recorded in the queue file); a
//! message with nothing pending is removed; one with recipients left stays deferred
//! and is listed with the flush service again. A crash or a lost customer ends the claims with
//! the process or the message: what was not delivered is still deferred and still indexed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::bounce::{BounceConfig, Due, delay_notice_due, delayed_recipients};
use common::config::{ConfigError, Params};
use common::domain::{Site, lookup_domain};
use common::ipc::delivery::{DeliveryRecipient, DeliveryRequest};
use common::ipc::flush::{FlushReply, FlushRequest};
use common::maillog::{DeliveryLine, delivery_line};
use common::queue::claim::Claim;
use common::queue::file::{self, Outcome, QueueFile, RecipientResult, now_us};
use common::queue::{QueueId, QueueName, Spool};
use common::smtp_client::connection::Connection;
use common::smtp_client::transaction::{SessionConfig, handshake, mail_transaction, reset};
use common::text::printable;
use common::{log_info, log_warning};
use tokio::io::AsyncWriteExt;

use crate::reply::Reply;
use crate::session::{Session, Step};

/// Domains in one ATRN at most (a bound on the work one command line asks for).
const MAX_DOMAINS: usize = 100;

/// The settings of a provider session (`smtpd_odmr_enable = yes`).
#[derive(Debug, Clone)]
pub struct OdmrConfig {
    /// The client conversation after the reversal, with the smtp agent's `smtp_*` limits.
    pub session: SessionConfig,
    /// `smtp_helo_timeout`: for the customer's greeting and the EHLO reply.
    pub helo_timeout: Duration,
    /// For the notices about what the session delivers, refuses and leaves deferred.
    pub bounce: BounceConfig,
    /// With the fast flush cluster (`fast_flush_cluster_servers`), `smtpd_odmr_cluster_wait`:
    /// how long the session waits for the next message the other nodes relay here.
    pub cluster_wait: Option<Duration>,
}

impl OdmrConfig {
    /// `None` unless this smtpd is an ODMR service.
    pub fn from_params(p: &Params) -> Result<Option<Arc<OdmrConfig>>, ConfigError> {
        if !p.bool("smtpd_odmr_enable")? {
            return Ok(None);
        }
        Ok(Some(Arc::new(OdmrConfig {
            session: SessionConfig::from_params(p)?,
            helo_timeout: p.time("smtp_helo_timeout")?,
            bounce: BounceConfig::from_params(p)?,
            cluster_wait: match p.list("fast_flush_cluster_servers")?.is_empty() {
                true => None,
                false => Some(p.time("smtpd_odmr_cluster_wait")?),
            },
        })))
    }
}

/// The commands an ODMR session knows (RFC 2645 section 5); everything else is 502.
const SPOKEN: [&str; 5] = ["ehlo", "starttls", "auth", "quit", "atrn"];

/// One command line of an ODMR session, as [`Session::command`] does for smtpd.
pub fn command(s: &mut Session<'_>, line: &[u8]) -> (String, Step) {
    let text = String::from_utf8_lossy(line);
    let (verb, arg) = text.split_once(' ').map_or((text.trim_end(), ""), |(v, a)| (v, a.trim()));
    let verb = verb.to_ascii_lowercase();
    if !SPOKEN.contains(&verb.as_str()) {
        s.last_command = printable(&verb.to_ascii_uppercase(), '?').chars().take(20).collect();
        return ("unknown".into(), Step::Reply(Reply::new(502, "5.5.1", "Error: command not implemented")));
    }
    if verb != "atrn" {
        let (verb, step) = s.command(line);
        let step = if verb == "ehlo" { narrow_ehlo(step) } else { step };
        return (verb, step);
    }
    s.last_command = "ATRN".into();
    ("atrn".into(), atrn_step(s, arg))
}

/// smtpd's EHLO reply cut to what this service speaks, with ATRN.
fn narrow_ehlo(step: Step) -> Step {
    let Step::Reply(mut r) = step else { return step };
    if r.code != 250 || r.lines.len() < 2 {
        return Step::Reply(r);
    }
    let keep = |l: &String| l.starts_with("STARTTLS") || l.starts_with("AUTH");
    let mut lines = vec![r.lines[0].clone()];
    lines.extend(r.lines.iter().skip(1).filter(|l| keep(l)).cloned());
    lines.extend(["ATRN".to_string(), "ENHANCEDSTATUSCODES".to_string()]);
    r.lines = lines;
    Step::Reply(r)
}

/// ATRN's checks in order: EHLO first (503), TLS when required, a login (530), then syntax.
fn atrn_step(s: &Session<'_>, arg: &str) -> Step {
    if s.helo.is_none() || !s.esmtp {
        return Step::Reply(Reply::new(503, "5.5.1", "Error: send EHLO first"));
    }
    if s.cfg.tls.required() && !s.encrypted() {
        return Step::Reply(Reply::new(530, "5.7.0", "Must issue a STARTTLS command first"));
    }
    if !s.sasl_authenticated() {
        return Step::Reply(Reply::new(530, "5.7.0", "Authentication required"));
    }
    match parse_domains(arg) {
        Some(domains) => Step::Atrn { domains },
        None => Step::Reply(Reply::new(501, "5.5.4", "Syntax: ATRN [domain[,domain]...]")),
    }
}

/// `domain[,domain...]` (spaces after commas allowed), lowercased and deduplicated; empty
/// for "every domain of the login".
pub(crate) fn parse_domains(arg: &str) -> Option<Vec<String>> {
    if arg.is_empty() {
        return Some(Vec::new());
    }
    let mut out = BTreeSet::new();
    for d in arg.split(',') {
        out.insert(Site::parse(d.trim()).ok()?.as_str().to_string());
    }
    (out.len() <= MAX_DOMAINS).then(|| out.into_iter().collect())
}

fn refused() -> Reply {
    Reply::new(450, "4.7.1", "ATRN request refused")
}

fn unable() -> Reply {
    Reply::new(451, "4.3.0", "Unable to process ATRN request now")
}

/// The domains `login` may ask for: every one named must be owned; none named means all that
/// `smtpd_etrn_login_maps` lists for it (only tables that can list their entries).
fn owned_domains(s: &Session<'_>, login: &str, asked: Vec<String>) -> Result<Vec<String>, Reply> {
    let maps = &s.cfg.etrn_login_maps;
    if asked.is_empty() {
        let mut all = BTreeSet::new();
        for t in maps {
            let entries = t.entries().map_err(|e| {
                log_warning!("ATRN without domains: {e}");
                unable()
            })?;
            for (key, _) in entries {
                if let Ok(site) = Site::parse(&key)
                    && owns(maps, site.as_str(), login)?
                {
                    all.insert(site.as_str().to_string());
                }
            }
        }
        return if all.is_empty() { Err(refused()) } else { Ok(all.into_iter().collect()) };
    }
    for d in &asked {
        if !owns(maps, d, login)? {
            log_info!("NOQUEUE: reject: ATRN from {}: 450 4.7.1 <{d}>: ATRN by user {login} not allowed", s.peer.show());
            return Err(refused());
        }
    }
    Ok(asked)
}

fn owns(maps: &[common::config::table::Table], domain: &str, login: &str) -> Result<bool, Reply> {
    match crate::etrn_login::owners(maps, domain) {
        Ok(o) => Ok(o.is_some_and(|o| o.iter().any(|x| x == login))),
        Err(e) => {
            log_warning!("{e}");
            Err(unable())
        }
    }
}

/// The queue IDs the flush service lists for the domains.
async fn listed(s: &Session<'_>, domains: &[String]) -> Result<Vec<QueueId>, Reply> {
    let cfg = s.cfg;
    let mut ids = BTreeSet::new();
    for d in domains {
        match cfg.flush.call(&FlushRequest::List { site: d.clone() }, cfg.ipc_timeout).await {
            Ok(FlushReply::Listed { ids: found }) => ids.extend(found.iter().filter_map(|id| QueueId::parse(id).ok())),
            Ok(FlushReply::Deny) => log_warning!("ATRN {d}: no fast flush service for this domain (fast_flush_domains)"),
            Ok(other) => {
                log_warning!("ATRN {d}: fast flush service: {other:?}");
                return Err(unable());
            }
            Err(e) => {
                log_warning!("unable to talk to fast flush service: {e}");
                return Err(unable());
            }
        }
    }
    Ok(ids.into_iter().collect())
}

/// What the other nodes of the fast flush cluster said they relay here for the domains.
#[derive(Default)]
struct Relayed {
    announced: u64,
    /// Per node, by name.
    nodes: std::collections::BTreeMap<String, u64>,
    /// The domains with mail on its way.
    domains: Vec<String>,
}

impl Relayed {
    /// `mx2=3, mx3=4`.
    fn shown(&self) -> String {
        self.nodes.iter().map(|(n, m)| format!("{n}={m}")).collect::<Vec<_>>().join(", ")
    }
}

/// Ask the cluster to relay the domains' mail here (flush `HandOver`, which answers within
/// `fast_flush_cluster_timeout`). A failure costs only the other nodes' mail: this node's
/// own is delivered all the same.
async fn handed_over(s: &Session<'_>, domains: &[String]) -> Relayed {
    let cfg = s.cfg;
    let mut relayed = Relayed::default();
    for d in domains {
        match cfg.flush.call(&FlushRequest::HandOver { site: d.clone() }, cfg.ipc_timeout).await {
            Ok(FlushReply::Ok { moved, nodes }) => {
                relayed.announced += moved;
                if moved > 0 {
                    relayed.domains.push(d.clone());
                }
                // This node comes first, with nothing.
                for n in nodes.into_iter().skip(1) {
                    *relayed.nodes.entry(n.node).or_default() += n.moved;
                }
            }
            // `listed` has said so.
            Ok(FlushReply::Deny) => {}
            Ok(other) => log_warning!("ATRN {d}: fast flush handover: {other:?}"),
            Err(e) => log_warning!("ATRN {d}: fast flush handover: {e}"),
        }
    }
    relayed
}

/// How often the session looks for relayed mail in the flush index while it waits.
const RELAYED_POLL: Duration = Duration::from_millis(150);

/// The session's wait for the mail the other nodes relay here: it arrives as ordinary mail,
/// which the queue manager defers (the customer's usual route) and lists with the flush
/// service, so the session lists the domains again for IDs it has not seen.
struct Waiting {
    announced: u64,
    /// The domains to list again: those with mail on its way.
    domains: Vec<String>,
    /// Messages claimed from the lists taken after the first.
    arrived: u64,
    /// From now on the IDs come from the later lists.
    relisting: bool,
    /// Every ID listed so far (each is tried once per session).
    seen: std::collections::HashSet<QueueId>,
    wait: Duration,
}

impl Waiting {
    /// Count a claim, when it came from a later list.
    fn claimed(&mut self, c: Option<Claimed>) -> Option<Claimed> {
        if c.is_some() && self.relisting {
            self.arrived += 1;
        }
        c
    }
}

/// The next relayed message, once this node's own are delivered: every [`RELAYED_POLL`] the
/// domains are listed again, until a new message can be claimed, every announced one has
/// come, or `wait` passes without one (what comes later stays deferred for the next ATRN).
async fn next_relayed(
    s: &Session<'_>,
    domains: &Arc<Vec<String>>,
    ids: &mut std::vec::IntoIter<QueueId>,
    w: &mut Waiting,
) -> Option<Claimed> {
    if w.arrived >= w.announced {
        return None;
    }
    w.relisting = true;
    let deadline = tokio::time::Instant::now() + w.wait;
    loop {
        if let Some(c) = w.claimed(claim_next(&s.cfg.spool, ids, domains).await) {
            return Some(c);
        }
        if tokio::time::Instant::now() + RELAYED_POLL > deadline {
            return None;
        }
        tokio::time::sleep(RELAYED_POLL).await;
        let fresh: Vec<QueueId> = listed(s, &w.domains).await.ok()?.into_iter().filter(|id| w.seen.insert(id.clone())).collect();
        *ids = fresh.into_iter();
    }
}

/// A message claimed for this session, with the recipients it delivers.
struct Claimed {
    id: QueueId,
    claim: Claim,
    qf: QueueFile,
    recipients: Vec<DeliveryRecipient>,
}

/// Claim the next of `ids` that is still deferred, not claimed by anyone else, and has a
/// pending recipient in `domains`. Runs off the session's thread (it reads queue files).
async fn claim_next(spool: &Spool, ids: &mut std::vec::IntoIter<QueueId>, domains: &Arc<Vec<String>>) -> Option<Claimed> {
    for id in ids.by_ref() {
        let (spool, domains) = (spool.clone(), domains.clone());
        let found = tokio::task::spawn_blocking(move || claim_one(&spool, id, &domains)).await.ok().flatten();
        if found.is_some() {
            return found;
        }
    }
    None
}

fn claim_one(spool: &Spool, id: QueueId, domains: &[String]) -> Option<Claimed> {
    let claim = match Claim::take(spool, &id) {
        Ok(Some(c)) => c,
        Ok(None) => return None,
        Err(e) => {
            log_warning!("{id}: claim for ODMR: {e}");
            return None;
        }
    };
    let qf = match file::read(&claim.path) {
        Ok(qf) => qf,
        Err(e) => {
            // Left for the queue manager, which sets corrupt files aside.
            log_warning!("{id}: read queue file for ODMR: {e}");
            return None;
        }
    };
    let recipients: Vec<DeliveryRecipient> = qf
        .pending()
        .filter(|(_, r)| domains.iter().any(|d| lookup_domain(&r.address).eq_ignore_ascii_case(d)))
        .map(|(index, r)| DeliveryRecipient { index, address: r.address.clone() })
        .collect();
    if recipients.is_empty() {
        return None;
    }
    Some(Claimed { id, claim, qf, recipients })
}

/// How the reversed session went, for its summary line.
#[derive(Default)]
struct Tally {
    messages: u32,
    sent: u32,
    bounced: u32,
    deferred: u32,
}

/// Run an ATRN that passed [`command`]'s checks. `Some(reply)` when it is refused (the session
/// goes on); `None` once the connection was reversed (the session is over; the 250 has been
/// sent and counted).
pub(crate) async fn run(io: &mut crate::conn::Io, s: &mut Session<'_>, odmr: &OdmrConfig, domains: Vec<String>) -> Option<Reply> {
    let login = s.sasl_login.as_ref().map(|l| l.username.clone()).unwrap_or_default();
    let domains = match owned_domains(s, &login, domains) {
        Ok(d) => d,
        Err(r) => return Some(r),
    };
    let ids = match listed(s, &domains).await {
        Ok(ids) => ids,
        Err(r) => return Some(r),
    };
    // The other nodes' mail for the domains comes here while this node's is delivered.
    let relayed = match odmr.cluster_wait {
        Some(_) => handed_over(s, &domains).await,
        None => Relayed::default(),
    };
    let relayed_from = relayed.shown();
    let mut waiting = Waiting {
        announced: relayed.announced,
        domains: relayed.domains,
        arrived: 0,
        relisting: false,
        seen: ids.iter().cloned().collect(),
        wait: odmr.cluster_wait.unwrap_or_default(),
    };
    let shown = domains.join(",");
    let domains = Arc::new(domains);
    let mut ids = ids.into_iter();
    let first = claim_next(&s.cfg.spool, &mut ids, &domains).await;
    if first.is_none() && waiting.announced == 0 {
        log_info!("ATRN from {}: domains={shown}, sasl_username={login}: no mail", s.peer.show());
        return Some(Reply::new(453, "4.2.0", "You have no mail"));
    }
    let reply = Reply::new(250, "2.0.0", "OK now reversing the connection");
    s.count("atrn", &reply);
    log_info!("ATRN from {}: domains={shown}, sasl_username={login}: reversing the connection", s.peer.show());
    if waiting.announced > 0 {
        log_info!("ATRN from {}: {} messages from other nodes: {relayed_from}", s.peer.show(), waiting.announced);
    }
    if let Err(e) = io.reply(&reply.to_string()).await.and(io.flush().await) {
        crate::conn::log_write_failure(&e, s);
        return None;
    }
    let stream = io.take_stream();
    let mut conn = Connection::over(Box::new(stream), s.encrypted(), odmr.helo_timeout);
    // Named after the session: the provider did not connect anywhere, the customer did.
    let relay = format!("odmr:{}", s.peer.show());
    let peer = s.peer.show();
    let mut tally = Tally::default();
    let mut removed: Vec<String> = Vec::new();
    let started = Instant::now();
    // A conversation that broke (time-out, lost connection) gets no QUIT and no TLS
    // close_notify: a customer that stopped reading must not hold the session any longer.
    let mut healthy = false;
    match handshake(&odmr.session, &mut conn, &peer, None).await {
        Ok(hello) => {
            let dsn = hello.offers("DSN");
            let setup = started.elapsed().as_secs_f64();
            let mut next = first;
            let mut uses = 0;
            healthy = true;
            loop {
                let c = match next.take() {
                    Some(c) => c,
                    None => match next_relayed(s, &domains, &mut ids, &mut waiting).await {
                        Some(c) => c,
                        None => break,
                    },
                };
                uses += 1;
                if uses > 1 && !reset(&odmr.session, &mut conn).await {
                    healthy = false;
                    break;
                }
                // The next message is claimed (files opened and read off this thread) while
                // this one is on the wire; a claim taken when the connection then fails is
                // released by dropping it, and that message simply stays deferred.
                let (ok, claimed) = tokio::join!(
                    deliver(s, odmr, Reversed { conn: &mut conn, relay: &relay, peer: &peer, setup, dsn }, c, &mut tally, &mut removed),
                    claim_next(&s.cfg.spool, &mut ids, &domains)
                );
                healthy = ok;
                if !healthy {
                    break;
                }
                next = waiting.claimed(claimed);
            }
            if healthy {
                conn.timeout = odmr.session.timeouts.quit;
                let _ = conn.command("QUIT").await;
            }
        }
        Err(f) => {
            log_info!("ATRN from {}: reversed session failed: {}", s.peer.show(), f.text);
        }
    }
    if healthy {
        let mut stream = conn.into_stream();
        let _ = tokio::time::timeout(odmr.session.timeouts.quit, stream.shutdown()).await;
    }
    forget(s, &domains, removed).await;
    if waiting.arrived < waiting.announced {
        log_info!(
            "ATRN from {}: {} of {} messages from other nodes delivered (smtpd_odmr_cluster_wait {}s); the rest waits for the next ATRN",
            s.peer.show(),
            waiting.arrived,
            waiting.announced,
            waiting.wait.as_secs()
        );
    }
    log_info!(
        "ATRN from {}: reversed session done: messages={} sent={} bounced={} deferred={}",
        s.peer.show(),
        tally.messages,
        tally.sent,
        tally.bounced,
        tally.deferred
    );
    None
}

/// The reversed connection as a next hop: what a delivery on it needs to know.
struct Reversed<'c> {
    conn: &'c mut Connection,
    /// `odmr:name[addr]`, for the delivery lines.
    relay: &'c str,
    /// `name[addr]`, for reply texts.
    peer: &'c str,
    /// Seconds the greeting and EHLO took (`delays=` c).
    setup: f64,
    /// The customer's server offers DSN: the requests go along.
    dsn: bool,
}

/// Deliver one claimed message on the reversed connection, record the results, and end the
/// claim. Returns whether the connection is still good for another message.
async fn deliver(s: &Session<'_>, odmr: &OdmrConfig, on: Reversed<'_>, c: Claimed, tally: &mut Tally, removed: &mut Vec<String>) -> bool {
    let Reversed { conn, relay, peer, setup, dsn } = on;
    let start_us = now_us();
    let start = Instant::now();
    let req = DeliveryRequest {
        queue_id: c.id.clone(),
        queue: QueueName::Deferred,
        nexthop: relay.to_string(),
        sender: c.qf.envelope.sender.clone(),
        recipients: c.recipients.clone(),
        arrival_us: c.qf.envelope.arrival_us,
        active_us: start_us,
        smtputf8: c.qf.envelope.smtputf8,
        // Probes are never deferred, so none waits for a customer.
        verify_probe: false,
    };
    log_info!("{}: from=<{}>, size={}, nrcpt={} (queue odmr)", c.id, req.sender, c.qf.message.len(), c.qf.envelope.recipients.len());
    let (results, healthy) = mail_transaction(&odmr.session, &req, conn, peer, &c.qf.message, dsn.then_some(&c.qf.envelope)).await;
    let xmit = start.elapsed().as_secs_f64();
    tally.messages += 1;
    let mut due = Due::default();
    let before = start_us.saturating_sub(c.qf.envelope.arrival_us) as f64 / 1e6;
    for r in &results {
        let Some(rcpt) = c.qf.envelope.recipients.get(r.index) else { continue };
        due.note(rcpt, r, relay);
        match r.outcome {
            Outcome::Sent => tally.sent += 1,
            Outcome::Bounced => tally.bounced += 1,
            Outcome::Deferred => tally.deferred += 1,
        }
        log_info!(
            "{}",
            delivery_line(&DeliveryLine {
                queue_id: c.id.as_str(),
                recipient: &rcpt.address,
                relay,
                conn_use: None,
                delays: [before, 0.0, setup, xmit],
                dsn: &r.dsn,
                status: r.outcome.status(),
                text: &r.text,
            })
        );
    }
    let results: Vec<RecipientResult> =
        results.into_iter().map(|r| RecipientResult { index: r.index, outcome: r.outcome, dsn: r.dsn, text: r.text }).collect();
    let id = c.id.clone();
    let finished = finish(s.cfg.spool.clone(), odmr.bounce.clone(), c, results, due).await;
    if finished.removed {
        removed.push(id.to_string());
    }
    if finished.notice_queued {
        s.cfg.qmgr_trigger.post(&[common::ipc::trigger::Trigger::ScanIncoming]);
    }
    // Listed again, as the queue manager lists what it defers: a send that emptied the
    // logfile while this session held the message must not make it vanish from the index.
    for site in finished.deferred_sites {
        let add = FlushRequest::Add { site, queue_id: id.to_string() };
        if !matches!(s.cfg.flush.call(&add, s.cfg.ipc_timeout).await, Ok(FlushReply::Ok { .. } | FlushReply::Deny)) {
            log_warning!("{id}: flush service failure");
        }
    }
    healthy
}

/// Drop what the session delivered from the flush index (one request per domain): the next
/// ATRN then costs only the mail still waiting.
async fn forget(s: &Session<'_>, domains: &[String], removed: Vec<String>) {
    if removed.is_empty() {
        return;
    }
    for d in domains {
        let req = FlushRequest::Forget { site: d.clone(), queue_ids: removed.clone() };
        if !matches!(s.cfg.flush.call(&req, s.cfg.ipc_timeout).await, Ok(FlushReply::Ok { .. })) {
            log_warning!("ATRN {d}: flush service failure (stale entries stay until the next send)");
        }
    }
}

/// What [`finish`] did.
#[derive(Default)]
struct Finished {
    /// A notification went to `incoming` (the queue manager must scan it).
    notice_queued: bool,
    /// The domains the message is still deferred for (to list with the flush service again).
    deferred_sites: Vec<String>,
    /// The message is gone from the queue (to drop from the flush index).
    removed: bool,
}

/// Append the results while the claim is held; send the notices the queue manager would
/// (failures, successes where the customer did not take NOTIFY, the message's one delay
/// notice once it is `delay_warning_time` old and stays deferred; queued in `incoming`); then
/// remove a message with nothing pending, or make the results durable for one that stays
/// deferred. The claim ends here.
async fn finish(spool: Spool, bounce: BounceConfig, c: Claimed, results: Vec<RecipientResult>, mut due: Due) -> Finished {
    tokio::task::spawn_blocking(move || {
        let Claimed { id, claim, mut qf, .. } = c;
        for r in &results {
            if let Err(e) = file::append_result(&claim.path, r) {
                log_warning!("{id}: record delivery status: {e}");
            }
        }
        qf.results.extend(results);
        let pending: BTreeSet<String> = qf.pending().map(|(_, r)| lookup_domain(&r.address)).collect();
        let age = Duration::from_micros(now_us().saturating_sub(qf.envelope.arrival_us));
        if !pending.is_empty() && delay_notice_due(bounce.delay_warning_time, age, qf.delay_notified) {
            due.delayed = delayed_recipients(qf.pending(), |i| qf.last_result(i));
        }
        let notice_queued = due.send(&spool, &bounce, &id, &claim.path, &qf.envelope);
        if pending.is_empty() {
            let removed = match std::fs::remove_file(&claim.path) {
                Ok(()) => {
                    log_info!("{id}: removed");
                    true
                }
                Err(e) => {
                    log_warning!("{id}: remove {}: {e}", claim.path.display());
                    false
                }
            };
            return Finished { notice_queued, deferred_sites: Vec::new(), removed };
        }
        if let Err(e) = file::sync(&claim.path) {
            log_warning!("{id}: {e}");
        }
        drop(claim);
        Finished { notice_queued, deferred_sites: pending.into_iter().collect(), removed: false }
    })
    .await
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_lists() {
        assert_eq!(parse_domains(""), Some(vec![]));
        assert_eq!(parse_domains("B.example, a.example,b.example"), Some(vec!["a.example".to_string(), "b.example".to_string()]));
        for bad in ["a..example", "a.example,", ",", "a example", "[127.0.0.1]", "a.example;b"] {
            assert_eq!(parse_domains(bad), None, "{bad:?}");
        }
        let many: Vec<String> = (0..=MAX_DOMAINS).map(|i| format!("d{i}.example")).collect();
        assert_eq!(parse_domains(&many.join(",")), None);
    }
}
