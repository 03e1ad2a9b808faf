//! smtpd - Postern SMTP server
//!
//! # Synopsis
//! `127.0.0.1:2525 inet n - n - - smtpd` in master.cf (maxproc = concurrent sessions).
//!
//! # Description
//! An RFC 5321 server: EHLO (PIPELINING, SIZE, VRFY, ETRN, ENHANCEDSTATUSCODES, 8BITMIME), HELO,
//! MAIL, RCPT, DATA, RSET, NOOP, QUIT, VRFY (252), HELP and ETRN (RFC 1985). A message is written
//! to `incoming` and fsynced before `250 2.0.0 Ok: queued as <id>`; then the queue manager is
//! triggered. Recipients are accepted by `smtpd_relay_restrictions` (`permit_mynetworks`,
//! `reject_unauth_destination` against `relay_domains`, `check_client_access type:table`,
//! `permit`, `reject`, `defer`); routing characters in the local part (`user%host@`,
//! `host!user@`, `"user@host"@`) are never relayed.
//!
//! `check_client_access` looks up the client's name, its parent domains, its address and its
//! networks in Postfix's order (parent domains as `parent` while `smtpd_access_maps` is in
//! `parent_domain_matches_subdomains`, else `.parent`); the first entry found decides: `OK`,
//! `PERMIT`, `REJECT [text]` (554 5.7.1 `<name[addr]>: Client host rejected: text`), `DEFER`
//! (450 4.7.1), `4NN/5NN text`, `DUNNO`. An action Postern does not have, or a table that cannot
//! be read, answers `451 4.3.5 Server configuration error` (logged); a `relay_domains` table
//! that cannot be read answers `451 4.3.0 <addr>: Temporary lookup failure`. Tables rebuilt with
//! `postmap` are used from the next lookup on. `mynetworks`, `smtpd_forbid_bare_newline_exclusions`
//! and `smtpd_client_event_limit_exceptions` take Postfix's address list syntax: networks,
//! `!pattern`, `/file` and `type:table` (the client address is looked up, e.g. in `cidr:`).
//!
//! # Input
//! The end of data is `<CR><LF>.<CR><LF>` and nothing else, for every client: a `.` line that
//! ends in a bare LF, or follows a line that did, is dropped (never stored, never an end), so
//! no smuggling sequence (`\n.\n`, `\r\n.\n`, `\n.\r\n`, ...) can end a message here or at a
//! next hop. Other lines ending in a bare LF follow `smtpd_forbid_bare_newline`: `normalize`
//! (the default) stores them with CRLF, `note` also logs `notes=bare_lf` in the disconnect line,
//! `reject` answers `550 5.5.2 <myhostname> Error: bare <LF> received`
//! (`smtpd_forbid_bare_newline_reject_code`) and, for a command, disconnects. Clients in
//! `smtpd_forbid_bare_newline_exclusions` (`$mynetworks`) are treated as `normalize`; `no` is
//! taken as `normalize` too (deliberately stricter than Postfix). Every read and every write has
//! the `smtpd_timeout` deadline. A queued message resets the error and junk counters.
//! MAIL takes `SIZE` and `BODY=7BIT|8BITMIME`, RCPT no parameters; any other option gets `555
//! 5.5.4 Unsupported option: ...`. Addresses with control characters are refused (501); HELO
//! names are made printable before they reach a `Received:` header, and every log line is.
//! MAIL is refused with `452 4.3.1 Insufficient system storage` when the queue file system
//! has less than `queue_minfree` or 1.5 × `message_size_limit` free, or less than a declared
//! `SIZE`; a disk that fills mid-message gives 452 and leaves no file. `message_size_limit =
//! 0` is no limit. More `Received:` headers than `hopcount_limit` (ours included): `554 5.4.0
//! Error: too many hops`.
//!
//! # Floods
//! At its master.cf `maxproc` sessions, smtpd stops accepting: new clients wait in the listen
//! backlog (as with Postfix's busy processes) instead of getting a 421, and the warning
//! `service "NAME" has reached its process limit "N": new clients may experience noticeable
//! delays` is logged at most once per 1000 s. While clients wait the service is under stress:
//! `smtpd_timeout`, `smtpd_hard_error_limit` and `smtpd_junk_command_limit` take their
//! `${stress?...}` values (10 s, 1, 1 by default), also for sessions already waiting for a
//! command, so idle sessions give up their slots. Beyond Postfix (a session costs kilobytes
//! here, not a process): under stress, for each client waiting in the backlog, the session
//! that has waited longest for a command, at least `smtpd_idle_eviction_time` (1 s), gives up
//! its slot with `421 4.4.2 <myhostname> Error: timeout exceeded` (logged `timeout after ...`).
//! Measured: one client with mail behind 1,000 silent connections and 100 slots had its mail
//! queued about 10 s after connecting (tests/smtpd_floods.rs); Postfix's 10 s stress timeout
//! alone would take 90. The master listens with the longest backlog the kernel allows
//! (`net.core.somaxconn`). A reload keeps the session count (and the
//! per-client counts): old and new sessions together never exceed the limit. Per client
//! (`smtpd_client_event_limit_exceptions`, `$mynetworks`, are exempt):
//! `smtpd_client_connection_count_limit` and `smtpd_client_connection_rate_limit` answer
//! `421 4.7.0 <myhostname> Error: too many connections from <addr>` instead of the greeting,
//! `smtpd_client_message_rate_limit` answers MAIL with `450 4.7.1 Error: too much mail from
//! <addr>`, each with Postfix's warning; rates count per `anvil_rate_time_unit`.
//!
//! # Memory
//! A session holds at most one command line (`line_length_limit`), the socket buffers (8 KiB
//! each way) and two pieces of message of 64 KiB (one being read, one being written to the
//! queue file): about 160 KiB, whatever the message or line size. Measured: 52 concurrent
//! sessions sending 20 MB messages and 10 MB lines kept smtpd under 16 MB resident
//! (`tests/smtpd_input.rs` asserts under 32 MB + 256 KiB per session).
//!
//! ETRN: `ETRN site` and `ETRN @domain` (domain and subdomains) ask the fast flush service; the
//! replies are RFC 1985's (`250`/`251`/`253`) or, with `etrn_reply_style = postfix`, Postfix's
//! `250 Queuing started`. A site without fast flush service gets the `etrn_fallback`: `slow`
//! (whole-queue run, at most one per `queue_run_delay`) or `reject` (459).
//! `smtpd_etrn_restrictions` may use `permit`, `reject`, `defer`, `permit_mynetworks`,
//! `check_client_access type:table`, `check_etrn_access type:table`.
//!
//! # Diagnostics
//! `connect from name[addr]`, `<id>: client=name[addr]`, `<id>: message-id=<...>`,
//! `disconnect from name[addr] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5`,
//! `NOQUEUE: reject: ETRN from ...`, `NOQUEUE: reject: DATA from name[addr]: bare <LF> received;
//! from=<...> to=<...> proto=ESMTP helo=<...>`, `... 554 5.4.0 Error: too many hops; ...`,
//! `warning: NOQUEUE: queue file size limit exceeded`, `warning: not enough free space in mail
//! queue: ...`, `warning: queue file write error: ...`, `timeout after CMD from ...` (a read or
//! a write), `lost connection after ...`.
//!
//! # Configuration parameters
//! `smtpd_banner`, `myhostname`, `mynetworks`, `relay_domains`, `smtpd_relay_restrictions`,
//! `smtpd_etrn_restrictions`, `smtpd_helo_required`, `message_size_limit`, `line_length_limit`,
//! `queue_minfree`, `hopcount_limit`, `smtpd_forbid_bare_newline`,
//! `smtpd_client_connection_count_limit`, `smtpd_client_connection_rate_limit`,
//! `smtpd_client_message_rate_limit`, `smtpd_client_event_limit_exceptions`,
//! `anvil_rate_time_unit`, `smtpd_idle_eviction_time`,
//! `smtpd_forbid_bare_newline_exclusions`, `smtpd_forbid_bare_newline_reject_code`,
//! `smtpd_timeout`, `smtpd_soft_error_limit`, `smtpd_hard_error_limit`,
//! `smtpd_junk_command_limit`, `smtpd_error_sleep_time`, `fast_flush_domains`, `etrn_fallback`,
//! `etrn_reply_style`, `queue_run_delay`, `parent_domain_matches_subdomains`.
//!
//! # Bugs
//! Client host names are not looked up: `localhost` for loopback clients, `unknown` otherwise.
//! No STARTTLS, AUTH, BDAT or SMTPUTF8. `mydestination` is not delivered locally.

pub mod access;
pub mod address;
pub mod anvil;
pub mod config;
pub mod conn;
pub mod data;
pub mod etrn;
pub mod reply;
mod service;
pub mod session;

pub use service::run;
