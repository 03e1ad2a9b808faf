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
//! the remote reply in the text. A handshake that fails softly moves on to the next address. An idle connection is kept for `smtp_connection_cache_time_limit`
//! and reused (RSET, then MAIL) for the next request to the same next hop. The kept
//! connections belong to one actor ([`cache`]): a delivery checks one out and back in by a
//! message each; the actor closes those past the limit on its own one-second timer, with a
//! QUIT that may take 2 s, without holding up anything else; a reload's limit applies to the
//! connections already kept. The agent runs on one thread (an actix `System`), shared by the
//! actor and the delivery tasks. Connection and greeting failures are reported as site
//! failures, so the queue manager stops trying that next hop for a while.
//!
//! The conversation ([`transaction`], [`client`]) runs over any stream and reads its limits
//! from the same `smtp_*` parameters wherever it runs: smtpd's ODMR provider uses it on the
//! connection a customer opened (see smtpd(8)).
//!
//! # Security
//! Queue files and the next hop's replies and DNS data are outside input.
//! - The message text goes through one encoder ([`data`]) on every path, a reused connection
//!   included: only `<CR><LF>` line ends (a bare LF is a line end, a stray CR becomes a space, as
//!   Postfix's `cleanup_replace_stray_cr_lf`), every line starting with `.` gets another `.`,
//!   and lines longer than `smtp_line_length_limit` are broken with `<CR><LF><SPACE>`. So no
//!   smuggling sequence (`<LF>.<LF>`, `<CR>.<CR>`, ...) ever reaches the next hop.
//! - A sender or recipient with a control character is never written: the recipients of such
//!   a sender bounce (5.1.7), such a recipient bounces (5.1.3), each with a warning; and the
//!   connection refuses any command line with CR, LF or NUL before writing a byte.
//! - On port 25 only (another port may be a content filter that hands mail back on purpose),
//!   a next hop that is this system is a loop, `mail for <nexthop> loops back to myself`: an
//!   address in `inet_interfaces`/`proxy_interfaces` (MX hosts from this system's preference
//!   on are dropped; 5.4.6 if it is the best MX, else `unable to find primary relay` 4.4.4),
//!   or an EHLO reply naming `myhostname` (5.4.6 at a best MX host, 4.4.6 elsewhere).
//! - A null MX (RFC 7505) bounces at once, without a connection: `Domain <d> does not accept
//!   mail (nullMX)`, 5.1.10. One delivery tries at most `smtp_mx_address_limit` addresses and
//!   `smtp_mx_session_limit` sessions; recipients a server deferred go on to the next address.
//! - Reply text from the peer has its control characters made printable before it reaches a
//!   log line or a bounce.
//!
//! # Diagnostics
//! One Postfix delivery line per recipient: `<id>: to=<rcpt>, relay=host[addr]:port,
//! delay=..., delays=a/b/c/d, dsn=x.y.z, status=sent|deferred|bounced (text)`.
//! `<id>: breaking line > N bytes with <CR><LF>SPACE` once per message with a long line;
//! `warning: host H[A]:P replied to HELO/EHLO with my own hostname N` (and `greeted me with`
//! for a greeting, which is only a warning, as in Postfix); `warning: <id>: sender|recipient
//! address with a control character: <...>`; `warning: malformed domain name in resource data of
//! MX record for D: N` (the delivery bounces, 5.4.4, as in Postfix).
//!
//! # Configuration parameters
//! `smtp_connect_timeout`, `smtp_helo_timeout`, `smtp_data_done_timeout`, `myhostname`,
//! `smtp_connection_cache_time_limit`, `smtp_dns_nameservers`, `smtp_line_length_limit`,
//! `smtp_mx_address_limit`, `smtp_mx_session_limit`, `inet_interfaces`, `proxy_interfaces`.
//!
//! # Bugs
//! No STARTTLS, no DANE/MTA-STS. Equal-preference MX hosts are tried in the resolver's order,
//! not shuffled. The message is read from its queue file whole (it is sent in pieces), on the agent's one
//! thread: a large message holds up the other deliveries for the time of the read. The null
//! MX status is RFC 7505's 5.1.10, where Postfix's smtp client says 5.1.0 (its smtpd says
//! 5.1.10). As in Postfix, the stuffed dot does not count towards `smtp_line_length_limit`.

/// Owns the idle connections between deliveries and their expiry (an actix actor).
pub mod cache;
/// The SMTP client connection: command lines out, replies in, message text through [`data`].
pub mod client;
/// The agent's settings from the parameters.
pub mod config;
/// The message encoder for DATA.
pub mod data;
/// One delivery request from start to per-recipient results and delivery lines.
pub mod deliver;
/// This system's own addresses, for loop detection.
pub mod myself;
/// Next-hop syntax: `[host]:port` or `domain[:port]`.
pub mod nexthop;
/// From a next hop to the addresses to try (MX, A/AAAA, null MX, this system).
pub mod resolve;
/// The daemon: the skeleton's service and `run`.
mod service;
/// The conversation on one connection: handshake and one mail transaction.
pub mod transaction;

pub use service::run;
