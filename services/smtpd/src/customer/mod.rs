//! odmr - Postern On-Demand Mail Relay customer
//!
//! # Synopsis
//! `atrn unix n - n - 1 odmr` in master.cf (the service name is `odmr_service_name`), with `odmr_provider`, `odmr_domains` and
//! `odmr_sasl_password_maps` in main.cf; `postfix odmr` asks for a poll now.
//!
//! # Description
//! The customer side of RFC 2645, for a site without a fixed address (dynamic address, NAT, no
//! inbound port 25) whose mail waits at a provider: every `odmr_poll_interval` (first at
//! start), on the master's wakeup timer (master.cf column 6) when one is set, and whenever a
//! client of its public socket `public/$odmr_service_name` asks (`postfix odmr`), it connects
//! to `odmr_provider` (`host`, `host:port`, `[host]:port`; an address lookup, never MX; port
//! 366 by default), reads the greeting, says EHLO, STARTTLS as `odmr_tls_security_level`
//! says (`none`, `may`, `encrypt`, `verify`, `secure`, with the smtp client's certificate
//! checks), logs in with SASL (CRAM-MD5, PLAIN or LOGIN, strongest first, as
//! `odmr_sasl_security_options` or, under TLS, `odmr_sasl_tls_security_options` allow) with
//! the `username:password` that `odmr_sasl_password_maps` gives for the provider's host name
//! or `[host]:port`, and sends `ATRN domain,domain` (`odmr_domains`; `ATRN` alone when empty,
//! meaning every domain the provider gives the login). The connection is opened with the
//! smtp agent's code (`common::smtp_client::open`), which also retries a failed handshake in
//! plaintext once under `may`.
//!
//! On `250` the roles swap on the same connection (and inside the same TLS session): this
//! process sends `220`, then serves the provider as smtpd serves any client, with smtpd's
//! session, restrictions (`smtpd_*_restrictions`; the provider is a client like any other, so
//! the customer's domains must be among `relay_domains` or another authorized destination)
//! and queue writer: each message is in `incoming` and fsynced before its `250`, the queue
//! manager is triggered, and the mail goes on by the normal path (qmgr, then smtp or another
//! transport). A provider that disconnects mid-message leaves no file (it still has the message;
//! nothing acknowledged is lost). `453` (no mail), `450`, `451`, `530`, `502` and every failure
//! before the reply are logged; the next poll tries again. Polls never overlap; requests that
//! arrive during a poll make one more poll after it.
//!
//! Why inside the smtpd crate: after the swap this program *is* smtpd (its session, its
//! checks, its queue writer), and service crates do not import each other. The part before the
//! swap is the smtp agent's client side, which lives in `common::smtp_client` for both.
//!
//! # Diagnostics
//! `ATRN to host[addr]:port: domains=D: reversing the connection`, then smtpd's lines for the
//! session (`connect from host[addr]`, `<id>: client=...`, `disconnect from ... ehlo=1 mail=1
//! rcpt=1 data=1 quit=1 commands=5`); `ATRN to ...: domains=D: no mail (host H[A] said: 453
//! 4.2.0 You have no mail)`; `ATRN to ...: domains=D: refused (host H[A] said: 450 4.7.1 ATRN
//! request refused); trying again at the next poll`; `ATRN to ...: domains=D: poll failed
//! (SASL authentication failed; server H[A] said: 535 ...)` (also TLS failures, `lost
//! connection with H[A] while ...`, an unknown host); `connect to host[addr]:port: Connection
//! refused`; `warning: ATRN to [host]:port: client TLS configuration problem`. A bad
//! `odmr_provider`, `odmr_domains` or TLS level, no `odmr_sasl_password_maps`, or
//! `smtpd_odmr_enable` or `smtpd_tls_wrappermode` set for this program is fatal at start
//! (and refused at reload).
//!
//! # Configuration parameters
//! `odmr_provider`, `odmr_domains`, `odmr_poll_interval` (300s; 0 polls only when asked),
//! `odmr_service_name`, `odmr_connect_timeout`, `odmr_helo_timeout` (each reply up to the
//! swap), `odmr_sasl_password_maps`, `odmr_sasl_security_options`,
//! `odmr_sasl_tls_security_options`, `odmr_sasl_mechanism_filter`, `odmr_tls_security_level`
//! (`may`), `odmr_tls_policy_maps`, `odmr_tls_CAfile`, `odmr_tls_CApath`, `odmr_tls_loglevel`,
//! `odmr_starttls_timeout`, `odmr_tls_protocols`, `odmr_tls_mandatory_protocols`,
//! `odmr_tls_verify_cert_match`, `odmr_tls_secure_cert_match`, `odmr_tls_servername` (each
//! `odmr_*` but the first five defaults to its `smtp_*` namesake); `myhostname` (the EHLO
//! name); for the session smtpd's parameters (see smtpd(8)); `local_client_connection_limit`
//! and `local_client_timeout` for the public socket.
//!
//! # Bugs
//! One provider per service (run a second service with `-o odmr_provider=...` for another).
//! The provider's host name is not looked up again: the session's client name is `localhost`
//! for a loopback provider and `unknown` otherwise, as in smtpd. The `Received:` header's TLS
//! clause names no server signature. A password table entry is required even when the
//! provider needs none (ATRN needs a login by RFC 2645).

mod config;
mod poll;
mod service;

pub use config::{CustomerConfig, ODMR_PORT};
pub use poll::poll;
pub use service::run;
