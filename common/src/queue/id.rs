//! Queue IDs: `[0-9A-Z]` names, unique across restarts, valid as file names and safe in logs.
//!
//! A new ID is the creation time (seconds and microseconds, base 36) followed by the queue
//! file's inode number (base 36): while the file exists no other file has its inode, and an
//! inode reused later comes with a later time. Parsing accepts Postfix's wider rule
//! (`mail_queue_id_ok`: `[A-Za-z0-9_]`, 1 to 255 characters) so that names from flush logfiles
//! and command lines are checked the same way before they become paths.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest queue ID (and flush logfile name) Postfix accepts.
pub const MAX_ID_LEN: usize = 255;

const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// A validated queue ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct QueueId(String);

/// Why a text is not a queue ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueIdError {
    #[error("invalid name: \"{0}\"")]
    Invalid(String),
}

/// Postfix `mail_queue_id_ok`.
pub fn queue_id_ok(text: &str) -> bool {
    !text.is_empty() && text.len() <= MAX_ID_LEN && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn base36(mut n: u64, min_width: usize) -> String {
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    while out.len() < min_width {
        out.push(b'0');
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

impl QueueId {
    pub fn parse(text: &str) -> Result<QueueId, QueueIdError> {
        if queue_id_ok(text) { Ok(QueueId(text.to_string())) } else { Err(QueueIdError::Invalid(text.chars().take(100).collect())) }
    }

    /// A new ID for the file with inode `inode`, created at `when`.
    pub fn generate(when: SystemTime, inode: u64) -> QueueId {
        let since = when.duration_since(UNIX_EPOCH).unwrap_or_default();
        QueueId(format!("{}{}{}", base36(since.as_secs(), 6), base36(u64::from(since.subsec_micros()), 4), base36(inode, 1)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for QueueId {
    type Error = QueueIdError;
    fn try_from(s: String) -> Result<QueueId, QueueIdError> {
        QueueId::parse(&s)
    }
}

impl From<QueueId> for String {
    fn from(q: QueueId) -> String {
        q.0
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn validation() {
        for ok in ["ABC123", "a_b", "38D65B4952", &"A".repeat(255)] {
            assert!(QueueId::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "bad/id", "../x", ".tmp", "a b", "A\0", &"A".repeat(256), "caf\u{e9}"] {
            assert!(QueueId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let t = UNIX_EPOCH + Duration::new(1_800_000_000, 123_456_000);
        let a = QueueId::generate(t, 42);
        let b = QueueId::generate(t, 43);
        let c = QueueId::generate(t + Duration::from_micros(1), 42);
        assert!(queue_id_ok(a.as_str()) && a.as_str().bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()));
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(base36(35, 2), "0Z");
    }
}
