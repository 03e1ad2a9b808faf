//! smtp - Postern SMTP delivery agent
//!
//! # Synopsis
//! `smtp unix - - n - - smtp` in master.cf.
//!
//! # Description
//! Answers the queue manager's delivery requests (`private/smtp`, typed frames): reads the
//! message from its queue file, connects to the next hop (`[host]:port` literally, otherwise the
//! host's addresses), and runs one SMTP transaction (EHLO, falling back to HELO; MAIL; one RCPT
//! per recipient; DATA) with a result per recipient: 2xx sent, 4xx deferred, 5xx bounced, with
//! the remote reply in the text. An idle connection is kept for `smtp_connection_cache_time_limit`
//! and reused (RSET, then MAIL) for the next request to the same next hop. Connection and greeting failures are reported as site
//! failures, so the queue manager stops trying that next hop for a while.
//!
//! # Diagnostics
//! One Postfix delivery line per recipient: `<id>: to=<rcpt>, relay=host[addr]:port,
//! delay=..., delays=a/b/c/d, dsn=x.y.z, status=sent|deferred|bounced (text)`.
//!
//! # Configuration parameters
//! `smtp_connect_timeout`, `smtp_helo_timeout`, `smtp_data_done_timeout`, `myhostname`.
//!
//! # Bugs
//! No MX lookup yet: a next hop without brackets is resolved by its A/AAAA records (the RFC 5321
//! fallback for domains without MX). No STARTTLS.

pub mod client;
pub mod deliver;
