//! mailq - Postern mail queue listing
//!
//! # Synopsis
//! `mailq`
//!
//! # Description
//! Lists the mail queue in Postfix's layout: queue ID (with `*` for a message in the active
//! queue, `!` on hold), size, arrival time and sender, then each recipient with the reason
//! of its last deferral. The same as `postqueue -p` and `sendmail -bp`. `MAIL_CONFIG`
//! selects the configuration directory.
//!
//! # Security
//! Who may list the queue (`authorized_mailq_users`) is checked by the showq service.
//!
//! # Diagnostics
//! As with `sendmail`, a fatal error exits with status 75 (EX_TEMPFAIL).
//!
//! # Configuration parameters
//! `queue_directory`, `authorized_mailq_users`.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    cli::report("mailq", cli::sendmail::run("mailq", &args, &mut std::io::empty()))
}
