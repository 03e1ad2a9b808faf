//! Postern's common library: everything that knows an on-disk layout, a wire format or a log
//! line shape lives here, so that the daemons and command-line programs never build a queue
//! path or a log line by hand.

/// Owns non-delivery notifications (RFC 3464) and where failed ones go.
pub mod bounce;
/// Owns what cleanup does with a new message's header section (missing headers, message-id=).
pub mod cleanup;
/// Owns main.cf / master.cf parsing, the parameter table, expansion and domain lists.
pub mod config;
/// Owns the daemon skeleton: inherited listeners, control channel, start-up.
pub mod daemon;
/// Owns date formats (syslog, RFC 5322, mailq).
pub mod datetime;
/// Owns host name and site syntax and the flush logfile naming rule.
pub mod dns;
pub mod domain;
/// Owns DSN request parameters (RFC 3461: RET, ENVID, NOTIFY, ORCPT) and xtext.
pub mod dsn;
/// Owns which addresses are this host's (inet_interfaces, proxy_interfaces).
pub mod interfaces;
/// Owns the frame codec and every service protocol.
pub mod ipc;
/// Owns the mail log line shape and its destinations.
pub mod maillog;
/// Owns network address lists (mynetworks).
pub mod net;
/// Owns the master's pid file and its lock.
pub mod pidfile;
/// Owns the queue directory layout, queue IDs and queue files.
pub mod queue;
/// Owns the SMTP client conversation (connection, DATA encoding, handshake and one mail
/// transaction), for the smtp agent and for smtpd's ODMR provider.
pub mod smtp_client;
/// Owns SMTPUTF8 decisions (autodetection, what a delivery needs) and A-label domains.
pub mod smtputf8;
/// Owns making outside text safe to show (printable, truncation).
pub mod text;
pub mod tls;
