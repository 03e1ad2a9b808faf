//! smtp - Postern SMTP delivery agent
//!
//! # Synopsis
//! `smtp unix - - n - - smtp` in master.cf.
//!
//! # Description
//! Answers the queue manager's delivery requests (`private/smtp`, typed frames): reads the
//! message from its queue file, connects to the next hop (`[host]:port` literally, otherwise the
//! domain's MX hosts by preference with an A/AAAA fallback, via hickory-resolver; the servers
//! asked are `smtp_dns_nameservers` or /etc/resolv.conf), and runs one SMTP transaction (EHLO, falling back to HELO; MAIL; one RCPT
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
//! `smtp_connect_timeout`, `smtp_helo_timeout`, `smtp_data_done_timeout`, `myhostname`,
//! `smtp_connection_cache_time_limit`, `smtp_dns_nameservers`.
//!
//! # Bugs
//! No STARTTLS, no DANE/MTA-STS. Equal-preference MX hosts are tried in the resolver's order,
//! not shuffled.

pub mod client;
pub mod deliver;
pub mod resolve;
