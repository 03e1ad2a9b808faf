//! qmgr - Postern queue manager
//!
//! # Synopsis
//! `qmgr unix n - n 300 1 qmgr` in master.cf.
//!
//! # Description
//! The queue manager moves messages from `incoming` (new mail, and mail the flush service
//! released) and `deferred` (when their retry time has come) into `active`, hands their
//! recipients to delivery agents (`private/<transport>`, usually `smtp`) grouped by route, and
//! records each recipient's result in the queue file before acting on it. A message whose
//! recipients are all done is removed; one with bounced recipients returns a notification to
//! its sender; one with deferred recipients goes to `deferred` with its mtime set to the next
//! retry time (backoff between `minimal_backoff_time` and `maximal_backoff_time`, growing with
//! the message's age), and its recipient domains that are eligible for fast flush are added to
//! the flush service's logfiles. Mail older than `maximal_queue_lifetime` is returned. A
//! deferred message that smtpd's ODMR provider is delivering on a customer's connection is
//! claimed (locked in `deferred`, see smtpd(8)): a scan leaves it there and takes it on a
//! later scan if it is still deferred then.
//!
//! Routes come from `transport_maps` (transport(5)'s order: the full address, the domain, its
//! parent domains as `.parent`, or `parent` when `transport_maps` is in
//! `parent_domain_matches_subdomains`, then `*`), else `relayhost`, else the domain. A table
//! rebuilt with `postmap` is used from the next lookup on; one that cannot be read defers the
//! recipient (`4.3.0 transport_maps lookup failure`) instead of routing it elsewhere. A UTF-8
//! (SMTPUTF8) domain is looked up, routed and named to the flush service in A-label form
//! (`xn--bcher-kva.example`). The delivery request carries the message's SMTPUTF8 request.
//!
//! Triggers (`public/qmgr`, typed frames): `ScanIncoming` (I), `ScanDeferred` (D),
//! `IgnoreTimestamps` (A), `ForgetDeadSites` (F: forget failed routes and override
//! `defer_transports`), `Wakeup` (W). The master's wakeup asks for an incoming scan; the
//! deferred queue is scanned every `queue_run_delay`. A queue file with the unthrottle mark
//! (the group read bit, set by the flush service for `postqueue -i`) has the dead state of its
//! routes forgotten and `defer_transports` overridden as it is taken; the mark is cleared.
//!
//! Relay requests (`public/qmgr` too, beside the triggers: `Relay{site, nexthop,
//! queue_ids}`): the flush service's handover in the fast flush cluster (flush(8)), which sends
//! this node's mail for a customer to the node where the customer's ODMR session is. For each
//! of those messages, its next routing sends its recipients in exactly `site` to
//! `smtp:nexthop` instead of their route (its other recipients, and every later routing, take
//! the usual ones), with the smtp agent's limits, logs, notices and retries. The request is
//! answered once the scheduler has it, so the flush service moves the files only after that.
//! Such overrides are held in memory only: at most 100000 (a request that would pass that is
//! refused whole, and its mail stays where it is), each used once and dropped after 10 minutes
//! if its message was not routed by then; a lost one (a restart) only means the usual route.
//!
//! Incoming requests (`Incoming{queue_ids}`, from the flush service after a send): the files it
//! just moved into `incoming`, fed before anything else and without a listing of `incoming`.
//! `incoming` is one flat directory and ext4 never shrinks one: after a backlog, a listing
//! costs milliseconds however few files are left (6 ms for 11 files at a million queued),
//! which an ETRN's mail would otherwise wait for. At most 100000 names are kept; past that
//! an incoming scan is asked for instead. Like `ScanIncoming`, any local user may send it.
//!
//! # Security
//! `public/qmgr` is reachable by every local user. A request with D, A or F (work forced
//! ahead of time, `postqueue -f`) is refused as a whole (`Denied`, and a warning `User
//! name(uid) is not allowed to flush the mail queue`) unless its `SO_PEERCRED` user is root,
//! `mail_owner` or in `authorized_flush_users`; so is a relay request, whose site, next hop
//! (printable, no blanks) and queue IDs are checked before anything is kept. A local user may hold at most
//! `local_client_connection_limit` connections and must send each request within
//! `local_client_timeout`.
//!
//! At start, files left in `active` by a crash go back to `incoming`: nothing is lost.
//!
//! No message stays in `active` while qmgr runs: a delivery agent that closes the connection
//! in the middle of a request (it died), or does not answer within `daemon_timeout` (Postfix's
//! watchdog), has that request's recipients deferred with `4.3.0 unknown mail transport
//! error` (`mail transport unavailable` when it cannot be reached at all), and the route is
//! suspended for `minimal_backoff_time` as after any site failure (`postqueue -f` lifts that).
//! A deferred message that cannot be moved to `deferred` goes back to `incoming` (its retry
//! time kept), not left in `active`.
//!
//! A queue file's result records that were torn by a crash or a full disk are skipped
//! wherever they are, with a warning; the recipients they were about are simply tried again.
//! A queue file that cannot be read now (EACCES, EMFILE, ENOMEM, EIO) is not corrupt: it goes
//! back to the queue it came from for a later scan; only one that cannot be parsed is moved
//! to `corrupt`.
//!
//! An address verification probe (a queue file the verify service marked, see verify(8)) is
//! routed like mail, or by `address_verify_transport_maps`, `address_verify_relayhost` and
//! `address_verify_default_transport` where those differ, and handed to its agent marked as a
//! probe; one attempt settles it, whatever
//! its outcome: it is removed, never deferred, returned or listed with the flush service. The
//! results the queue manager makes up for a probe (a suspended route, a dead agent) go to the
//! verify service and are logged as `status=undeliverable`.
//!
//! Failed recipients are returned to the sender in one notification (from the null sender, an
//! RFC 3464 `multipart/report` with Postfix's texts) holding the whole original when it fits in
//! `bounce_size_limit`, its headers otherwise, and only its headers when MAIL had `RET=HDRS`.
//! Only recipients whose `NOTIFY=` includes `FAILURE` (or who had none) are in it, so that
//! `NOTIFY=NEVER` gets no notice; `ENVID=` and `ORCPT=` show as `Original-Envelope-Id:` and
//! `Original-Recipient:` (smtpd records an ORCPT for every recipient, as Postfix does). A
//! recipient with `NOTIFY=SUCCESS` that went to a next hop without DSN gets a success notice
//! (`Successful Mail Delivery Report`, `Action: relayed`, `delivery via host[addr]:port:
//! reply`, the headers of the message) when the message is finished; one that went to a next
//! hop with DSN does not, since that hop got the request and reports success itself.
//!
//! With `delay_warning_time` set (the default `0h` is off, as in Postfix), a message that is
//! still deferred when it is older than that gets one delay notice (`Delayed Mail (still being
//! retried)`, `Action: delayed`, `Will-Retry-Until:`, the headers of the message) for the
//! recipients whose NOTIFY has `DELAY` (or who had none), and with `notify_classes = delay` a
//! copy about every deferred recipient goes to `delay_notice_recipient`. The queue file records
//! that the notice went out, so it is sent once, also across restarts.
//! When a null-sender message fails, a copy goes to `2bounce_notice_recipient` from
//! `double_bounce_sender` if `notify_classes` has `2bounce` (or `bounce`); otherwise the
//! discard is logged. With `notify_classes = bounce`, every non-delivery notice to a sender
//! also goes, as a copy with the message's headers only and without the boilerplate, to
//! `bounce_notice_recipient`. A failed postmaster copy is discarded with a warning, so
//! notifications never loop. Reply text from other hosts is made printable before it goes
//! into one. The texts are Postfix's built-in templates, or those of `bounce_template_file`
//! (Postfix's bounce(5) format, read when the configuration is loaded; a file Postern cannot
//! use stops `postfix check` and the queue manager's start with its name and line). Each
//! notice is a message of its own: `Received: by $myhostname ($mail_name) id ...`, `Date:`,
//! `Message-Id:`, and `References:`/`In-Reply-To:` the original's Message-ID, with
//! `<id>: message-id=<...>` in the log.
//!
//! # Memory
//! qmgr keeps each active message's envelope and delivery results, never its body: delivery
//! agents read the message from the queue file, and a notification reads at most
//! `bounce_size_limit` bytes of it when it is built. With `qmgr_message_active_limit`
//! messages of any size up to `message_size_limit`, qmgr needs at most 16 MiB plus 4 KiB per
//! active message of a few recipients (plus each further recipient's address and about 100
//! bytes): about 100 MiB for the default 20000, whatever `message_size_limit` is (measured:
//! 6 MiB plus 1.2 KiB per active 10 MB message). Building a notification needs about twice
//! `bounce_size_limit` more for a moment (twice the message size with `bounce_size_limit = 0`).
//!
//! # Diagnostics
//! `<id>: from=<sender>, size=N, nrcpt=N (queue active)`, `<id>: removed`,
//! `<id>: to=<rcpt>, relay=none, ... status=deferred (delivery temporarily suspended: ...)`,
//! `<id>: sender non-delivery notification: <id>`, `<id>: postmaster non-delivery notification:
//! <id>`, `<id>: undeliverable non-delivery notification discarded (notify_classes has no
//! 2bounce)`, `warning: <id>: undeliverable postmaster notification discarded`,
//! `<id>: flush service failure`, `warning: private/<transport>: premature disconnect` (or
//! `malformed response`, also for a reply that leaves requested recipients without a result;
//! results for recipients that were not requested are ignored), `warning: <id>: timeout receiving delivery status from transport:
//! <transport>`, `warning: <id>: skipped N torn delivery status record(s) in the queue file`,
//! `warning: <id>: cannot read the queue file now, left in <queue> for a later scan: ...`,
//! `warning: relay request: ...` (a relay request refused: invalid, or no room),
//! `fatal: the disk worker thread panicked` (or `has stopped`): the queue manager exits and
//! the master restarts it; nothing is lost (files left in `active` go back to `incoming`).
//!
//! # Configuration parameters
//! `qmgr_message_active_limit`, `initial_destination_concurrency`,
//! `default_destination_concurrency_limit`, `minimal_backoff_time`,
//! `maximal_backoff_time`, `queue_run_delay`, `maximal_queue_lifetime`, `bounce_queue_lifetime`,
//! `transport_maps`, `relayhost`, `default_transport`, `defer_transports`, `fast_flush_domains`,
//! `authorized_flush_users`, `local_client_connection_limit`, `local_client_timeout`,
//! `daemon_timeout` (18000s: the deadline of one delivery request), `ipc_timeout` (flush
//! `Add` requests, Postfix's limit; no shorter cap), `bounce_size_limit` (50000), `notify_classes`, `2bounce_notice_recipient`,
//! `bounce_notice_recipient`, `delay_notice_recipient`, `double_bounce_sender`, `myorigin`
//! (qualifies those and the notice's `From:`), `myhostname`, `mail_name`, `bounce_template_file`,
//! `header_from_format`, `delay_warning_time`.
//!
//! # Structure
//! The scheduler is one actix actor (`actor`, behind `QmgrHandle`) that owns all queue state
//! and never blocks: trigger connections and delivery requests are tasks that send it
//! messages. Its disk work (listing, moving, reading, appending, syncing, removing queue
//! files, writing notifications) runs in order on one worker thread (`worker`), which
//! reports back as messages. By Postfix's concerns, each deciding on its own data: `scan`
//! (qmgr_scan), `active` (qmgr_active, qmgr_message), `deliver` (qmgr_deliver), `feedback`
//! (qmgr_feedback and dead sites), `finish` (qmgr_active_done: expiry), `defer` (qmgr_defer:
//! backoff, flush `Add`), `relay` (the handover's per-message overrides); the notifications are `common::bounce` (qmgr_bounce; smtpd's ODMR
//! provider writes them too); `scheduler` orders their steps (qmgr.c's
//! loop) and `server` is the daemon loop.
//!
//! # Bugs
//! Listing a very large deferred queue (one pass over its directories) delays, while it runs,
//! the other disk work (finishing messages), not trigger handling; the listed files are then
//! looked at in slices of 500, between which the worker finishes messages. Likewise a queue
//! file whose open blocks (a FIFO that root or `mail_owner` put in a queue) stalls the disk
//! work until someone writes to it.
//!
//! A result recorded but not yet acted on when qmgr is killed is acted on again after
//! restart (at-least-once delivery); a stop waits at most a second for the disk work already
//! decided (results to append, messages to finish) before it exits. Likewise, a request given
//! up on after `daemon_timeout` may still be completed by the agent, so the deferred message
//! can be delivered twice; Postfix's queue manager exits instead, with the same effect. A
//! notification that cannot be written to the queue (full disk) is lost with a warning, and
//! the message is removed anyway.
//!
//! Of `notify_classes`, `2bounce`, `bounce` and `delay` are implemented; the `policy`,
//! `protocol`, `resource` and `software` reports (SMTP session transcripts and internal
//! errors) are not sent by Postern.

pub mod active;
pub mod actor;
pub mod config;
pub mod defer;
pub mod deliver;
pub mod feedback;
pub mod finish;
pub mod relay;
pub mod scan;
pub mod scheduler;
pub mod server;

pub use server::run;
pub mod worker;

#[cfg(test)]
mod testutil;
