//! qshape's age buckets: which bucket a message of a given age falls in, and the buckets'
//! headings. Shared by qshape, which shapes a queue directory, and the flush service, which
//! shapes one site's mail for `qshape -f` (on every node of the fast flush cluster: the
//! settings travel in requests, so they are checked when they are decoded).

use serde::{Deserialize, Serialize};

/// The most buckets a table has (qshape's `-b` is capped here; a request asking for more is
/// refused: each node's answer carries one count per bucket).
pub const MAX_BUCKETS: usize = 64;

/// `-b`, `-t` and `-l`: how many buckets, how many minutes the first one spans, and whether
/// the others double (Postfix's default) or grow by the same step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawAges")]
pub struct Ages {
    buckets: usize,
    tick_minutes: u64,
    linear: bool,
}

/// [`Ages`] as it arrives, before its bounds are checked.
#[derive(Deserialize)]
struct RawAges {
    buckets: usize,
    tick_minutes: u64,
    linear: bool,
}

/// Why bucket settings were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgesError {
    /// Not between 1 and [`MAX_BUCKETS`].
    #[error("bucket count {0} is not between 1 and {MAX_BUCKETS}")]
    Buckets(usize),
    /// A first bucket of no time.
    #[error("bucket time 0 minutes")]
    Tick,
}

impl TryFrom<RawAges> for Ages {
    type Error = AgesError;
    fn try_from(r: RawAges) -> Result<Ages, AgesError> {
        Ages::new(r.buckets, r.tick_minutes, r.linear)
    }
}

impl Default for Ages {
    /// Postfix's: 10 buckets, 5 minutes, doubling.
    fn default() -> Ages {
        Ages { buckets: 10, tick_minutes: 5, linear: false }
    }
}

impl Ages {
    pub fn new(buckets: usize, tick_minutes: u64, linear: bool) -> Result<Ages, AgesError> {
        if !(1..=MAX_BUCKETS).contains(&buckets) {
            return Err(AgesError::Buckets(buckets));
        }
        if tick_minutes == 0 {
            return Err(AgesError::Tick);
        }
        Ok(Ages { buckets, tick_minutes, linear })
    }

    pub fn buckets(&self) -> usize {
        self.buckets
    }

    /// The bucket (from 0) of a message `age_secs` old: `[0, t)`, `[t, 2t)`, `[2t, 4t)`, ...
    /// (`[t, 2t)`, `[2t, 3t)`, ... when linear), the last one open-ended. In floating point,
    /// as Postfix's Perl computes it, so that no tick overflows.
    pub fn bucket(&self, age_secs: u64) -> usize {
        let m = age_secs as f64 / (self.tick_minutes as f64 * 60.0);
        if m < 1.0 {
            return 0;
        }
        // Float to integer casts saturate: an absurd age lands in the last bucket.
        let b = if self.linear { m as usize } else { 1 + m.log2() as usize };
        b.min(self.buckets - 1)
    }

    /// The buckets' headings, Postfix's: each bucket's upper bound in minutes, the last one
    /// the lower bound of the open end (`5 10 20 ... 1280 1280+`).
    pub fn headings(&self) -> Vec<String> {
        let mut headings = Vec::with_capacity(self.buckets);
        let mut t: u64 = 0;
        for i in 0..=self.buckets {
            if i > 0 {
                headings.push(if i == self.buckets { format!("{t}+") } else { t.to_string() });
            }
            if i + 1 < self.buckets {
                t = t.saturating_add(if t > 0 && !self.linear { t } else { self.tick_minutes });
            }
        }
        headings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_headings() {
        let s = Ages::default();
        assert_eq!([s.bucket(0), s.bucket(299), s.bucket(300), s.bucket(600), s.bucket(1199), s.bucket(1200)], [0, 0, 1, 2, 2, 3]);
        assert_eq!(s.bucket(100 * 86400), 9);
        assert_eq!(s.bucket(u64::MAX), 9);
        assert_eq!(s.headings().join(" "), "5 10 20 40 80 160 320 640 1280 1280+");
        let linear = Ages::new(4, 10, true).unwrap();
        assert_eq!([linear.bucket(599), linear.bucket(600), linear.bucket(1800), linear.bucket(86400)], [0, 1, 3, 3]);
        assert_eq!(linear.headings().join(" "), "10 20 30 30+");
        assert_eq!(Ages::new(1, 5, false).unwrap().headings(), ["0+"]);
        // Huge ticks neither overflow nor panic.
        let huge = Ages::new(MAX_BUCKETS, u64::MAX, false).unwrap();
        assert_eq!(huge.bucket(u64::MAX), 0);
        assert_eq!(huge.headings().last().unwrap(), &format!("{}+", u64::MAX));
    }

    #[test]
    fn hostile_settings_are_refused_when_decoded() {
        struct Case {
            input: &'static str,
            ok: bool,
        }
        let cases = [
            Case { input: r#"{"buckets":10,"tick_minutes":5,"linear":false}"#, ok: true },
            Case { input: r#"{"buckets":64,"tick_minutes":18446744073709551615,"linear":true}"#, ok: true },
            Case { input: r#"{"buckets":0,"tick_minutes":5,"linear":false}"#, ok: false },
            Case { input: r#"{"buckets":65,"tick_minutes":5,"linear":false}"#, ok: false },
            Case { input: r#"{"buckets":100000000000,"tick_minutes":5,"linear":false}"#, ok: false },
            Case { input: r#"{"buckets":10,"tick_minutes":0,"linear":false}"#, ok: false },
            Case { input: r#"{"buckets":-1,"tick_minutes":5,"linear":false}"#, ok: false },
            Case { input: r#"{"buckets":10,"linear":false}"#, ok: false },
        ];
        for c in cases {
            assert_eq!(serde_json::from_str::<Ages>(c.input).is_ok(), c.ok, "{}", c.input);
        }
        let text = serde_json::to_string(&Ages::default()).unwrap();
        assert_eq!(serde_json::from_str::<Ages>(&text).unwrap(), Ages::default());
    }
}
