//! smtpd - Postern SMTP server
//!
//! # Synopsis
//! `127.0.0.1:2525 inet n - n - - smtpd` in master.cf (maxproc = concurrent sessions);
//! `smtps inet n - n - - smtpd -o smtpd_tls_wrappermode=yes` for TLS from the first byte.
//!
//! # Description
//! An RFC 5321 server: EHLO (PIPELINING, SIZE, VRFY, ETRN, STARTTLS, AUTH, ENHANCEDSTATUSCODES,
//! 8BITMIME, DSN, SMTPUTF8), HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT, VRFY (252), HELP, ETRN (RFC 1985),
//! STARTTLS (RFC 3207) and AUTH (RFC 4954, below). A message is written
//! to `incoming` and fsynced before `250 2.0.0 Ok: queued as <id>`; then the queue manager is
//! triggered (a message that a `HOLD` action marked goes to `hold` instead, one that a `DISCARD`
//! action marked is accepted and removed). Routing characters in the local part (`user%host@`,
//! `host!user@`, `"user@host"@`) are never relayed.
//!
//! # Restrictions
//! As Postfix's smtpd_check: `smtpd_client_restrictions`, `smtpd_helo_restrictions`,
//! `smtpd_sender_restrictions`, `smtpd_relay_restrictions` (default `permit_mynetworks,
//! permit_sasl_authenticated, defer_unauth_destination`), `smtpd_recipient_restrictions` (run
//! after the relay list), `smtpd_data_restrictions` and `smtpd_etrn_restrictions`. Each list runs
//! until a word permits (that list only) or refuses. With `smtpd_delay_reject = yes` (the
//! default) the client, HELO and sender lists run at each RCPT (client and HELO also at ETRN);
//! with `no` the client list runs after the greeting (a refusal is sent, and every later command
//! but QUIT gets `503 5.7.0 Error: access denied for name[addr]`), the HELO list at HELO/EHLO and
//! the sender list at MAIL. The words: `permit`, `reject` (`reject_code`, `554 5.7.1 <name>:
//! CLASS rejected: Access denied`), `defer` (`defer_code`, `450 4.3.2 ... Try again later`),
//! `warn_if_reject` (the next word only logs `reject_warning`), `permit_mynetworks`,
//! `permit_sasl_authenticated`, `reject_unauth_destination` (`relay_domains_reject_code`, `554
//! 5.7.1 <rcpt>: Relay access denied`), `defer_unauth_destination` (454 4.7.1),
//! `check_client_access`, `check_helo_access`, `check_sender_access`, `check_recipient_access`,
//! `check_etrn_access` (a bare `type:table` means the list's own check),
//! `reject_invalid_helo_hostname` (`invalid_hostname_reject_code`, 501 5.5.2 ... Invalid name),
//! `reject_non_fqdn_helo_hostname`, `reject_non_fqdn_sender`, `reject_non_fqdn_recipient`
//! (`non_fqdn_reject_code`, 504 5.5.2 ... need fully-qualified hostname/address),
//! `reject_unlisted_recipient`, `reject_unlisted_sender`, `reject_unauth_pipelining` (`503 5.5.0
//! <CMD>: CLASS rejected: Improper use of SMTP command pipelining`, after Postfix's `improper
//! command pipelining after CMD from name[addr]: ...` when a client sent ahead of HELO, EHLO,
//! DATA, NOOP or VRFY, or ahead of any command without EHLO), `reject_etrn_login_mismatch`,
//! `reject_rbl_client list[=d.d.d.d]` and `reject_rhsbl_sender list[=d.d.d.d]` (the client's
//! IPv4 address reversed, or the sender's domain, under the list's domain: an A record, matching
//! the filter if given, lists it; `maps_rbl_reject_code`, `554 5.7.1 Service unavailable;
//! Client host [addr] blocked using list; TXT`; asked through `smtpd_dns_nameservers` or
//! `/etc/resolv.conf` before the command that may need it, answers kept for the session; a
//! list that does not answer within 10 s counts as not listed, with a warning),
//! `reject_unknown_sender_domain` and `reject_unknown_recipient_domain` (a domain with neither
//! MX nor address records: `unknown_address_reject_code`, `450 4.1.8 <addr>: Sender address
//! rejected: Domain not found`, 4.1.2 for a recipient; a null MX: `550 5.7.27`/`556 5.1.10 ...
//! Domain D does not accept mail (nullMX)`; a DNS failure: 450 at once, where Postfix defers
//! only a request that would otherwise be permitted) and `sleep N` (the reply waits N seconds).
//! A word Postern does not have is a configuration error at start and reload.
//!
//! Access tables: the client's name, its parent domains, its address and its networks; the HELO
//! name or ETRN site and its parents; an address as `user+ext@domain`, `user@domain`, the domain
//! and its parents, `user+ext@`, `user@` (`recipient_delimiter`; the null sender as
//! `smtpd_null_access_lookup_key`); parent domains as `parent` while `smtpd_access_maps` is in
//! `parent_domain_matches_subdomains`, else `.parent`. The first entry found decides: `OK`,
//! `PERMIT`, `REJECT [text]` (`access_map_reject_code`, `554 5.7.1 <name>: CLASS rejected: text`),
//! `DEFER [text]` (`access_map_defer_code`, 450 4.7.1), `4NN/5NN [D.D.D] text`, `DUNNO`, `HOLD
//! [text]` and `DISCARD [text]` (logged `NOQUEUE: hold:`/`discard: RCPT from ...: <rcpt>:
//! Recipient address triggers HOLD action; from=<...> ...`; DISCARD also skips the rest of the
//! transaction's restrictions). An action Postern does not have (`FILTER`, `REDIRECT`,
//! `PREPEND`, ...) answers `451 4.3.5 Server configuration error` and logs a warning. A table
//! that cannot be read answers `451 4.3.0 <name>: Temporary lookup failure`. Tables rebuilt with
//! `postmap` are used from the next lookup on.
//!
//! `reject_unverified_recipient` asks the verify service (`private/$address_verify_service_name`,
//! see verify(8)) about the recipient, which starts a probe when it knows nothing yet; while the
//! probe is in progress smtpd asks again up to `address_verify_poll_count` times,
//! `address_verify_poll_delay` apart, then answers: a deliverable address passes; one in
//! progress or failing temporarily gets `450 4.1.1 <rcpt>: Recipient address rejected:
//! unverified address: Address verification in progress` (or the failure's text;
//! `unverified_recipient_defer_code`), one the next hop refused `unverified_recipient_reject_code`
//! (450; a 5XX code gives `5.1.1 ... undeliverable address: <the next hop's reply>`);
//! `unverified_recipient_reject_reason` replaces the text. The temporary answers follow
//! `unverified_recipient_tempfail_action` (`$reject_tempfail_action`, `defer_if_permit`: only
//! when the rest of the lists would accept; `defer`: at once). A verify service that cannot be
//! asked gives `450 4.1.1 <rcpt>: Recipient address rejected: address verification problem`
//! and `warning: verify service failure`.
//!
//! Backup MX: `relay_recipient_maps` lists the valid recipients of `relay_domains`
//! (`user@domain` or `@domain`; the value is not used). With `smtpd_reject_unlisted_recipient
//! = yes` (the default) an address of a relay domain that is not listed gets `550 5.1.1 <rcpt>:
//! Recipient address rejected: User unknown in relay recipient table`
//! (`unknown_relay_recipient_reject_code`; `show_user_unknown_table_name = no` drops `in relay
//! recipient table`) after the RCPT lists, as `reject_unlisted_recipient` does within them;
//! `smtpd_reject_unlisted_sender = yes` does the same for senders (`5.1.0 ... Sender address
//! rejected`). A bare `postmaster` recipient is always accepted. More than
//! `smtpd_recipient_limit` (1000) recipients get `452 4.5.3 Error: too many recipients`; beyond
//! `smtpd_recipient_overshoot_limit` more each counts as an error. RCPT and DATA without an
//! accepted recipient get `554 5.5.1 Error: no valid recipients`. Every refusal is logged as
//! `NOQUEUE: reject: RCPT from name[addr]: 550 5.1.1 <...>: ...; from=<...> to=<...>
//! proto=ESMTP helo=<...>` (` sasl_method=M sasl_username=U` after a login), the shape fail2ban
//! and pflogsumm parse. `mynetworks`, `smtpd_forbid_bare_newline_exclusions`
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
//! MAIL takes `SIZE`, `BODY=7BIT|8BITMIME`, `SMTPUTF8` and the DSN requests of RFC 3461 `RET=FULL|HDRS`
//! and `ENVID=xtext`; RCPT takes `NOTIFY=NEVER` or `NOTIFY=` a list of `SUCCESS`, `FAILURE` and
//! `DELAY`, and `ORCPT=addr-type;xtext` (for the `utf-8` type of RFC 6533 the address is
//! `\x{HEX}`-escaped, or UTF-8 as it is, as Postfix takes it); each at most once, with
//! Postfix's replies for bad ones (`501 5.5.4 Bad RET parameter syntax`, `501 5.5.4 Bad ENVID
//! parameter syntax`, `501 5.5.4 Error: Bad NOTIFY parameter syntax`, `501 5.5.4 Error: Bad
//! ORCPT parameter syntax`; an ENVID must decode to printable ASCII, an ORCPT to printable
//! text, ASCII but for the `utf-8` type). They are kept in the queue file, a recipient without
//! ORCPT getting `rfc822;` and its address as received, as in Postfix. Any other option gets
//! `555 5.5.4 Unsupported option: ...`. Addresses with control characters are refused (501); HELO
//! names are made printable before they reach a `Received:` header, and every log line is.
//! MAIL is refused with `452 4.3.1 Insufficient system storage` when the queue file system
//! has less than `queue_minfree` or 1.5 × `message_size_limit` free, or less than a declared
//! `SIZE`; a disk that fills mid-message gives 452 and leaves no file. `message_size_limit =
//! 0` is no limit. More `Received:` headers than `hopcount_limit` (ours included): `554 5.4.0
//! Error: too many hops`.
//!
//! # SMTPUTF8
//! With `smtputf8_enable` (Postfix's default from compatibility level 1) EHLO offers SMTPUTF8
//! (RFC 6531) and `MAIL FROM:<...> SMTPUTF8` lets the transaction carry UTF-8 addresses; the
//! request is kept in the queue file for the next hop, and `Received:` says `with UTF8SMTP`
//! (`UTF8SMTPS`, `UTF8SMTPA`, ...). Without it, a UTF-8 domain is `501 5.1.7 Bad sender address
//! syntax` or `501 5.1.3 Bad recipient address syntax` (logged `warning: Illegal address syntax
//! from name[addr] in MAIL command: <addr>`), while a UTF-8 local part is let through as Postfix
//! lets it, unless `strict_smtputf8` (`553 5.6.7 Must declare SMTPUTF8 to send unicode
//! address`). With `smtpd` in `smtputf8_autodetect_classes` mail with a UTF-8 envelope address
//! or header asks for SMTPUTF8 by itself (the queue file's envelope, written before the
//! headers arrive, has room for the request). A UTF-8 domain meets `relay_domains` and the access tables in
//! A-label form (`xn--bcher-kva.example`).
//!
//! # Headers
//! Each message starts with Postfix's `Received: from HELO (NAME [ADDR])`, `by $myhostname
//! ($mail_name) with PROTOCOL id QUEUEID`, `for <RCPT>` when the transaction has one recipient,
//! and the arrival date (`mail_date`'s format, `Thu,  3 Dec 2026 07:01:02 +0000 (UTC)`); the
//! queue file exists from the start of DATA, so the ID is the one in `queued as`. A local
//! submission (the client matches `local_header_rewrite_clients`, decided at MAIL: by default
//! `permit_inet_interfaces`, a client on one of this host's `inet_interfaces`) or any client
//! with `always_add_missing_headers = yes` gets what cleanup adds at the end of the header
//! section when it is missing: `Message-Id: <YYYYMMDDhhmmss.QUEUEID@$myhostname>`, `Date:`,
//! `From:` (the envelope sender, `MAILER-DAEMON` for `<>`) and `undisclosed_recipients_header`
//! without a `To:` or `Cc:`; once the message has a `Resent-` header, the `Resent-` forms. A
//! table in `local_header_rewrite_clients` that cannot be read refuses MAIL with `451 4.3.0
//! Temporary lookup error`. The body is never changed.
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
//! `smtpd_etrn_restrictions` takes the words above, `check_etrn_access type:table` and
//! `reject_etrn_login_mismatch` (below); `HOLD` and `DISCARD` are unavailable there (a warning,
//! then DUNNO).
//!
//! # SASL AUTH
//! With `smtpd_sasl_auth_enable = yes`, EHLO announces `AUTH PLAIN LOGIN CRAM-MD5` (and
//! `AUTH=...` with `broken_sasl_auth_clients`): the backend's mechanisms that
//! `smtpd_sasl_security_options` (`noanonymous`, `noplaintext`, `noactive`, `nodictionary`,
//! `forward_secrecy`, `mutual_auth`; `smtpd_sasl_tls_security_options` under TLS) allow.
//! `smtpd_tls_auth_only` hides AUTH outside TLS. Backends (`smtpd_sasl_type`):
//! - `dovecot`: Dovecot's auth protocol over the socket `smtpd_sasl_path` (`private/auth`,
//!   relative to the queue directory), one connection per smtpd process shared by all sessions
//!   (request ids), made again after a loss; `service=` is `smtpd_sasl_service`. The
//!   mechanisms are Dovecot's `MECH` lines. Until Dovecot answers, AUTH is not announced.
//! - `passwd-file` (built in, for installs without Dovecot): a Dovecot-format passwd-file at
//!   `smtpd_sasl_path` (relative to the configuration directory; `user:{SCHEME}secret[:...]`),
//!   read at start and on every reload.
//!   Schemes `{PLAIN}` (`{CLEAR}`), `{SHA512-CRYPT}`, `{SHA256-CRYPT}` (also without prefix
//!   as `$6$`/`$5$`), `{ARGON2ID}`/`{ARGON2I}`. Bad lines are skipped with `warning:
//!   FILE:LINE: ...; line ignored`; cost parameters above 10,000,000 SHA rounds or Argon2
//!   m=256 MiB, t=64, p=16 are refused the same way. CRAM-MD5 needs a `{PLAIN}` secret: it is
//!   offered only when some user has one, and a hashed-only user fails it (with a warning
//!   naming the user). A name without `@` not in the file is tried as
//!   `name@$smtpd_sasl_local_domain`. Hash checks run off the session threads, two at a time.
//!
//! Replies are Postfix's: `235 2.7.0 Authentication successful`, `535 5.7.8 Error:
//! authentication failed: REASON` (a wrong password, `Invalid base64 data in initial
//! response`, `Invalid authentication mechanism: 'X'`, ...), `454 4.7.0 Temporary
//! authentication failure: REASON` (backend unreachable), `501 5.7.0 Authentication aborted`
//! (the client sent `*`), `503 5.5.1 Error: authentication not enabled` / `already
//! authenticated` / `MAIL transaction in progress`, `501 5.5.4 Syntax: AUTH mechanism`, `500
//! 5.5.6 SASL response limit exceeded` (`smtpd_sasl_response_limit`). Failed logins count as
//! errors (towards `smtpd_hard_error_limit`) and each waits `smtpd_error_sleep_time` before its
//! 535 (Postern: also below `smtpd_soft_error_limit`). A login makes `permit_sasl_authenticated`
//! true (default `smtpd_relay_restrictions`: `permit_mynetworks, permit_sasl_authenticated,
//! defer_unauth_destination`), adds `sasl_method=..., sasl_username=...` to the `client=` line,
//! `with ESMTPA` and, with `smtpd_sasl_authenticated_header`, `(Authenticated sender: USER)` to
//! `Received:`. `MAIL FROM:<...> AUTH=...` is accepted while AUTH is on.
//!
//! ETRN per customer: `smtpd_etrn_login_maps` (Postern) maps a domain to the logins that own it
//! (comma/space separated; the nearest entry of the site or a parent decides).
//! `reject_etrn_login_mismatch` refuses a logged-in client's ETRN for a site its login does not
//! own (`459 <site>: ETRN by user L not allowed`) and an owned site without a login (`459
//! <site>: ETRN without login not allowed`); an unowned site without a login goes on to the next
//! restriction, so end the list with `reject` (an `ETRN @domain` for an unowned domain would
//! also release owned subdomains of it). An owner's `ETRN @domain` releases every subdomain,
//! including one with an entry of its own.
//!
//! # ODMR provider (RFC 2645)
//! With `smtpd_odmr_enable = yes` (the shipped master.cf's commented-out `odmr` service, port
//! 366, which also sets `smtpd_sasl_auth_enable = yes`) smtpd speaks EHLO (listing STARTTLS,
//! AUTH, ATRN, ENHANCEDSTATUSCODES), STARTTLS, AUTH, ATRN and QUIT; anything else is `502
//! 5.5.1 Error: command not implemented`. `ATRN domain[,domain...]` asks for those domains'
//! mail, `ATRN` alone for every domain `smtpd_etrn_login_maps` gives the login (a table that
//! can list its entries: `inline:`, `texthash:`, `hash:`, `lmdb:`). Replies: `503 5.5.1 Error:
//! send EHLO first`, `530 5.7.0 Authentication required` (no login; `Must issue a STARTTLS
//! command first` at `encrypt`), `501 5.5.4 Syntax: ATRN [domain[,domain]...]` (at most 100),
//! `450 4.7.1 ATRN request refused` (a domain the login does not own), `451 4.3.0 Unable to
//! process ATRN request now` (a table or the flush service failed), `453 4.2.0 You have no
//! mail`, then `250 2.0.0 OK now reversing the connection`. A plain smtpd answers ATRN with
//! 502.
//!
//! After 250 this process is the SMTP client on the same connection (TLS or not): it waits for the
//! customer's 220 greeting, says EHLO, and sends each message with the SMTP client conversation the
//! smtp agent uses too (`common::smtp_client`) and `smtp_*` time limits (`smtp_helo_timeout` for
//! the greeting and EHLO), RSET between messages, then QUIT (none after a broken conversation: a
//! customer that stops reading is given up after `smtp_data_xfer_timeout`). The messages are found
//! through the flush service's index (`List`: nothing is moved), so the work grows with that
//! customer's mail only. Each one is *claimed* while it is delivered: an exclusive lock on its file
//! in `deferred`, which every move out of `deferred` respects (the queue manager, the flush
//! service, postsuper and another ATRN session leave it alone). Its recipients in the asked domains
//! get one transaction; the results are appended to the queue file before the claim ends;
//! recipients refused with 5xx are returned to the sender with the queue manager's notification
//! (`common::bounce`, queued in `incoming`, bounce(8)-style, `notify_classes`,
//! `bounce_size_limit`); as the queue manager does, a recipient with `NOTIFY=SUCCESS` delivered to
//! a customer whose server does not offer DSN gets a success notice (`Action: relayed`, `delivery
//! via odmr:name[addr]: ...`; with DSN the customer gets NOTIFY, ORCPT, ENVID and RET and
//! reports itself), and a message left deferred past `delay_warning_time` gets its one delay
//! notice (recorded in the queue file, so neither the queue manager nor another session sends
//! it again); a message with nothing pending is removed, one with recipients left stays
//! in `deferred` (results synced) and is listed with the flush service again; at the end the
//! delivered IDs are dropped from the index (`Forget`), so the next ATRN costs only what still
//! waits. A customer that goes away, a time-out, or a crash or `kill -9` of smtpd ends the session
//! and the claim: undelivered mail is still deferred and still indexed, and the next ATRN (or the
//! queue manager's retry) takes it. As with any SMTP client, a crash between the customer's 250 and
//! the record of it means the message is sent once more.
//!
//! With the fast flush cluster (`fast_flush_cluster_servers`, flush(8)) the customer's mail
//! may wait at every node of the fleet. After its own `List` the session asks the flush
//! service to hand each domain over (`HandOver`): every other node relays its mail for the
//! domain to this node (through its queue manager and smtp agent, to the next hop its
//! `fast_flush_cluster_relay_maps` names for this node), and the answer, within
//! `fast_flush_cluster_timeout`, says how many messages they relay. ATRN is `453` only when
//! this node has nothing and nobody relays anything. The relayed mail arrives here as ordinary
//! mail, is deferred for the customer's usual route and listed with the flush service; once
//! the session has delivered this node's messages it lists the domains again every 150 ms
//! and delivers the new ones on the same connection, until as many have come as were announced
//! or `smtpd_odmr_cluster_wait` passes without a new one (what comes later stays deferred
//! here for the next ATRN or the queue manager's retry). A handover that fails costs only the
//! other nodes' mail: this node's is delivered all the same.
//!
//! The customer side is this crate's second program, odmr(8): after its ATRN it runs this
//! session, restrictions and queue writer on the connection it opened to the provider.
//!
//! # Diagnostics
//! ODMR: `ATRN from name[addr]: domains=D1,D2, sasl_username=U: reversing the connection`
//! (or `: no mail`), `NOQUEUE: reject: ATRN from name[addr]: 450 4.7.1 <D>: ATRN by user U
//! not allowed`, `<id>: from=<...>, size=N, nrcpt=N (queue odmr)`, one delivery line per
//! recipient with `relay=odmr:name[addr]` (`status=sent|deferred`), `<id>: removed`,
//! `ATRN from name[addr]: reversed session failed: TEXT` (greeting or EHLO refused),
//! `<id>: sender non-delivery notification: <id>` (also `delivery status`, `delay`),
//! `ATRN from name[addr]: N messages from other nodes: mx2=3, mx3=4` (the cluster's
//! handover), `ATRN from name[addr]: M of N messages from other nodes delivered
//! (smtpd_odmr_cluster_wait Ts); the rest waits for the next ATRN`,
//! `ATRN from name[addr]: reversed session done: messages=N sent=N bounced=N deferred=N` (every
//! message of the session, relayed ones included), and the usual
//! `disconnect from ... ehlo=1 auth=1 atrn=1 commands=3`.
//! `connect from name[addr]`, `<id>: client=name[addr]` (`, sasl_method=M, sasl_username=U`
//! after a login), `<id>: message-id=<...>` (every message: `<>` when it has none; cleanup's
//! ID when it was added), `warning: name[addr]: SASL M authentication
//! failed: REASON, sasl_username=U`, `warning: name[addr]: SASL M authentication aborted`,
//! `warning: SASL: Connect to Dovecot auth socket 'PATH' failed: ...`,
//! `disconnect from name[addr] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5` (the commands in
//! the order of Postfix's command table, then `unknown`), `NOQUEUE: reject: RCPT from name[addr]:
//! 554 5.7.1 <rcpt>: Relay access denied; from=<...> to=<rcpt> proto=ESMTP helo=<...>` (every
//! refused RCPT), `NOQUEUE: reject: ETRN from ...`, `NOQUEUE: reject: DATA from name[addr]: bare <LF> received;
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
//! `smtpd_banner`, `myhostname`, `mynetworks`, `relay_domains`, `smtpd_client_restrictions`,
//! `smtpd_helo_restrictions`, `smtpd_sender_restrictions`, `smtpd_relay_restrictions`,
//! `smtpd_recipient_restrictions`, `smtpd_data_restrictions`, `smtpd_etrn_restrictions`,
//! `smtpd_delay_reject`, `relay_recipient_maps`, `smtpd_reject_unlisted_recipient`,
//! `smtpd_reject_unlisted_sender`, `unknown_relay_recipient_reject_code`,
//! `address_verify_service_name`, `address_verify_poll_count`, `address_verify_poll_delay`,
//! `unverified_recipient_defer_code`, `unverified_recipient_reject_code`,
//! `unverified_recipient_tempfail_action`, `reject_tempfail_action`,
//! `unverified_recipient_reject_reason`, `show_user_unknown_table_name`, `smtpd_recipient_limit`, `smtpd_recipient_overshoot_limit`,
//! `reject_code`, `defer_code`, `relay_domains_reject_code`, `access_map_reject_code`,
//! `access_map_defer_code`, `invalid_hostname_reject_code`, `non_fqdn_reject_code`,
//! `smtpd_null_access_lookup_key`, `recipient_delimiter`, `maps_rbl_reject_code`,
//! `smtpd_dns_nameservers`, `unknown_address_reject_code`, `smtpd_helo_required`, `message_size_limit`, `line_length_limit`,
//! `queue_minfree`, `hopcount_limit`, `mail_name`, `local_header_rewrite_clients`,
//! `inet_interfaces`, `always_add_missing_headers`, `undisclosed_recipients_header`,
//! `smtputf8_enable`, `strict_smtputf8`, `smtputf8_autodetect_classes`,
//! `smtpd_forbid_bare_newline`,
//! `smtpd_client_connection_count_limit`, `smtpd_client_connection_rate_limit`,
//! `smtpd_client_message_rate_limit`, `smtpd_client_event_limit_exceptions`,
//! `anvil_rate_time_unit`, `smtpd_idle_eviction_time`, `ipc_timeout` (an ETRN's or ATRN's wait for
//! the fast flush service), `trigger_timeout` (queue manager triggers),
//! `smtpd_forbid_bare_newline_exclusions`, `smtpd_forbid_bare_newline_reject_code`,
//! `smtpd_timeout`, `smtpd_soft_error_limit`, `smtpd_hard_error_limit`,
//! `smtpd_junk_command_limit`, `smtpd_error_sleep_time`, `fast_flush_domains`, `etrn_fallback`,
//! `etrn_reply_style`, `queue_run_delay`, `smtpd_tls_security_level`, `smtpd_tls_cert_file`,
//! `smtpd_tls_key_file`, `smtpd_tls_chain_files`, `smtpd_tls_loglevel`,
//! `smtpd_tls_received_header`, `smtpd_tls_protocols`, `smtpd_tls_mandatory_protocols`,
//! `smtpd_tls_wrappermode`, `smtpd_starttls_timeout`, `smtpd_sasl_auth_enable`, `smtpd_sasl_type`,
//! `smtpd_sasl_path`, `smtpd_sasl_service`, `smtpd_sasl_security_options`,
//! `smtpd_sasl_tls_security_options`, `smtpd_sasl_authenticated_header`,
//! `smtpd_sasl_local_domain`, `smtpd_sasl_response_limit`, `smtpd_tls_auth_only`,
//! `broken_sasl_auth_clients`, `smtpd_etrn_login_maps`, `parent_domain_matches_subdomains`,
//! `smtpd_odmr_enable`, `smtpd_odmr_cluster_wait` (30s: another node's queue run, its
//! connection to this node and this node's deferral of the message fit easily; only with
//! `fast_flush_cluster_servers`); for the reversed session `smtp_helo_timeout`, `smtp_mail_timeout`,
//! `smtp_rcpt_timeout`, `smtp_data_init_timeout`, `smtp_data_xfer_timeout`,
//! `smtp_data_done_timeout`, `smtp_rset_timeout`, `smtp_quit_timeout`, `smtp_line_length_limit`;
//! for its notifications `notify_classes`, `bounce_size_limit`, `myorigin`,
//! `2bounce_notice_recipient`, `double_bounce_sender`, `delay_warning_time`,
//! `delay_notice_recipient`, `maximal_queue_lifetime`.
//!
//! # Bugs
//! Client host names are not looked up: `localhost` for loopback clients, `unknown` otherwise.
//! Not yet: `permit_dnswl_client`, `rbl_reply_maps`, `reject_unknown_client_hostname`,
//! `reject_unverified_sender`, `check_policy_service`, restriction classes, the
//! `defer_if_permit` word (its semantics serve `unverified_recipient_tempfail_action` only);
//! `reject_unverified_recipient` is taken in `smtpd_recipient_restrictions` and
//! `smtpd_relay_restrictions` only (Postfix takes it in any list); `reject_unlisted_recipient`
//! checks relay domains only (`local_recipient_maps`, `virtual_*_maps` are not Postern's).
//! `reject_unauth_pipelining` does not see a client that talks before the greeting, and
//! `smtpd_forbid_unauth_pipelining` is not implemented. In Postern's log lines the queue ID of
//! a transaction is `NOQUEUE` until the end of DATA (Postfix names it from the first accepted
//! RCPT).
//! No BDAT. SMTPUTF8 autodetection looks at the message's own header section, not at the
//! headers of its MIME parts (Postfix's cleanup looks at those too).
//! `mydestination` is not delivered locally. TLS: TLSv1.2 and
//! TLSv1.3 only; one key and chain (no RSA plus ECDSA pair); no client certificates, cipher
//! grades, session cache database or new-TLS-session rate limit; with an RSA key the
//! `server-digest` is the strongest the client offers (rustls's choice, not the client's
//! order as with OpenSSL); loglevels above 1 log nothing more. SASL: no `cyrus` type,
//! `smtpd_sasl_exceptions_networks`, `smtpd_sender_login_maps` or
//! `smtpd_sasl_mechanism_filter`; the dovecot type connects to a Unix socket only. With a
//! Dovecot that does not answer, each new session waits up to 10 s for its mechanism list.
//! ODMR: messages are read from their queue file whole; `ATRN domain` takes that domain's
//! mail, not its subdomains'.

pub mod access;
pub mod address;
pub mod anvil;
mod auth;
pub mod config;
pub mod conn;
pub mod customer;
pub mod data;
pub mod etrn;
pub mod etrn_login;
pub mod odmr;
pub mod reply;
pub mod restrict;
pub mod rewrite;
pub mod sasl;
mod service;
pub mod session;
pub mod smtputf8;
pub mod tls;

pub use service::run;
