//! verify - Postern address verification server
//!
//! # Synopsis
//! `verify unix - - n - 1 verify` in master.cf.
//!
//! # Description
//! The verify server keeps a record of which recipient addresses are known to be deliverable
//! or undeliverable, for smtpd's `reject_unverified_recipient`. It learns this by probes: a
//! probe is a message from `address_verify_sender` to the address, queued in `incoming` and
//! routed by the queue manager like mail to that address (`transport_maps`, `relayhost`, MX;
//! `address_verify_transport_maps`, `address_verify_relayhost` and
//! `address_verify_default_transport` give probes routes of their own),
//! whose delivery agent stops after RCPT TO (it never sends DATA, the message has no content)
//! and reports the answer back. One attempt settles a probe: it is never deferred, returned or
//! delivered, and its queue file is removed. Addresses are verified by the answer of the
//! nearest MTA, so not every undeliverable address is found out.
//!
//! Requests (`private/verify`, typed frames, protocol `address_verify_protocol`):
//!
//! * `Query{address}`: the address's status (`deliverable`, `deferred`, `undeliverable`, or
//!   `probing` while nothing is known yet, "Address verification in progress") and the text of
//!   the last result. When nothing usable is known, or the entry is past its refresh time, a
//!   probe is sent (at most one per address every 1000 seconds); the cached answer is used
//!   until the probe's result comes.
//! * `Update{address, status, text}`: a probe's result, from the delivery agent or the queue
//!   manager. A failure never replaces a deliverable entry before it expires.
//!
//! The cache is `address_verify_map`, by default `$default_cache_db_type:$data_directory/verify_cache`
//! (an LMDB file, `verify_cache.lmdb`; Postfix's format of entries, `status:probed:updated:text`).
//! Every change is committed with an fsync before its request is answered, so the cache
//! survives restarts and crashes; this is what lets a backup MX keep refusing unknown users
//! while the primary is down. An empty `address_verify_map` keeps the cache in memory only.
//! The directory of the cache file is made if missing (mode 0700). Entries past their expiry
//! are removed every `address_verify_cache_cleanup_interval`.
//!
//! # Security
//! The server does not talk to the network or to local users: its socket is private, and a
//! client whose `SO_PEERCRED` user is neither root nor the mail system's own is refused. It
//! can be made to store any amount of addresses (one entry per recipient a client names;
//! LMDB keys are at most 511 bytes, longer addresses are refused); the expiry times bound how
//! long they stay.
//!
//! # Diagnostics
//! Problems are logged as warnings (a cache that cannot be written, a probe that cannot be
//! queued, a malformed entry: `bad address verify table entry: ...`); a cache that cannot be
//! opened at start is fatal. The probes themselves are logged by the queue manager and the
//! delivery agent: `<id>: to=<addr>, relay=..., dsn=2.1.5, status=deliverable (250 2.1.5 Ok)`,
//! or `status=undeliverable (host ... said: 550 ...)`.
//!
//! # Configuration parameters
//! `address_verify_map`, `default_cache_db_type` (lmdb), `data_directory`,
//! `address_verify_positive_expire_time` (31d), `address_verify_positive_refresh_time` (7d),
//! `address_verify_negative_cache` (yes), `address_verify_negative_expire_time` (3d),
//! `address_verify_negative_refresh_time` (3h), `address_verify_cache_cleanup_interval` (12h),
//! `address_verify_sender` (`$double_bounce_sender`; `<>` is the null sender), `myorigin`,
//! `queue_service_name`, `trigger_timeout`, `ipc_timeout`. smtpd reads
//! `address_verify_service_name`, `address_verify_poll_count` and `address_verify_poll_delay`,
//! and the `unverified_recipient_*` parameters.
//!
//! # Bugs
//! Of Postfix's routing overrides for probes, the queue manager has `address_verify_relayhost`,
//! `address_verify_transport_maps` and `address_verify_default_transport` (by default the
//! mail's); the local, virtual and relay transports and the sender-dependent ones are not
//! Postern's. Not implemented: `address_verify_sender_ttl`, `address_verify_pending_request_limit`,
//! `smtp_address_verify_target = data`, and sender verification (`reject_unverified_sender`). A probe result that cannot be reported (the service is down)
//! is lost; the address is probed again after 1000 seconds. Probe traffic adds to the mail
//! queue, and a dictionary attack on a verified domain becomes probes to its primary.

pub mod actor;
pub mod cache;
pub mod config;
pub mod entry;
pub mod probe;
pub mod server;
pub mod store;

pub use server::run;
