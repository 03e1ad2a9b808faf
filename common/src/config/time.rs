//! Time values with units (Postfix `mail_conf_time`): an integer and an optional unit letter
//! `s m h d w`; a bare number takes the unit of the parameter's built-in default.

use std::time::Duration;

/// Why a time value is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// Not a number followed by at most one unit letter.
    #[error("invalid time value: \"{0}\"")]
    Syntax(String),
    /// A unit letter other than s, m, h, d, w.
    #[error("unknown time unit in \"{0}\"")]
    Unit(String),
    /// The value does not fit in 64 bits of seconds.
    #[error("time value out of range: \"{0}\"")]
    Range(String),
}

fn unit_seconds(unit: char) -> Option<u64> {
    match unit {
        's' => Some(1),
        'm' => Some(60),
        'h' => Some(3600),
        'd' => Some(86400),
        'w' => Some(7 * 86400),
        _ => None,
    }
}

/// The unit letter of a default value such as `12h` (`s` when it has none).
pub fn default_unit(default: &str) -> char {
    default.trim().chars().last().filter(|c| c.is_ascii_alphabetic()).unwrap_or('s')
}

/// Parse `value`, using `unit` when the value has no unit letter.
pub fn parse_time(value: &str, unit: char) -> Result<Duration, TimeError> {
    let v = value.trim();
    let digits_end = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    if digits_end == 0 {
        return Err(TimeError::Syntax(v.to_string()));
    }
    let number: u64 = v[..digits_end].parse().map_err(|_| TimeError::Range(v.to_string()))?;
    let rest = &v[digits_end..];
    let unit = match rest.chars().count() {
        0 => unit,
        1 => rest.chars().next().unwrap_or(unit),
        _ => return Err(TimeError::Syntax(v.to_string())),
    };
    let per = unit_seconds(unit.to_ascii_lowercase()).ok_or_else(|| TimeError::Unit(v.to_string()))?;
    number.checked_mul(per).map(Duration::from_secs).ok_or_else(|| TimeError::Range(v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        struct Case {
            input: &'static str,
            unit: char,
            want: Result<u64, ()>,
        }
        let cases = [
            Case { input: "300s", unit: 's', want: Ok(300) },
            Case { input: "12h", unit: 'h', want: Ok(43200) },
            Case { input: "6", unit: 'h', want: Ok(21600) },
            Case { input: "7d", unit: 'd', want: Ok(604800) },
            Case { input: "1w", unit: 's', want: Ok(604800) },
            Case { input: "5m", unit: 's', want: Ok(300) },
            Case { input: "", unit: 's', want: Err(()) },
            Case { input: "h", unit: 's', want: Err(()) },
            Case { input: "10x", unit: 's', want: Err(()) },
            Case { input: "10ss", unit: 's', want: Err(()) },
            Case { input: "99999999999999999999", unit: 's', want: Err(()) },
            Case { input: "18446744073709551615w", unit: 's', want: Err(()) },
        ];
        for c in cases {
            let got = parse_time(c.input, c.unit).map(|d| d.as_secs()).map_err(|_| ());
            assert_eq!(got, c.want, "input {:?}", c.input);
        }
        assert_eq!(default_unit("12h"), 'h');
        assert_eq!(default_unit("300"), 's');
    }
}
