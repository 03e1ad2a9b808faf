//! Local-time formats used in mail: the syslog stamp (`Nov 29 20:25:30`), RFC 5322 dates for
//! headers (`Sun, 29 Nov 2026 20:25:30 +0000`) and mailq's arrival time (`Sun Nov 29 20:25:30`).

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

/// `Www, dd Mmm yyyy hh:mm:ss +zzzz`, for Date: and Received: headers.
pub fn rfc5322(t: SystemTime) -> String {
    let tm = local(t);
    let off = tm.tm_gmtoff / 60;
    let sign = if off < 0 { '-' } else { '+' };
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} {sign}{:02}{:02}",
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
        assert_eq!(mailq_stamp(t).len(), 19);
    }
}
