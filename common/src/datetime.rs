//! Local-time formats used in mail: the syslog stamp (`Nov 29 20:25:30`), RFC 5322 dates for
//! headers (`Sun, 29 Nov 2026 20:25:30 +0000 (UTC)`) and mailq's arrival time (`Sun Nov 29 20:25:30`).

use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

fn local(t: SystemTime) -> libc::tm {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as libc::time_t;
    // SAFETY: localtime_r writes only into the provided struct.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::localtime_r(&secs, &mut tm) };
    tm
}

fn month(tm: &libc::tm) -> &'static str {
    MONTHS.get(tm.tm_mon as usize).copied().unwrap_or("Jan")
}

fn day(tm: &libc::tm) -> &'static str {
    DAYS.get(tm.tm_wday as usize).copied().unwrap_or("Sun")
}

/// `Mmm dd hh:mm:ss`, the syslog timestamp.
pub fn syslog_stamp(t: SystemTime) -> String {
    let tm = local(t);
    format!("{} {:2} {:02}:{:02}:{:02}", month(&tm), tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec)
}

/// `Www, _d Mmm yyyy hh:mm:ss +zzzz (ZONE)`, for Date: and Received: headers: Postfix's
/// `mail_date`, the day padded with a space (`%e`) and the zone's name as a comment.
pub fn rfc5322(t: SystemTime) -> String {
    let tm = local(t);
    let off = tm.tm_gmtoff / 60;
    let sign = if off < 0 { '-' } else { '+' };
    // SAFETY: localtime_r points tm_zone at a NUL-terminated name that lives as long as the
    // process's time zone data (or leaves it null).
    let zone =
        if tm.tm_zone.is_null() { String::new() } else { unsafe { std::ffi::CStr::from_ptr(tm.tm_zone) }.to_string_lossy().into_owned() };
    format!(
        "{}, {:2} {} {} {:02}:{:02}:{:02} {sign}{:02}{:02} ({zone})",
        day(&tm),
        tm.tm_mday,
        month(&tm),
        tm.tm_year + 1900,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        off.abs() / 60,
        off.abs() % 60
    )
}

/// `YYYYMMDDhhmmss` in UTC, the time in a Message-ID that cleanup adds.
pub fn utc_stamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as libc::time_t;
    // SAFETY: gmtime_r writes only into the provided struct.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::gmtime_r(&secs, &mut tm) };
    format!("{}{:02}{:02}{:02}{:02}{:02}", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec)
}

/// `Www Mmm dd hh:mm:ss`, the arrival time column of mailq.
pub fn mailq_stamp(t: SystemTime) -> String {
    let tm = local(t);
    format!("{} {} {:2} {:02}:{:02}:{:02}", day(&tm), month(&tm), tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec)
}

/// `Www Mmm dd hh:mm:ss yyyy`, C's `asctime` without its newline (postcat's times).
pub fn asctime(t: SystemTime) -> String {
    let tm = local(t);
    format!("{} {}", mailq_stamp(t), tm.tm_year + 1900)
}

/// Microseconds since the epoch as a `SystemTime`.
pub fn from_us(us: u64) -> SystemTime {
    UNIX_EPOCH + std::time::Duration::from_micros(us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        assert_eq!(syslog_stamp(t).len(), 15);
        let d = rfc5322(t);
        assert!(d.contains(" 2027 ") && (d.contains(" +") || d.contains(" -")), "{d}");
        assert!(d.ends_with(')') && d.contains(" ("), "the zone's name, as Postfix's mail_date: {d}");
        // The day of the month is padded with a space (%e), as in Postfix.
        assert_eq!(rfc5322(UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000 - 10 * 86400)).as_bytes()[5], b' ');
        assert_eq!(mailq_stamp(t).len(), 19);
        assert_eq!(utc_stamp(t), "20270115080000");
    }
}
