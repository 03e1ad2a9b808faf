//! The fast flush cluster (`fast_flush_cluster_servers`): nodes that keep their own queues and
//! share a NATS server. A `SendSite` from a client of this node is also published to the other
//! nodes; each of them sends the site from its own queue and answers with its count, and this
//! node's reply carries the total of the answers that came within `fast_flush_cluster_timeout`.
//! NATS being down or slow never delays this node's own send, nor the reply beyond the
//! deadline; async-nats reconnects in the background. A handover (an ODMR session at this
//! node) asks the other nodes to relay their mail for the site here instead: each one routes it
//! to the next hop that its own `fast_flush_cluster_relay_maps` gives for this node.

pub mod config;
pub mod wire;

use std::sync::{Arc, Mutex, PoisonError};

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio::time::{Instant, timeout_at};

use common::domain::Site;
use common::ipc::flush::{FlushReply, FlushRequest};
use common::queue::ages::Ages;
use common::text::printable;
use common::{log_info, log_warning};

use crate::actor::FlushHandle;
use config::{ClusterAuth, ClusterConfig};
use wire::{Outcome, SendAnswer, SendRequest, Tally};

/// What a client asks of the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Send the site's mail (ETRN, `postqueue -s`, `sendmail -qR`).
    Send { subdomains: bool },
    /// Say how much mail each node holds for the site (`postqueue -n`).
    Count,
    /// Relay the site's mail to this node (smtpd's ODMR session for it is here).
    HandOver,
    /// Say it in age buckets (`qshape -f`).
    Shape(Ages),
}

impl Ask {
    fn verb(self) -> &'static str {
        match self {
            Ask::Send { .. } => "send",
            Ask::Count => "count",
            Ask::HandOver => "handover",
            Ask::Shape(_) => "shape",
        }
    }
}

/// A node's membership: the NATS connection and the task answering the other nodes.
pub struct Cluster {
    cfg: ClusterConfig,
    client: async_nats::Client,
    answering: actix_rt::task::JoinHandle<()>,
    announcing: actix_rt::task::JoinHandle<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.answering.abort();
        self.announcing.abort();
    }
}

/// The settings of every connection to NATS: name, authentication, TLS.
fn base_options(cfg: &ClusterConfig) -> async_nats::ConnectOptions {
    let mut o = async_nats::ConnectOptions::new().name(format!("postern-flush {}", cfg.node));
    o = match &cfg.auth {
        ClusterAuth::None => o,
        ClusterAuth::UserPassword { user, password } => o.user_and_password(user.clone(), password.0.clone()),
        ClusterAuth::Nkey(seed) => o.nkey(seed.0.clone()),
    };
    if let Some(ca) = &cfg.ca_file {
        o = o.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let Some((cert, key)) = &cfg.client_cert {
        o = o.add_client_certificate(cert.clone(), key.clone());
    }
    o
}

/// Why this node cannot connect: async-nats's retrying client says only what kind of failure
/// it was ("IO error" for an untrusted certificate too), so one connection without retries,
/// whose error has the cause, tells (with several servers, the last one tried).
async fn why_refused(cfg: &ClusterConfig, kind: &str) -> String {
    match base_options(cfg).connect(servers(cfg)).await {
        Err(e) => format!("cannot connect to NATS {}: {e}", cfg.servers.join(", ")),
        Ok(probe) => {
            drop(probe);
            format!("NATS client error: {kind}")
        }
    }
}

fn servers(cfg: &ClusterConfig) -> Vec<async_nats::ServerAddr> {
    cfg.servers.iter().filter_map(|s| s.parse().ok()).collect()
}

/// The member connection: retried in the background, each event logged; `connected` is told
/// of each (re)connection.
fn options(cfg: &ClusterConfig, connected: Arc<Notify>) -> async_nats::ConnectOptions {
    let shared = Arc::new(cfg.clone());
    // The last failure since the last connection: async-nats retries every few seconds
    // forever, and the same failure is logged once, not at each attempt.
    let last = Arc::new(Mutex::new(None::<String>));
    base_options(cfg)
        // This node's own requests are not sent back to it: one wake-up less per request.
        .no_echo()
        // Not reachable at start is not fatal: this node flushes its own mail meanwhile.
        .retry_on_initial_connect()
        .max_reconnects(None)
        .event_callback(move |event| {
            let (cfg, connected, last) = (shared.clone(), connected.clone(), last.clone());
            async move {
                let node = &cfg.node;
                let seen = event.to_string();
                {
                    let mut last = last.lock().unwrap_or_else(PoisonError::into_inner);
                    if let async_nats::Event::Connected = event {
                        *last = None;
                    } else if last.replace(seen.clone()).as_ref() == Some(&seen) {
                        return;
                    }
                }
                match event {
                    async_nats::Event::Connected => {
                        log_info!("fast flush cluster: node {node} connected to NATS");
                        connected.notify_one();
                    }
                    async_nats::Event::ClientError(async_nats::ClientError::Other(kind)) => {
                        // A task of its own: a connection's future is not Sync, as the callback's must be.
                        let why = tokio::spawn({
                            let cfg = cfg.clone();
                            async move { why_refused(&cfg, &kind).await }
                        });
                        match why.await {
                            Ok(why) => log_warning!("fast flush cluster: node {node}: {why}"),
                            Err(e) => log_warning!("fast flush cluster: node {node}: NATS {seen}: {e}"),
                        }
                    }
                    other => log_warning!("fast flush cluster: node {node}: NATS {other}"),
                }
            }
        })
}

impl Cluster {
    /// Join the cluster: connect (in the background when NATS is not reachable yet) and answer
    /// the other nodes' requests with `handle`'s sends.
    pub async fn join(cfg: ClusterConfig, handle: FlushHandle) -> Result<Cluster, String> {
        let connected = Arc::new(Notify::new());
        let client = options(&cfg, connected.clone())
            .connect(servers(&cfg))
            .await
            .map_err(|e| format!("fast flush cluster: connect to NATS: {e}"))?;
        let requests =
            client.subscribe(cfg.subject.clone()).await.map_err(|e| format!("fast flush cluster: subscribe to {}: {e}", cfg.subject))?;
        let answering = actix_rt::spawn(answer_requests(requests, client.clone(), cfg.clone(), handle));
        let announcing = actix_rt::spawn(announce(connected, client.clone(), cfg.node.clone(), cfg.subject.clone()));
        Ok(Cluster { cfg, client, answering, announcing })
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.cfg
    }

    /// Ask the other nodes to send (or count) `site` and return their answers, at the latest at
    /// the deadline; meanwhile `local` (this node's own send or count, started at once) runs
    /// beside.
    pub async fn ask(&self, ask: Ask, site: &str, local: impl Future<Output = FlushReply>) -> FlushReply {
        let deadline = Instant::now() + self.cfg.timeout;
        let mut tally = Tally::new(&self.cfg.node, &self.cfg.peers);
        // A site that this node refuses as invalid is not worth the other nodes' time.
        let valid = Site::parse(site).is_ok();
        let (local, ()) = tokio::join!(local, async {
            if valid {
                self.gather(ask, site, deadline, &mut tally).await;
            }
        });
        if valid {
            log_info!("{}", tally.log_line(ask.verb(), site, &local, self.cfg.timeout));
        }
        match ask {
            Ask::Shape(_) => tally.shaped(local, self.cfg.timeout),
            _ => tally.reply(local),
        }
    }

    async fn gather(&self, ask: Ask, site: &str, deadline: Instant, tally: &mut Tally) {
        let verb = ask.verb();
        if self.client.connection_state() != async_nats::connection::State::Connected {
            log_warning!("fast flush cluster: not connected to NATS; {verb} {site}: this node's mail only");
            return;
        }
        // A shape is also a count: a node that predates shapes counts instead.
        let (subdomains, count, handover, shape) = match ask {
            Ask::Send { subdomains } => (subdomains, false, false, None),
            Ask::Count => (false, true, false, None),
            Ask::HandOver => (false, false, true, None),
            Ask::Shape(ages) => (false, true, false, Some(ages)),
        };
        let request = SendRequest { node: self.cfg.node.clone(), site: site.to_string(), subdomains, count, handover, shape };
        let inbox = self.client.new_inbox();
        let collect = async {
            let mut answers = self.client.subscribe(inbox.clone()).await.map_err(|e| e.to_string())?;
            self.client
                .publish_with_reply(self.cfg.subject.clone(), inbox, wire::encode(&request).into())
                .await
                .map_err(|e| e.to_string())?;
            while let Some(msg) = answers.next().await {
                match wire::decode::<SendAnswer>(&msg.payload) {
                    Ok(answer) => tally.add(answer),
                    Err(e) => log_warning!("fast flush cluster: answer to {verb} {site}: {e}"),
                }
                if tally.complete() {
                    break;
                }
            }
            Ok::<(), String>(())
        };
        // A time-out is expected without a member list: the deadline ends the wait.
        if let Ok(Err(e)) = timeout_at(deadline, collect).await {
            log_warning!("fast flush cluster: {verb} {site}: {e}");
        }
    }
}

/// After each (re)connection, once the server has our subscription (a round trip after it),
/// log that this node answers: from then on a request from another node reaches it.
async fn announce(connected: Arc<Notify>, client: async_nats::Client, node: String, subject: String) {
    loop {
        connected.notified().await;
        match client.flush().await {
            Ok(()) => log_info!("fast flush cluster: node {node} listening on {subject}"),
            Err(e) => log_warning!("fast flush cluster: node {node}: NATS: {e}"),
        }
    }
}

/// Answer the other nodes: each request is a local send (or count, or shape) of that site,
/// answered with its count (or buckets); a handover is a send whose mail goes to the asking
/// node, at the next hop that this node's `fast_flush_cluster_relay_maps` names for it
/// (refused without one).
/// The node's own requests come back on the same subject and are skipped.
async fn answer_requests(mut requests: async_nats::Subscriber, client: async_nats::Client, cfg: ClusterConfig, handle: FlushHandle) {
    let node = &cfg.node;
    while let Some(msg) = requests.next().await {
        let Some(reply_to) = msg.reply else { continue };
        let request = match wire::decode::<SendRequest>(&msg.payload) {
            Ok(r) => r,
            Err(e) => {
                log_warning!("fast flush cluster: request on {}: {e}", msg.subject);
                continue;
            }
        };
        if request.node == *node {
            continue;
        }
        // A send's file work waits until the answer is on its way: on a busy machine (or
        // several nodes on one) this node's renames and its queue manager's work would
        // otherwise share the CPUs with the answer's way back.
        let (answered, go) = tokio::sync::oneshot::channel();
        let mut go = Some(go);
        let outcome = if request.handover {
            match cfg.relay_nexthop(&request.node) {
                Ok(Some(nexthop)) => Outcome::of(&handle.hand_over(request.site, nexthop, go.take()).await),
                Ok(None) => {
                    log_warning!(
                        "fast flush cluster: handover {} to node {}: no entry for the node in fast_flush_cluster_relay_maps; refused",
                        printable(&request.site, '?'),
                        printable(&request.node, '?')
                    );
                    Outcome::Refused
                }
                Err(e) => {
                    log_warning!("fast flush cluster: handover to node {}: {e}", printable(&request.node, '?'));
                    Outcome::Failed("relay map lookup failure".into())
                }
            }
        } else if let Some(ages) = request.shape {
            Outcome::of(&handle.request(FlushRequest::ShapeSite { site: request.site, ages }).await)
        } else if request.count {
            Outcome::of(&handle.request(FlushRequest::CountSite { site: request.site }).await)
        } else {
            let send = FlushRequest::SendSite { site: request.site, subdomains: request.subdomains };
            Outcome::of(&handle.request_held(send, go.take()).await)
        };
        let answer = SendAnswer { node: node.clone(), outcome };
        if let Err(e) = client.publish(reply_to, wire::encode(&answer).into()).await {
            log_warning!("fast flush cluster: answer node {}: {e}", request.node);
        }
        // A send waits: the server has the answer once it answers a PING sent after it. A
        // count, a shape or a refusal has no file work, and no round trip is spent on it.
        if go.is_none() {
            let _ = tokio::time::timeout(cfg.timeout, client.flush()).await;
            let _ = answered.send(());
        }
    }
}
