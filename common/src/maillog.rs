//! The mail log: Postfix-shaped lines `<syslog_name>/<service>[pid]: text` to syslog (facility
//! mail), or to `maillog_file` (a file, or `/dev/stdout`) as `Mmm dd hh:mm:ss host tag[pid]: text`.
//!
//! The `syslog` crate fails where there is no `/dev/log` and never reconnects after the syslog
//! daemon restarts, so this module tries to reconnect once per failed line and falls back to
//! standard error rather than lose the line. Until `init` is called, lines go to standard error.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::{Mutex, OnceLock};

use crate::config::Params;

type Syslog = syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>;

enum Sink {
    Syslog(Syslog),
    File(File),
    Stderr,
}

struct Logger {
    hostname: String,
    maillog_file: String,
    also_stderr: bool,
    out: Mutex<Output>,
}

/// The tag and where lines go: together, since the syslog connection carries the tag and a
/// reload may change it (`syslog_name`).
struct Output {
    tag: String,
    sink: Sink,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// `delay_logging_resolution_limit`: digits after the point in `delay=` and `delays=`.
static DELAY_DIGITS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(2);

/// Take `delay_logging_resolution_limit` from a configuration (0 to 6, as in Postfix; a bad
/// value keeps the last good one, and `postfix check` reports it).
fn set_delay_digits(p: &Params) {
    if let Some(d) = p.int("delay_logging_resolution_limit").ok().and_then(|d| u32::try_from(d).ok()).filter(|d| *d <= 6) {
        DELAY_DIGITS.store(d, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How serious a line is: Postfix prefixes `warning: ` and `fatal: `.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warning,
    Fatal,
}

fn connect_syslog(tag: &str) -> Option<Syslog> {
    let formatter =
        syslog::Formatter3164 { facility: syslog::Facility::LOG_MAIL, hostname: None, process: tag.to_string(), pid: std::process::id() };
    syslog::unix(formatter).ok()
}

fn open_sink(tag: &str, maillog_file: &str) -> Sink {
    if !maillog_file.is_empty() {
        // A fresh checkout has no log directory yet; the embedded default logs below it.
        if let Some(parent) = std::path::Path::new(maillog_file).parent()
            && !parent.as_os_str().is_empty()
            && !parent.exists()
        {
            let _ = std::fs::create_dir_all(parent);
        }
        match OpenOptions::new().create(true).append(true).open(maillog_file) {
            Ok(f) => return Sink::File(f),
            Err(e) => eprintln!("{tag}[{}]: warning: open {maillog_file}: {e}; logging to standard error", std::process::id()),
        }
        return Sink::Stderr;
    }
    connect_syslog(tag).map_or(Sink::Stderr, Sink::Syslog)
}

/// Start logging as `<syslog_name>/<service>` to the destination chosen by `maillog_file`.
/// `also_stderr` copies every line to standard error (command-line programs do).
pub fn init(syslog_name: &str, service: &str, maillog_file: &str, also_stderr: bool) {
    let tag = if service.is_empty() { syslog_name.to_string() } else { format!("{syslog_name}/{service}") };
    let sink = open_sink(&tag, maillog_file);
    let _ = LOGGER.set(Logger {
        hostname: crate::config::params::system_hostname(),
        maillog_file: maillog_file.to_string(),
        also_stderr,
        out: Mutex::new(Output { tag, sink }),
    });
}

fn lock_output(logger: &Logger) -> std::sync::MutexGuard<'_, Output> {
    logger.out.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A reload's `syslog_name`: later lines carry `<syslog_name>/<service>` (the destination,
/// `maillog_file`, stays what it was at start, as in Postfix).
pub fn retag_from_params(p: &Params, service: &str) {
    set_delay_digits(p);
    let Some(logger) = LOGGER.get() else { return };
    let name = p.get("syslog_name").unwrap_or_else(|_| "postfix".into());
    let tag = format!("{name}/{service}");
    let mut out = lock_output(logger);
    if out.tag != tag {
        if matches!(out.sink, Sink::Syslog(_)) {
            out.sink = open_sink(&tag, &logger.maillog_file);
        }
        out.tag = tag;
    }
}

/// The `maillog_file` of a configuration, relative paths taken relative to the configuration
/// directory like `queue_directory` (the embedded default); `None` means syslog.
pub fn maillog_path(p: &Params) -> Option<std::path::PathBuf> {
    match p.get("maillog_file") {
        Ok(f) if !f.is_empty() => p.dir("maillog_file").ok(),
        _ => None,
    }
}

/// [`init`] from a configuration (`syslog_name`, `maillog_file`).
pub fn init_from_params(p: &Params, service: &str, also_stderr: bool) {
    set_delay_digits(p);
    let name = p.get("syslog_name").unwrap_or_else(|_| "postfix".into());
    let file = maillog_path(p).map(|f| f.display().to_string()).unwrap_or_default();
    init(&name, service, &file, also_stderr);
}

fn prefix(sev: Severity) -> &'static str {
    match sev {
        Severity::Info => "",
        Severity::Warning => "warning: ",
        Severity::Fatal => "fatal: ",
    }
}

/// The longest text one log line carries; the rest is cut (a client's 10 MB command must not
/// become a 10 MB log line).
pub const LOG_LINE_MAX: usize = 2048;

/// Log one line. Control characters become `?`, so that no text from a peer can forge a
/// second line.
pub fn log(sev: Severity, text: &str) {
    write_line(None, std::process::id(), sev, text);
}

/// Log a line on behalf of another program of this system (the master relays what its
/// children write to standard error): `<syslog_name>/<program>[pid]: text`.
pub fn log_for(program: &str, pid: u32, text: &str) {
    write_line(Some(program), pid, Severity::Info, text);
}

fn write_line(program: Option<&str>, pid: u32, sev: Severity, text: &str) {
    let text = crate::text::printable(crate::text::truncate(text, LOG_LINE_MAX), '?');
    let text = text.as_ref();
    let Some(logger) = LOGGER.get() else {
        eprintln!("{}[{pid}]: {}{text}", program.map_or_else(program_name, str::to_string), prefix(sev));
        return;
    };
    let mut out = lock_output(logger);
    let tag = match program {
        Some(p) => format!("{}/{p}", out.tag.split('/').next().unwrap_or(&out.tag)),
        None => out.tag.clone(),
    };
    let body = format!("{}{text}", prefix(sev));
    if logger.also_stderr {
        eprintln!("{}: {body}", tag.rsplit('/').next().unwrap_or(&tag));
    }
    let line = format!("{} {} {tag}[{pid}]: {body}\n", crate::datetime::syslog_stamp(std::time::SystemTime::now()), logger.hostname);
    // The syslog connection carries our own tag and pid: a relayed line names its program.
    let syslog_body = if program.is_some() { format!("{tag}[{pid}]: {body}") } else { body.clone() };
    if rotated_away(&out.sink, &logger.maillog_file) {
        out.sink = open_sink(&out.tag, &logger.maillog_file);
    }
    if write_sink(&mut out.sink, sev, &line, &syslog_body) {
        return;
    }
    // Reconnect once (the syslog daemon may have restarted, the file may have been rotated away).
    if !matches!(out.sink, Sink::Stderr) {
        out.sink = open_sink(&out.tag, &logger.maillog_file);
        if write_sink(&mut out.sink, sev, &line, &syslog_body) {
            return;
        }
    }
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// Whether the log file was renamed or removed since we opened it (`postfix logrotate`, or an
/// outside logrotate without copytruncate). Every process writes the file itself (there is no
/// postlogd to signal), so each one notices on its next line and reopens: one `stat` per line,
/// and no line lands in the rotated file after it was moved and is about to be compressed.
fn rotated_away(sink: &Sink, path: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Sink::File(f) = sink else { return false };
    if path.starts_with("/dev/") {
        return false;
    }
    match (f.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(named)) => (open.dev(), open.ino()) != (named.dev(), named.ino()),
        _ => true,
    }
}

/// Write one line to the sink; false when it failed (or the sink is standard error).
fn write_sink(sink: &mut Sink, sev: Severity, line: &str, body: &str) -> bool {
    match sink {
        Sink::File(f) => f.write_all(line.as_bytes()).is_ok(),
        Sink::Syslog(s) => write_syslog(s, sev, body),
        Sink::Stderr => false,
    }
}

fn write_syslog(s: &mut Syslog, sev: Severity, body: &str) -> bool {
    match sev {
        Severity::Info => s.info(body),
        Severity::Warning => s.warning(body),
        Severity::Fatal => s.crit(body),
    }
    .is_ok()
}

fn program_name() -> String {
    std::env::args().next().and_then(|a| a.rsplit('/').next().map(str::to_string)).unwrap_or_else(|| "postern".into())
}

/// `log_info!("text {}", x)`: an informational mail log line.
#[macro_export]
macro_rules! log_info {
    ($($arg:tt)*) => { $crate::maillog::log($crate::maillog::Severity::Info, &format!($($arg)*)) };
}

/// `log_warning!(...)`: a `warning: ` line.
#[macro_export]
macro_rules! log_warning {
    ($($arg:tt)*) => { $crate::maillog::log($crate::maillog::Severity::Warning, &format!($($arg)*)) };
}

/// `log_fatal!(...)`: a `fatal: ` line. The caller decides how to exit.
#[macro_export]
macro_rules! log_fatal {
    ($($arg:tt)*) => { $crate::maillog::log($crate::maillog::Severity::Fatal, &format!($($arg)*)) };
}

/// The fields of a Postfix per-recipient delivery line.
#[derive(Debug, Clone)]
pub struct DeliveryLine<'a> {
    pub queue_id: &'a str,
    pub recipient: &'a str,
    /// `host[addr]:port`, or `none`.
    pub relay: &'a str,
    /// How often the connection was used, shown when it was reused.
    pub conn_use: Option<u32>,
    /// Seconds: before the queue manager, in the queue manager, connection set-up, transmission.
    pub delays: [f64; 4],
    pub dsn: &'a str,
    /// `sent`, `deferred`, `bounced`, `expired`.
    pub status: &'a str,
    pub text: &'a str,
}

/// Postfix's delay figures (`format_tv` with two significant digits and at most
/// `delay_logging_resolution_limit` digits after the point, 2 by default): whole seconds from
/// 10 s up, one decimal from 1 s, two significant digits below, rounded, trailing zeros
/// dropped (`0.06`, `1.2`, `23`).
pub fn format_delay(secs: f64) -> String {
    format_delay_digits(secs, DELAY_DIGITS.load(std::sync::atomic::Ordering::Relaxed))
}

fn format_delay_digits(secs: f64, max_digits: u32) -> String {
    let us = if secs.is_finite() && secs > 0.0 { (secs * 1e6).round() as u64 } else { 0 };
    format_tv(us / 1_000_000, us % 1_000_000, 2, max_digits)
}

/// Postfix's `format_tv`: `sec.usec` with `sig_dig` significant digits and at most `max_dig`
/// digits after the point.
fn format_tv(mut sec: u64, mut usec: u64, sig_dig: u32, max_dig: u32) -> String {
    const MILLION: u64 = 1_000_000;
    let mut ures = MILLION / 10u64.pow(max_dig.min(6));
    let wid = 10u64.pow(sig_dig.clamp(1, 6));
    if ures < MILLION {
        if sec > 0 {
            let mut n = 1;
            while sec >= n && n <= wid / 10 {
                n *= 10;
            }
            ures = (MILLION / wid) * n;
        } else {
            while usec >= wid * ures {
                ures *= 10;
            }
        }
    }
    if ures > 1 {
        usec += ures / 2;
        if usec >= MILLION {
            sec += 1;
            usec -= MILLION;
        }
    }
    let mut out = sec.to_string();
    if usec >= ures {
        out.push('.');
        let (mut rem, mut n) = (usec, MILLION / 10);
        while rem >= ures && n > 0 {
            out.push(char::from(b'0' + (rem / n) as u8));
            rem %= n;
            n /= 10;
        }
    }
    out
}

/// `<id>: to=<rcpt>, relay=..., delay=..., delays=a/b/c/d, dsn=..., status=... (text)`.
pub fn delivery_line(d: &DeliveryLine<'_>) -> String {
    let total: f64 = d.delays.iter().sum();
    let delays: Vec<String> = d.delays.iter().map(|x| format_delay(*x)).collect();
    let conn_use = d.conn_use.map(|n| format!(", conn_use={n}")).unwrap_or_default();
    format!(
        "{}: to=<{}>, relay={}{conn_use}, delay={}, delays={}, dsn={}, status={} ({})",
        d.queue_id,
        d.recipient,
        d.relay,
        format_delay(total),
        delays.join("/"),
        d.dsn,
        d.status,
        d.text
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_line_shape() {
        let l = DeliveryLine {
            queue_id: "38D65B4952",
            recipient: "user1@example.net",
            relay: "none",
            conn_use: None,
            delays: [0.06, 0.064, 0.0, 0.0],
            dsn: "4.4.1",
            status: "deferred",
            text: "connect to 127.0.0.1[127.0.0.1]:2599: Connection refused",
        };
        assert_eq!(
            delivery_line(&l),
            "38D65B4952: to=<user1@example.net>, relay=none, delay=0.12, delays=0.06/0.06/0/0, dsn=4.4.1, status=deferred (connect to 127.0.0.1[127.0.0.1]:2599: Connection refused)"
        );
        assert_eq!(format_delay(23.4), "23");
        assert_eq!(format_delay(1.5), "1.5");
        // Postfix's figures (format_tv, two significant digits).
        for (secs, shown) in
            [(1.234, "1.2"), (9.96, "10"), (0.0012, "0"), (0.005, "0.01"), (0.1, "0.1"), (0.125, "0.13"), (123.6, "124"), (0.0, "0")]
        {
            assert_eq!(format_delay(secs), shown, "{secs}");
        }
        // delay_logging_resolution_limit: fewer or more digits after the point.
        assert_eq!(format_delay_digits(0.064, 0), "0");
        assert_eq!(format_delay_digits(0.064, 1), "0.1");
        assert_eq!(format_delay_digits(0.000_123, 6), "0.00012");
        assert_eq!(format_delay_digits(0.000_123, 2), "0");
    }
}
