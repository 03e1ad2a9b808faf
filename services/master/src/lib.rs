//! master - Postern process manager
//!
//! # Synopsis
//! `master [-c config_dir] [-t]`
//!
//! # Description
//! The master reads `main.cf` and `master.cf`, creates every listening socket (TCP for `inet`
//! services, Unix sockets under `$queue_directory/public` and `private` for `unix` services)
//! and starts one process per service, handing it the sockets as inherited descriptors in the
//! systemd `LISTEN_FDS` convention plus a control channel. It restarts a process that exits,
//! throttles a service whose process dies before it is ready or restarts too often (for
//! `service_throttle_time`), and sends `Wakeup` on each service's wakeup timer (`?`: only
//! after first use).
//!
//! `-t` exits 0 when no master is running (the pid file is not locked), 1 otherwise.
//!
//! # Signals
//! SIGHUP re-reads both files: new services start, removed ones stop, changed ones are
//! replaced with their sockets kept, unchanged ones re-read main.cf (`Reload`). A removed or
//! replaced service's process is told to drain: it stops accepting at once (new clients reach
//! the new process through the sockets the master keeps) and finishes its open sessions; after
//! `drain_timeout` (300 s) it gets SIGTERM. SIGTERM, SIGINT and SIGQUIT stop every child,
//! draining ones included (SIGKILL after 5 seconds), and end the master.
//!
//! # Security
//! Running as root, services marked unprivileged run as `mail_owner` (when that is another
//! user). Running as an ordinary user, everything runs as that user.
//!
//! # Diagnostics
//! `daemon started -- version V, configuration DIR`, `reload -- ...`, `terminating on signal N`,
//! `warning: process PATH pid N exit status S`, `warning: PATH: bad command startup -- throttling`.
//! At a reload, parameters Postern does not use are logged as `postfix check` says them
//! (`warning: /etc/postern/main.cf: unused parameter: foo=bar`).
//! What a child writes to standard error (a fatal error before its mail log is open, a panic
//! report, marked `panic:`) is copied into the mail log under the child's own name and pid,
//! so a daemon that cannot start says why there. The master refuses to start with a
//! `myhostname` or `mydomain` that is not a valid host name (`parameter myhostname: bad
//! parameter value`), as every daemon does at start and reload.
//!
//! # Files
//! `$queue_directory/pid/master.pid`, locked while the master runs.
//!
//! # Configuration parameters
//! `queue_directory`, `daemon_directory`, `default_process_limit`, `service_throttle_time`,
//! `inet_interfaces`, `master_service_disable`, `mail_owner`, `drain_timeout`.
//!
//! # Bugs
//! One process per service: `maxproc` is passed to the daemon as its client limit instead of
//! limiting processes. `unix-dgram`, `fifo` and `pass` services are not supported.

pub mod error;
pub mod listen;
pub mod notify;
pub mod program;
pub mod spawn;
pub mod supervisor;
