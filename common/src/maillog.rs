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
    tag: String,
    hostname: String,
    maillog_file: String,
    also_stderr: bool,
    sink: Mutex<Sink>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

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
        tag,
        hostname: crate::config::params::system_hostname(),
        maillog_file: maillog_file.to_string(),
        also_stderr,
        sink: Mutex::new(sink),
    });
}

/// [`init`] from a configuration (`syslog_name`, `maillog_file`).
pub fn init_from_params(p: &Params, service: &str, also_stderr: bool) {
    let name = p.get("syslog_name").unwrap_or_else(|_| "postern".into());
    // Relative to the configuration directory, like queue_directory (the embedded default).
    let file = match p.get("maillog_file") {
        Ok(f) if !f.is_empty() => p.dir("maillog_file").map(|d| d.display().to_string()).unwrap_or(f),
        _ => String::new(),
    };
    init(&name, service, &file, also_stderr);
}

/// `Mmm dd hh:mm:ss` in local time, the syslog timestamp.
fn timestamp() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let t = now as libc::time_t;
    // SAFETY: localtime_r writes only into the provided struct.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::localtime_r(&t, &mut tm) };
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS.get(tm.tm_mon as usize).copied().unwrap_or("Jan");
    format!("{month} {:2} {:02}:{:02}:{:02}", tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec)
}

fn prefix(sev: Severity) -> &'static str {
    match sev {
        Severity::Info => "",
        Severity::Warning => "warning: ",
        Severity::Fatal => "fatal: ",
    }
}

/// Log one line.
pub fn log(sev: Severity, text: &str) {
    let pid = std::process::id();
    let Some(logger) = LOGGER.get() else {
        eprintln!("{}[{pid}]: {}{text}", program_name(), prefix(sev));
        return;
    };
    let body = format!("{}{text}", prefix(sev));
    if logger.also_stderr {
        eprintln!("{}: {body}", logger.tag.rsplit('/').next().unwrap_or(&logger.tag));
    }
    let mut sink = match logger.sink.lock() {
        Ok(s) => s,
        Err(poisoned) => poisoned.into_inner(),
    };
    let line = format!("{} {} {}[{pid}]: {body}\n", timestamp(), logger.hostname, logger.tag);
    let written = match &mut *sink {
        Sink::File(f) => f.write_all(line.as_bytes()).is_ok(),
        Sink::Syslog(s) => write_syslog(s, sev, &body),
        Sink::Stderr => false,
    };
    if written {
        return;
    }
    // Reconnect once (the syslog daemon may have restarted, the file may have been rotated away).
    if !matches!(*sink, Sink::Stderr) {
        *sink = open_sink(&logger.tag, &logger.maillog_file);
        let again = match &mut *sink {
            Sink::File(f) => f.write_all(line.as_bytes()).is_ok(),
            Sink::Syslog(s) => write_syslog(s, sev, &body),
            Sink::Stderr => false,
        };
        if again {
            return;
        }
    }
    let _ = std::io::stderr().write_all(line.as_bytes());
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
