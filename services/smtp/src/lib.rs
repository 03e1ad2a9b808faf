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
//! per recipient; DATA; with PIPELINING offered, MAIL, the RCPTs and DATA go in one write and
//! the replies are read in order, RFC 2920) with a result per recipient: 2xx sent, 4xx deferred, 5xx bounced, with
//! the remote reply in the text. A handshake that fails softly moves on to the next address. An idle connection is kept for `smtp_connection_cache_time_limit`
//! and reused (RSET, then MAIL) for the next request to the same next hop. The kept
//! connections belong to one actor ([`cache`]): a delivery checks one out and back in by a
//! message each; the actor closes those past the limit on its own one-second timer, with a
//! QUIT that may take 2 s, without holding up anything else; a reload's limit applies to the
//! connections already kept. The agent runs on one thread (an actix `System`), shared by the
//! actor and the delivery tasks. Connection and greeting failures are reported as site
//! failures, so the queue manager stops trying that next hop for a while.
//!
//! DSN (RFC 3461): to a server whose EHLO offers DSN, MAIL carries the message's `ENVID=` and
//! `RET=`, and each RCPT an `ORCPT=` (the recipient's own, else `rfc822;` and its address
//! before rewriting, as Postfix adds one, `utf-8;` for one that is not ASCII; a `utf-8`
//! address always in RFC 6533's 7-bit `\x{HEX}` form, which suits a next hop with or without
//! SMTPUTF8) and its `NOTIFY=`; such a server then reports success
//! itself, so a recipient it accepts gets no success notice here. A server that does not offer
//! DSN gets none of them.
//!
//! STARTTLS (`common::smtp_client::{starttls, tls, tls_policy}`) follows the destination's policy: the
//! level of `smtp_tls_security_level` or of its entry in `smtp_tls_policy_maps` (next hop,
//! then `.parent` domains; attributes `match=`, `protocols=`, `servername=`). `may` uses
//! STARTTLS when offered and retries a failed handshake once on a new plaintext connection;
//! `encrypt`, `verify` and `secure` never send mail in plaintext. The certificate check records
//! whether the chain leads to a CA of `smtp_tls_CAfile`/`smtp_tls_CApath` (the system's CAs when
//! both are empty) and whether a name of `smtp_tls_verify_cert_match` /
//! `smtp_tls_secure_cert_match` (`hostname`, `nexthop`, `dot-nexthop`, literal names) matched;
//! the handshake completes either way and the policy is enforced after it, with a QUIT. EHLO is
//! sent again under TLS. A kept TLS connection is reused as TLS; a kept plaintext one is
//! closed rather than given to a destination whose policy requires TLS.
//!
//! SASL AUTH (`common::smtp_client::{sasl, sasl_mech}`): with `smtp_sasl_auth_enable`, a server that offers
//! AUTH and has an entry in `smtp_sasl_password_maps` (its host name, then the next hop) gets
//! a login before MAIL, after TLS, with CRAM-MD5, PLAIN or LOGIN (strongest first) among the
//! mechanisms it offers, `smtp_sasl_mechanism_filter` allows and the connection's options
//! allow (`smtp_sasl_security_options` in plaintext, `smtp_sasl_tls_security_options` under
//! TLS; the default `noplaintext` rules PLAIN and LOGIN out on both).
//!
//! SMTPUTF8 (RFC 6531): a message whose sender asked for it (the queue file says so) goes
//! with `MAIL FROM:<...> SMTPUTF8` to a server that offers it. A server that does not offer it
//! still gets the deliveries that need nothing of it; one that needs it (the sender, a
//! recipient of the delivery or a header is not ASCII: Postfix's `DELIVERY_REQUIRES_SMTPUTF8`)
//! goes on to the next MX host or address, as in Postfix: the skipped server gets QUIT (its
//! connection is not kept), the log says `ID: message requires SMTPUTF8, but no server was
//! found that supports SMTPUTF8. The last attempted server was host[addr]`, and it does not
//! count towards `smtp_mx_session_limit`. When the last address lacks SMTPUTF8 too, the
//! delivery bounces with that text (5.6.7); a kept connection without SMTPUTF8 is left for
//! other mail. Unlike Postfix, which looks at the first EHLO reply, the check is on the reply
//! after STARTTLS and AUTH, the one of the session that would carry the mail.
//! Address verification probes (see verify(8)) get MAIL and RCPT only, never DATA (Postfix's
//! `smtp_address_verify_target = rcpt`); the connection is kept for the next transaction's RSET
//! or closed with QUIT. Each result goes to the verify service (`address_verify_service_name`)
//! before it is logged with Postfix's probe words: `status=deliverable (250 2.1.5 Ok)`,
//! `status=undeliverable (host ... said: 550 ...)`, or `undeliverable-but-not-cached` with
//! `address_verify_negative_cache = no`.
//!
//! The conversation itself (the connection, the DATA encoder, the handshake and one mail
//! transaction) is `common::smtp_client`, which smtpd's ODMR provider also runs on the
//! connection a customer opened (see smtpd(8)), with the same `smtp_*` limits; opening a
//! connection (connect, greeting, EHLO, STARTTLS with the plaintext retry, AUTH) is there too
//! (`common::smtp_client::open`), shared with the ODMR customer, odmr(8), which reads the same
//! settings from `odmr_*` parameters. This agent adds next hops, DNS and the connection cache.
//!
//! # Security
//! Queue files and the next hop's replies and DNS data are outside input.
//! - The message text goes through one encoder (`common::smtp_client::data`) on every path, a reused connection
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
//! - TLS: bytes the server sends after its `220` to STARTTLS fail the handshake (never read as
//!   if they came under TLS); a certificate the policy refuses gets no mail, only QUIT; no
//!   session resumption, so every connection's certificate is checked.
//! - SASL: no password is sent by a mechanism the connection's security options rule out, and
//!   none reaches a log line or a reason; challenges are bounded (100 rounds, Postfix's limit)
//!   and a malformed one cancels the exchange with `*`.
//!
//! # Diagnostics
//! One Postfix delivery line per recipient: `<id>: to=<rcpt>, relay=host[addr]:port,
//! delay=..., delays=a/b/c/d, dsn=x.y.z, status=sent|deferred|bounced (text)`.
//! `<id>: breaking line > N bytes with <CR><LF>SPACE` once per message with a long line;
//! `warning: host H[A]:P replied to HELO/EHLO with my own hostname N` (and `greeted me with`
//! for a greeting, which is only a warning, as in Postfix); `warning: <id>: sender|recipient
//! address with a control character: <...>`; `warning: malformed domain name in resource data of
//! MX record for D: N` (the delivery bounces, 5.4.4, as in Postfix).
//! TLS, with Postfix's texts: deferrals `TLS is required, but was not offered by host H[A]`
//! (4.7.4), `TLS is required, but host H[A] refused to start TLS: <reply>`, `Cannot start TLS:
//! handshake failure` (4.7.5), `Server certificate not verified` (4.7.5), `client TLS
//! configuration problem` (4.7.5, a policy entry that does not parse, or `dane-only`, after a
//! warning naming the table and key); `SSL_connect error to H[A]:P: <why>`; at
//! `smtp_tls_loglevel` 1 and up `Untrusted|Trusted|Verified TLS connection established to
//! H[A]:P: TLSv1.3 with cipher ... (256/256 bits) key-exchange X25519 server-signature ...`
//! and, for an untrusted chain (at every level) or a name mismatch (where names are checked),
//! `certificate verification failed for H[A]:P: untrusted issuer` or `server certificate verification failed for H[A]:P: num=62:hostname mismatch`.
//! SASL, deferring the session's mail (`smtp_sasl_auth_soft_bounce` makes a 5xx 4xx): `SASL
//! authentication failed; server H[A] said: <reply>`, `SASL authentication failed; cannot
//! authenticate to server H[A]: no mechanism available`, `SASL authentication failed: server
//! H[A] offered no compatible authentication mechanisms for this type of connection security`;
//! `warning: H[A]:P offered no supported AUTH mechanisms: '...'`.
//!
//! # Configuration parameters
//! `smtp_connect_timeout`, `smtp_helo_timeout`, `smtp_mail_timeout`, `smtp_rcpt_timeout`,
//! `smtp_data_init_timeout`, `smtp_data_xfer_timeout`, `smtp_data_done_timeout`,
//! `smtp_rset_timeout` (a cached connection's RSET), `smtp_quit_timeout` (also for QUIT on an
//! idle cached connection), `ipc_timeout` (how long a kept connection from the queue manager
//! may wait for its next request), `myhostname`,
//! `smtp_connection_cache_time_limit`, `smtp_dns_nameservers`, `smtp_line_length_limit`,
//! `smtp_mx_address_limit`, `smtp_mx_session_limit`, `inet_interfaces`, `proxy_interfaces`;
//! TLS: `smtp_tls_security_level`, `smtp_tls_policy_maps`, `smtp_tls_CAfile`,
//! `smtp_tls_CApath`, `smtp_tls_protocols`, `smtp_tls_mandatory_protocols`,
//! `smtp_tls_verify_cert_match`, `smtp_tls_secure_cert_match`, `smtp_tls_servername`,
//! `smtp_tls_loglevel`, `smtp_starttls_timeout`; SASL: `smtp_sasl_auth_enable`,
//! `smtp_sasl_password_maps`, `smtp_sasl_security_options`, `smtp_sasl_tls_security_options`,
//! `smtp_sasl_mechanism_filter`, `smtp_sasl_auth_soft_bounce`.
//!
//! # Bugs
//! No DANE (the resolver does not validate DNSSEC: `dane` is `may` and `dane-only` defers,
//! as in Postfix without DNSSEC) and no MTA-STS; TLSv1.2 and TLSv1.3 only; no client
//! certificates, `fingerprint` level, cipher settings or TLS session cache; a 5xx reply to
//! STARTTLS under a required level defers where Postfix bounces at the last MX host; the
//! untrusted-issuer line does not name the issuer. SASL: PLAIN, LOGIN and CRAM-MD5 only (no
//! Cyrus library), no sender-dependent authentication, no AUTH failure cache. Equal-preference MX hosts are tried in the resolver's order,
//! not shuffled. The message is read from its queue file whole (it is sent in pieces), on the agent's one
//! thread: a large message holds up the other deliveries for the time of the read. The null
//! MX status is RFC 7505's 5.1.10, where Postfix's smtp client says 5.1.0 (its smtpd says
//! 5.1.10). As in Postfix, the stuffed dot does not count towards `smtp_line_length_limit`.
//! A delivery that needs SMTPUTF8 has no downgrade (nor does Postfix have one).

/// Owns the idle connections between deliveries and their expiry (an actix actor).
pub mod cache;
/// The agent's settings from the parameters.
pub mod config;
/// One delivery request from start to per-recipient results and delivery lines.
pub mod deliver;
/// From a next hop to the addresses to try (MX, A/AAAA, null MX, this system).
pub mod resolve;
/// The daemon: the skeleton's service and `run`.
mod service;

pub use service::run;
