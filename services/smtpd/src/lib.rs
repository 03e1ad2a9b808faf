//! smtpd - Postern SMTP server
//!
//! # Synopsis
//! `127.0.0.1:2525 inet n - n - - smtpd` in master.cf (maxproc = concurrent sessions);
//! `smtps inet n - n - - smtpd -o smtpd_tls_wrappermode=yes` for TLS from the first byte.
//!
//! # Description
//! An RFC 5321 server: EHLO (PIPELINING, SIZE, VRFY, ETRN, STARTTLS, ENHANCEDSTATUSCODES,
//! 8BITMIME), HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT, VRFY (252), HELP, ETRN (RFC 1985) and
//! STARTTLS (RFC 3207). A message is written
//! to `incoming` and fsynced before `250 2.0.0 Ok: queued as <id>`; then the queue manager is
//! triggered. Recipients are accepted by `smtpd_relay_restrictions` (`permit_mynetworks`,
//! `reject_unauth_destination` against `relay_domains`, `permit`, `reject`, `defer`); routing
//! characters in the local part (`user%host@`, `host!user@`, `"user@host"@`) are never relayed.
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
//! # TLS
//! `smtpd_tls_security_level = may` announces STARTTLS (until TLS is active); `encrypt` also
//! refuses every command but EHLO, HELO, STARTTLS, NOOP, QUIT and HELP before it with `530 5.7.0
//! Must issue a STARTTLS command first`; empty (the default) or `none`: `502 5.5.1 Error: command
//! not implemented`. STARTTLS answers `220 2.0.0 Ready to start TLS`, `501 5.5.4 Syntax:
//! STARTTLS` with an argument, `554 5.5.1 Error: TLS already active` under TLS. The bytes a
//! client pipelined after STARTTLS are thrown away unread, so no plaintext becomes a command under
//! TLS (CVE-2011-0411); the handshake has `smtpd_starttls_timeout`; after it the session starts
//! over (no HELO name, no transaction), as RFC 3207 wants. `smtpd_tls_wrappermode = yes` does the
//! handshake before the greeting and implies `encrypt`. The certificate is
//! `smtpd_tls_chain_files` (key, then chain, in one PEM file) or `smtpd_tls_cert_file` with
//! `smtpd_tls_key_file`, read again on every reload (open sessions keep theirs). Protocols follow
//! `smtpd_tls_protocols` (`smtpd_tls_mandatory_protocols` at `encrypt`) in Postfix's syntax,
//! narrowed to TLSv1.2 and TLSv1.3, the only ones rustls speaks. `smtpd_tls_received_header`
//! puts Postfix's `(using TLSv1.3 with cipher ... (256/256 bits) key-exchange X25519)` clause into
//! `Received:`, which says `with ESMTPS` for TLS sessions in any case.
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
//! (`tests/smtpd_input.rs` asserts under 32 MB + 256 KiB per session). A TLS session adds
//! rustls's buffers, room for at least one TLS record (16 KiB) each way.
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
//! a write), `lost connection after ...`. TLS: `Anonymous TLS connection established from
//! name[addr]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519
//! server-signature ECDSA (prime256v1) server-digest SHA256` (`smtpd_tls_loglevel` >= 1), `SSL_accept error from name[addr]: REASON` (`Connection timed
//! out`, `lost connection`, the TLS error) then `lost connection after STARTTLS from ...`;
//! `warning: cannot get RSA certificate from file "F": disabling TLS support`, `warning: cannot
//! get RSA private key from file "F": ...`, `warning: RSA private key in K does not match public
//! key in C: ...`, `warning: No server certs available. TLS won't be enabled` (then STARTTLS gets
//! `454 4.7.0 TLS not available due to local problem`), `warning: Wrapper-mode request dropped
//! from name[addr] for service S. TLS context initialization failed. ...`, `warning: Invalid TLS
//! protocol list "L": disabling TLS support`; a bad `smtpd_tls_security_level` is fatal.
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
//! `etrn_reply_style`, `queue_run_delay`, `smtpd_tls_security_level`, `smtpd_tls_cert_file`,
//! `smtpd_tls_key_file`, `smtpd_tls_chain_files`, `smtpd_tls_loglevel`,
//! `smtpd_tls_received_header`, `smtpd_tls_protocols`, `smtpd_tls_mandatory_protocols`,
//! `smtpd_tls_wrappermode`, `smtpd_starttls_timeout`.
//!
//! # Bugs
//! Client host names are not looked up: `localhost` for loopback clients, `unknown` otherwise.
//! No AUTH, BDAT or SMTPUTF8. `mydestination` is not delivered locally. TLS: TLSv1.2 and
//! TLSv1.3 only; one key and chain (no RSA plus ECDSA pair); no client certificates, cipher
//! grades, session cache database or new-TLS-session rate limit; with an RSA key the
//! `server-digest` is the strongest the client offers (rustls's choice, not the client's
//! order as with OpenSSL); loglevels above 1 log nothing more.

pub mod address;
pub mod anvil;
pub mod config;
pub mod conn;
pub mod data;
pub mod etrn;
pub mod reply;
mod service;
pub mod session;
pub mod tls;

pub use service::run;
