//! flush - Postern fast flush server
//!
//! # Synopsis
//! `flush unix n - n 1000? 0 flush` in master.cf.
//!
//! # Description
//! The flush server keeps a logfile per destination site, `$queue_directory/flush/<site>`,
//! listing the queue IDs of mail deferred for that site, so that `ETRN site`, `sendmail -qR
//! site` and `postqueue -s site` deliver that site's mail without examining the whole queue.
//! Requests (typed frames, protocol `queue_flush_protocol`):
//!
//! * `Add{site, queue_id}`: append the ID to the site's logfile (once: duplicates are dropped).
//! * `SendSite{site, subdomains}`: reply at once with the number of listed messages that wait
//!   in `deferred` (one `stat` each), then tell the queue manager to forget dead sites, wait for
//!   its acknowledgement, and under the logfile's lock move each listed message from
//!   `deferred` to `incoming` with its times set to now, and name the moved files to the queue
//!   manager (`Incoming`, qmgr(8): fed without a listing of `incoming`; if that request
//!   fails, an incoming scan is triggered instead); no other
//!   request is taken until that is done. The reply is what then moves, but neither the queue
//!   manager's round trip nor the renames are on the client's path (issue 15: an ETRN reply of
//!   about 0.4 ms instead of 0.9 ms at ten messages per site), a difference from ARCHITECTURE.md's
//!   "reply with how many were moved"; a rename that fails after the reply is logged
//!   (`warning: fast flush send: ...`). The moves run on a blocking-pool thread, so that the
//!   daemon's thread stays free for replies and for the cluster's answers (below). The logfile
//!   is then emptied and unlocked, once the queue manager has been told of the moved files
//!   (truncating can cost a synchronous block discard) and before the next request.
//!   `subdomains` also sends every site below `site` (RFC 1985 `ETRN @domain`).
//! * `SendFile{queue_id}` (`postqueue -i`, `sendmail -qI`): the same for one message,
//!   regardless of site, without `ForgetDeadSites`: the file gets the unthrottle mark
//!   (Postfix's group read bit) instead, so that the queue manager forgets the dead state of
//!   this message's routes only (Postfix's UNTHROTTLE_AFTER).
//! * `Refresh` (also on every master wakeup): send logfiles not flushed for
//!   `fast_flush_refresh_time`, remove empty ones untouched for `fast_flush_purge_time`.
//! * `Purge`: send every non-empty logfile.
//! * `List{site}`: the IDs listed for exactly that site, nothing moved (smtpd's ODMR provider,
//!   which delivers them on the customer's connection: see smtpd(8)). A message that an ODMR
//!   session holds is claimed (locked in `deferred`): a send leaves it there, and the session
//!   lists it again (`Add`) if it stays deferred, so it is not lost from the index.
//! * `CountSite{site}` (`postqueue -n`): how many of the IDs listed for exactly that site are
//!   still queued, nothing moved; with the cluster, every node is asked too (below).
//! * `ShapeSite{site, ages}` (`qshape -f`): the same messages counted in qshape's age buckets
//!   (`ages`: how many, at most 64, the first one's minutes, doubling or linear) by the
//!   arrival time in each one's queue file envelope; answered `Shaped{buckets, nodes,
//!   missing}`. The actor only lists the IDs; the envelopes are read by a blocking task, so
//!   sends are not held up meanwhile. With the cluster, every node is asked too (below).
//! * `Forget{site, queue_ids}`: drop those IDs from the site's index and logfile (one rewrite)
//!   when they are in no queue any more: what an ODMR session delivered.
//! * `HandOver{site}` (smtpd's ODMR provider, at the start of an ATRN session): with the
//!   cluster, ask the other nodes to relay their mail for exactly that site to this node
//!   (below), and answer how many messages they said they relay; nothing moves here. Without
//!   the cluster, or not connected to NATS, `Ok` with 0 at once.
//!
//! A request that covers many logfiles (`ETRN @domain` over thousands of subdomains, refresh,
//! purge) works through them in groups of 64: each group's logfiles are emptied and unlocked
//! before the next is taken, so no request runs out of descriptors. A logfile that cannot be
//! sent does not stop the others; the reply is then `Fail`, naming how many logfiles failed
//! and how many messages moved (the queue manager is told about those).
//!
//! An in-memory index (site → IDs) caches the logfiles, so subdomain requests and duplicate
//! checks cost O(that site's mail). At start the index is loaded from the logfiles and then
//! reconciled with the deferred queue in the background.
//!
//! # Cluster
//! With `fast_flush_cluster_servers` set, flush joins a NATS server (async-nats; reconnects in
//! the background) as node `fast_flush_cluster_node` and subscribes to
//! `fast_flush_cluster_subject`; after each (re)connection it logs `fast flush cluster: node N
//! listening on SUBJECT` once the server has its subscription. A `SendSite` from a client (smtpd's ETRN, `postqueue -s`;
//! housekeeping never) moves this node's mail at once and is also published there; every other
//! node sends the site from its own queue and answers with its count, its own send's file work
//! (the queue manager's acknowledgement, the moves) held until the server has the answer (the
//! answer of a PING sent after it), so that it does not slow the answer's way back. The
//! connection asks the server not to echo this node's own requests. The reply's `moved` is
//! the total of the answers that arrived within `fast_flush_cluster_timeout` (earlier when every
//! node of `fast_flush_cluster_members` has answered), its `nodes` who answered with how much,
//! and an info line logs `cluster send SITE: N messages; answered: NODE=N, ...` (`; no answer
//! within Ts from: ...`). When NATS is not connected the send is this node's alone, with a
//! warning. Authentication: `fast_flush_cluster_user` with `fast_flush_cluster_password_file`,
//! or `fast_flush_cluster_nkey_file` (a user's nkey seed, `SU...`; another kind of seed or
//! anything else is refused); a secret file that other users may read or write is refused
//! (`chmod o-rwx`), as ssh refuses such a key. TLS with `tls://` URLs or
//! `fast_flush_cluster_tls_CAfile`, client certificate `fast_flush_cluster_tls_cert_file` and
//! `fast_flush_cluster_tls_key_file`. A failed connection is logged once until the next
//! success, with its cause (`fast flush cluster: node N: cannot connect to NATS URL: IO error:
//! invalid peer certificate: UnknownIssuer`, `... authorization violation`), found by one
//! connection attempt of its own: async-nats's retries name the kind of failure only. A reload
//! that changes these settings re-joins. A
//! client's `CountSite` goes the same way as a request with `count` set: each node answers
//! with its own count and moves nothing (`cluster count SITE: ...` in the log). A client's
//! `ShapeSite` is a request with `count` set and `shape` holding the bucket settings (a node
//! that predates shapes counts instead; the settings are checked as they are decoded, and a
//! request with bad ones is dropped with a warning): each node answers `Shaped` with one count
//! per bucket (a few hundred bytes at most, within the 4096-byte limit of every message), and
//! the reply has each node's buckets, this node first, then the others by name, and in
//! `missing` the nodes that did not answer in time, refused, or answered a plain count or
//! other buckets than asked, each with why (`cluster shape SITE: ...` in the log).
//!
//! A client's `HandOver` goes as a request with `handover` set ("relay your mail for the site
//! to me"), with the same deadline and tally (`cluster handover SITE: N messages; answered:
//! mx1=0, mx2=3, ...`). A node that hears it looks the asking node's name up in its own
//! `fast_flush_cluster_relay_maps` (node name → next hop, `[host]:port` as in
//! `transport_maps`): a request never says where the mail goes, so whoever may publish on the
//! subject cannot redirect a customer's mail. No entry: it answers refused, with a warning
//! (`fast flush cluster: handover SITE to node N: no entry for the node in
//! fast_flush_cluster_relay_maps; refused`), and keeps its mail. Otherwise the request is a send
//! of exactly that site, with the same order of steps (the count answered first, then the
//! queue manager's acknowledgements, the moves, the incoming scan), except that before
//! `ForgetDeadSites` the queue manager is told, over `public/qmgr`, that those queue IDs'
//! recipients in the site go to `smtp:NEXTHOP` (qmgr(8)); if it does not take that, nothing
//! moves (`warning: fast flush handover of SITE to NEXTHOP: ...; the mail stays in this node's
//! queue`). The mail then goes through this node's queue manager and smtp agent like any
//! other, and a failure leaves it deferred here.
//!
//! # Security
//! Only syntactically valid host names (lowercased; a UTF-8 name in its A-label form,
//! `xn--bcher-kva.example`) name logfiles; address literals and anything
//! else are answered `Bad`, so no request can touch a file outside `flush/`. `Add`, `List`,
//! `Forget` and `HandOver` are accepted only from the mail system's own user (or root); the other requests from
//! users in `authorized_flush_users`, identified by `SO_PEERCRED`. A local user other than root and
//! the mail system's own may hold at most `local_client_connection_limit` connections and must send
//! each request within `local_client_timeout`; the daemons keep theirs.
//!
//! # Diagnostics
//! Problems are logged as warnings; the service keeps serving. Success is silent, as in
//! Postfix, except for the start-up reconciliation, which says once what it found and how long
//! it took: `fast flush index reconciled with the deferred queue: A added, C logfiles cleaned
//! (N messages read in Ts, merged in Ts)`.
//!
//! # Configuration parameters
//! `fast_flush_domains` (default `$relay_domains`; empty turns the service off),
//! `fast_flush_refresh_time` (12h), `fast_flush_purge_time` (7d), `authorized_flush_users`,
//! `queue_service_name`, `trigger_timeout`, `ipc_timeout`, `local_client_connection_limit`,
//! `local_client_timeout`, and the `fast_flush_cluster_*` parameters above
//! (`fast_flush_cluster_relay_maps`, default empty: this node relays to no one).
//!
//! # Bugs
//! A message with recipients in several domains is listed under each, and sending one site
//! re-queues the whole message, as in Postfix.
//!
//! A node of an older version takes a handover request for a plain send: its mail goes its
//! usual way, and the asking session waits for it in vain.

pub mod actor;
pub mod cluster;
pub mod index;
pub mod logfile;
pub mod reconcile;
pub mod send;
pub mod server;
pub mod service;
pub mod shape;

pub use server::run;
