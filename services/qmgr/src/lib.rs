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
//! the flush service's logfiles. Mail older than `maximal_queue_lifetime` is returned.
//!
//! Triggers (`public/qmgr`, typed frames): `ScanIncoming` (I), `ScanDeferred` (D),
//! `IgnoreTimestamps` (A), `ForgetDeadSites` (F: forget failed routes and override
//! `defer_transports`), `Wakeup` (W). The master's wakeup asks for an incoming scan; the
//! deferred queue is scanned every `queue_run_delay`.
//!
//! # Security
//! `public/qmgr` is reachable by every local user. A request with D, A or F (work forced
//! ahead of time, `postqueue -f`) is refused as a whole (`Denied`, and a warning `User
//! name(uid) is not allowed to flush the mail queue`) unless its `SO_PEERCRED` user is root,
//! `mail_owner` or in `authorized_flush_users`. A local user may hold at most
//! `local_client_connection_limit` connections and must send each request within
//! `local_client_timeout`.
//!
//! At start, files left in `active` by a crash go back to `incoming`: nothing is lost.
//!
//! # Diagnostics
//! `<id>: from=<sender>, size=N, nrcpt=N (queue active)`, `<id>: removed`,
//! `<id>: to=<rcpt>, relay=none, ... status=deferred (delivery temporarily suspended: ...)`,
//! `<id>: sender non-delivery notification: <id>`, `<id>: flush service failure`.
//!
//! # Configuration parameters
//! `qmgr_message_active_limit`, `initial_destination_concurrency`,
//! `default_destination_concurrency_limit`, `minimal_backoff_time`,
//! `maximal_backoff_time`, `queue_run_delay`, `maximal_queue_lifetime`, `bounce_queue_lifetime`,
//! `transport_maps`, `relayhost`, `default_transport`, `defer_transports`, `fast_flush_domains`,
//! `authorized_flush_users`, `local_client_connection_limit`, `local_client_timeout`.
//!
//! # Bugs
//! Scans run on the scheduler's thread: listing a very large deferred queue (one pass over its
//! directories) delays trigger handling while it runs; the listed files are then looked at in
//! slices between other events. A result recorded but not yet acted on when qmgr is killed is acted on again
//! after restart (at-least-once delivery).

pub mod bounce;
pub mod config;
pub mod scheduler;
