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
//! `reject_unauth_destination` against `relay_domains`, `permit`, `reject`, `defer`); routing
//! characters in the local part (`user%host@`, `host!user@`, `"user@host"@`) are never relayed.
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
//! `NOQUEUE: reject: ETRN from ...`, `timeout after CMD from ...`, `lost connection after ...`.
//!
//! # Configuration parameters
//! `smtpd_banner`, `myhostname`, `mynetworks`, `relay_domains`, `smtpd_relay_restrictions`,
//! `smtpd_etrn_restrictions`, `smtpd_helo_required`, `message_size_limit`, `line_length_limit`,
//! `smtpd_timeout`, `smtpd_soft_error_limit`, `smtpd_hard_error_limit`,
//! `smtpd_junk_command_limit`, `smtpd_error_sleep_time`, `fast_flush_domains`, `etrn_fallback`,
//! `etrn_reply_style`, `queue_run_delay`.
//!
//! # Bugs
//! Client host names are not looked up: `localhost` for loopback clients, `unknown` otherwise.
//! No STARTTLS, AUTH, BDAT or SMTPUTF8. `mydestination` is not delivered locally.

pub mod address;
pub mod config;
pub mod conn;
pub mod data;
pub mod etrn;
pub mod session;
